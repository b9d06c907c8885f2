"""Carry a learned decoder onto a wider PCA latent that nests the one it was trained on.

The shipped default draws its 16-channel PCA latent through a learned decoder (train/decoder.py) whose halo the
generated clips lean on (docs/BENCHMARKS.md, fourteenth session). A model grown onto `sprite_pca_vae_z128`
(model.init_grow_latent) lost it: its PCA decoder draws the first 16 channels linearly. The grafted VAE keeps the
wide latent's encoder and PCA decoder and adds the learned decoder's output, computed from the first 16 channels
only (FrameGroupVAE's `learned_decoder_channels`):

    decode(z) = learned(z[:16]) + PCA_128(z) = (the shipped decoder on z[:16]) + PCA's extra components of z[16:]

So a grown model whose new channels sit at their mean draws what the shipped model draws, and whatever the new
channels learn is added on top. The wide PCA must nest the narrow one (the same first components, the same
normalisation); `graft_learned_decoder` checks that and refuses otherwise.

    python -m train.graft_decoder --learned assets/default_model/vae --onto assets/sprite_pca_vae_z128 --out runs/z128_grafted
"""

from __future__ import annotations

import argparse
import sys
import torch

from model.framevae import FrameGroupVAE, load_vae

_SAME_KEYS = ("arch", "first_frame", "first_frame_gain", "scale_factor_spatial", "scale_factor_temporal", "linear_path")


class GraftError(ValueError):
    """The two VAEs cannot be combined: the message says which property differs."""


def graft_learned_decoder(learned: FrameGroupVAE, wide: FrameGroupVAE, atol: float = 1e-4) -> FrameGroupVAE:
    """A FrameGroupVAE with `wide`'s PCA maps and latent statistics and `learned`'s decoder stacks reading the first
    `learned.z_dim` channels. Raises GraftError when `wide` does not nest `learned`'s PCA latent."""
    lc, wc = learned.config, wide.config
    if lc.get("decoder") != "blocks":
        raise GraftError(f"--learned must have a learned decoder (decoder 'blocks'), it has decoder {lc.get('decoder')!r}")
    if lc.get("learned_decoder_channels"):
        raise GraftError("--learned is itself a graft: graft from the original learned decoder")
    if wc.get("arch") != "linear" or wc.get("decoder") != "linear":
        raise GraftError("--onto must be a plain PCA VAE (arch 'linear', decoder 'linear')")
    for key in _SAME_KEYS:
        if lc.get(key) != wc.get(key):
            raise GraftError(f"the VAEs differ in {key}: {lc.get(key)!r} (learned) against {wc.get(key)!r} (onto)")
    k, z = lc.z_dim, wc.z_dim
    if z <= k:
        raise GraftError(f"--onto must be wider than --learned: {z} channels against {k}")
    for name, a, b in (("latents_mean", lc.latents_mean, wc.latents_mean[:k]), ("latents_std", lc.latents_std, wc.latents_std[:k])):
        if not torch.allclose(torch.tensor(a), torch.tensor(b), atol=atol, rtol=1e-4):
            raise GraftError(f"{name} of the first {k} channels differ: the wide PCA does not nest the learned VAE's latent")
    for part in ("lin_first", "lin_group"):
        lw, ww = getattr(learned, part), getattr(wide, part)
        pairs = (("enc.weight", lw.enc.weight, ww.enc.weight[:k]), ("enc.bias", lw.enc.bias, ww.enc.bias[:k]),
                 ("dec.weight", lw.dec.weight, ww.dec.weight[:, :k]), ("dec.bias", lw.dec.bias, ww.dec.bias))
        for name, a, b in pairs:
            if not torch.allclose(a, b, atol=atol, rtol=1e-3):
                worst = float((a - b).abs().max())
                raise GraftError(f"{part}.{name}: the first {k} PCA components differ (max {worst:.3g}); "
                                 "the wide PCA does not nest the learned VAE's latent")
    cfg = {key: value for key, value in wc.items() if not key.startswith("_")}
    cfg.update(decoder="blocks", learned_decoder_channels=k, width=lc.width, res_blocks=lc.res_blocks,
               decoder_context=lc.decoder_context)
    out = FrameGroupVAE(**cfg)
    state = {n: p for n, p in wide.state_dict().items() if n.startswith("lin_")}
    state.update({n: p for n, p in learned.state_dict().items() if n.startswith("dec_")})
    out.load_state_dict(state, strict=True)
    return out.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learned", required=True, help="a VAE directory with a learned decoder (or a pipeline directory)")
    ap.add_argument("--onto", required=True, help="a wider PCA VAE directory that nests its latent")
    ap.add_argument("--out", required=True, help="output VAE directory")
    args = ap.parse_args(argv)

    try:
        vae = graft_learned_decoder(load_vae(args.learned), load_vae(args.onto))
    except GraftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    vae.save_pretrained(args.out)
    print(f"wrote {args.out}: {vae.config.z_dim} channels, the learned decoder reading the first {vae.config.learned_decoder_channels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
