"""VAE ceilings side by side: the ladder's held-out clips through each VAE (encode, decode), scored by the sprite
benchmark against their own timelines. What a model in that latent could at best reach, per ladder level; the gate a
new latent must pass before any transformer is trained on it.

    python benchmarks/latent_ceiling.py assets/default_model assets/sprite_pca_vae assets/sprite_pca_vae_z64 --n 48

Each VAE is a pipeline directory (its vae/ is used) or a VAE directory. Levels are train/presets/ladder_<level>.yaml
worlds; level 2's preset says 16 fps, so it is scored at the default's 8 (as `ladder.py --world fps=8`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder import held_out, level_world  # noqa: E402

LEVEL_OVERRIDES = {"l2": {"fps": 8}}  # the worlds the default (4 s at 8 fps) is scored on
METRICS = ("action_accuracy", "identity_fidelity", "binding_accuracy", "timing_error_frames")


def load_any_vae(directory: str):
    from model.framevae import load_vae

    d = Path(directory)
    return load_vae(d / "vae" if (d / "vae").is_dir() else d)


def ceiling_of(vae, clips) -> dict:
    """The sprite benchmark's four metrics of `clips` after a round trip through `vae` (normalised latents, as the
    pipeline's encode_video / decode_latents make them)."""
    from model.latents import denormalise, normalise
    from train.sprite_eval import evaluate_clip, summarize

    scores = []
    for clip in clips:
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            lat = normalise(vae.encode(video).latent_dist.mode(), vae.config)
            rec = vae.decode(denormalise(lat, vae.config)).sample.float().clamp(-1, 1)
        frames = ((rec[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        scores.append(evaluate_clip(frames, clip.timeline, [r[0] for r in clip.references_intra], actions=clip.actions))
    row = summarize(scores)
    return {m: row[m] for m in METRICS}


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
        vae = load_any_vae(d).eval()
        t0 = time.perf_counter()
        cells = []
        for lv in args.levels:
            c = ceiling_of(vae, clips[lv])
            cells.append(" / ".join(f"{c[m]:.3f}" if m != "timing_error_frames" else f"{c[m]:.2f}" for m in METRICS))
        print(f"| {d} | {vae.config.z_dim} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
