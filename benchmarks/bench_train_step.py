"""Cost of one training step of the sprite-preset model, per variant, side by side in one run.

    python benchmarks/bench_train_step.py [--rounds 3] [--steps 4] [--threads 2] [--batch 16]
    python benchmarks/bench_train_step.py --preset ladder_l2v --rows "as it is" --batch 8 --rounds 2 --steps 6

The real `Trainer.train_step` (batch assembly, reference branch, forward, backward, AdamW) on a cache with
the sprite world's shapes (64 x 64 px, 4 s: 17 x 8 x 8 latents, z = 16; 1-2 subjects, 1-3 actions) filled
with random latents, so nothing has to be trained or encoded first. Variants are interleaved (A, B, C, A,
...; each run in a fresh process), so machine noise hits every row alike: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from train.config import load_config  # noqa: E402
from train.loop import Trainer, build_text_encoder, encode_texts, plan_step  # noqa: E402
from train.sprites import WorldConfig, generate_clip  # noqa: E402

VARIANTS = {
    "fp32, ground-truth binding": {"optim": {"mixed_precision": "no", "binding_masks": "ground_truth"}},
    "fp32, predicted binding (+1 forward)": {"optim": {"mixed_precision": "no", "binding_masks": "predicted", "binding_none_prob": 0.0}},
    "bf16 autocast, ground-truth binding": {"optim": {"mixed_precision": "bf16", "binding_masks": "ground_truth"}},
    "bf16 autocast, predicted binding (+1 forward)": {"optim": {"mixed_precision": "bf16", "binding_masks": "predicted", "binding_none_prob": 0.0}},
    "the preset as it is": {"optim": {}},
    "the preset as it is, torch.compile": {"optim": {"compile": True}},
    "fp32, ground-truth binding, torch.compile": {"optim": {"mixed_precision": "no", "binding_masks": "ground_truth", "compile": True}},
}
WARMUP_STEPS = 3  # untimed: allocations, kernel choice, and torch.compile's compilations (a new subject count can recompile)


def synthetic_cache(cfg, n: int = 48, z: int = 16) -> dict:
    world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **cfg.data.world)
    timelines = [generate_clip(cfg.data.seed + i, world).timeline for i in range(n)]
    enc, tok = build_text_encoder(cfg)
    texts = {""} | {t.prompt for t in timelines} | {s.name for t in timelines for s in t.subjects} | {a.text for t in timelines for s in t.subjects for a in s.actions}
    g = torch.Generator().manual_seed(0)
    h, w = cfg.height // 8, cfg.width // 8
    F = (world.num_frames - 1) // 4 + 1
    ns = [len(t.subjects) for t in timelines]
    return {
        "latents": torch.randn(n, z, F, h, w, generator=g),
        "ref_intra": [torch.randn(k, z, h, w, generator=g) for k in ns],
        "ref_inter": [torch.randn(k, z, h, w, generator=g) for k in ns],
        "masks": [torch.rand(k, F * (h // cfg.model.patch_size[1]) * (w // cfg.model.patch_size[2]), generator=g) * 0.3 for k in ns],
        "timelines": [t.to_dict() for t in timelines], "prompts": [t.prompt for t in timelines],
        "names": [[s.name for s in t.subjects] for t in timelines], "num_subjects": ns,
        "text": encode_texts(enc, tok, sorted(texts), cfg.text.max_length),
        "difficulty_intra": np.linspace(0, 1, n), "difficulty_inter": np.linspace(1, 2, n),
    }


def time_variant(name: str, steps: int, threads: int, batch: int, preset: str = "sprite") -> list[float]:
    """Seconds per step of one variant, after WARMUP_STEPS untimed steps (run in its own process: accelerate keeps one
    mixed-precision state per process)."""
    torch.set_num_threads(threads)
    over = VARIANTS[name]
    tmp = tempfile.mkdtemp()
    cfg = load_config(preset, {"output_dir": tmp, **over, "optim": {**over["optim"], "batch_size": batch}, "model": {"init_from": None}})
    trainer = Trainer(cfg, synthetic_cache(cfg))
    out = []
    for step in range(steps + WARMUP_STEPS):
        plan = plan_step(trainer.curriculum, step)
        t0 = time.perf_counter()
        trainer.train_step(plan)
        if step >= WARMUP_STEPS:
            out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each runs every variant in a fresh process")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rows", nargs="*", help="substrings of the variant names to run (default: all)")
    ap.add_argument("--preset", default="sprite", help="the training preset whose model is timed (e.g. ladder_l2v, the shipped recipe)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(time_variant(args.child, args.steps, args.threads, args.batch, args.preset)))
        return
    rows = [k for k in VARIANTS if not args.rows or any(r in k for r in args.rows)]
    times = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name in rows:
            cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--threads", str(args.threads), "--batch", str(args.batch), "--preset", args.preset]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times[name] += json.loads(res.stdout.strip().splitlines()[-1])
    base = statistics.median(times[rows[0]])
    print(f"\npreset {args.preset}, batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds x {args.steps} steps\n")
    print("| variant | median s/step | x first row | samples/s |\n|---|---:|---:|---:|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.3f} | {m / base:.2f} | {args.batch / m:.1f} |")


if __name__ == "__main__":
    main()
