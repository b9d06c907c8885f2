"""Train a learned decoder for a PCA-latent sprite model on the model's own redraws.

The default model's VAE is linear (a PCA map of 8x8 blocks, model/framevae.py): whatever error the diffusion model
leaves in its latents, the PCA decoder draws it as a ghost or a smear, and the sprite benchmark then reads a size
change (grow / shrink / spin) where the timeline says move. This trains FrameGroupVAE's `decoder='blocks'` on
pairs the model itself makes: a held-in clip redrawn by the model from its noised latents (the pipeline's
`init_video` + `strength`) gives latents with the model's own kind of error at nearly the truth's layout, and the
target is the clip's clean frames. The clips' clean latents (lightly noised) are in the mix too, so the decoder
still reproduces what the PCA decoder got right. The encoder is unchanged: the latent space, and so every model
trained in it, stays as it was.

    python -m train.decoder --model assets/default_model --out runs/decoder --clips 160 --threads 2

Writes OUT/vae (load it with model.framevae.load_vae), OUT/decoder_data.pt (the pairs, so a rerun of
the training part skips the redraws) and `decoder_log.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA_SEED = 600_000  # away from training clips (data.seed, 1000 + ...) and the held-out ones (900_000 + ...)


def redraw_pairs(model_dir: str | Path, n_clips: int, strengths: list[float], steps: int = 20, guidance: float = 3.0, log=print,
                 layout: str | None = "auto", world_overrides: dict | None = None) -> dict:
    """Clean and redrawn latents of `n_clips` clips of the model's world, with the clips' frames. A strength of 1 is
    a full generation from noise as the studio makes it: with `layout` ('auto': the export's default_layout, e.g.
    'paths', so the subjects are drawn where the clip has them; None: no layout) and the export's first-frame
    settings; the model's errors as users see them.
    Returns {'latents': [M, Z, F', h, w] normalised, 'frames': [M, F, H, W, 3] uint8, 'clip': [M], 'strength': [M]}."""
    from model.pipeline import ReactIDPipeline
    from train.sprites import WorldConfig, generate_clip

    pipe = ReactIDPipeline.from_pretrained(model_dir)
    if layout == "auto":
        layout = pipe.config.default_layout
    # the model's own world, with any keys overridden (e.g. level 2's textures and gradient backgrounds)
    world = WorldConfig.from_kwargs(**{**json.loads((Path(model_dir) / "sprite_world.json").read_text()), **(world_overrides or {})})
    lat, frames, clip_idx, strength = [], [], [], []
    t0 = time.time()
    for i in range(n_clips):
        clip = generate_clip(DATA_SEED + i, world)
        refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        lat.append(pipe.encode_video(video)[0].float())
        frames.append(clip.frames)
        clip_idx.append(i)
        strength.append(0.0)
        for k, s in enumerate(strengths):
            how = {"layout": layout} if s >= 1.0 else {"init_video": clip.frames, "strength": s}
            out = pipe(clip.timeline, refs, num_inference_steps=steps, guidance_scale=guidance, seed=DATA_SEED + 97 * i + k,
                       progress=False, **how)
            lat.append(out.latents[0])
            frames.append(clip.frames)
            clip_idx.append(i)
            strength.append(s)
        if i % 10 == 0 or i == n_clips - 1:
            log(json.dumps({"redraw_clip": i, "s": round(time.time() - t0, 1)}))
    return {"latents": torch.stack(lat), "frames": torch.from_numpy(np.stack(frames)), "clip": torch.tensor(clip_idx),
            "strength": torch.tensor(strength)}


def build_decoder_vae(base_vae, width: int, res_blocks: int, context: int):
    """The base PCA VAE with a learned decoder beside its linear one (same encoder, same latent statistics)."""
    from model.framevae import FrameGroupVAE

    cfg = dict(base_vae.config)
    if cfg.get("arch") != "linear":
        raise ValueError(f"a learned decoder goes over a PCA VAE (arch 'linear'); this VAE's arch is {cfg.get('arch')!r}")
    vae = FrameGroupVAE(z_dim=cfg["z_dim"], width=width, latents_mean=cfg["latents_mean"], latents_std=cfg["latents_std"],
                        linear_path=True, arch="linear", res_blocks=res_blocks, decoder_context=context,
                        first_frame=cfg["first_frame"], first_frame_gain=cfg["first_frame_gain"], decoder="blocks")
    # Only the PCA maps carry over: a base that already has a learned decoder (the shipped default does) must not
    # warm-start this one, so each run's decoder is trained from the same zero start.
    pca_state = {k: v for k, v in base_vae.state_dict().items() if not k.startswith("dec_")}
    missing, unexpected = vae.load_state_dict(pca_state, strict=False)
    if unexpected or any(not k.startswith("dec_") for k in missing):
        raise ValueError(f"the base VAE's weights do not fit: missing {missing}, unexpected {unexpected}")
    return vae


FG_MASKS = ("target", "either")


def decoder_loss(rec: torch.Tensor, x: torch.Tensor, fg_weight: float = 10.0, fg_mask: str = "target",
                 temporal_weight: float = 0.0) -> torch.Tensor:
    """train_vae's foreground-weighted MSE + L1 (sprites cover a few percent of the pixels). fg_mask 'target' weights
    the pixels where the target differs from its background; that makes a missed sprite pixel fg_weight times dearer
    than a painted background pixel, so where the latent is unsure the decoder paints colour and draws each sprite
    with a halo (about 1.8x the true area). 'either' also weights the pixels the reconstruction paints away from the
    background, so both errors at a sprite's edge cost alike.
    temporal_weight: adds, at that weight, the same weighted squared error on the change from each frame to the next
    (the reconstruction's against the target's): a sprite whose size jumps where one 4-frame group hands over to the
    next costs there even when each frame alone is close (docs/BENCHMARKS.md, twenty-first session)."""
    if fg_mask not in FG_MASKS:
        raise ValueError(f"fg_mask must be one of {', '.join(FG_MASKS)}, got {fg_mask!r}")
    median = x.flatten(3).median(dim=-1).values[..., None, None]
    fg = (x - median).abs().sum(1, keepdim=True) > 0.15
    if fg_mask == "either":
        fg = fg | ((rec.detach() - median).abs().sum(1, keepdim=True) > 0.15)
    weight = 1.0 + fg_weight * fg.float()
    loss = ((rec - x) ** 2 * weight).mean() + 0.5 * ((rec - x).abs() * weight).mean()
    if temporal_weight > 0 and x.shape[2] > 1:
        step_err = (rec[:, :, 1:] - rec[:, :, :-1]) - (x[:, :, 1:] - x[:, :, :-1])
        pair_weight = torch.maximum(weight[:, :, 1:], weight[:, :, :-1])  # a sprite pixel in either frame
        loss = loss + temporal_weight * (step_err**2 * pair_weight).mean()
    return loss


def train_decoder(vae, data: dict, steps: int, batch_size: int = 4, lr: float = 1e-3, latent_noise: float = 0.05, seed: int = 0,
                  held_out_clips: int = 8, log=print, fg_weight: float = 10.0, fg_mask: str = "target",
                  temporal_weight: float = 0.0) -> dict:
    """Train `vae.decoder_parameters()` to draw each pair's clean frames from its latents. The last
    `held_out_clips` clips are kept out of training and scored (PSNR, PCA decoder against the learned one)."""
    from model.latents import denormalise

    g = torch.Generator().manual_seed(seed)
    clips = data["clip"]
    n_clips = int(clips.max()) + 1
    if n_clips <= held_out_clips:
        raise ValueError(f"{n_clips} clips: need more than the {held_out_clips} held out")
    train_idx = torch.nonzero(clips < n_clips - held_out_clips).flatten()
    test_idx = torch.nonzero(clips >= n_clips - held_out_clips).flatten()
    params = vae.decoder_parameters()
    for n, p in vae.named_parameters():
        p.requires_grad_(n.startswith("dec_"))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps))))

    def batch(idx):
        lat = data["latents"][idx].float()
        x = data["frames"][idx].float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        return lat, x

    vae.train()
    t0 = time.time()
    for step in range(steps):
        idx = train_idx[torch.randint(len(train_idx), (batch_size,), generator=g)]
        lat, x = batch(idx)
        lat = lat + latent_noise * torch.randn(lat.shape, generator=g)
        rec = vae.decode(denormalise(lat, vae.config)).sample
        loss = decoder_loss(rec, x, fg_weight, fg_mask, temporal_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(json.dumps({"decoder_step": step, "loss": round(loss.item(), 5), "s": round(time.time() - t0, 1)}))
    vae.eval()
    return held_out_psnr(vae, data, test_idx)


@torch.no_grad()
def held_out_psnr(vae, data: dict, idx: torch.Tensor) -> dict:
    """PSNR against the clean frames of the pairs in `idx`, per strength, through the PCA decoder and the learned one."""
    from model.latents import denormalise

    out: dict = {}
    for s in sorted(set(data["strength"][idx].tolist())):
        sel = idx[data["strength"][idx] == s]
        lat = denormalise(data["latents"][sel].float(), vae.config)
        x = data["frames"][sel].float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        learned = vae.decode(lat).sample.clamp(-1, 1)
        linear = _pca_decode(vae, lat).clamp(-1, 1)
        out[f"strength_{s:g}"] = {"pca_db": _psnr(linear, x), "learned_db": _psnr(learned, x), "pairs": len(sel)}
    return out


def _pca_decode(vae, lat: torch.Tensor) -> torch.Tensor:
    """What the base VAE (the PCA decoder alone) draws from the same latents: the same weights with decoder 'linear'."""
    from model.framevae import FrameGroupVAE

    pca = FrameGroupVAE.from_config({**vae.config, "decoder": "linear"})
    pca.load_state_dict({k: v for k, v in vae.state_dict().items() if k.startswith("lin_")})
    return pca.decode(lat).sample


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss((a + 1) / 2, (b + 1) / 2).item()
    return round(10 * math.log10(1.0 / max(mse, 1e-10)), 2)


def main(argv=None) -> int:
    from model.framevae import load_vae

    ap = argparse.ArgumentParser(prog="python -m train.decoder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline directory whose VAE is a PCA VAE and whose model makes the redraws")
    ap.add_argument("--out", required=True, help="output VAE directory")
    ap.add_argument("--clips", type=int, default=160)
    ap.add_argument("--strengths", default="0.3,0.45",
                    help="redraw strengths (share of the sampling steps redone); 1: a full generation with --layout")
    ap.add_argument("--layout", default="auto", help="the full generations' start layout (auto: the export's default_layout)")
    ap.add_argument("--steps", type=int, default=1500, help="decoder training steps")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--res-blocks", type=int, default=1)
    ap.add_argument("--context", type=int, default=1, help="neighbouring latent frames the group decoder sees on each side")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent-noise", type=float, default=0.05, help="Gaussian noise added to the (normalised) training latents")
    ap.add_argument("--held-out-clips", type=int, default=8, help="the last clips, kept out of training and scored")
    ap.add_argument("--fg-weight", type=float, default=10.0, help="the loss's extra weight on sprite pixels")
    ap.add_argument("--fg-mask", choices=FG_MASKS, default="target",
                    help="which pixels get --fg-weight: the target's sprites, or also what the decoder paints (no halo)")
    ap.add_argument("--temporal-weight", type=float, default=0.0,
                    help="weight of the error on the change between neighbouring frames (size flicker at group edges)")
    ap.add_argument("--world", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the model's sprite world (YAML value) for the clips, e.g. "
                         "'textures=[solid, stripes, dots, checker]'")
    ap.add_argument("--data", help="reuse the pairs of an earlier run (its decoder_data.pt) instead of making new ones")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "decoder_log.jsonl"

    def log(line: str) -> None:
        print(line, flush=True)
        with log_path.open("a") as f:
            f.write(line + "\n")

    if args.temporal_weight < 0:
        raise SystemExit(f"--temporal-weight must be >= 0, got {args.temporal_weight}")
    strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
    if any(not 0 < s <= 1 for s in strengths):
        raise SystemExit(f"--strengths must be in (0, 1], got {args.strengths}")
    from .config import ConfigError, parse_override

    overrides = {}
    for kv in args.world:
        try:
            overrides.update(parse_override(kv))
        except ConfigError:
            raise SystemExit(f"--world takes KEY=VALUE, got {kv!r}") from None
    data_path = Path(args.data) if args.data else out / "decoder_data.pt"
    if args.data and not data_path.is_file():
        raise SystemExit(f"--data {args.data}: no such file")
    if args.data and overrides:
        raise SystemExit("--world sets the world of new pairs; --data reuses pairs already made: give one of them")
    if data_path.is_file():
        data = torch.load(data_path)
        log(json.dumps({"decoder_data": str(data_path), "pairs": len(data["clip"]), "reused": True}))
    else:
        t0 = time.time()
        data = redraw_pairs(args.model, args.clips, strengths, log=log, layout=args.layout, world_overrides=overrides)
        torch.save(data, data_path)
        log(json.dumps({"decoder_data": str(data_path), "pairs": len(data["clip"]), "s": round(time.time() - t0, 1)}))
    vae = build_decoder_vae(load_vae(Path(args.model) / "vae"), args.width, args.res_blocks, args.context)
    t0 = time.time()
    scores = train_decoder(vae, data, args.steps, batch_size=args.batch_size, lr=args.lr, latent_noise=args.latent_noise, held_out_clips=args.held_out_clips, log=log,
                           fg_weight=args.fg_weight, fg_mask=args.fg_mask, temporal_weight=args.temporal_weight)
    vae.save_pretrained(out / "vae")
    log(json.dumps({"held_out": scores, "train_s": round(time.time() - t0, 1), "vae": str(out / "vae")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
