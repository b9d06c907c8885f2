"""benchmarks/bench_wan_scale.py at tiny dimensions: the slice machinery computes the real block, the table adds up.

No timing assertions: only that every timed row is a positive time and the ratios are computed from them."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_wan_scale as B  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return B.measure(B.TINY, torch.float32, repeats=1, validate=True, validate_repeats=1, small_repeats=1)


def test_rows_are_positive_times_and_the_ratio_comes_from_them(result):
    assert result["video_tokens"] == 48 and result["reference_tokens"] == 8 and result["timeline_tokens"] == 24
    assert [r["component"] for r in result["blocks"]] == list(B.BLOCKS)
    assert [r["component"] for r in result["additions"]] == list(B.ADDITIONS)
    for r in result["blocks"]:
        assert r["ms"] > 0 and r["slice_ms"] > 0 and r["small_slice_ms"] > 0, r
    for key, n in (("additions", len(B.ADDITIONS)), ("components", 6), ("outside", 4)):
        assert len(result[key]) == n and all(r["ms"] > 0 for r in result[key]), key
    assert result["reference_branch_s"] > 0 and result["reference_branch_pool2_s"] > 0
    # TINY's slice is the whole sequence (no extrapolation), one round: the medians are the measured times
    L, M, steps = B.TINY.layers, B.TINY.mask_blocks, B.TINY.steps
    W = next(r["ms"] for r in result["blocks"] if r["component"] == "Wan block") / 1000
    add = {r["component"]: r["ms"] / 1000 for r in result["additions"]}
    out = {r["component"]: r["ms"] / 1000 for r in result["outside"]}
    assert [v["variant"] for v in result["per_step_variants"]] == list(B.STEPS)
    for ps in result["per_step_variants"]:
        _, ac, acm, au, aum, pool = B.STEPS[ps["variant"]]
        amort = result["reference_branch_s" if pool == 1 else "reference_branch_pool2_s"] / steps
        wan = 2 * L * W + sum(v for k, v in out.items() if ", Wan," in k)
        rid = 2 * L * W + (L - M) * (add[ac] + add[au]) + M * (add[acm] + add[aum]) + sum(v for k, v in out.items() if ", ReactID," in k) + amort
        assert ps["wan_s"] == pytest.approx(wan) and ps["reactid_s"] == pytest.approx(rid)
        assert ps["ratio"] == pytest.approx(rid / wan) and ps["rounds"] == [pytest.approx(rid / wan)]
    assert result["per_step"]["variant"] == list(B.STEPS)[1]  # the default model
    b = {r["component"]: r["ms"] / 1000 for r in result["blocks"]}
    wb = result["whole_blocks_per_step"]
    rid = ((L - M) * (b["ReactID block, conditional pass"] + b["ReactID block, negative pass"])
           + M * (b["ReactID mask block, conditional pass"] + b["ReactID mask block, negative pass"])
           + sum(v for k, v in out.items() if ", ReactID," in k) + result["reference_branch_s"] / steps)
    assert wb["reactid_s"] == pytest.approx(rid) and wb["ratio"] == pytest.approx(rid / wb["wan_s"])
    assert "**" in B.table(result)


def test_a_slice_against_the_full_keys_computes_the_full_blocks_rows(result):
    """The timed slice is the real computation: its output equals the unmodified full forward's rows."""
    assert len(result["validation"]) == 3
    for v in result["validation"]:
        assert v["slice_output_rel_err"] < 1e-5, v
        assert v["measured_ms"] > 0


def test_the_additions_are_what_a_reactid_block_adds_to_a_wan_block():
    """ReactID block forward = Wan block forward with `_inject` applied after the prompt cross-attention."""
    base, model = B.build_models(B.TINY)
    c, _ = B.make_context(B.TINY, model, torch.float32)
    blk, wan = model.blocks[-1], base.blocks[0]
    wan.load_state_dict({k: v for k, v in blk.state_dict().items() if k in wan.state_dict()})
    ref = B._ref_args(model, c.ref, len(model.blocks) - 1)
    with torch.no_grad():
        got, _ = blk(c.hidden, c.ctx_c, c.tproj, c.rot, ref, c.tl_c)
        calls = []
        blk_inject = blk._inject
        blk._inject = lambda h, q, r, t: calls.append(1) or (h, None)  # no additions: exactly Wan's block
        plain, _ = blk(c.hidden, c.ctx_c, c.tproj, c.rot, ref, c.tl_c)
        blk._inject = blk_inject
        assert calls and torch.allclose(plain, wan(c.hidden, c.ctx_c, c.tproj, c.rot), atol=1e-5)
    assert (got - plain).abs().max() > 1e-4


def test_extrapolation_is_the_line_through_the_two_slices():
    assert B._extrapolate(3.0, 1.0, 10, 2, 10) == pytest.approx(3.0)
    assert B._extrapolate(3.0, 1.0, 10, 2, 42) == pytest.approx(1.0 + 2.0 * 40 / 8)


def test_the_shared_projection_variant_projects_the_summed_attention_outputs_once():
    """With ref_out = timeline_out and no biases, one projection of the sum equals the two projections' sum."""
    _, model = B.build_models(B.TINY)
    c, _ = B.make_context(B.TINY, model, torch.float32)
    blk = model.blocks[-1]
    with torch.no_grad():
        blk.timeline_out.load_state_dict(blk.ref_out.state_dict())
        blk.ref_out.bias.zero_(), blk.timeline_out.bias.zero_()
        q = B._queries(blk, c.hidden)
        ref = B._ref_args(model, c.ref, len(model.blocks) - 1)
        for tl in (c.tl_c, c.tl_u):
            want, want_logits = blk._inject(c.hidden, q, ref, tl)
            got, logits = B.shared_projection_inject(blk, c.hidden, q, ref, tl)
            assert torch.allclose(got, want, atol=1e-5) and torch.equal(logits, want_logits)


def test_the_shipped_variant_runs_the_shipped_timeline_options():
    _, shipped = B.build_models(B.TINY, **B.SHIPPED_TIMELINE)
    assert all(shipped.config[k] == v for k, v in B.SHIPPED_TIMELINE.items())
    c, _ = B.make_context(B.TINY, shipped, torch.float32)
    tl_c, tl_u = B.timeline_inputs(shipped, c, B.TINY.grid)
    assert tl_c[2].ndim == 5 and tl_c[8] is not None  # one query clock per subject; identity-tagged keys (values apart)
    assert not tl_u[1].any()  # the negative pass: captions dropped


def test_checks_report_the_validation_ratios_and_the_in_situ_difference():
    res = B.checks(B.TINY, torch.float32, validate_repeats=1, insitu_rounds=1, log=lambda *_: None)
    wan, *rid = res["validation"]
    assert "ratio_measured" not in wan and all(r["ratio_measured"] > 0 and r["ratio_predicted"] > 0 for r in rid)
    med = res["insitu"]["median_s"]
    assert all(v > 0 for k, v in med.items() if "−" not in k) and len(res["insitu"]["per_round_s"]["Wan block"]) == 1
    assert "in-situ check" in B.checks_table(res)
