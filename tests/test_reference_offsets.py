"""reference_offset_bias (twentieth session): where each reference token and each video token lies on its subject, and
the attention bias that prefers the reference tokens at a video token's own place on the subject."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.conditioning import build_timeline_conditioning
from model.references import reference_foreground, reference_token_offsets
from model.timeline import example_timeline
from model.tiny import tiny_transformer_config
from model.transformer import OFFSET_GAIN_SCALE, ReactIDTransformer, offset_distances, subject_token_offsets
from tests.test_train import ROOT, TINY, run_train
from tests.test_transformer import fake_encoder, inputs, random_wan


def disc_image(size=64, centre=(24.0, 40.0), radius=12.0, colour=(0.9, -0.8, -0.6), background=-0.2):
    """[3, size, size] in [-1, 1]: one solid disc on a flat background, and its bool mask."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    img = np.full((3, size, size), background, dtype=np.float32)
    for c in range(3):
        img[c][mask] = colour[c]
    return img, mask


def test_a_reference_token_is_placed_relative_to_its_subject_in_units_of_its_size():
    img, mask = disc_image()
    off = reference_token_offsets(img, (8, 8)).reshape(8, 8, 2)
    ys, xs = np.nonzero(mask)
    r = np.percentile(np.hypot(ys + 0.5 - 24, xs + 0.5 - 40), 95)  # 95% of the subject's pixels lie within r
    assert r == pytest.approx(12 * math.sqrt(0.95), abs=0.2)
    # token (row 3, column 5) has its centre at (28, 44): 4 px below and right of the disc's centre
    assert off[3, 5] == pytest.approx([4 / r, 4 / r], abs=0.02)
    assert off[0, 0] == pytest.approx([(4 - 24) / r, (4 - 40) / r], abs=0.02)


def test_the_subject_is_the_part_nearest_the_centre_and_an_empty_reference_has_a_default():
    img, mask = disc_image(centre=(32.0, 32.0))
    img[0, :6, :6], img[1, :6, :6] = 0.9, 0.9  # the edge of a neighbouring sprite caught in the crop
    fg = reference_foreground(img)
    assert fg.sum() == mask.sum() and not fg[:6, :6].any()
    flat = np.full((3, 32, 32), 0.1, dtype=np.float32)
    off = reference_token_offsets(flat, (4, 4)).reshape(4, 4, 2)
    assert off[0, 0] == pytest.approx([(4 - 16) / 8, (4 - 16) / 8])  # no subject: one filling the middle half, radius 8 of 32


def test_video_tokens_and_reference_tokens_of_the_same_subject_get_the_same_places():
    """The two sides meet in one unit: a subject drawn in the video (token coverage, as the masks are) and the same
    subject seen in a reference give each token the same place on it."""
    img, mask = disc_image(centre=(24.0, 40.0), radius=14.0)
    coverage = F.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], (8, 8))  # [1, 1, 8, 8]
    video = subject_token_offsets(coverage.reshape(1, 1, 64).repeat(1, 1, 2), (2, 8, 8))  # two latent frames
    ref = torch.from_numpy(reference_token_offsets(img, (8, 8)))
    assert video.shape == (1, 1, 128, 2)
    # a disc's 95% radius is 0.975 of the radius of a disc of its area: the far corners differ by up to 0.1
    assert (video[0, 0, :64] - ref).abs().max() < 0.12
    assert torch.equal(video[0, 0, :64], video[0, 0, 64:])
    d2 = offset_distances(video, ref[None], torch.zeros(1, 64, dtype=torch.long))  # [1, N, R]
    assert d2.shape == (1, 128, 64)
    assert torch.equal(d2[0, :64].argmin(-1), torch.arange(64))  # each video token is nearest its own reference token


def _offset_inputs(subjects=2):
    x, t, ctx, refs, rs, rt, masks = inputs(subjects=subjects)
    g = torch.Generator().manual_seed(5)
    offsets = torch.randn(1, refs.shape[1], 16, 2, generator=g)  # 8x8 reference latents, 2x2 patches: 16 tokens each
    return x, t, ctx, refs, rs, rt, (masks > 0.5).float(), offsets


