"""train/graft_decoder.py: a learned decoder carried onto a wider PCA latent that nests the one it was trained on."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.framevae import FrameGroupVAE, load_vae
from train.decoder import build_decoder_vae
from train.graft_decoder import GraftError, graft_learned_decoder

ROOT = Path(__file__).resolve().parents[1]


def _pca(z: int, seed: int = 0) -> FrameGroupVAE:
    g = torch.Generator().manual_seed(seed)
    vae = FrameGroupVAE(z_dim=z, linear_path=True, arch="linear", first_frame_gain=2.0)
    vae.init_pca(torch.rand(6, 3, 9, 16, 16, generator=g) * 2 - 1)  # the same clips for every z: nested fits
    return vae


def _learned(z: int = 4) -> FrameGroupVAE:
    vae = build_decoder_vae(_pca(z), width=8, res_blocks=1, context=1)
    with torch.no_grad():  # a decoder that draws something of its own (its last layers start at zero)
        for n, p in vae.named_parameters():
            if n.startswith("dec_"):
                p.add_(0.05 * torch.randn_like(p))
    return vae.eval()


def test_the_graft_draws_the_learned_decoder_plus_the_new_components():
    torch.manual_seed(0)
    learned, wide = _learned(4), _pca(8)
    grafted = graft_learned_decoder(learned, wide)
    assert grafted.config.learned_decoder_channels == 4 and grafted.config.z_dim == 8
    z = torch.randn(2, 8, 3, 2, 2)
    with torch.no_grad():
        old_only = z.clone()
        old_only[:, 4:] = 0
        # new channels at zero: exactly what the learned decoder draws from the first four
        assert torch.allclose(grafted.decode(old_only).sample, learned.decode(z[:, :4]).sample, atol=1e-5)
        # anything in the new channels is added as the wide PCA draws it
        added = grafted.decode(z).sample - grafted.decode(old_only).sample
        pca = wide.decode(z).sample - wide.decode(old_only).sample
        assert torch.allclose(added, pca, atol=1e-5) and float(added.abs().max()) > 1e-3
        # and the encoder is the wide PCA's
        x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
        assert torch.equal(grafted.encode(x).latent_dist.mode(), wide.encode(x).latent_dist.mode())


def test_the_graft_refuses_vaes_that_do_not_nest():
    learned = _learned(4)
    with pytest.raises(GraftError, match="PCA components differ"):
        graft_learned_decoder(learned, _pca(8, seed=1))  # fitted on other clips
    with pytest.raises(GraftError, match="wider"):
        graft_learned_decoder(learned, _pca(4))
    with pytest.raises(GraftError, match="learned decoder"):
        graft_learned_decoder(_pca(4), _pca(8))
    with pytest.raises(GraftError, match="plain PCA"):
        graft_learned_decoder(learned, _learned(8))
    with pytest.raises(ValueError, match="learned_decoder_channels"):
        FrameGroupVAE(z_dim=8, linear_path=True, arch="linear", learned_decoder_channels=4)  # a PCA decoder has none


def test_the_command_writes_a_loadable_vae_and_names_a_mismatch(tmp_path):
    _learned(4).save_pretrained(tmp_path / "learned")
    _pca(8).save_pretrained(tmp_path / "wide")
    _pca(8, seed=1).save_pretrained(tmp_path / "other")
    cmd = [sys.executable, "-m", "train.graft_decoder", "--learned", str(tmp_path / "learned")]
    ok = subprocess.run(cmd + ["--onto", str(tmp_path / "wide"), "--out", str(tmp_path / "g")], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert load_vae(tmp_path / "g").config.learned_decoder_channels == 4
    bad = subprocess.run(cmd + ["--onto", str(tmp_path / "other"), "--out", str(tmp_path / "h")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "does not nest" in bad.stderr and not (tmp_path / "h").exists()
