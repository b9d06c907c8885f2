"""FrameGroupVAE: a compact, non-recurrent video autoencoder with Wan's latent layout, for small models.

Wan's VAE compresses time causally x4 through a feature cache carried from chunk to chunk. A tiny
AutoencoderKLWan trained on CPU for minutes reconstructs short snippets well but drifts on 65-frame clips
(measured: 23 dB on 5 frames, 12-13 dB on 65; docs/BENCHMARKS.md), because errors feed back through that
cache. This autoencoder keeps exactly Wan's layout: latent frame 0 encodes video frame 0 alone,
latent frame f >= 1 encodes video frames 4f-3..4f, space is compressed x8, `latents_mean/std` normalise;
but each latent frame is encoded and decoded on its own (the 4 frames of a group are stacked as
channels), so nothing recurs and nothing drifts. The pipeline and the transformer cannot tell the
difference; real Wan weights still use AutoencoderKLWan.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin


def _block(c_in: int, c_out: int, down: bool) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1) if down else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    return nn.Sequential(conv, nn.GroupNorm(min(8, c_out), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class _Encoder(nn.Module):
    def __init__(self, c_in: int, width: int, z: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1), nn.SiLU(), _block(width, width, True), _block(width, 2 * width, True), _block(2 * width, 2 * width, True), nn.Conv2d(2 * width, z, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


class _Decoder(nn.Module):
    def __init__(self, c_out: int, width: int, z: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(z, 2 * width, 3, 1, 1), nn.SiLU(), _block(2 * width, 2 * width, False), _block(2 * width, width, False), _block(width, width, False), nn.Conv2d(width, c_out, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


class _LinearPatch(nn.Module):
    """A linear map between 8x8 pixel blocks (all channels of a frame or a 4-frame group) and one latent:
    pixel-unshuffle + 1x1 conv, and its transpose to decode. Initialised to the blocks' principal
    components (`init_pca`), it is a PCA autoencoder: colours right, edges soft, from step 0."""

    def __init__(self, channels: int, z: int):
        super().__init__()
        self.enc = nn.Conv2d(channels * 64, z, 1)
        self.dec = nn.Conv2d(z, channels * 64, 1)

    def encode(self, x):
        return self.enc(F.pixel_unshuffle(x, 8))

    def decode(self, z):
        return F.pixel_shuffle(self.dec(z), 8)

    @torch.no_grad()
    def init_pca(self, x: torch.Tensor, max_blocks: int = 200_000) -> float:
        """x [N, C, H, W] in [-1, 1]: set both maps to the top principal components of its 8x8 blocks.
        Returns the share of the blocks' variance they keep."""
        blocks = F.pixel_unshuffle(x.float(), 8).permute(0, 2, 3, 1).reshape(-1, self.enc.in_channels)
        if blocks.shape[0] > max_blocks:
            blocks = blocks[torch.randperm(blocks.shape[0], generator=torch.Generator().manual_seed(0))[:max_blocks]]
        mean = blocks.mean(0)
        cov = torch.cov((blocks - mean).T.double())
        evals, evecs = torch.linalg.eigh(cov)
        z = self.enc.out_channels
        v = evecs[:, -z:].flip(1).T.float()  # [z, D], largest first
        self.enc.weight.copy_(v[:, :, None, None])
        self.enc.bias.copy_(-(v @ mean))
        self.dec.weight.copy_(v.T[:, :, None, None])
        self.dec.bias.copy_(mean)
        return float(evals[-z:].sum() / evals.sum().clamp_min(1e-12))


