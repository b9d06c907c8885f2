"""Generation time of the embedded default model on this machine: a 2-subject, 4-second clip.

    python benchmarks/bench_default.py [--steps 20] [--repeats 3] [--model DIR ...]

Rows: steps x guidance variants side by side (CFG doubles the transformer passes); the VAE decode and
the one-off reference encoding are included, as a creator experiences them. With several --model
directories, one column per model, the models taking turns within each repeat (a noisy machine then
slows them alike, so their ratio holds).
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
    ap.add_argument("--model", action="append", default=[], metavar="DIR", help="pipeline directory (default: the embedded model); repeat to compare")
    args = ap.parse_args()
    torch.set_num_threads(2)
    dirs = args.model or [None]
    pipes, load_s = [], []
    for d in dirs:
        t0 = time.perf_counter()
        pipes.append(load_default_pipeline(directory=d))
        load_s.append(time.perf_counter() - t0)
    pipe = pipes[0]
    world = {**(sprite_world(dirs[0]) or {}), "duration": 4.0, "min_subjects": 2, "max_subjects": 2}  # the model's own world and fps
    world.setdefault("fps", int(pipe.default_fps))
    clip = generate_clip(900_123, WorldConfig.from_kwargs(**world))
    refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
    variants = {f"{args.steps} steps, CFG 3.0": dict(num_inference_steps=args.steps, guidance_scale=3.0),
                f"{args.steps} steps, no CFG": dict(num_inference_steps=args.steps, guidance_scale=1.0),
                "50 steps, CFG 5.0 (paper)": dict(num_inference_steps=50, guidance_scale=5.0)}
    times = {(k, m): [] for k in variants for m in range(len(pipes))}
    for p in pipes:
        p(clip.timeline, refs, num_inference_steps=2, progress=False)  # warm-up
    for r in range(args.repeats):
        for k, kw in variants.items():
            for m, p in enumerate(pipes):
                t = time.perf_counter()
                out = p(clip.timeline, refs, seed=r, progress=False, **kw)
                times[(k, m)].append(time.perf_counter() - t)
    names = [str(d) if d else "default model" for d in dirs]
    print(f"{pipe.default_width}x{pipe.default_height}, {out.frames.shape[0]} frames, {len(clip.timeline.subjects)} subjects; torch threads {torch.get_num_threads()}")
    for n, ls in zip(names, load_s):
        print(f"  {n}: load {ls:.2f} s")
    print(f"{'variant':28s} " + " ".join(f"{n[-24:]:>24s}" for n in names) + "   (median s / min s)")
    for k in variants:
        cells = [f"{statistics.median(times[(k, m)]):.2f} / {min(times[(k, m)]):.2f}" for m in range(len(pipes))]
        print(f"{k:28s} " + " ".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