def test_the_offset_bias_starts_as_exactly_wan_and_as_the_model_without_it():
    """Zero gain at first: a model grown with the option computes what Wan and the model without it compute."""
    base = random_wan()
    opts = {"reference_binding_bias": True, "reference_null_key": True}
    plain = ReactIDTransformer.from_wan(base, **opts).eval()
    biased = ReactIDTransformer.from_wan(base, **opts, reference_offset_bias=True).eval()
    x, t, ctx, refs, rs, rt, masks, offsets = _offset_inputs()
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    with torch.no_grad():
        for p_name, p in plain.named_parameters():  # move every trained path, so the comparison is not vacuous
            if "ref_out" in p_name or "ref_bind_gain" in p_name:
                p.add_(0.2 * torch.randn_like(p))
        biased.load_state_dict(plain.state_dict(), strict=False)
        want_wan = base(x, t, ctx).sample
        fresh = ReactIDTransformer.from_wan(base, **opts, reference_offset_bias=True).eval()
        got_fresh = fresh(x, t, ctx, reference_features=fresh.encode_references(refs, rs, rt, 2, offsets), timeline=tl, subject_masks=masks)
        want = plain(x, t, ctx, reference_features=plain.encode_references(refs, rs, rt, 2), timeline=tl, subject_masks=masks)
        got = biased(x, t, ctx, reference_features=biased.encode_references(refs, rs, rt, 2, offsets), timeline=tl, subject_masks=masks)
        assert (got_fresh.sample - want_wan).abs().max() <= 1e-5
        assert torch.allclose(got.sample, want.sample, atol=1e-6) and torch.allclose(got.mask_logits, want.mask_logits, atol=1e-6)
        for blk in biased.blocks:
            blk.ref_offset_gain.fill_(0.5)
        moved = biased(x, t, ctx, reference_features=biased.encode_references(refs, rs, rt, 2, offsets), timeline=tl, subject_masks=masks)
    assert (moved.sample - want.sample).abs().max() > 1e-3


def test_the_bias_ranks_a_bound_token_s_references_by_distance_and_leaves_other_subjects_alone():
    model = ReactIDTransformer(**tiny_transformer_config(reference_binding_bias=True, reference_offset_bias=True))
    blk = model.blocks[0]
    with torch.no_grad():
        blk.ref_offset_gain.fill_(0.25)
    token_assign = torch.tensor([[0, 1]])  # video token 0 bound to subject 0, token 1 to subject 1
    token_subject = torch.tensor([[0, 0, 1]])
    d2 = torch.tensor([[[0.0, 4.0, 9.0], [1.0, 1.0, 2.0]]])  # [B, N, R]
    bias = blk._binding_bias(token_assign, token_subject, token_subject >= 0, torch.float32, d2)  # [B, H, N, R]
    g = OFFSET_GAIN_SCALE * 0.25
    assert bias[0, 0, 0].tolist() == pytest.approx([0.0, -4 * g, 0.0])  # subject 1's reference: no offset term
    assert bias[0, 0, 1].tolist() == pytest.approx([0.0, 0.0, -2 * g])


def test_missing_offsets_and_an_option_without_binding_are_refused():
    model = ReactIDTransformer(**tiny_transformer_config(reference_binding_bias=True, reference_offset_bias=True)).eval()
    x, t, ctx, refs, rs, rt, masks, _ = _offset_inputs()
    with torch.no_grad(), pytest.raises(ValueError, match="reference_offset_bias: its reference features need token offsets"):
        model(x, t, ctx, reference_features=model.encode_references(refs, rs, rt, 2), subject_masks=masks)
    with torch.no_grad():  # without binding masks (the first step) there is no bound subject, so nothing to place
        model(x, t, ctx, reference_features=model.encode_references(refs, rs, rt, 2))
    with pytest.raises(ValueError, match="reference_offset_bias needs"):
        ReactIDTransformer(**tiny_transformer_config(reference_offset_bias=True))


def test_pooled_reference_tokens_are_placed_at_the_mean_of_what_they_pool():
    model = ReactIDTransformer(**tiny_transformer_config(reference_binding_bias=True, reference_offset_bias=True, reference_token_pool=2))
    _, _, _, refs, rs, rt, _, offsets = _offset_inputs()
    with torch.no_grad():
        feats = model.encode_references(refs, rs, rt, 2, offsets)
    grid = offsets.reshape(3, 4, 4, 2)
    assert feats.token_offset.shape == (1, 12, 2)
    assert feats.token_offset[0, 0].tolist() == pytest.approx(grid[0, :2, :2].reshape(4, 2).mean(0).tolist(), abs=1e-6)


