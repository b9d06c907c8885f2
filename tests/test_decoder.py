"""train/decoder.py: a learned decoder for a PCA-latent model, trained on the model's own redraws."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.framevae import FrameGroupVAE, load_vae
from model.latents import normalise
from train.decoder import _pca_decode, build_decoder_vae, decoder_loss, train_decoder

ROOT = Path(__file__).resolve().parents[1]


def _pca_vae():
    g = torch.Generator().manual_seed(0)
    vae = FrameGroupVAE(z_dim=8, linear_path=True, arch="linear", first_frame_gain=2.0)
    vae.init_pca(torch.rand(4, 3, 9, 16, 16, generator=g) * 2 - 1)
    return vae


def test_training_draws_the_pairs_clean_frames_better_than_the_pca_decoder():
    """Pairs whose latents are off (a smeared copy of the truth's) and whose target is the clean clip: a few hundred
    steps must beat the PCA decoder on them, and the PCA maps stay frozen."""
    g = torch.Generator().manual_seed(1)
    frames = torch.zeros(3, 9, 16, 16, 3, dtype=torch.uint8)
    for i in range(3):  # a bright square on grey, moving right one pixel a frame
        frames[i] = 100
        for f in range(9):
            frames[i, f, 4:10, 1 + f + i : 7 + f + i] = torch.tensor([220, 40, 40], dtype=torch.uint8)
    pca = _pca_vae()
    vae = build_decoder_vae(pca, width=16, res_blocks=1, context=1)
    x = frames.float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        clean = normalise(pca.encode(x).latent_dist.mode(), pca.config)
    smeared = clean + 0.3 * torch.randn(clean.shape, generator=g)
    data = {"latents": torch.cat([smeared, smeared]), "frames": torch.cat([frames, frames]), "clip": torch.tensor([0, 1, 2, 0, 1, 2]),
            "strength": torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])}
    frozen = {n: p.clone() for n, p in vae.named_parameters() if n.startswith("lin_")}
    scores = train_decoder(vae, data, steps=300, batch_size=2, lr=3e-3, latent_noise=0.0, held_out_clips=1, log=lambda _: None)
    s = scores["strength_0.5"]
    assert s["pairs"] == 2 and s["learned_db"] > s["pca_db"] + 1.0, s
    assert all(torch.equal(p, frozen[n]) for n, p in vae.named_parameters() if n.startswith("lin_"))
    with pytest.raises(ValueError, match="need more than"):
        train_decoder(vae, data, steps=1, held_out_clips=3, log=lambda _: None)


def test_a_base_with_a_learned_decoder_gives_only_its_pca_maps():
    """The shipped default's VAE already has a learned decoder; a new one built over it starts from zero (it draws
    exactly what the PCA decoder draws), whatever its context, and keeps the base's PCA maps."""
    base = build_decoder_vae(_pca_vae(), width=16, res_blocks=1, context=1)
    with torch.no_grad():
        for n, p in base.named_parameters():
            if n.startswith("dec_"):
                p.add_(0.5)
    lat = torch.randn(1, 8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(base.decode(lat).sample, _pca_decode(base, lat))
        for context in (1, 2):
            fresh = build_decoder_vae(base, width=16, res_blocks=1, context=context)
            assert torch.allclose(fresh.decode(lat).sample, _pca_decode(base, lat), atol=1e-6)
            assert all(torch.equal(p, base.state_dict()[n]) for n, p in fresh.state_dict().items() if n.startswith("lin_"))


def test_a_learned_decoder_needs_a_pca_vae():
    with pytest.raises(ValueError, match="PCA VAE"):
        build_decoder_vae(FrameGroupVAE(z_dim=8, width=8, arch="blocks"), 16, 1, 1)
    x = torch.zeros(1, 3, 1, 8, 8)
    assert decoder_loss(x, x).item() == 0.0


def test_the_either_mask_makes_a_halo_cost_what_a_missed_edge_does():
    """'target' weights only the target's sprite pixels, so a halo painted around a sprite is cheap and a missed sprite
    pixel dear (the decoder learns to paint where unsure); 'either' weights both kinds of error at the edge alike."""
    x = -torch.ones(1, 3, 1, 16, 16)
    x[..., 6:10, 6:10] = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1, 1)  # a red 4 x 4 sprite on black
    halo, missed = x.clone(), x.clone()
    halo[..., 5:11, 5:11] = x[..., 6:10, 6:10].mean((-2, -1), keepdim=True)  # drawn one pixel too large all round
    halo[..., 6:10, 6:10] = x[..., 6:10, 6:10]
    missed[..., 6:10, 6] = -1.0  # one edge column left out: 4 pixels
    ratio_target = decoder_loss(halo, x, fg_mask="target") / decoder_loss(missed, x, fg_mask="target")
    ratio_either = decoder_loss(halo, x, fg_mask="either") / decoder_loss(missed, x, fg_mask="either")
    # 20 halo pixels against 4 missed ones: 'either' prices them per pixel alike (5x), 'target' 11x cheaper
    assert ratio_either == pytest.approx(5.0, rel=1e-4) and ratio_target == pytest.approx(5.0 / 11.0, rel=1e-4)
    assert decoder_loss(x, x, fg_mask="either").item() == 0.0
    with pytest.raises(ValueError, match="fg_mask"):
        decoder_loss(x, x, fg_mask="both")


