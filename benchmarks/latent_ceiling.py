"""VAE ceilings side by side: the ladder's held-out clips through each VAE (encode, decode), scored by the sprite
benchmark against their own timelines. What a model in that latent could at best reach, per ladder level; the gate a
new latent must pass before any transformer is trained on it.

    python benchmarks/latent_ceiling.py assets/default_model assets/sprite_pca_vae assets/sprite_pca_vae_z64 --n 48

Each VAE is a pipeline directory (its vae/ is used) or a VAE directory. Levels are train/presets/ladder_<level>.yaml
worlds; level 2's preset says 16 fps, so it is scored at the default's 8 (as `ladder.py --world fps=8`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder import held_out, level_world  # noqa: E402

LEVEL_OVERRIDES = {"l2": {"fps": 8}}  # the worlds the default (4 s at 8 fps) is scored on
METRICS = ("action_accuracy", "identity_fidelity", "binding_accuracy", "timing_error_frames")


def ceiling_of(directory: str, clips) -> dict:
    """The sprite benchmark's four metrics of `clips` after a round trip through the VAE of `directory` (a pipeline
    or a VAE directory): bench_sprite's ceiling row, the one ladder.py prints."""
    from bench_sprite import vae_ceiling_row

    row = vae_ceiling_row(directory, clips)
    return {m: row[m] for m in METRICS}


def z_dim_of(directory: str) -> int:
    from model.framevae import vae_directory

    return int(json.loads((vae_directory(directory) / "config.json").read_text())["z_dim"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vaes", nargs="+", help="VAE or pipeline directories")
    ap.add_argument("--levels", nargs="+", default=["l2c", "l2", "l3"])
    ap.add_argument("--n", type=int, default=48, help="held-out scenes per level")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = {lv: held_out(args.n, {**level_world(lv), **LEVEL_OVERRIDES.get(lv, {})}) for lv in args.levels}
    print(f"VAE ceilings, {args.n} held-out scenes per level (action / identity / binding / timing in frames)")
    print("| VAE | z | " + " | ".join(args.levels) + " | s |")
    print("|---|---:|" + "---|" * len(args.levels) + "---:|")
    truth = []
    for lv in args.levels:
        from train.sprite_eval import evaluate_clip, summarize

        row = summarize([evaluate_clip(c.frames, c.timeline, [r[0] for r in c.references_intra], actions=c.actions) for c in clips[lv]])
        truth.append(" / ".join(f"{row[m]:.3f}" if m != "timing_error_frames" else f"{row[m]:.2f}" for m in METRICS))
    print("| the clips themselves | - | " + " | ".join(truth) + " | - |", flush=True)
    for d in args.vaes:
        t0 = time.perf_counter()
        cells = []
        for lv in args.levels:
            c = ceiling_of(d, clips[lv])
            cells.append(" / ".join(f"{c[m]:.3f}" if m != "timing_error_frames" else f"{c[m]:.2f}" for m in METRICS))
        print(f"| {d} | {z_dim_of(d)} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
