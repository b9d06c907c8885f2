"""evaluation/paired.py and benchmarks/compare_models.py: intervals over scenes, paired differences between models."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.paired import bootstrap, paired_difference, scene_record
from train.sprite_eval import SpriteScore, summarize

ROOT = Path(__file__).resolve().parents[1]


def _score(action, n_actions, binding=None, n_bindings=0, identity=(0.5,), timing=None, n_boundaries=0):
    return SpriteScore(action_accuracy=action, timing_error=timing, binding_accuracy=binding, identity_fidelity=float(np.mean(identity)),
                       n_actions=n_actions, n_boundaries=n_boundaries, n_bindings=n_bindings, identity_per_subject=list(identity))


def test_the_full_sample_value_is_the_benchmarks_pooled_value():
    scores = [_score(1.0, 3, 0.5, 2, (0.9, 0.7), 1.0, 2), _score(0.0, 1, None, 0, (0.2,), None, 0), _score(0.5, 4, 1.0, 4, (0.6, 0.4, 0.8), 3.0, 3)]
    recs = [scene_record(s) for s in scores]
    pooled = summarize(scores)
    for metric in ("action_accuracy", "timing_error_frames", "binding_accuracy", "identity_fidelity"):
        assert bootstrap(recs, metric, n_boot=50)["value"] == pytest.approx(pooled[metric])
    assert recs[1]["binding_accuracy"] == [None, 0] and recs[1]["timing_error_frames"] == [None, 0]
    json.dumps(recs)  # what ladder.py --json writes


def test_intervals_shrink_with_more_scenes_and_a_paired_difference_is_tighter_than_either_model():
    rng = np.random.default_rng(0)
    # scene difficulty varies a lot; model B gets one more action right than A in a third of the scenes
    n = 60
    diff = rng.random(n)  # the scene's difficulty: the share of its 4 actions either model gets right
    right_a = np.floor(diff * 4).astype(int)
    right_b = np.minimum(4, right_a + (np.arange(n) % 3 == 0))
    a = [scene_record(_score(r / 4, 4)) for r in right_a]
    b = [scene_record(_score(r / 4, 4)) for r in right_b]
    ia, ib = bootstrap(a, "action_accuracy"), bootstrap(b, "action_accuracy")
    d = paired_difference(a, b, "action_accuracy")
    assert ia["low"] < ia["value"] < ia["high"]
    assert d["difference"] == pytest.approx(ib["value"] - ia["value"])
    assert 0 < d["low"] <= d["difference"] <= d["high"]  # B is better on every resample that draws a boosted scene
    assert (d["high"] - d["low"]) < 0.5 * (ia["high"] - ia["low"])  # pairing removes the scenes' difficulty
    assert d["p_le_0"] < 0.01 and d["p_ge_0"] > 0.99
    small = bootstrap(a[:12], "action_accuracy")
    assert small["high"] - small["low"] > ia["high"] - ia["low"]
    same = paired_difference(a, a, "action_accuracy")
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    with pytest.raises(ValueError, match="same scenes"):
        paired_difference(a, a[:-1], "action_accuracy")


def test_compare_models_prints_intervals_and_refuses_unpaired_or_old_files(tmp_path):
    a = [scene_record(_score(i % 2, 2, identity=(0.4,))) for i in range(10)]
    b = [scene_record(_score(1.0, 2, identity=(0.6,))) for _ in range(10)]
    (tmp_path / "a.json").write_text(json.dumps({"per_scene": a}))
    (tmp_path / "b.json").write_text(json.dumps({"per_scene": b}))
    (tmp_path / "short.json").write_text(json.dumps({"per_scene": b[:5]}))
    (tmp_path / "old.json").write_text(json.dumps({"action_accuracy": 0.5}))
    run = lambda *args: subprocess.run([sys.executable, "benchmarks/compare_models.py", *args, "--boot", "200"], cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    ok = run(f"shipped={tmp_path / 'a.json'}", f"new={tmp_path / 'b.json'}")
    assert ok.returncode == 0, ok.stderr
    row = next(line for line in ok.stdout.splitlines() if line.startswith("| action_accuracy"))
    assert "0.500 (" in row and "1.000 (1.000–1.000)" in row and "+0.500" in row
    assert "new − shipped" in ok.stdout and "10 scenes" in ok.stdout
    bad = run(str(tmp_path / "a.json"), str(tmp_path / "short.json"))
    assert bad.returncode != 0 and "different numbers of scenes" in bad.stderr
    old = run(str(tmp_path / "old.json"))
    assert old.returncode != 0 and "per-scene" in old.stderr
    # blocks of scenes scored by separate runs are joined with '+', in order: two halves of b pair with a whole b
    (tmp_path / "b1.json").write_text(json.dumps({"per_scene": b[5:]}))
    joined = run(f"whole={tmp_path / 'b.json'}", f"halves={tmp_path / 'short.json'}+{tmp_path / 'b1.json'}")
    assert joined.returncode == 0 and "10 scenes" in joined.stdout and "+0.000" in joined.stdout, joined.stderr