def test_a_run_with_the_offset_bias_learns_its_gain_and_its_export_generates(tmp_path):
    """A real training subprocess: the cache's references get their places (decoded from their latents), the gain
    moves off zero, and the exported pipeline reads the places from the reference images it is given."""
    from model.pipeline import ReactIDPipeline
    from train.sprites import WorldConfig, generate_clip

    # 8-px tokens and a low threshold, so that the small sprites bind tokens (the bias acts only on bound tokens)
    cfg = {**TINY, "model": {**TINY["model"], "patch_size": [1, 1, 1],
                             "reactid": {"mask_blocks": 2, "mask_threshold": 0.2, "reference_binding_bias": True, "reference_offset_bias": True}},
           "optim": {**TINY["optim"], "binding_masks": "ground_truth", "checkpoint_every": 6}}
    out = tmp_path / "run"
    r = run_train(cfg, out, "--export", str(tmp_path / "export"))
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    placed = [e for e in events if e.get("event") == "reference_offsets"]
    assert placed and placed[0]["references"] >= 8  # every clip's intra and inter references
    pipe = ReactIDPipeline.from_pretrained(tmp_path / "export")
    gains = torch.stack([b.ref_offset_gain for b in pipe.transformer.blocks])
    assert gains.abs().max() > 0
    clip = generate_clip(7, WorldConfig.from_kwargs(height=32, width=32, **cfg["data"]["world"]))
    refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
    video = pipe(clip.timeline, refs, num_inference_steps=2, guidance_scale=1.0, seed=0, progress=False, height=32, width=32).frames
    assert np.asarray(video).shape[-1] == 3 and np.isfinite(np.asarray(video, dtype=np.float32)).all()


def test_a_warm_start_gives_new_offset_gains_their_start_value_and_keeps_loaded_ones(tmp_path):
    from train.config import ConfigError, load_config
    from train.loop import build_transformer

    def cfg(**model):
        reactid = {"mask_blocks": 2, "reference_binding_bias": True, **model.pop("reactid", {})}
        return load_config({**TINY, "output_dir": str(tmp_path / "run"), "model": {**TINY["model"], "reactid": reactid, **model}})

    build_transformer(cfg(), in_channels=4, text_dim=16).save_pretrained(tmp_path / "plain" / "transformer")
    grown = build_transformer(cfg(reactid={"reference_offset_bias": True}, init_from=str(tmp_path / "plain"), init_offset_gain=0.5),
                              in_channels=4, text_dim=16)
    for blk in grown.blocks:
        assert torch.allclose(OFFSET_GAIN_SCALE * blk.ref_offset_gain, torch.full_like(blk.ref_offset_gain, 0.5))
    with torch.no_grad():
        grown.blocks[0].ref_offset_gain.fill_(0.3)
    grown.save_pretrained(tmp_path / "biased" / "transformer")
    again = build_transformer(cfg(reactid={"reference_offset_bias": True}, init_from=str(tmp_path / "biased"), init_offset_gain=0.5),
                              in_channels=4, text_dim=16)
    assert torch.allclose(again.blocks[0].ref_offset_gain, torch.full((2,), 0.3))  # loaded, not reset
    with pytest.raises(ConfigError, match="model.init_offset_gain"):
        cfg(init_offset_gain=0.5)
    with pytest.raises(ConfigError, match="model.reactid.reference_offset_bias: needs reference_binding_bias"):
        load_config({**TINY, "model": {**TINY["model"], "reactid": {"reference_offset_bias": True}}})


def test_training_reads_the_places_from_decoded_references_nearly_as_the_pipeline_reads_them_from_images():
    """The training cache holds reference latents, not images, so add_reference_offsets decodes them; the pipeline has
    the images. Through the sprite VAE the two agree to a small share of the subject's size."""
    from PIL import Image

    from model import latents as L
    from model.framevae import load_vae
    from model.references import reference_to_array
    from train.sprites import WorldConfig, generate_clip

    vae = load_vae(str(ROOT / "assets/sprite_pca_vae_f"))
    world = WorldConfig.from_kwargs(**json.loads((ROOT / "assets/default_model/sprite_world.json").read_text()))
    diffs = []
    for seed in range(6):
        clip = generate_clip(5_000_000 + seed, world)
        arr = np.stack([reference_to_array(Image.fromarray(r[0]), 64) for r in clip.references_intra + clip.references_inter])
        with torch.no_grad():
            lat = L.normalise(vae.encode(torch.from_numpy(arr).unsqueeze(2)).latent_dist.mode(), vae.config, video=False)
            decoded = vae.decode(L.denormalise_reference(lat, vae.config)).sample[:, :, 0].clamp(-1, 1).numpy()
        diffs += [np.abs(reference_token_offsets(a, (8, 8)) - reference_token_offsets(d, (8, 8))).max() for a, d in zip(arr, decoded)]
    assert len(diffs) >= 12 and np.median(diffs) < 0.1
