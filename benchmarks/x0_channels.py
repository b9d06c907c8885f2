"""How much a grown latent's new channels have learned: for each model (a pipeline directory whose transformer has
model.reactid.x0_channels_from), the held-out squared error of those channels' clean-latent guess over their energy,
at a few noise levels (train.held_out.x0_channel_share). 1.0 is the untrained start (every new channel guessed at its
mean); the gate of a grown-latent rung is this falling below 1 within minutes.

    python benchmarks/x0_channels.py runs/l2x_cpu/export --level l2 --n 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder import held_out, level_world  # noqa: E402
from latent_ceiling import LEVEL_OVERRIDES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="pipeline directories")
    ap.add_argument("--level", default="l2")
    ap.add_argument("--n", type=int, default=16, help="held-out scenes")
    ap.add_argument("--sigmas", default="0.2,0.5,0.8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from model.default import load_default_pipeline
    from train.held_out import x0_channel_share

    sigmas = tuple(float(s) for s in args.sigmas.split(","))
    clips = held_out(args.n, {**level_world(args.level), **LEVEL_OVERRIDES.get(args.level, {})})
    print(f"| model | energy | " + " | ".join(f"share σ={s}" for s in sigmas) + " | s |")
    print("|---|---|" + "---|" * len(sigmas) + "---|")
    for m in args.models:
        t0 = time.perf_counter()
        r = x0_channel_share(load_default_pipeline(directory=m), clips, sigmas)
        cells = " | ".join(f"{r[f'share@{s}']:.3f}" for s in sigmas)
        print(f"| {m} | {r['energy']:.3f} | {cells} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