def test_the_temporal_term_prices_a_size_jump_between_frames_and_not_a_steady_error():
    """temporal_weight: the error on each frame-to-frame change. A sprite drawn one pixel too large in every frame has
    the target's changes (no extra cost); one drawn too large in alternate frames flickers and pays for it."""
    x = -torch.ones(1, 3, 4, 16, 16)
    x[..., 6:10, 6:10] = 1.0
    steady, flicker = x.clone(), x.clone()
    steady[..., 5:11, 5:11] = 1.0
    flicker[:, :, 1::2, 5:11, 5:11] = 1.0
    assert decoder_loss(steady, x, temporal_weight=2.0) == pytest.approx(decoder_loss(steady, x).item())
    extra = decoder_loss(flicker, x, temporal_weight=2.0) - decoder_loss(flicker, x)
    assert extra.item() > 0.5 * decoder_loss(flicker, x).item()
    assert decoder_loss(x, x, temporal_weight=2.0).item() == 0.0


def test_the_command_redraws_trains_and_writes_a_loadable_vae(tmp_path):
    """The real command on the shipped default model: 3 clips redrawn at one strength, a short training, the VAE
    written and loadable; a second run reuses the redraws instead of making them again."""
    out = tmp_path / "dec"
    cmd = [sys.executable, "-m", "train.decoder", "--model", str(ROOT / "assets/default_model"), "--out", str(out), "--clips", "3",
           "--strengths", "0.3", "--steps", "10", "--held-out-clips", "1", "--width", "32", "--threads", "2"]
    subprocess.run(cmd + ["--world", "background_styles=[gradient]"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    data = torch.load(out / "decoder_data.pt")
    # the model's world (flat backgrounds) with --world's override: every clip on a gradient
    corners = data["frames"][:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].float()  # [M, 4, 3]
    assert bool(((corners.amax(1) - corners.amin(1)).abs().sum(-1) > 10).all())
    assert len(data["clip"]) == 6 and sorted(round(s, 3) for s in set(data["strength"].tolist())) == [0.0, 0.3]
    assert data["frames"].shape[1:] == (33, 64, 64, 3) and data["latents"].shape[0] == 6
    lines = [json.loads(line) for line in (out / "decoder_log.jsonl").read_text().splitlines()]
    held = [r["held_out"] for r in lines if "held_out" in r][-1]
    assert set(held) == {"strength_0", "strength_0.3"} and all(np.isfinite(v["learned_db"]) for v in held.values())
    vae = load_vae(out / "vae")
    assert vae.config.decoder == "blocks" and vae.config.z_dim == 16
    rerun = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert '"reused": true' in rerun.stdout
    # another run trains on these pairs (--data) with the halo-free loss, writing its own VAE
    other = tmp_path / "dec_either"
    again = subprocess.run(cmd[:6] + [str(other)] + cmd[7:] + ["--data", str(out / "decoder_data.pt"), "--fg-mask", "either"],
                           cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert '"reused": true' in again.stdout and load_vae(other / "vae").config.decoder == "blocks"
    assert not (other / "decoder_data.pt").exists()
    bad = subprocess.run(cmd[:-6] + ["--strengths", "0,0.3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--strengths must be in (0, 1]" in bad.stderr
    bad = subprocess.run(cmd[:6] + [str(tmp_path / "x")] + cmd[7:] + ["--world", "textures"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--world takes KEY=VALUE" in bad.stderr
    both = subprocess.run(cmd[:6] + [str(tmp_path / "y")] + cmd[7:] + ["--data", str(out / "decoder_data.pt"), "--world", "max_actions=3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert both.returncode != 0 and "give one of them" in both.stderr


def test_strength_one_pairs_are_full_generations_with_the_layout():
    """A strength of 1 is the studio's generation from noise with the export's start layout (the model's errors as
    users see them), paired with the clip's own frames; not a redraw of the clip."""
    from model.pipeline import ReactIDPipeline
    from train.decoder import DATA_SEED, redraw_pairs
    from train.sprites import WorldConfig, generate_clip

    model = ROOT / "assets/default_model"
    data = redraw_pairs(model, 1, [1.0], steps=2, log=lambda line: None, layout="paths")
    assert data["strength"].tolist() == [0.0, 1.0] and data["clip"].tolist() == [0, 0]
    pipe = ReactIDPipeline.from_pretrained(model)
    world = WorldConfig.from_kwargs(**json.loads((model / "sprite_world.json").read_text()))
    clip = generate_clip(DATA_SEED, world)
    assert torch.equal(data["frames"][1], torch.from_numpy(clip.frames))
    refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
    kw = dict(num_inference_steps=2, guidance_scale=3.0, seed=DATA_SEED, progress=False)
    with_layout = pipe(clip.timeline, refs, layout="paths", **kw).latents[0]
    redraw = pipe(clip.timeline, refs, init_video=clip.frames, strength=1.0, **kw).latents[0]
    assert torch.allclose(data["latents"][1], with_layout) and not torch.allclose(data["latents"][1], redraw)
