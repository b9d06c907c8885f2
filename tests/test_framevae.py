"""FrameGroupVAE keeps Wan's latent layout (x8 space, causal x4 time) without recurrence."""

import torch

from model.framevae import FrameGroupVAE, load_vae
from model.tiny import tiny_vae


import pytest


@pytest.mark.parametrize("linear_path", [False, True])
def test_layout_matches_wan_and_groups_are_independent(tmp_path, linear_path):
    torch.manual_seed(0)
    vae = FrameGroupVAE(z_dim=4, width=8, linear_path=linear_path).eval()
    if linear_path:
        vae.init_pca(torch.rand(4, 3, 9, 32, 32) * 2 - 1)
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
    assert isinstance(again, FrameGroupVAE) and again.config.linear_path == linear_path
    with torch.no_grad():
        assert torch.allclose(again.encode(x).latent_dist.mode(), z, atol=1e-6)


def test_a_config_written_before_linear_path_existed_loads_without_it(tmp_path):
    import json

    FrameGroupVAE(z_dim=4, width=8).save_pretrained(tmp_path / "v")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    cfg.pop("linear_path")
    (tmp_path / "v" / "config.json").write_text(json.dumps(cfg))
    again = load_vae(tmp_path / "v")
    assert again.config.linear_path is False and not hasattr(again, "lin_group")


def test_refuses_frames_that_are_not_4k_plus_1():
    with pytest.raises(ValueError, match="4k\\+1"):
        FrameGroupVAE(z_dim=4, width=8).encode(torch.zeros(1, 3, 8, 32, 32))


