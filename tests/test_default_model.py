"""The shipped default model: it loads from assets/, generates a real clip, and its output is scored by
the sprite evaluator well above a same-architecture model with untrained weights."""

import numpy as np
import pytest
import torch

from model.default import DEFAULT_MODEL_DIR, load_default_pipeline
from train.sprite_eval import evaluate_clip, summarize
from train.sprites import WorldConfig, generate_clip

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "reactid_pipeline.json").is_file(), reason="default model not built")


@pytest.fixture(scope="module")
def default_pipe():
    return load_default_pipeline()


@pytest.fixture(scope="module")
def scenes():
    world = WorldConfig(duration=4.0, min_subjects=2, max_subjects=2, max_actions=3)
    return [generate_clip(910_000 + i, world) for i in range(3)]


def run(pipe, clips, steps=12):
    scores = []
    for i, c in enumerate(clips):
        refs = {s.id: [c.references_intra[k][0]] for k, s in enumerate(c.timeline.subjects)}
        out = pipe(c.timeline, refs, num_inference_steps=steps, guidance_scale=3.0, seed=i, progress=False)
        assert out.frames.shape == (65, 64, 64, 3) and out.masks.shape == (2, 65, 64, 64)
        scores.append(evaluate_clip(out.frames, c.timeline, [r[0] for r in c.references_intra], actions=c.actions))
    return summarize(scores)


def test_default_model_is_small_enough_to_ship():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 50 * 2**20


def test_default_model_renders_the_subjects_far_better_than_untrained_weights(default_pipe, scenes):
    trained = run(default_pipe, scenes)
    untrained_pipe = load_default_pipeline()
    torch.manual_seed(0)
    with torch.no_grad():  # same architecture, weights re-drawn: what the shipped weights add
        for p in untrained_pipe.transformer.parameters():
            p.normal_(0, 0.02)
    untrained = run(untrained_pipe, scenes)
    assert trained["identity_fidelity"] >= untrained["identity_fidelity"] + 0.3, (trained, untrained)
    assert trained["action_accuracy"] > untrained["action_accuracy"], (trained, untrained)
