"""Every ablation row of benchmarks/bench_sprite.py builds on the sprite preset and takes a real training step
(a row whose overrides clash with the preset would otherwise fail only after the base run, an hour in)."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sprite import ABLATIONS  # noqa: E402
from bench_train_step import synthetic_cache  # noqa: E402

from train.config import load_config  # noqa: E402
from train.loop import Trainer, plan_step  # noqa: E402

TINY = {"height": 32, "width": 32, "data": {"world": {"duration": 1.0, "max_subjects": 2, "max_actions": 2, "ref_size": 16}},
        "text": {"d_model": 16, "layers": 1, "heads": 2, "max_length": 16},
        "model": {"heads": 2, "head_dim": 16, "layers": 2, "ffn_dim": 32, "reactid": {"mask_blocks": 2}},
        "optim": {"batch_size": 2, "warmup_steps": 1}}


def nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *path, leaf = key.split(".")
        d = out
        for p in path:
            d = d.setdefault(p, {})
        d[leaf] = value
    return out


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_ablation_row_trains_on_the_sprite_preset(row, tmp_path):
    over = nested(ABLATIONS[row])
    if "text" in over:  # keep the tiny encoder's length, the row's own length only matters at full size
        over["text"] = {k: v for k, v in over["text"].items() if k != "max_length"}
    cfg = load_config("sprite", merge(merge({"output_dir": str(tmp_path)}, TINY), over))
    torch.manual_seed(0)
    trainer = Trainer(cfg, synthetic_cache(cfg, n=4, z=4))
    losses = [trainer.train_step(plan_step(trainer.curriculum, step)) for step in range(2)]
    flat = [v for rec in losses for v in (rec.values() if isinstance(rec, dict) else [rec]) if isinstance(v, float)]
    assert flat and all(torch.isfinite(torch.tensor(flat))), losses