def _blocky_videos(n=6, seed=0):
    """Videos whose 8x8 blocks lie in a low-dimensional space: a colour per block, constant in time."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(n, 3, 1, 4, 4, generator=g) * 2 - 1
    return cells.repeat_interleave(8, 3).repeat_interleave(8, 4).expand(n, 3, 9, 32, 32).contiguous()


def test_linear_path_starts_as_the_pca_autoencoder_of_the_data():
    torch.manual_seed(0)
    vae = FrameGroupVAE(z_dim=4, width=8, linear_path=True).eval()
    x = _blocky_videos()
    kept = vae.init_pca(x)
    # each block is one RGB colour: 3 components carry all of its variance
    assert kept["first"] > 0.999 and kept["group"] > 0.999
    with torch.no_grad():
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    assert torch.allclose(y, x, atol=1e-4)  # the conv stacks add nothing yet (zero-initialised outputs)
    plain = FrameGroupVAE(z_dim=4, width=8).eval()
    with torch.no_grad():
        assert (plain(x) - x).abs().mean() > 0.1


def test_linear_path_trains_and_round_trips_through_save(tmp_path):
    torch.manual_seed(0)
    vae = FrameGroupVAE(z_dim=4, width=8, linear_path=True)
    vae.init_pca(_blocky_videos())
    x = _blocky_videos(seed=1)
    opt = torch.optim.Adam(vae.parameters(), 1e-3)
    loss = (vae(x) - x).pow(2).mean()
    loss.backward()
    assert vae.enc_group.net[-1].weight.grad.abs().sum() > 0 or vae.dec_group.net[-1].weight.grad.abs().sum() > 0
    opt.step()
    vae.save_pretrained(tmp_path / "v")
    again = load_vae(tmp_path / "v")
    assert again.config.linear_path
    with torch.no_grad():
        assert torch.allclose(again(x), vae(x), atol=1e-5)


def test_block_grid_vae_with_decoder_context_keeps_the_layout_and_starts_as_pca(tmp_path):
    torch.manual_seed(0)
    vae = FrameGroupVAE(z_dim=4, width=16, linear_path=True, arch="blocks", res_blocks=1, decoder_context=1).eval()
    x = _blocky_videos()
    vae.init_pca(x)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        assert z.shape == (6, 4, 3, 4, 4)
        assert torch.allclose(vae.decode(z).sample, x, atol=1e-4)  # zero-initialised conv outputs: PCA exactly
        for net in (vae.dec_group, vae.enc_group):  # give the conv stacks an output so context can show
            [m for m in net.net if isinstance(m, torch.nn.Conv2d)][-1].weight.normal_(0, 0.05)
        z = vae.encode(x).latent_dist.mode()
        y = vae.decode(z).sample
        z2 = z.clone()
        z2[:, :, 2] += 1.0  # move latent frame 2 only
        y2 = vae.decode(z2).sample
    # the decoder of group 1 (frames 1-4) sees its neighbour (latent frame 2); the first frame does not
    assert torch.equal(y2[:, :, 0], y[:, :, 0]) and not torch.allclose(y2[:, :, 1:5], y[:, :, 1:5])
    vae.save_pretrained(tmp_path / "v")
    again = load_vae(tmp_path / "v")
    assert again.config.arch == "blocks" and again.config.decoder_context == 1
    with torch.no_grad():
        assert torch.allclose(again.decode(z).sample, y, atol=1e-5)


def test_the_original_pyramid_layout_keeps_its_parameter_names():
    """res_blocks=0 must not rename anything, or VAEs saved before the option existed would no longer load."""
    names = set(FrameGroupVAE(z_dim=4, width=8).state_dict())
    assert {"enc_group.net.2.0.weight", "enc_group.net.2.3.weight", "dec_group.net.4.0.weight", "dec_group.net.5.weight"} <= names
    with pytest.raises(ValueError, match="arch"):
        FrameGroupVAE(z_dim=4, width=8, arch="unet")


def test_linear_arch_is_the_pca_autoencoder_alone(tmp_path):
    """vae.arch 'linear' (the ladder's latent): no conv stacks, encode and decode are linear maps set by init_pca,
    so decoding is affine in the latent (a small latent error is a small pixel error) and the pair reconstructs
    the data's principal subspace."""
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(6, 3, 9, 16, 16, generator=g) * 2 - 1
    vae = FrameGroupVAE(z_dim=8, linear_path=True, arch="linear")
    assert not any(n.startswith(("enc_", "dec_")) for n, _ in vae.named_parameters())
    kept = vae.init_pca(videos)
    assert 0 < kept["group"] <= 1
    with torch.no_grad():
        z = vae.encode(videos[:2]).latent_dist.mode()
        d = torch.randn(z.shape, generator=g)
        dec = lambda x: vae.decode(x).sample  # noqa: E731
        assert torch.allclose(dec(z + d) - dec(z), dec(z + 2 * d) - dec(z + d), atol=1e-4)  # affine
    vae.save_pretrained(tmp_path / "v")
    assert load_vae(tmp_path / "v").config.arch == "linear"
    with pytest.raises(ValueError, match="linear_path"):
        FrameGroupVAE(z_dim=8, arch="linear")


def test_first_frame_as_a_group_shares_the_group_latent_space(tmp_path):
    """first_frame 'group': the first frame is encoded as four copies of itself through the group map, so its
    latent is what a still group looks like, and decodes back to that frame as well as a group would."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 3, 1, 16, 16, generator=g) * 2 - 1
    videos = base.expand(4, 3, 9, 16, 16).clone()  # still clips: every group is four copies of the first frame
    own = FrameGroupVAE(z_dim=8, linear_path=True, arch="linear")
    own.init_pca(torch.rand(6, 3, 9, 16, 16, generator=g) * 2 - 1)
    own.save_pretrained(tmp_path / "own")
    grouped = FrameGroupVAE.from_pretrained(tmp_path / "own", first_frame="group")
    with torch.no_grad():
        z = grouped.encode(videos).latent_dist.mode()
        assert torch.allclose(z[:, :, 0], z[:, :, 1], atol=1e-5)  # a still clip: the first latent frame = a still group
        out = grouped.decode(z).sample
        assert torch.allclose(out[:, :, 0], out[:, :, 1:5].mean(2), atol=1e-5)  # the mean of that group's frames
    grouped.save_pretrained(tmp_path / "g")
    assert load_vae(tmp_path / "g").config.first_frame == "group"
    with pytest.raises(ValueError, match="first_frame"):
        FrameGroupVAE(z_dim=8, first_frame="group")


def test_first_frame_gain_scales_only_a_videos_first_latent_frame(tmp_path):
    """first_frame_gain (model/latents.py): the video's first latent frame reaches the diffusion model multiplied by
    the gain, reference images do not, and decoding undoes it, so the pixels are the same as without a gain."""
    from model import latents

    g = torch.Generator().manual_seed(0)
    videos = torch.rand(2, 3, 9, 16, 16, generator=g) * 2 - 1
    plain = FrameGroupVAE(z_dim=8, linear_path=True, arch="linear")
    plain.init_pca(videos)
    plain.register_to_config(latents_mean=[0.1] * 8, latents_std=[2.0] * 8)
    plain.save_pretrained(tmp_path / "plain")
    gained = FrameGroupVAE.from_pretrained(tmp_path / "plain", first_frame_gain=2.0)
    gained.save_pretrained(tmp_path / "gained")
    assert load_vae(tmp_path / "gained").config.first_frame_gain == 2.0 and latents.first_frame_gain(plain.config) == 1.0
    with torch.no_grad():
        raw = plain.encode(videos).latent_dist.mode()
        a, b = latents.normalise(raw, plain.config), latents.normalise(raw, gained.config)
        assert torch.allclose(a, (raw - 0.1) / 2.0)
        assert torch.allclose(b[:, :, 0], 2 * a[:, :, 0]) and torch.equal(b[:, :, 1:], a[:, :, 1:])
        assert torch.equal(latents.normalise(raw[:, :, :1], gained.config, video=False), a[:, :, :1])  # a reference image
        assert torch.allclose(latents.denormalise(b, gained.config), raw, atol=1e-6)
        assert torch.allclose(gained.decode(latents.denormalise(b, gained.config)).sample, plain.decode(raw).sample, atol=1e-5)
    with pytest.raises(ValueError, match="first_frame_gain"):
        FrameGroupVAE(z_dim=8, first_frame_gain=0)


def test_learned_decoder_starts_as_the_pca_decoder_and_keeps_the_encoder(tmp_path):
    """decoder 'blocks' (train/decoder.py trains it): a learned decoder beside the PCA one whose last layer starts at
    zero, so before training it draws exactly what the PCA decoder draws; the encoder, and so the latent space every
    diffusion model was trained in, is the PCA map whatever the decoder learns."""
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(4, 3, 9, 16, 16, generator=g) * 2 - 1
    pca = FrameGroupVAE(z_dim=8, linear_path=True, arch="linear", first_frame_gain=2.0)
    pca.init_pca(videos)
    learned = FrameGroupVAE(z_dim=8, width=16, linear_path=True, arch="linear", decoder="blocks", decoder_context=1, res_blocks=1,
                            first_frame_gain=2.0)
    missing, unexpected = learned.load_state_dict(pca.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("dec_") for k in missing)
    assert {id(p) for p in learned.decoder_parameters()} == {id(p) for n, p in learned.named_parameters() if n.startswith("dec_")}
    with torch.no_grad():
        z = pca.encode(videos).latent_dist.mode()
        assert torch.equal(learned.encode(videos).latent_dist.mode(), z)
        assert torch.allclose(learned.decode(z).sample, pca.decode(z).sample, atol=1e-6)
        for p in learned.decoder_parameters():  # any learned change moves the drawing, never the encoding
            p.add_(0.01 * torch.randn(p.shape, generator=g))
        assert not torch.allclose(learned.decode(z).sample, pca.decode(z).sample, atol=1e-3)
        assert torch.equal(learned.encode(videos).latent_dist.mode(), z)
    learned.save_pretrained(tmp_path / "d")
    back = load_vae(tmp_path / "d")
    assert back.config.decoder == "blocks"
    with torch.no_grad():
        assert torch.allclose(back.decode(z).sample, learned.decode(z).sample, atol=1e-6)
    with pytest.raises(ValueError, match="arch 'linear'"):
        FrameGroupVAE(z_dim=8, linear_path=True, arch="blocks", decoder="blocks")
    with pytest.raises(ValueError, match="decoder must be"):
        FrameGroupVAE(z_dim=8, linear_path=True, arch="linear", decoder="conv")
