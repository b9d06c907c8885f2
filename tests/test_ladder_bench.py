"""benchmarks/ladder.py's oracle binding masks: the truth's per-token subject shares, made as training's cache makes
them, and the start-only variant that holds the first frame's layout in every frame; a later block of held-out scenes."""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ladder import HELD_OUT_SEED, held_out, level_world, true_token_masks  # noqa: E402

from model.timeline import num_latent_frames  # noqa: E402
from train.prepare import token_masks  # noqa: E402
from train.sprites import WorldConfig, generate_clip  # noqa: E402


def _clip():
    world = WorldConfig.from_kwargs(duration=2.0, fps=8, min_subjects=2, max_subjects=2, min_actions=1, max_actions=1,
                                    actions=["move_right"], placement="canonical", textures=["solid"], background_styles=["flat"])
    return generate_clip(5, world)


def test_oracle_masks_are_the_truths_token_shares_in_the_transformers_order():
    clip = _clip()
    pipe = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(patch_size=(1, 1, 1))), vae_scale_spatial=8)
    n_lat = num_latent_frames(clip.frames.shape[0])
    m = true_token_masks(pipe, clip)
    assert m.shape == (2, n_lat * 8 * 8)
    assert torch.equal(m, token_masks(clip.masks, n_lat, (8, 8)))
    assert 0.0 <= float(m.min()) and float(m.max()) <= 1.0 and bool((m.sum(1) > 1.0).all())
    # subject 0 moves right: its mask's centre of mass moves right from the first to the last latent frame
    grid = m[0].reshape(n_lat, 8, 8)
    cols = torch.arange(8.0)
    centre = [(grid[f].sum(0) * cols).sum() / grid[f].sum() for f in (0, n_lat - 1)]
    assert centre[1] > centre[0] + 0.5


def test_start_only_oracle_holds_the_first_frame_everywhere():
    clip = _clip()
    pipe = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(patch_size=(1, 2, 2))), vae_scale_spatial=8)
    n_lat = num_latent_frames(clip.frames.shape[0])
    m = true_token_masks(pipe, clip, start_only=True).reshape(2, n_lat, 4, 4)
    assert all(torch.equal(m[:, f], m[:, 0]) for f in range(n_lat))
    first = token_masks(clip.masks[:, :1], 1, (4, 4))
    assert torch.equal(m[:, 0].reshape(2, -1), first)


def test_a_later_block_of_held_out_scenes_continues_the_first():
    world = {"duration": 1.0, "fps": 8, "max_subjects": 2, "max_actions": 1, "placement": "canonical"}
    first, later = held_out(4, world), held_out(2, world, first=2)
    assert [c.timeline.prompt for c in later] == [c.timeline.prompt for c in first[2:]]  # scene k is seed HELD_OUT_SEED + k
    assert (later[0].frames == first[2].frames).all() and not (later[0].frames == first[0].frames).all()
    from train.config import load_config

    # the scenes are held out from the runs that trained the default (L2v, a warm start from a run directory, draws
    # L2u's clips: its config loads only where that directory exists)
    for preset in ("ladder_l2c", "ladder_l2u"):
        d = load_config(preset).data
        assert d.seed + d.num_clips <= HELD_OUT_SEED, preset


def test_the_learning_rate_sweep_differs_in_the_rate_alone():
    """The sweep (ladder_l2lr15/3/6) continues the shipped default on L2v's clips, held out from the benchmark's scenes,
    at three rates: any other difference would confound what scripts/device_long_run.sh compares side by side."""
    from train.config import load_config

    sweep = {p: load_config(p) for p in ("ladder_l2lr15", "ladder_l2lr3", "ladder_l2lr6")}
    assert [c.optim.lr for c in sweep.values()] == [1.5e-4, 3e-4, 6e-4]

    def rest(cfg):
        d = cfg.to_dict()
        d["optim"].pop("lr"), d.pop("output_dir")
        return d

    assert rest(sweep["ladder_l2lr15"]) == rest(sweep["ladder_l2lr3"]) == rest(sweep["ladder_l2lr6"])
    cfg = sweep["ladder_l2lr3"]
    assert cfg.model.init_from == "assets/default_model" and cfg.data == load_config("ladder_l2u").data
    assert cfg.optim.batch_size == 64 and cfg.data.seed + cfg.data.num_clips <= HELD_OUT_SEED


def test_levels_two_and_three_are_scored_worlds_even_without_their_warm_start():
    from ladder import level_world

    l2, l3 = level_world("l2"), level_world("l3")  # ladder_l2's warm start (runs/ladder_l1) is not on disk
    assert l2["max_actions"] == 3 and "gradient" in l2["background_styles"]
    assert {"spin", "grow", "shrink"} <= set(l3["actions"]) and "noise" in l3["background_styles"]
    assert set(l3["textures"]) == {"solid", "stripes", "dots", "checker"} and l3["fps"] == 8


def test_inter_clip_references_condition_the_generation_and_identity_is_split_by_shape():
    from ladder import level_world, score

    world = {**level_world("l3"), "duration": 1.0, "min_subjects": 2, "max_subjects": 2}
    clips = held_out(1, world)
    rows = {refs: score(str(ROOT / "assets/default_model"), clips, steps=2, guidance=3.0, layout="paths", references=refs)
            for refs in ("intra", "inter")}
    shapes = sorted({i.shape for i in clips[0].identities})
    for row in rows.values():
        assert sorted(row["identity_by_shape"]) == shapes and sum(n for _, n in row["identity_by_shape"].values()) == 2
        assert 0.0 <= row["identity_fidelity"] <= 1.0
    # the same seed with the other references draws another clip
    assert rows["intra"]["per_scene"] != rows["inter"]["per_scene"] or rows["intra"]["area_wobble"] != rows["inter"]["area_wobble"]


def test_a_redraw_of_the_truth_from_low_noise_keeps_the_truths_places_and_shapes():
    """--init-strength: the held-out clip itself, noised to the level of the schedule's last share, is redrawn
    (where the model loses what the truth had); from the last step's level nearly nothing is lost."""
    from ladder import level_world, score

    clips = held_out(2, {**level_world("l2c"), "duration": 2.0})
    low = score(str(ROOT / "assets/default_model"), clips, steps=10, guidance=3.0, layout="paths", init_strength=0.1)
    full = score(str(ROOT / "assets/default_model"), clips, steps=10, guidance=3.0, layout="paths")
    assert low["found"] == 1.0 and low["identity_fidelity"] >= full["identity_fidelity"]
    assert low["start_px"] < 1.0  # the truth's own places, to a pixel
    assert low["per_scene"] != full["per_scene"] or low["start_px"] != full["start_px"]


def test_the_memorisation_probe_trains_on_the_benchmarks_first_held_out_scenes():
    """train/presets/probe_memorise.yaml must train on exactly ladder.py's scenes 0-23 in level 2c's world and start
    from the shipped default, or `ladder.py --first 0` no longer scores what the probe memorised."""
    from train.config import load_config
    from train.prepare import sprite_clips

    cfg = load_config("probe_memorise", {"data": {"num_clips": 2}})
    assert cfg.data.seed == HELD_OUT_SEED and load_config("probe_memorise").data.num_clips == 24
    assert cfg.model.init_from == "assets/default_model"
    ours, theirs = sprite_clips(cfg), held_out(2, level_world("l2c"))
    for a, b in zip(ours, theirs):
        assert a.timeline.to_dict() == b.timeline.to_dict()
        assert (a.frames == b.frames).all()
