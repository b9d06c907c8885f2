"""The wider latent prepared for level 2 (assets/sprite_pca_vae_z128) and benchmarks/latent_ceiling.py: the asset's
leading 16 channels are the shipped default's latent exactly (what model.init_grow_latent relies on), it draws the
clips closer to the truth, and the ceiling tool scores round trips with the sprite benchmark."""

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from latent_ceiling import ceiling_of, main  # noqa: E402

from model.framevae import load_vae  # noqa: E402
from ladder import held_out, level_world  # noqa: E402

from model.latents import normalise  # noqa: E402


def _clips(n=2, level="l2"):
    return held_out(n, {**level_world(level), "fps": 8, "duration": 2.0})


def test_the_wide_latent_nests_the_shipped_one():
    shipped, wide = load_vae(ROOT / "assets/default_model/vae"), load_vae(ROOT / "assets/sprite_pca_vae_z128")
    assert wide.config.z_dim == 128 and shipped.config.z_dim == 16
    assert wide.config.first_frame == shipped.config.first_frame and wide.config.first_frame_gain == shipped.config.first_frame_gain
    clip = _clips(1)[0]
    video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        a = normalise(shipped.encode(video).latent_dist.mode(), shipped.config)
        b = normalise(wide.encode(video).latent_dist.mode(), wide.config)
    assert b.shape[1] == 128 and b.shape[2:] == a.shape[2:]
    assert torch.allclose(a, b[:, :16], atol=1e-4)  # every latent frame, the lone first one included
    assert float(b[:, 16:].abs().mean()) > 0.05  # and the new channels carry something


def test_the_ceiling_of_a_wider_latent_is_closer_to_the_truth(capsys):
    clips = _clips(2)
    narrow, wide = load_vae(ROOT / "assets/sprite_pca_vae"), load_vae(ROOT / "assets/sprite_pca_vae_z128")
    errs = []
    for vae in (narrow, wide):
        video = torch.from_numpy(clips[0].frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            rec = vae.decode(vae.encode(video).latent_dist.mode()).sample.clamp(-1, 1)
        errs.append(float((rec - video).abs().mean()))
    assert errs[1] < 0.8 * errs[0]
    row = ceiling_of(str(ROOT / "assets/sprite_pca_vae_z128"), clips)
    assert set(row) == {"action_accuracy", "identity_fidelity", "binding_accuracy", "timing_error_frames"}
    assert 0.0 <= row["identity_fidelity"] <= 1.0 and row["timing_error_frames"] >= 0.0
    path = str(ROOT / "assets/sprite_pca_vae_z128")
    assert main([path, "--levels", "l2c", "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert "| the clips themselves |" in out and f"| {path} | 128 |" in out
    assert np.isfinite([float(x) for x in out.strip().splitlines()[-1].split("|")[3].split("/")]).all()
