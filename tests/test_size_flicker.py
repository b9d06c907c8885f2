"""benchmarks/size_flicker.py: steps grouped by their place in a latent frame, size misreads, and the three sources
(generated, through the VAE, truth) measured on a real clip of the default's world."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sprite import vae_round_trip  # noqa: E402
from size_flicker import SOURCES, compare_sources, size_misreads, steps_by_place  # noqa: E402

from train.sprite_eval import AREA_LOG, Track  # noqa: E402


def track_with_areas(area):
    F = len(area)
    return Track(found=np.ones(F, bool), x=np.zeros(F), y=np.zeros(F), area=np.asarray(area, float), change=np.zeros(F - 1),
                 shape_iou=np.ones(F), mask=np.zeros((F, 2, 2), bool))


def test_a_jump_at_each_latent_frame_start_lands_in_place_zero_only():
    # 13 frames: latent frames 1, 2, 3 hold video frames 1-4, 5-8, 9-12; the area doubles on entering frames 5 and 9
    area = [100.0] * 5 + [200.0] * 4 + [400.0] * 4
    by = steps_by_place(track_with_areas(area))
    assert set(by) == {0, 1, 2, 3}
    assert np.allclose(by[0], [np.log(2), np.log(2)])  # into frames 5 and 9 (frame 1's step is left out: area_steps skips frame 0)
    assert all(np.allclose(by[p], 0.0) for p in (1, 2, 3))


def test_only_size_keeping_scored_actions_count_and_the_threshold_is_the_classifier_s():
    acts = [{"scored": True, "commanded": "move_left", "log_area": AREA_LOG + 0.01},
            {"scored": True, "commanded": "jump", "log_area": -(AREA_LOG - 0.01)},
            {"scored": True, "commanded": "grow", "log_area": 1.0},  # a size change is what grow should show
            {"scored": False, "commanded": "move_up", "log_area": 1.0},
            {"scored": True, "commanded": "stay", "log_area": None}]  # not found at the span's ends
    assert size_misreads(SimpleNamespace(actions=acts)) == [True, False]


def test_the_truth_is_steadier_than_its_vae_round_trip_on_a_real_clip():
    from model.framevae import load_vae
    from train.sprites import WorldConfig, generate_clip

    export = ROOT / "assets/default_model"
    world = WorldConfig.from_kwargs(**json.loads((export / "sprite_world.json").read_text()))
    clip = generate_clip(900_003, world)
    rec = vae_round_trip(load_vae(str(export)), clip.frames)
    assert rec.shape == clip.frames.shape and rec.dtype == np.uint8
    totals = {}
    refs = [r[0] for r in clip.references_intra]
    tracked = compare_sources({"through the VAE": rec, "truth": clip.frames}, clip, refs, totals)
    assert set(tracked) == {"through the VAE", "truth"} and len(tracked["truth"]) == len(clip.timeline.subjects)
    assert set(totals) == {"through the VAE", "truth"} and set(SOURCES) >= set(totals)
    n = len(clip.timeline.subjects)
    assert len(totals["truth"]["wobble"]) == n and len(totals["truth"]["misread"]) >= 1
    assert np.mean(totals["truth"]["wobble"]) < 0.01 < np.mean(totals["through the VAE"]["wobble"])
    assert sum(len(v) for v in totals["truth"]["by_place"].values()) > 0
