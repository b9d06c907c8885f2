"""How VAE latents are scaled for the diffusion model, in one place for the pipeline and the training cache.

Latents are normalised per channel with the VAE's `latents_mean` / `latents_std` (Wan's convention). A
FrameGroupVAE may also set `first_frame_gain`: the video's first latent frame encodes one frame where every
other latent frame encodes four, and in the PCA latent it comes out at about half the others' scale
(normalised std 0.43 against 0.82, docs/BENCHMARKS.md "Where L2e's errors were"), so at any noise level it is four times
noisier and models draw it badly. The gain rescales that frame of a video (not reference images: they enter
through the reference branch, whose scale the models were trained on). Wan's own VAE has no such key (gain 1).
"""

from __future__ import annotations

import torch


def first_frame_gain(vae_config) -> float:
    return float(getattr(vae_config, "first_frame_gain", 1.0) or 1.0)


def _stats(vae_config, like: torch.Tensor):
    z = len(vae_config.latents_mean)
    mean = torch.tensor(vae_config.latents_mean, device=like.device, dtype=like.dtype).view(1, z, 1, 1, 1)
    std = torch.tensor(vae_config.latents_std, device=like.device, dtype=like.dtype).view(1, z, 1, 1, 1)
    return mean, std


def normalise(lat: torch.Tensor, vae_config, video: bool = True) -> torch.Tensor:
    """Raw VAE latents [B, z, F, h, w] -> the diffusion model's scale; `video=False` for reference images."""
    mean, std = _stats(vae_config, lat)
    out = (lat - mean) / std
    gain = first_frame_gain(vae_config)
    if video and gain != 1.0:
        out = torch.cat([out[:, :, :1] * gain, out[:, :, 1:]], 2)
    return out


def denormalise_reference(latents: torch.Tensor, vae_config) -> torch.Tensor:
    """Reference latents at the diffusion model's scale -> raw VAE latents (the inverse of `normalise(..., video=False)`)."""
    mean, std = _stats(vae_config, latents)
    return latents * std + mean


def denormalise(latents: torch.Tensor, vae_config) -> torch.Tensor:
    """The diffusion model's video latents -> raw VAE latents (the inverse of `normalise(..., video=True)`)."""
    gain = first_frame_gain(vae_config)
    if gain != 1.0:
        latents = torch.cat([latents[:, :, :1] / gain, latents[:, :, 1:]], 2)
    mean, std = _stats(vae_config, latents)
    return latents * std + mean
