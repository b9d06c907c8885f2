"""Does the model know a subject's shape? A linear probe on its hidden states at the subject's tokens.

    python benchmarks/shape_probe.py [EXPORT] [--train 240] [--test 80] [--sigmas 0.5 0.8 0.95]

Clips of the export's own sprite world (seeds outside the benchmark's held-out scenes) are noised to each σ and run
through the transformer with their true binding masks. A logistic regression reads the shape class from each subject
token's state: the noisy latent ("in", the chance control), and after blocks 1, 3 and the last one. It is fitted on the
training clips' tokens and scored on the others'. High accuracy where the model still draws blobs means the model
knows what to draw and fails at drawing it (docs/BENCHMARKS.md, twentieth session).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.losses import add_flow_noise  # noqa: E402
from model.pipeline import ReactIDPipeline  # noqa: E402
from train.held_out import clip_conditioning  # noqa: E402
from train.prepare import token_masks  # noqa: E402
from train.sprites import SHAPES, WorldConfig, generate_clip  # noqa: E402

PROBE_SEED = 7_000_000  # training clips from here, test clips from PROBE_SEED + 100,000 (the benchmark's start at 900,000)


@torch.no_grad()
def subject_token_states(pipe, world, seeds, sigmas, layers):
    """{(σ, layer): [tokens, dim]} states of every subject token (coverage >= 0.5), and each token's shape index."""
    tr = pipe.transformer.eval()
    grabbed = {}
    hooks = [tr.blocks[j].register_forward_hook(lambda m, i, o, j=j: grabbed.__setitem__(j, o[0])) for j in layers]
    states = {(s, k): [] for s in sigmas for k in ["in", *layers]}
    labels = []
    try:
        for seed in seeds:
            clip = generate_clip(seed, world)
            x0, prompt, feats, tl = clip_conditioning(pipe, clip)
            T, H, W = x0.shape[2:]
            p = tr.config.patch_size
            masks = token_masks(clip.masks, T // p[0], (H // p[1], W // p[2]))  # [S, N]
            g = torch.Generator().manual_seed(seed)
            for i, sigma in enumerate(sigmas):
                x_t = add_flow_noise(x0, torch.randn(x0.shape, generator=g), torch.tensor([sigma]))
                tr(x_t, torch.tensor([sigma * 1000]), prompt, reference_features=feats, timeline=tl, subject_masks=masks[None])
                tokens_in = tr.patch_embedding(x_t).flatten(2)[0].T  # a linear map of each noisy latent patch
                for s in range(masks.shape[0]):
                    sel = masks[s] >= 0.5
                    if not sel.any():
                        continue
                    states[(sigma, "in")].append(tokens_in[sel])
                    for j in layers:
                        states[(sigma, j)].append(grabbed[j][0][sel])
                    if i == 0:
                        labels.append(torch.full((int(sel.sum()),), SHAPES.index(clip.identities[s].shape)))
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v).float() for k, v in states.items()}, torch.cat(labels)


def probe_accuracy(x_train, y_train, x_test, y_test, steps: int = 400):
    """Multinomial logistic regression on standardised features: (accuracy, accuracy per shape)."""
    torch.manual_seed(0)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-5
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    lin = torch.nn.Linear(x_train.shape[1], len(SHAPES))
    opt = torch.optim.Adam(lin.parameters(), 1e-2, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(lin(x_train), y_train).backward()
            opt.step()
    with torch.no_grad():
        right = (lin(x_test).argmax(1) == y_test).float()
    per = [right[y_test == k].mean().item() if (y_test == k).any() else float("nan") for k in range(len(SHAPES))]
    return right.mean().item(), per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", nargs="?", default="assets/default_model")
    ap.add_argument("--train", type=int, default=240)
    ap.add_argument("--test", type=int, default=80)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = ReactIDPipeline.from_pretrained(args.export)
    world_file = Path(args.export) / "sprite_world.json"
    if not world_file.is_file():
        raise SystemExit(f"{args.export}: no sprite_world.json (the probe draws clips of the export's own world)")
    world = WorldConfig.from_kwargs(**json.loads(world_file.read_text()))
    n = len(pipe.transformer.blocks)
    layers = sorted({0, min(2, n - 1), n - 1})
    tr_states, y_tr = subject_token_states(pipe, world, range(PROBE_SEED, PROBE_SEED + args.train), args.sigmas, layers)
    te_states, y_te = subject_token_states(pipe, world, range(PROBE_SEED + 100_000, PROBE_SEED + 100_000 + args.test), args.sigmas, layers)
    print(f"{args.export}: subject tokens {len(y_tr)} to fit, {len(y_te)} to score; shapes among the scored: "
          + ", ".join(f"{s} {int((y_te == k).sum())}" for k, s in enumerate(SHAPES)))
    print("| σ | state | accuracy | " + " | ".join(SHAPES) + " |")
    print("|---:|---|---:|" + "---:|" * len(SHAPES))
    for sigma in args.sigmas:
        for k in ["in", *layers]:
            acc, per = probe_accuracy(tr_states[(sigma, k)], y_tr, te_states[(sigma, k)], y_te)
            name = "noisy latent (control)" if k == "in" else f"after block {k + 1}"
            print(f"| {sigma} | {name} | {acc:.3f} | " + " | ".join(f"{p:.2f}" for p in per) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