class FrameGroupVAE(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, z_dim: int = 8, width: int = 32, latents_mean: list | None = None, latents_std: list | None = None,
                 scale_factor_spatial: int = 8, scale_factor_temporal: int = 4, linear_path: bool = False):
        """linear_path: a linear block-to-latent path (a PCA autoencoder once `init_pca` ran) to which the conv
        stacks add their output through a zero-initialised last layer, so training starts from a colour-true
        reconstruction instead of a grey one."""
        super().__init__()
        if scale_factor_spatial != 8 or scale_factor_temporal != 4:
            raise ValueError("FrameGroupVAE has Wan's layout: x8 space, x4 time")
        self.enc_first, self.enc_group = _Encoder(3, width, z_dim), _Encoder(12, width, z_dim)
        self.dec_first, self.dec_group = _Decoder(3, width, z_dim), _Decoder(12, width, z_dim)
        if linear_path:
            self.lin_first, self.lin_group = _LinearPatch(3, z_dim), _LinearPatch(12, z_dim)
            for net in (self.enc_first, self.enc_group, self.dec_first, self.dec_group):
                nn.init.zeros_(net.net[-1].weight)
                nn.init.zeros_(net.net[-1].bias)
        if latents_mean is None:
            self.register_to_config(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)

    def init_pca(self, videos: torch.Tensor) -> dict:
        """videos [N, 3, 4k+1, H, W] in [-1, 1]: initialise the linear path from the data's principal components."""
        N, C, Fr, H, W = videos.shape
        k = (Fr - 1) // 4
        groups = videos[:, :, 1 : 1 + 4 * k].reshape(N, C, k, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(N * k, C * 4, H, W)
        return {"first": self.lin_first.init_pca(videos[:, :, 0]), "group": self.lin_group.init_pca(groups)}

    def _enc(self, net, lin, x):
        return net(x) + lin.encode(x) if self.config.linear_path else net(x)

    def _dec(self, net, lin, z):
        return net(z) + lin.decode(z) if self.config.linear_path else net(z)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """x [B, 3, 4k+1, H, W] in [-1, 1] -> latents [B, z, k+1, H/8, W/8] (as a zero-variance distribution)."""
        B, C, F, H, W = x.shape
        if (F - 1) % 4:
            raise ValueError(f"FrameGroupVAE takes 4k+1 frames, got {F}")
        first = self._enc(self.enc_first, getattr(self, "lin_first", None), x[:, :, 0])
        lat = [first.unsqueeze(2)]
        k = (F - 1) // 4
        if k:
            groups = x[:, :, 1:].reshape(B, C, k, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(B * k, C * 4, H, W)
            z = self._enc(self.enc_group, getattr(self, "lin_group", None), groups)
            lat.append(z.reshape(B, k, *z.shape[1:]).permute(0, 2, 1, 3, 4))
        mean = torch.cat(lat, 2)
        moments = torch.cat([mean, torch.full_like(mean, -30.0)], 1)  # logvar -30: deterministic
        dist = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        B, Z, Fl, h, w = z.shape
        frames = [self._dec(self.dec_first, getattr(self, "lin_first", None), z[:, :, 0]).unsqueeze(2)]
        if Fl > 1:
            g = self._dec(self.dec_group, getattr(self, "lin_group", None), z[:, :, 1:].permute(0, 2, 1, 3, 4).reshape(B * (Fl - 1), Z, h, w))  # [B*k, 12, H, W]
            H, W = g.shape[-2:]
            g = g.reshape(B, Fl - 1, 3, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(B, 3, (Fl - 1) * 4, H, W)
            frames.append(g)
        out = torch.cat(frames, 2)
        return DecoderOutput(sample=out) if return_dict else (out,)

    def forward(self, x):
        return self.decode(self.encode(x).latent_dist.mode()).sample


def load_vae(path: str | Path):
    """Load whichever VAE class a directory holds (FrameGroupVAE or diffusers' AutoencoderKLWan)."""
    from diffusers import AutoencoderKLWan

    cfg = json.loads((Path(path) / "config.json").read_text())
    cls = FrameGroupVAE if cfg.get("_class_name") == "FrameGroupVAE" else AutoencoderKLWan
    return cls.from_pretrained(path).eval()
