"""A small AutoencoderKLWan for the sprite world, trained by the project (DESIGN.md §5: the default model
needs a compact latent like Wan's; a fixed space-to-depth 'VAE' could not be learned through).

Same class and causal x4 time / x8 space compression as Wan's VAE, fewer channels. Trained on short
snippets (1 + 4k frames) so both the first-frame path and the chunked causal path learn.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan


def build_vae(z_dim: int = 8, base_dim: int = 16, kind: str = "framegroup", linear_path: bool = False, res_blocks: int = 0, arch: str = "pyramid",
              decoder_context: int = 0):
    """'framegroup' (default for small models: no recurrence, see model/framevae.py) or 'wan'."""
    if kind == "framegroup":
        from model.framevae import FrameGroupVAE

        return FrameGroupVAE(z_dim=z_dim, width=2 * base_dim, linear_path=linear_path, res_blocks=res_blocks, arch=arch, decoder_context=decoder_context)
    return AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
                            latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)


def train_vae(videos: np.ndarray, out_dir: str | Path, *, z_dim: int = 8, base_dim: int = 16, steps: int = 1000, batch_size: int = 8,
              lr: float = 2e-3, kl_weight: float = 1e-6, snippet_frames: int = 5, seed: int = 0, log=print, kind: str = "framegroup", fg_weight: float = 10.0, linear_path: bool = False,
              res_blocks: int = 0, arch: str = "pyramid", decoder_context: int = 0, linear_lr_scale: float = 1.0):
    """videos: uint8 [N, F, H, W, 3]. Writes the VAE (with latent mean/std measured on the data) to out_dir."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vae = build_vae(z_dim, base_dim, kind, linear_path, res_blocks, arch, decoder_context).train()
    if linear_path:  # start from the PCA autoencoder of the data's 8x8 blocks (model/framevae.py)
        pick = rng.permutation(len(videos))[: min(len(videos), 64)]
        kept = vae.init_pca(torch.from_numpy(videos[pick]).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3))
        log(json.dumps({"vae_pca": {k: round(v, 4) for k, v in kept.items()}}))
    # The PCA path is already a good autoencoder: at the conv stacks' learning rate Adam moves each of its
    # small weights by about lr per step and scrambles the principal components within a few hundred steps
    # (the loss rose before it fell), so it learns slowly, at linear_lr_scale * lr.
    if arch == "linear":  # the PCA autoencoder is the whole VAE: nothing to train
        steps = 0
    lin = [p for n, p in vae.named_parameters() if n.startswith("lin_")]
    rest = [p for n, p in vae.named_parameters() if not n.startswith("lin_")]
    groups = ([{"params": rest, "lr": lr}] if rest else []) + ([{"params": lin, "lr": lr * linear_lr_scale}] if lin else [])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps))))
    N, Fr = videos.shape[:2]
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, N, batch_size)
        # snippets start on a group boundary (frame 4j), as the frames of a clip are grouped
        starts = rng.integers(0, (Fr - snippet_frames) // 4 + 1, batch_size) * 4
        x = np.stack([videos[i, s : s + snippet_frames] for i, s in zip(idx, starts)])
        x = torch.from_numpy(x).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        post = vae.encode(x).latent_dist
        # the mean, not a sample: with a negligible KL weight a sampled latent lets logvar grow until
        # reconstructions blow up (seen as loss spikes in tiny Wan VAEs)
        rec = vae.decode(post.mode()).sample
        # Foreground weighting: sprites cover a few percent of the pixels, so a plain MSE learns the
        # background and greys the subjects' colours. Pixels far from their frame's median colour weigh more.
        median = x.flatten(3).median(dim=-1).values[..., None, None]
        weight = 1.0 + fg_weight * ((x - median).abs().sum(1, keepdim=True) > 0.15).float()
        rec_loss = ((rec - x) ** 2 * weight).mean() + 0.5 * ((rec - x).abs() * weight).mean()
        kl = post.kl().mean() if kind == "wan" else torch.zeros(())
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(json.dumps({"vae_step": step, "rec_loss": round(rec_loss.item(), 5), "kl": round(kl.item(), 2), "s": round(time.time() - t0, 1)}))
    vae.eval()
    # latent statistics, so the diffusion model sees unit-scale latents like Wan's normalised ones
    with torch.no_grad():
        sample = torch.from_numpy(videos[: min(N, 32)]).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        lat = torch.cat([vae.encode(sample[i : i + 4]).latent_dist.mode() for i in range(0, sample.shape[0], 4)])
        mean = lat.mean(dim=(0, 2, 3, 4)).tolist()
        std = lat.std(dim=(0, 2, 3, 4)).clamp_min(1e-3).tolist()
    vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.save_pretrained(out_dir)
    return vae


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKLWan, videos: np.ndarray) -> float:
    x = torch.from_numpy(videos).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = F.mse_loss((rec + 1) / 2, (x + 1) / 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def main(argv=None) -> int:
    """Build a sprite VAE outside a training run, so several runs (the ladder's levels) share one latent space:

        python -m train.vae --out assets/sprite_pca_vae --arch linear --z 16 --clips 64 \\
            --world '{"duration": 4.0, "max_subjects": 3, "max_actions": 3, "unit_range": [0.15, 0.22]}'
    """
    import argparse

    from .sprites import WorldConfig, generate_clip

    ap = argparse.ArgumentParser(prog="python -m train.vae", description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="linear", choices=["linear", "blocks", "pyramid"])
    ap.add_argument("--z", type=int, default=16)
    ap.add_argument("--clips", type=int, default=64, help="clips the PCA (and any training) sees")
    ap.add_argument("--steps", type=int, default=0, help="conv training steps (arch blocks/pyramid)")
    ap.add_argument("--world", default="{}", help="sprite world options (JSON), e.g. the widest world the models will see")
    ap.add_argument("--seed", type=int, default=77_000, help="first clip seed (away from the training and held-out seeds)")
    args = ap.parse_args(argv)
    world = WorldConfig.from_kwargs(**json.loads(args.world))
    videos = np.stack([generate_clip(args.seed + i, world).frames for i in range(args.clips)])
    vae = train_vae(videos, args.out, z_dim=args.z, base_dim=16, steps=args.steps, linear_path=True, arch=args.arch)
    print(json.dumps({"out": args.out, "psnr_db": round(reconstruction_psnr(vae, videos[:8]), 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
