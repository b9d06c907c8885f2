"""Training on a borrowed GPU: the cache built by several processes, a cache-only stage, and a wall-clock budget
that shortens the schedule so the learning rate still decays to its end (real subprocesses)."""

import json

import pytest
import torch

from train.config import load_config
from train.prepare import build_cache
from model.framevae import load_vae

from test_train import TINY, run_train


def test_a_cache_built_by_several_processes_is_the_one_process_cache():
    cfg = load_config("ladder_l2c", {"data": {"num_clips": 7}})  # the shipped world and its VAE
    vae = load_vae(cfg.vae.checkpoint)
    one = build_cache(cfg, vae)
    cfg.data.prepare_workers = 3
    many = build_cache(cfg, vae)
    for key in ("timelines", "prompts", "names", "num_subjects"):
        assert many[key] == one[key], key
    # the same clips in the same order; the latents differ only by float rounding (one thread against several)
    torch.testing.assert_close(many["latents"], one["latents"], atol=2e-3, rtol=0)
    for key in ("ref_intra", "ref_inter", "masks"):
        for a, b in zip(many[key], one[key], strict=True):
            torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
    assert many["difficulty_intra"] == pytest.approx(one["difficulty_intra"], abs=1e-3)
    assert sorted(many["text"]) == sorted(one["text"])
    assert len(set(one["prompts"])) > 1  # seven different scenes, not one repeated


def test_prepare_only_builds_the_cache_and_trains_nothing(tmp_path):
    out = tmp_path / "prep"
    res = run_train(TINY, out, "--prepare-only")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "cache.pt").is_file() and not (out / "checkpoint.pt").exists()
    events = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "prepared" and e["clips"] == TINY["data"]["num_clips"] for e in events)
    assert not any("loss" in e for e in events)


def test_a_time_budget_ends_the_schedule_in_time_with_the_rate_decayed(tmp_path):
    out = tmp_path / "budget"
    cfg = {**TINY, "optim": {**TINY["optim"], "steps": 100_000, "log_every": 1, "checkpoint_every": 1000,
                             "time_budget_s": 6.0, "time_budget_calibration_steps": 4}}
    res = run_train(cfg, out)
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    fitted = [r for r in records if r.get("event") == "time_budget"]
    assert len(fitted) == 1
    total = fitted[0]["total_steps"]
    assert fitted[0]["step"] == 5 and 5 < total < 100_000  # measured after the untimed first step and 4 timed ones
    steps = [r for r in records if "loss" in r]
    assert steps[-1]["step"] == total  # the run ended where the fitted schedule ends ...
    assert steps[-1]["lr"] == pytest.approx(0.1 * TINY["optim"]["lr"], rel=1e-3)  # ... with the cosine decayed to its floor
    assert any(r["lr"] > 0.5 * TINY["optim"]["lr"] for r in steps)
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == total and state["total_steps"] == total
    # a resumed run keeps the fitted schedule: nothing is left to train
    cfg_vae = {**cfg, "vae": {**cfg["vae"], "checkpoint": str(out / "vae")}}
    again = run_train(cfg_vae, out, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    after = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert not [r for r in after[len(records):] if "loss" in r]


def test_a_resumed_run_keeps_the_schedule_its_budget_fitted(tmp_path):
    out = tmp_path / "budget_resume"
    cfg = {**TINY, "optim": {**TINY["optim"], "steps": 100_000, "log_every": 1, "checkpoint_every": 1000,
                             "time_budget_s": 20.0, "time_budget_calibration_steps": 3}}
    first = run_train(cfg, out, "--max-steps", "8")  # stops (and saves) at step 8, after the fit at step 4
    assert first.returncode == 0, first.stderr[-2000:]
    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    fitted = [r for r in records if r.get("event") == "time_budget"]
    assert len(fitted) == 1 and fitted[0]["total_steps"] > 8
    cfg_vae = {**cfg, "vae": {**cfg["vae"], "checkpoint": str(out / "vae")}}
    again = run_train(cfg_vae, out, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    after = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()][len(records):]
    assert not [r for r in after if r.get("event") == "time_budget"]  # not measured again
    assert [r for r in after if "loss" in r][-1]["step"] == fitted[0]["total_steps"]


def test_references_are_encoded_at_data_reference_size_and_the_export_says_so(tmp_path):
    """data.reference_size: the side the references are resized to before the VAE (0: the frame's); the cache's
    reference latents and the exported pipeline's reference_size follow it, so generation encodes them alike."""
    cfg = load_config("ladder_l2c", {"data": {"num_clips": 2}})
    vae = load_vae(cfg.vae.checkpoint)
    frame = build_cache(cfg, vae)
    cfg.data.reference_size = 32
    half = build_cache(cfg, vae)
    assert frame["ref_intra"][0].shape[-2:] == (8, 8) and half["ref_intra"][0].shape[-2:] == (4, 4)
    assert half["ref_inter"][0].shape[-2:] == (4, 4) and torch.equal(half["latents"], frame["latents"])

    from model.pipeline import ReactIDPipeline

    out = tmp_path / "refs16"
    res = run_train({**TINY, "data": {**TINY["data"], "reference_size": 16}, "optim": {**TINY["optim"], "steps": 2}}, out,
                    "--export", str(out / "export"))
    assert res.returncode == 0, res.stderr[-2000:]
    pipe = ReactIDPipeline.from_pretrained(out / "export")
    assert pipe.config.reference_size == 16 and pipe._reference_size(32, 32) == 16
    # a cache built at another reference size (the GPU script links one cache into every run) is refused, named
    other = tmp_path / "frame_refs"
    other.mkdir()
    (other / "cache.pt").symlink_to(out / "cache.pt")
    res = run_train({**TINY, "optim": {**TINY["optim"], "steps": 2}}, other)
    assert res.returncode == 2 and "cache error" in res.stderr and "encoded at 16 px" in res.stderr and "32 px" in res.stderr
    assert not (other / "checkpoint.pt").exists()
