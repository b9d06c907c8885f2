"""benchmarks/shape_probe.py: the linear probe itself, and subject-token states read from the shipped model."""

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from shape_probe import probe_accuracy, subject_token_states  # noqa: E402

from train.sprites import SHAPES, WorldConfig  # noqa: E402


def test_the_probe_reads_a_class_that_is_in_the_features_and_not_one_that_is_absent():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, len(SHAPES), (600,), generator=g)
    noise = torch.randn(600, 16, generator=g)
    separable = noise.clone()
    separable[:, : len(SHAPES)] += 4 * torch.nn.functional.one_hot(y, len(SHAPES))
    acc, per = probe_accuracy(separable[:400], y[:400], separable[400:], y[400:])
    assert acc > 0.95 and min(per) > 0.8
    chance, _ = probe_accuracy(noise[:400], y[:400], noise[400:], y[400:])
    assert chance < 0.35  # six classes: about 1/6 when the features say nothing


def test_subject_tokens_are_read_at_each_noise_level_and_block():
    from model.pipeline import ReactIDPipeline

    export = ROOT / "assets/default_model"
    pipe = ReactIDPipeline.from_pretrained(export)
    world = WorldConfig.from_kwargs(**json.loads((export / "sprite_world.json").read_text()))
    states, labels = subject_token_states(pipe, world, [7_000_000, 7_000_001], [0.5, 0.9], [0, 5])
    assert set(states) == {(s, k) for s in (0.5, 0.9) for k in ("in", 0, 5)}
    dim = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    for v in states.values():
        assert v.shape == (len(labels), dim) and torch.isfinite(v).all()
    assert not torch.equal(states[(0.5, 5)], states[(0.9, 5)])  # another noise level, other states
    assert 0 <= int(labels.min()) and int(labels.max()) < len(SHAPES)
