"""Difficulty cues against the paper's formulas, computed directly on hand-made arrays."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from train.difficulty import (
    ColorHOG,
    DifficultyWeights,
    DinoV2Extractor,
    clip_difficulty,
    cosine_similarity,
    d_app,
    d_app_from_features,
    d_overall,
    d_sam,
    d_sub,
    get_extractor,
    sample_difficulty,
)
from train.sprites import generate_clip


def test_d_sub_is_equation_1():
    m = np.zeros((4, 10, 10), bool)
    m[0, :5, :4] = True  # 20 px
    m[2, 0, 0] = True  # 1 px
    assert d_sub(m) == pytest.approx(1 - 21 / (4 * 10 * 10))
    multi = np.stack([m, np.ones_like(m)])
    assert np.allclose(d_sub(multi), [1 - 21 / 400, 0.0])
    with pytest.raises(ValueError, match="masks"):
        d_sub(np.zeros((10, 10), bool))


@settings(max_examples=30, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))))
def test_d_sub_matches_direct_count(m):
    N, H, W = m.shape
    direct = 1 - sum(int(m[n, i, j]) for n in range(N) for i in range(H) for j in range(W)) / (N * H * W)
    assert d_sub(m) == pytest.approx(direct)
    assert 0.0 <= d_sub(m) <= 1.0


def _mean_colour(images):
    return np.stack([np.asarray(im, float).reshape(-1, 3).mean(0) for im in images])


def test_d_app_is_equation_2_with_any_feature():
    ref = np.full((4, 4, 3), (10, 0, 0), np.uint8)
    crops = [np.full((4, 4, 3), c, np.uint8) for c in [(10, 0, 0), (0, 10, 0), (10, 10, 0)]]
    # F = mean colour: cosines are 1, 0 and 1/sqrt(2)
    expect = 1 - (1 + 0 + 1 / np.sqrt(2)) / 3
    assert d_app(ref, crops, extractor=_mean_colour) == pytest.approx(expect)
    assert d_app_from_features(np.array([1.0, 0]), np.array([[2.0, 0], [0, 3.0]])) == pytest.approx(0.5)
    assert d_app(ref, [], extractor=_mean_colour) == 1.0  # never seen: as unlike as it gets


@settings(max_examples=30, deadline=None)
@given(arrays(float, (5,), elements=st.floats(0.1, 10)), arrays(float, (3, 5), elements=st.floats(0.1, 10)), st.floats(0.1, 100))
def test_d_app_ignores_feature_scale(ref, crops, k):
    base = d_app_from_features(ref, crops)
    assert d_app_from_features(ref * k, crops) == pytest.approx(base, abs=1e-9)
    manual = 1 - np.mean([ref @ c / (np.linalg.norm(ref) * np.linalg.norm(c)) for c in crops])
    assert base == pytest.approx(max(0.0, manual), abs=1e-9)


def test_d_sam_and_overall_weights():
    assert d_sam("intra") == 0.0 and d_sam("inter") == 1.0
    with pytest.raises(ValueError, match="intra"):
        d_sam("cross")
    assert d_overall(0.8, 0.2, 1.0) == pytest.approx(0.5 * 0.8 + 0.2 + 1.0)  # paper's (0.5, 1, 1)
    assert d_overall(0.8, 0.2, 1.0, (1, 2, 3)) == pytest.approx(0.8 + 0.4 + 3)
    assert d_overall(0.8, 0.2, 0.0, {"lambda_sub": 0, "lambda_app": 1, "lambda_sam": 1}) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="lambda_app"):
        DifficultyWeights(0.5, -1, 1).validate()


def test_multi_subject_scores_are_means_over_subjects():
    F, H, W = 3, 8, 8
    frames = np.zeros((F, H, W, 3), np.uint8)
    frames[:, :4, :4] = (200, 0, 0)
    frames[:, 4:, 4:] = (0, 0, 200)
    masks = np.zeros((2, F, H, W), bool)
    masks[0, :, :4, :4] = True
    masks[1, :, 4:, 4:] = True
    masks[1, 0] = False  # subject 2 missing in frame 0: N = 2 for it
    red, blue = np.full((6, 6, 3), (200, 0, 0), np.uint8), np.full((6, 6, 3), (0, 0, 200), np.uint8)
    # inter references: red subject gets a blue reference (cos 0 with mean-colour features at the centre)
    d = sample_difficulty(frames, masks, [[red], [blue]], [[blue], [blue]], extractor=_mean_colour)
    subs = [1 - 16 * 3 / (F * H * W), 1 - 16 * 2 / (F * H * W)]
    assert d.per_subject[0]["d_sub"] == pytest.approx(subs[0]) and d.per_subject[1]["d_sub"] == pytest.approx(subs[1])
    assert d.d_sub == pytest.approx(np.mean(subs))
    apps_inter = [d.per_subject[s]["d_app_inter"] for s in range(2)]
    assert d.d_app_inter == pytest.approx(np.mean(apps_inter)) and apps_inter[0] > apps_inter[1]
    assert d.overall_intra == pytest.approx(np.mean([0.5 * subs[s] + d.per_subject[s]["d_app_intra"] for s in range(2)]))
    assert d.overall_inter == pytest.approx(0.5 * np.mean(subs) + d.d_app_inter + 1.0)
    assert d.weights == {"lambda_sub": 0.5, "lambda_app": 1.0, "lambda_sam": 1.0}


def test_colorhog_features():
    ex = ColorHOG()
    assert ex.name == "ColorHOG"
    red = np.zeros((32, 32, 3), np.uint8)
    red[8:24, 8:24] = (220, 40, 40)
    blue = red[..., ::-1].copy()
    stripes = red.copy()
    stripes[8:24:4, 8:24] = (120, 20, 20)
    shifted = np.roll(red, 2, axis=1)
    f = ex([red, red, blue, stripes, shifted])
    assert f.shape == (5, ex.dim) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    cos = cosine_similarity(f[0], f)
    assert cos[1] == pytest.approx(1.0, abs=1e-6)
    assert cos[2] < 0.9 and cos[3] < 0.95  # another colour, another texture: less alike
    assert cos[4] > 0.95  # a small shift barely matters
    assert d_app(red, [red, red]) == pytest.approx(0.0, abs=1e-6)


def test_inter_references_are_harder_than_intra():
    d = [clip_difficulty(generate_clip(s, duration=2.0), stride=2) for s in range(6)]
    assert all(x.d_app_inter > x.d_app_intra for x in d)
    assert all(x.overall_inter > x.overall_intra + 0.9 for x in d)  # D_sam adds lambda_sam = 1
    assert all(0.8 < x.d_sub < 1.0 for x in d)  # small sprites on a 64x64 frame


def test_dinov2_loader_from_a_local_tiny_model(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    Dinov2Model(cfg).save_pretrained(tmp_path / "tiny-dino")
    ex = get_extractor(str(tmp_path / "tiny-dino"))
    assert isinstance(ex, DinoV2Extractor) and ex.name == "DINOv2:tiny-dino" and ex.image_size == 28
    clip = generate_clip(0, duration=1.0)
    feats = ex([clip.references_intra[0][0], clip.references_inter[0][0]])
    assert feats.shape == (2, 32) and np.isfinite(feats).all()
    d = clip_difficulty(clip, extractor=ex, stride=4)
    assert d.extractor == "DINOv2:tiny-dino" and 0.0 <= d.d_app_intra <= 2.0
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        DinoV2Extractor.from_pretrained(tmp_path / "missing")
