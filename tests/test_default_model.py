"""The shipped default model: it loads from assets/, generates a clip of the right shape, fits in the
size budget, and its weights have learned the sprite world (held-out flow-matching loss far below the
same architecture with re-drawn weights). Quality against the timeline is measured by
benchmarks/bench_sprite.py, not asserted here (docs/BENCHMARKS.md)."""

import copy

import numpy as np
import pytest
import torch

from model.conditioning import build_timeline_conditioning
from model.default import DEFAULT_MODEL_DIR, load_default_pipeline
from model.losses import add_flow_noise, flow_matching_loss
from train.sprites import WorldConfig, generate_clip


@pytest.fixture(scope="module")
def default_pipe():
    return load_default_pipeline()


@pytest.fixture(scope="module")
def scenes():
    world = WorldConfig(duration=4.0, min_subjects=2, max_subjects=2, max_actions=3)
    return [generate_clip(910_000 + i, world) for i in range(2)]


def refs_of(clip):
    return {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}


def test_default_model_is_small_enough_to_ship():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 50 * 2**20


def test_default_model_generates_a_clip(default_pipe, scenes):
    c = scenes[0]
    out = default_pipe(c.timeline, refs_of(c), num_inference_steps=4, guidance_scale=3.0, seed=0, progress=False)
    assert out.frames.shape == (65, 64, 64, 3) and out.masks.shape == (2, 65, 64, 64)
    assert out.frames.std() > 5  # not a flat image


@torch.no_grad()
def held_out_loss(pipe, clips):
    losses = []
    g = torch.Generator().manual_seed(0)
    for c in clips:
        video = torch.from_numpy(c.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        x0 = pipe.encode_video(video)
        images = pipe.prepare_references(c.timeline, refs_of(c))
        feats = pipe.encode_reference_features(c.timeline, images, pipe.config.reference_size)
        tl = build_timeline_conditioning([c.timeline], lambda caps: pipe.encode_text(caps, max_length=pipe.config.caption_max_length))
        prompt, _ = pipe.encode_text([c.timeline.prompt])
        for sigma in (0.3, 0.6):
            noise = torch.randn(x0.shape, generator=g)
            x_t = add_flow_noise(x0, noise, torch.tensor([sigma]))
            pred = pipe.transformer(x_t, torch.tensor([sigma * 1000]), prompt, reference_features=feats, timeline=tl).sample
            losses.append(flow_matching_loss(pred, noise, x0).item())
    return float(np.mean(losses))


def test_shipped_weights_have_learned_the_sprite_world(default_pipe, scenes):
    trained = held_out_loss(default_pipe, scenes)
    redrawn = copy.deepcopy(default_pipe)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in redrawn.transformer.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.02)
    untrained = held_out_loss(redrawn, scenes)
    assert trained < 0.5 * untrained, (trained, untrained)
