"""Every ablation row of benchmarks/bench_sprite.py builds on the sprite preset and takes a real training step
(a row whose overrides clash with the preset would otherwise fail only after the base run, an hour in)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sprite import ABLATIONS  # noqa: E402
from bench_train_step import synthetic_cache  # noqa: E402

from train.config import _merge, load_config, parse_override  # noqa: E402
from train.loop import Trainer, plan_step  # noqa: E402

TINY = {"height": 32, "width": 32, "data": {"world": {"duration": 1.0, "max_subjects": 2, "max_actions": 2, "ref_size": 16}},
        "text": {"d_model": 16, "layers": 1, "heads": 2, "max_length": 16},
        "model": {"heads": 2, "head_dim": 16, "layers": 2, "ffn_dim": 32, "reactid": {"mask_blocks": 2}},
        "optim": {"batch_size": 2, "warmup_steps": 1}}


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_ablation_row_trains_on_the_sprite_preset(row, tmp_path):
    over = {"output_dir": str(tmp_path), **TINY}
    for key, value in ABLATIONS[row].items():  # the rows' dotted keys, as bench_sprite passes them to --set
        if key != "text.max_length":  # keep the tiny encoder's length; the row's own only matters at full size
            over = _merge(over, parse_override(f"{key}={json.dumps(value)}"))
    cfg = load_config("sprite", over)
    torch.manual_seed(0)
    trainer = Trainer(cfg, synthetic_cache(cfg, n=4, z=4))
    losses = [trainer.train_step(plan_step(trainer.curriculum, step)) for step in range(2)]
    flat = [v for rec in losses for v in (rec.values() if isinstance(rec, dict) else [rec]) if isinstance(v, float)]
    assert flat and all(torch.isfinite(torch.tensor(flat))), losses
