"""FrameGroupVAE keeps Wan's latent layout (x8 space, causal x4 time) without recurrence."""

import torch

from model.framevae import FrameGroupVAE, load_vae
from model.tiny import tiny_vae


def test_layout_matches_wan_and_groups_are_independent(tmp_path):
    torch.manual_seed(0)
    vae = FrameGroupVAE(z_dim=4, width=8).eval()
    x = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        wan = tiny_vae().encode(x).latent_dist.mode()
        assert z.shape == (2, 4, 3, 4, 4) and z.shape[2:] == wan.shape[2:]
        y = vae.decode(z).sample
        assert y.shape == x.shape
        # changing frames 5..8 (latent frame 2) leaves latent frames 0 and 1 untouched: no recurrence
        x2 = x.clone()
        x2[:, :, 5:] = 0
        z2 = vae.encode(x2).latent_dist.mode()
        assert torch.equal(z2[:, :, :2], z[:, :, :2]) and not torch.equal(z2[:, :, 2], z[:, :, 2])
    vae.save_pretrained(tmp_path / "v")
    again = load_vae(tmp_path / "v")
    assert isinstance(again, FrameGroupVAE)
    with torch.no_grad():
        assert torch.allclose(again.encode(x).latent_dist.mode(), z, atol=1e-6)


def test_refuses_frames_that_are_not_4k_plus_1():
    import pytest

    with pytest.raises(ValueError, match="4k\\+1"):
        FrameGroupVAE(z_dim=4, width=8).encode(torch.zeros(1, 3, 8, 32, 32))
