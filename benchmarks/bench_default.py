"""Generation time of the embedded default model on this machine: a 2-subject, 4-second clip.

    python benchmarks/bench_default.py [--steps 20] [--repeats 3]

Rows: steps x guidance variants side by side (CFG doubles the transformer passes); the VAE decode and
the one-off reference encoding are included, as a creator experiences them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.default import load_default_pipeline, sprite_world  # noqa: E402
from train.sprites import WorldConfig, generate_clip  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    pipe = load_default_pipeline()
    load_s = time.perf_counter() - t0
    world = {**(sprite_world() or {}), "duration": 4.0, "min_subjects": 2, "max_subjects": 2}  # the model's own world and fps
    world.setdefault("fps", int(pipe.default_fps))
    clip = generate_clip(900_123, WorldConfig.from_kwargs(**world))
    refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
    variants = {f"{args.steps} steps, CFG 3.0": dict(num_inference_steps=args.steps, guidance_scale=3.0),
                f"{args.steps} steps, no CFG": dict(num_inference_steps=args.steps, guidance_scale=1.0),
                "50 steps, CFG 5.0 (paper)": dict(num_inference_steps=50, guidance_scale=5.0)}
    times = {k: [] for k in variants}
    pipe(clip.timeline, refs, num_inference_steps=2, progress=False)  # warm-up
    for r in range(args.repeats):
        for k, kw in variants.items():
            t = time.perf_counter()
            out = pipe(clip.timeline, refs, seed=r, progress=False, **kw)
            times[k].append(time.perf_counter() - t)
    print(f"default model: {pipe.default_width}x{pipe.default_height}, {out.frames.shape[0]} frames, {len(clip.timeline.subjects)} subjects; load {load_s:.2f} s; torch threads {torch.get_num_threads()}")
    print(f"{'variant':28s} {'median s':>9s} {'min s':>7s}")
    for k, v in times.items():
        print(f"{k:28s} {statistics.median(v):9.2f} {min(v):7.2f}")


if __name__ == "__main__":
    main()
