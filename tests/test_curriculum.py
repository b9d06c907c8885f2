"""The curriculum: 4:2:1:1 phases, quartile thresholds, eligibility, inter ratios, exact resume."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.curriculum import Curriculum, CurriculumConfig, CurriculumConfigError, phase_boundaries, schedule_figure


def _scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    intra = 0.45 + 0.1 * rng.random(n)
    inter = intra + 1.0 + 0.4 * rng.random(n)  # D_sam = 1 plus a harder D_app
    return intra, inter


def test_phase_boundaries_are_4_2_1_1():
    assert phase_boundaries(10000, (4, 2, 1, 1)) == [0, 5000, 7500, 8750, 10000]
    assert phase_boundaries(8, (4, 2, 1, 1)) == [0, 4, 6, 7, 8]
    cur = Curriculum(*_scores(), total_steps=10000)
    assert [cur.phase_at(s) for s in (0, 4999, 5000, 7499, 7500, 8749, 8750, 9999, 12000)] == [0, 0, 1, 1, 2, 2, 3, 3, 3]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10**6), st.lists(st.floats(0.1, 10), min_size=1, max_size=6))
def test_phase_boundaries_are_proportional(total, ratios):
    b = phase_boundaries(total, ratios)
    assert b[0] == 0 and b[-1] == total and all(x <= y for x, y in zip(b, b[1:]))
    lengths = np.diff(b)
    ideal = total * np.asarray(ratios) / sum(ratios)
    assert np.all(np.abs(lengths - ideal) <= 1.0 + 1e-9)


def test_thresholds_are_quartiles_and_step_up():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=800)
    pooled = np.concatenate([intra, inter])
    assert cur.thresholds == pytest.approx([np.quantile(pooled, q) for q in (0.25, 0.5, 0.75, 1.0)])
    assert all(a <= b for a, b in zip(cur.thresholds, cur.thresholds[1:]))
    assert cur.eligible_counts == [int((pooled <= t).sum()) for t in cur.thresholds]
    assert cur.eligible_counts[-1] == pooled.size
    # fixed between phase changes
    assert len({cur.threshold_at(s) for s in range(0, 400)}) == 1 and cur.threshold_at(400) > cur.threshold_at(399)


def test_only_eligible_samples_are_drawn():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=800, batch_size=8)
    for step in range(0, 800, 3):
        tau = cur.threshold_at(step)
        for idx, use_inter in cur.sample(step):
            assert (inter if use_inter else intra)[idx] <= tau + 1e-12


def test_inter_ratio_per_phase():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=8000, batch_size=4)
    frac = []
    for p in range(4):
        lo, hi = cur.boundaries[p], cur.boundaries[p + 1]
        draws = [u for s in range(lo, hi) for _, u in cur.sample(s)]
        frac.append(np.mean(draws))
    assert frac[0] == 0 and frac[1] == 0
    assert abs(frac[2] - 0.11) < 0.03 and abs(frac[3] - 0.33) < 0.04
    desc = cur.schedule_description()
    assert [p["effective_inter_ratio"] for p in desc["phases"]] == [0.0, 0.0, 0.11, 0.33]


def test_paper_thresholds_can_be_given():
    intra, inter = _scores()
    cfg = CurriculumConfig(total_steps=10000, thresholds=(0.53, 0.67, 1.44, 1.84))
    cur = Curriculum(intra, inter, cfg)
    assert [cur.threshold_at(s) for s in (0, 5000, 7500, 8750)] == [0.53, 0.67, 1.44, 1.84]


def test_sampler_is_a_pure_function_of_seed_and_step():
    intra, inter = _scores()
    cfg = dict(total_steps=300, batch_size=5, seed=7)
    run = [b for _, b in Curriculum(intra, inter, **cfg).iterate()]
    # simulate a crash at step 137: a fresh process, fresh object, resume from the saved state
    first = Curriculum(intra, inter, **cfg)
    state = json.loads(json.dumps(first.state_dict(137)))
    resumed = Curriculum(intra, inter, **cfg)
    start = resumed.resume_step(state)
    assert start == 137
    assert [b for _, b in resumed.iterate(start)] == run[137:]
    assert list(resumed.batch_sampler(start)) == run[137:]
    assert [b for _, b in Curriculum(intra, inter, **dict(cfg, seed=8)).iterate()] != run
    other = Curriculum(intra[::-1], inter[::-1], **cfg)
    with pytest.raises(ValueError, match="fingerprint"):
        other.resume_step(state)


def test_no_curriculum_ablation():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=800, mode="none", batch_size=16)
    assert cur.eligible_counts == [400] * 4
    flat = (0.11 * 100 + 0.33 * 100) / 800  # step-weighted mean of (0, 0, 0.11, 0.33)
    assert cur.inter_ratios == pytest.approx([flat] * 4)
    seen = {(i, u) for s in range(0, 100) for i, u in cur.sample(s)}
    assert any(u for _, u in seen)  # inter references from step 0
    assert max(inter[i] if u else intra[i] for i, u in seen) > np.quantile(np.concatenate([intra, inter]), 0.75)
    fixed = Curriculum(intra, inter, total_steps=800, mode="none", flat_inter_ratio=0.5)
    assert fixed.inter_ratio_at(0) == fixed.inter_ratio_at(799) == 0.5


def test_random_expansion_keeps_pool_sizes_not_order():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=800)
    rnd = Curriculum(intra, inter, total_steps=800, mode="random")
    assert rnd.eligible_counts == cur.eligible_counts
    def pool(c):
        intra_ids, inter_ids = c.eligible(0)
        return {(i, False) for i in intra_ids.tolist()} | {(i, True) for i in inter_ids.tolist()}

    assert pool(rnd) != pool(cur)
    assert len(rnd.eligible(0)[1]) > 0  # without guidance hard inter candidates arrive early


def test_missing_inter_references_fall_back_to_intra():
    intra, _ = _scores(50)
    cur = Curriculum(intra, None, total_steps=40, inter_ratios=(0.5, 0.5, 0.5, 0.5), batch_size=4)
    assert not any(u for s in range(40) for _, u in cur.sample(s))
    assert all(p["effective_inter_ratio"] == 0.0 for p in cur.schedule_description()["phases"])


@pytest.mark.parametrize("settings_, key", [
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=10, phase_ratios=(4, 2, -1, 1)), "phase_ratios"),
    (dict(total_steps=10, inter_ratios=(0, 0, 0.1)), "inter_ratios"),
    (dict(total_steps=10, inter_ratios=(0, 0, 1.5, 0)), "inter_ratios"),
    (dict(total_steps=10, thresholds=(0.5, 0.4, 1.0, 2.0)), "thresholds"),
    (dict(total_steps=10, quantiles=(0.5, 0.25, 0.75, 1.0)), "quantiles"),
    (dict(total_steps=10, mode="sometimes"), "mode"),
    (dict(total_steps=10, batch_size=0), "batch_size"),
    (dict(total_steps=10, flat_inter_ratio=2.0), "flat_inter_ratio"),
])
def test_config_errors_name_the_key(settings_, key):
    with pytest.raises(CurriculumConfigError) as err:
        CurriculumConfig(**settings_).validate()
    assert err.value.key == key and str(err.value).startswith(key + ":")


def test_config_from_dict_and_score_errors():
    with pytest.raises(CurriculumConfigError, match="^phases:"):
        CurriculumConfig.from_dict({"total_steps": 10, "phases": 4})
    with pytest.raises(CurriculumConfigError, match="^total_steps:"):
        CurriculumConfig.from_dict({})
    assert CurriculumConfig.from_dict({"total_steps": 10, "inter_ratios": [0, 0, 0, 0]}).inter_ratios == (0, 0, 0, 0)
    with pytest.raises(CurriculumConfigError, match="^scores_intra:"):
        Curriculum([0.5, float("nan")], total_steps=10)
    with pytest.raises(CurriculumConfigError, match="^thresholds:.*admits no sample"):
        Curriculum([0.5, 0.6], total_steps=10, thresholds=(0.1, 0.7, 0.7, 0.7))
    with pytest.raises(CurriculumConfigError, match="^difficulty:"):
        Curriculum.from_records([{"id": "a", "difficulty": None}], CurriculumConfig(total_steps=5))


def test_schedule_description_and_figure():
    intra, inter = _scores()
    cur = Curriculum(intra, inter, total_steps=1000)
    desc = cur.schedule_description()
    json.dumps(desc, allow_nan=False)  # plot-ready and JSON-safe
    assert desc["boundaries"] == [0, 500, 750, 875, 1000]
    assert [p["eligible"] for p in desc["phases"]] == cur.eligible_counts
    assert sum(desc["score_histogram"]["intra"]) == 200 and sum(desc["score_histogram"]["inter"]) == 200
    fig = schedule_figure(desc)
    names = [t.name for t in fig.data]
    assert "threshold τ" in names and "inter-clip ratio" in names
    tau = next(t for t in fig.data if t.name == "threshold τ")
    assert list(tau.x) == [0, 500, 500, 750, 750, 875, 875, 1000] and list(tau.y)[::2] == pytest.approx(cur.thresholds)
