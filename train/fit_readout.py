"""Fit the output rows of a grown latent's x0 channels by least squares on the model's own last features.

A model grown onto a wider latent (model.init_grow_latent) with its new channels read as clean-latent guesses
(model.reactid.x0_channels_from) starts by guessing 0 there: it draws what the old channels decode to. Training them
by gradient descent did not start in 10 CPU-minutes (docs/BENCHMARKS.md, level 2x). The last layer is linear, so its
best rows for the new channels, given the features the trunk already computes, are a ridge regression: this collects
the features feeding `proj_out` (the model's own binding, noise levels drawn as in training) on training-world clips
and solves for them in closed form. Whatever detail those features carry linearly is then drawn at once; the rest is
left for training.

    python -m train.fit_readout --model runs/export_x0_step0 --out runs/export_x0_ridge --clips 256 --level l2
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from model.losses import add_flow_noise

from .held_out import clip_conditioning, predict_own_binding, x0_channels_of

FIT_SEED = 1000  # training clips (data.seed), never the benchmark's held-out seeds


@torch.no_grad()
def readout_normal_equations(pipe, clips, sigmas_per_clip: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sums X^T X and X^T Y over every token of `clips` (X: proj_out's input with a 1 appended; Y: the new channels'
    clean latent), at noise levels drawn logit-normal as in training. Returns (XtX, XtY, number of tokens)."""
    tr = pipe.transformer
    first = x0_channels_of(pipe)
    if tuple(tr.config.patch_size) != (1, 1, 1):
        raise ValueError(f"fit_readout handles patch size (1, 1, 1), this model has {tuple(tr.config.patch_size)}")
    feats_in = []
    hook = tr.proj_out.register_forward_hook(lambda m, inp, out: feats_in.append(inp[0].detach()))
    g = torch.Generator().manual_seed(seed)
    D = tr.proj_out.in_features
    K = tr.config.out_channels - first
    xtx, xty, n = torch.zeros(D + 1, D + 1, dtype=torch.float64), torch.zeros(D + 1, K, dtype=torch.float64), 0
    try:
        for c in clips:
            x0, prompt, ref, tl = clip_conditioning(pipe, c)
            y = x0[0, first:].reshape(K, -1).T.double()  # tokens in (frame, row, column) order, as proj_out's rows
            for sigma in torch.sigmoid(torch.randn(sigmas_per_clip, generator=g)).tolist():
                feats_in.clear()
                x_t = add_flow_noise(x0, torch.randn(x0.shape, generator=g), torch.tensor([sigma]))
                predict_own_binding(pipe, x_t, torch.tensor([sigma * 1000]), prompt, ref, tl)
                x = torch.cat([feats_in[-1][0].double(), torch.ones(y.shape[0], 1, dtype=torch.float64)], 1)
                xtx += x.T @ x
                xty += x.T @ y
                n += x.shape[0]
    finally:
        hook.remove()
    return xtx, xty, n


def solve_readout(xtx: torch.Tensor, xty: torch.Tensor, ridge: float) -> torch.Tensor:
    """Ridge solution [D + 1, K] (the last row is the bias, not penalised); `ridge` relative to the mean diagonal."""
    reg = torch.eye(xtx.shape[0], dtype=xtx.dtype) * ridge * float(xtx.diagonal()[:-1].mean())
    reg[-1, -1] = 0.0
    return torch.linalg.solve(xtx + reg, xty)


def set_readout(transformer, w: torch.Tensor) -> None:
    """Write the solved rows into proj_out (patch (1, 1, 1): one row per channel)."""
    first = x0_channels_of(transformer)
    with torch.no_grad():
        transformer.proj_out.weight[first:] = w[:-1].T.to(transformer.proj_out.weight.dtype)
        transformer.proj_out.bias[first:] = w[-1].to(transformer.proj_out.bias.dtype)


def main(argv=None) -> int:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ladder import level_world  # the ladder's worlds (train/presets/ladder_<level>.yaml)
    from model.default import load_default_pipeline
    from train.sprites import WorldConfig, generate_clip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline directory with x0 channels")
    ap.add_argument("--out", required=True, help="where the pipeline with the fitted rows is written")
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--level", default="l2", help="the ladder level whose world the clips come from")
    ap.add_argument("--world", action="append", default=[], help="KEY=VALUE over that world (e.g. fps=8)")
    ap.add_argument("--sigmas-per-clip", type=int, default=3)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from train.config import parse_override

    world = level_world(args.level)
    for kv in args.world:
        world.update(parse_override(kv))
    w = WorldConfig.from_kwargs(**world)
    t0 = time.perf_counter()
    clips = [generate_clip(FIT_SEED + i, w) for i in range(args.clips)]
    pipe = load_default_pipeline(directory=args.model)
    xtx, xty, n = readout_normal_equations(pipe, clips, args.sigmas_per_clip)
    sol = solve_readout(xtx, xty, args.ridge)
    set_readout(pipe.transformer, sol)
    out = Path(args.out)
    if out.resolve() != Path(args.model).resolve():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(args.model, out)
    pipe.transformer.save_pretrained(str(out / "transformer"))
    print(json.dumps({"event": "fit_readout", "tokens": n, "clips": args.clips, "level": args.level, "ridge": args.ridge,
                      "s": round(time.perf_counter() - t0, 1), "out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
