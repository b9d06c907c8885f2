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


class _Residual(nn.Module):
    """GroupNorm-SiLU-conv twice, added to the input: depth without losing what the block already had."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x):
        return x + self.body(x)


def _stage(c_in: int, c_out: int, down: bool, res_blocks: int) -> nn.Sequential:
    if not res_blocks:  # the original layout, so checkpoints written before res_blocks existed still load
        return _block(c_in, c_out, down)
    return nn.Sequential(_block(c_in, c_out, down), *[_Residual(c_out) for _ in range(res_blocks)])


class _Encoder(nn.Module):
    def __init__(self, c_in: int, width: int, z: int, res_blocks: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1), nn.SiLU(), _stage(width, width, True, res_blocks), _stage(width, 2 * width, True, res_blocks),
                                 _stage(2 * width, 2 * width, True, res_blocks), nn.Conv2d(2 * width, z, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


class _Decoder(nn.Module):
    def __init__(self, c_out: int, width: int, z: int, res_blocks: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(z, 2 * width, 3, 1, 1), nn.SiLU(), *[_Residual(2 * width) for _ in range(res_blocks)], _stage(2 * width, 2 * width, False, res_blocks),
                                 _stage(2 * width, width, False, res_blocks), _stage(width, width, False, res_blocks), nn.Conv2d(width, c_out, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


class _BlockEncoder(nn.Module):
    """All the work at block resolution (one position per 8x8 pixel block): pixel-unshuffle, a 1x1 conv to
    `width` channels, residual 3x3 blocks over neighbouring blocks, then the latent. On a CPU, wide convs on
    an 8x8 grid are dense matrix products; narrow convs at 64x64 are memory-bound and several times slower
    for the same capacity."""

    def __init__(self, c_in: int, width: int, z: int, res_blocks: int):
        super().__init__()
        self.net = nn.Sequential(nn.PixelUnshuffle(8), nn.Conv2d(c_in * 64, width, 1), *[_Residual(width) for _ in range(max(1, res_blocks))],
                                 nn.GroupNorm(min(8, width), width), nn.SiLU(), nn.Conv2d(width, z, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


class _BlockDecoder(nn.Module):
    """The latent to `width` channels per block, residual 3x3 blocks, then every pixel of the block from a
    1x1 conv and pixel-shuffle: sharp edges anywhere in the block, without convs at full resolution."""

    def __init__(self, c_out: int, width: int, z: int, res_blocks: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(z, width, 3, 1, 1), *[_Residual(width) for _ in range(max(1, res_blocks))], nn.GroupNorm(min(8, width), width), nn.SiLU(),
                                 nn.Conv2d(width, c_out * 64, 1), nn.PixelShuffle(8))

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
                 scale_factor_spatial: int = 8, scale_factor_temporal: int = 4, linear_path: bool = False, res_blocks: int = 0,
                 arch: str = "pyramid", decoder_context: int = 0, first_frame: str = "own", first_frame_gain: float = 1.0,
                 decoder: str = "linear", learned_decoder_channels: int = 0):
        """linear_path: a linear block-to-latent path (a PCA autoencoder once `init_pca` ran) to which the conv
        stacks add their output through a zero-initialised last layer, so training starts from a colour-true
        reconstruction instead of a grey one. res_blocks: residual blocks after each resolution change of the
        conv stacks (0 = the original shallow stacks). arch: 'pyramid' (conv stacks that change resolution x2
        at a time) or 'blocks' (all conv work on the 8x8-block grid, `width` channels wide). decoder_context: how
        many neighbouring latent frames on each side the group decoder also sees. With 0 a group's four frames
        come from its latent alone, and a per-group latent keeps little of what changes inside the group: a
        spin comes back as one pose per group, a fast jump as a smear. With neighbours the decoder sees where
        the motion comes from and goes to and can draw the frames in between (Wan's decoder reaches back in
        time through its feature cache for the same reason); the encoder is unchanged.
        first_frame: 'own' (Wan's causal layout: the lone first frame has its own encoder and latent space) or
        'group' (linear arch only: the first frame is encoded as a group of four copies of itself and decoded as
        the mean of that group's four frames, so every latent frame speaks the same language; a diffusion model
        that sees the first latent frame on 1/9 of its tokens otherwise draws it badly).
        first_frame_gain: the video's first latent frame is multiplied by this after normalisation, so it reaches
        the diffusion model at the other frames' scale (model/latents.py; the weights are unchanged, so a VAE
        with a gain reads and writes the same pixels).
        decoder (arch 'linear' only): 'linear' (the PCA decoder) or 'blocks' (a learned decoder: block-grid conv
        stacks `width` wide, seeing `decoder_context` neighbouring latent frames, added to the PCA decoder's output
        through a zero-initialised last layer). The encoder stays the PCA map, so the latent space, and every
        diffusion model trained in it, is unchanged; only how latents are drawn changes. A linear decoder draws any
        error of a diffusion model's latents as a ghost or a smear; a learned one can map near-sprite latents back
        onto clean sprites (train/decoder.py trains it on a model's own redraws).
        learned_decoder_channels (decoder 'blocks' only): 0 = the learned decoder reads every latent channel; k > 0 =
        it reads the first k channels only, while the PCA decoder draws all of them. That is how a learned decoder
        trained on a k-channel PCA latent is carried onto a wider PCA latent that nests it (`graft_learned_decoder`):
        the wider latent's extra components are added, linearly, to what the learned decoder draws."""
        super().__init__()
        if not (isinstance(first_frame_gain, (int, float)) and first_frame_gain > 0):
            raise ValueError(f"first_frame_gain must be a number > 0, got {first_frame_gain!r}")
        if first_frame not in ("own", "group"):
            raise ValueError(f"first_frame must be 'own' or 'group', got {first_frame!r}")
        if first_frame == "group" and arch != "linear":
            raise ValueError("first_frame 'group' is for arch 'linear' (the PCA autoencoder)")
        if scale_factor_spatial != 8 or scale_factor_temporal != 4:
            raise ValueError("FrameGroupVAE has Wan's layout: x8 space, x4 time")
        if arch not in ("pyramid", "blocks", "linear"):
            raise ValueError(f"arch must be 'pyramid', 'blocks' or 'linear', got {arch!r}")
        if decoder not in ("linear", "blocks"):
            raise ValueError(f"decoder must be 'linear' or 'blocks', got {decoder!r}")
        if decoder == "blocks" and arch != "linear":
            raise ValueError("decoder 'blocks' is a learned decoder over the PCA encoder: it needs arch 'linear'")
        if not (isinstance(learned_decoder_channels, int) and 0 <= learned_decoder_channels <= z_dim):
            raise ValueError(f"learned_decoder_channels must be an int in [0, z_dim={z_dim}], got {learned_decoder_channels!r}")
        if learned_decoder_channels and decoder != "blocks":
            raise ValueError("learned_decoder_channels is for decoder 'blocks' (a learned decoder)")
        if decoder == "blocks" and first_frame != "own":
            raise ValueError("decoder 'blocks' decodes the first latent frame with its own decoder: it needs first_frame 'own'")
        if arch == "linear":
            # The PCA autoencoder alone: a linear, smooth latent in which a diffusion model's small errors decode to
            # small pixel errors instead of the conv decoder's garbled blocks (docs/BENCHMARKS.md, the ladder)
            if not linear_path:
                raise ValueError("arch 'linear' is the PCA path alone: it needs linear_path=True")
            self.lin_first, self.lin_group = _LinearPatch(3, z_dim), _LinearPatch(12, z_dim)
            if decoder == "blocks":
                zl = learned_decoder_channels or z_dim
                self.dec_first = _BlockDecoder(3, width, zl, res_blocks)
                self.dec_group = _BlockDecoder(12, width, zl * (1 + 2 * decoder_context), res_blocks)
                for net in (self.dec_first, self.dec_group):
                    last = [m for m in net.net if isinstance(m, nn.Conv2d)][-1]
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)
            if latents_mean is None:
                self.register_to_config(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
            return
        enc, dec = (_Encoder, _Decoder) if arch == "pyramid" else (_BlockEncoder, _BlockDecoder)
        self.enc_first, self.enc_group = enc(3, width, z_dim, res_blocks), enc(12, width, z_dim, res_blocks)
        self.dec_first, self.dec_group = dec(3, width, z_dim, res_blocks), dec(12, width, z_dim * (1 + 2 * decoder_context), res_blocks)
        if linear_path:
            self.lin_first, self.lin_group = _LinearPatch(3, z_dim), _LinearPatch(12, z_dim)
            for net in (self.enc_first, self.enc_group, self.dec_first, self.dec_group):
                last = [m for m in net.net if isinstance(m, nn.Conv2d)][-1]
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        if latents_mean is None:
            self.register_to_config(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)

    def init_pca(self, videos: torch.Tensor) -> dict:
        """videos [N, 3, 4k+1, H, W] in [-1, 1]: initialise the linear path from the data's principal components."""
        N, C, Fr, H, W = videos.shape
        k = (Fr - 1) // 4
        groups = videos[:, :, 1 : 1 + 4 * k].reshape(N, C, k, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(N * k, C * 4, H, W)
        return {"first": self.lin_first.init_pca(videos[:, :, 0]), "group": self.lin_group.init_pca(groups)}

    def _enc(self, net, lin, x):
        if self.config.arch == "linear":
            return lin.encode(x)
        return net(x) + lin.encode(x) if self.config.linear_path else net(x)

    def _dec(self, net, lin, z, context=None):
        if self.config.arch == "linear" and self.config.decoder == "linear":
            return lin.decode(z)
        k = self.config.learned_decoder_channels
        x = z[:, :k] if k else z
        if context is not None:
            x = torch.cat([x, context], 1)
        return net(x) + lin.decode(z) if self.config.linear_path else net(x)

    def decoder_parameters(self) -> list:
        """The learned decoder's parameters (decoder 'blocks'): what train/decoder.py trains, the PCA maps frozen."""
        return [p for n, p in self.named_parameters() if n.startswith("dec_")]

    def _group_context(self, z: torch.Tensor) -> torch.Tensor | None:
        """z [B, Z, Fl, h, w] -> for each group latent 1..Fl-1, its neighbours [B*(Fl-1), 2c*Z, h, w] (zeros past the ends)."""
        c = self.config.decoder_context
        if not c:
            return None
        if self.config.learned_decoder_channels:
            z = z[:, : self.config.learned_decoder_channels]  # the learned decoder's neighbours: its channels only
        B, Z, Fl, h, w = z.shape
        padded = F.pad(z, (0, 0, 0, 0, c, c))
        parts = [padded[:, :, 1 + c + d : Fl + c + d] for d in range(-c, c + 1) if d]
        ctx = torch.cat(parts, 1)  # [B, 2c*Z, Fl-1, h, w]
        return ctx.permute(0, 2, 1, 3, 4).reshape(B * (Fl - 1), 2 * c * Z, h, w)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """x [B, 3, 4k+1, H, W] in [-1, 1] -> latents [B, z, k+1, H/8, W/8] (as a zero-variance distribution)."""
        B, C, F, H, W = x.shape
        if (F - 1) % 4:
            raise ValueError(f"FrameGroupVAE takes 4k+1 frames, got {F}")
        if self.config.first_frame == "group":  # four copies of the first frame through the group path
            x0 = x[:, :, 0].unsqueeze(2).expand(B, C, 4, H, W).reshape(B, C * 4, H, W)
            first = self.lin_group.encode(x0)
        else:
            first = self._enc(getattr(self, "enc_first", None), getattr(self, "lin_first", None), x[:, :, 0])
        lat = [first.unsqueeze(2)]
        k = (F - 1) // 4
        if k:
            groups = x[:, :, 1:].reshape(B, C, k, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(B * k, C * 4, H, W)
            z = self._enc(getattr(self, "enc_group", None), getattr(self, "lin_group", None), groups)
            lat.append(z.reshape(B, k, *z.shape[1:]).permute(0, 2, 1, 3, 4))
        mean = torch.cat(lat, 2)
        moments = torch.cat([mean, torch.full_like(mean, -30.0)], 1)  # logvar -30: deterministic
        dist = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        B, Z, Fl, h, w = z.shape
        if self.config.first_frame == "group":
            g0 = self.lin_group.decode(z[:, :, 0])  # [B, 12, H, W]: the group's four frames, averaged
            frames = [g0.reshape(B, 3, 4, *g0.shape[-2:]).mean(2).unsqueeze(2)]
        else:
            frames = [self._dec(getattr(self, "dec_first", None), getattr(self, "lin_first", None), z[:, :, 0]).unsqueeze(2)]
        if Fl > 1:
            g = self._dec(getattr(self, "dec_group", None), getattr(self, "lin_group", None), z[:, :, 1:].permute(0, 2, 1, 3, 4).reshape(B * (Fl - 1), Z, h, w),
                          self._group_context(z))  # [B*k, 12, H, W]
            H, W = g.shape[-2:]
            g = g.reshape(B, Fl - 1, 3, 4, H, W).permute(0, 2, 1, 3, 4, 5).reshape(B, 3, (Fl - 1) * 4, H, W)
            frames.append(g)
        out = torch.cat(frames, 2)
        return DecoderOutput(sample=out) if return_dict else (out,)

    def forward(self, x):
        return self.decode(self.encode(x).latent_dist.mode()).sample


def vae_directory(path: str | Path) -> Path:
    """A VAE directory, given it or a pipeline directory that holds one under vae/."""
    d = Path(path)
    return d / "vae" if (d / "vae" / "config.json").is_file() else d


def load_vae(path: str | Path):
    """Load whichever VAE class a directory holds (FrameGroupVAE or diffusers' AutoencoderKLWan); a pipeline
    directory gives its vae/."""
    from diffusers import AutoencoderKLWan

    path = vae_directory(path)
    cfg = json.loads((path / "config.json").read_text())
    cls = FrameGroupVAE if cfg.get("_class_name") == "FrameGroupVAE" else AutoencoderKLWan
    return cls.from_pretrained(path).eval()
