"""The training engine with real subprocesses: config errors, exact resume after kill -9, mismatched checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from train.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "seed": 3, "height": 32, "width": 32,
    "data": {"source": "sprites", "num_clips": 8, "seed": 7, "world": {"duration": 1.0, "max_subjects": 2, "max_actions": 2, "ref_size": 16}},
    "vae": {"z_dim": 4, "base_dim": 8, "steps": 2, "batch_size": 2},
    "text": {"d_model": 16, "layers": 1, "heads": 2, "max_length": 16},
    "model": {"heads": 2, "head_dim": 16, "layers": 2, "ffn_dim": 32, "reactid": {"mask_blocks": 2}},
    "optim": {"steps": 6, "batch_size": 2, "lr": 0.001, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 3, "binding_masks": "predicted"},
}


def run_train(cfg: dict, out: Path, *extra, wait=True):
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_dir": str(out)}))
    cmd = [sys.executable, "-m", "train", "--config", str(path), "--threads", "1", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def losses(log: Path) -> dict[int, float]:
    out = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]  # a replayed step overwrites the killed run's line
    return out


@pytest.mark.parametrize(
    "override, key",
    [
        ({"optim": {"steps": 0}}, "optim.steps"),
        ({"optim": {"stepz": 3}}, "optim.stepz: unknown key"),
        ({"curriculum": {"phase_ratios": [4, 2, 1]}}, "curriculum.phase_ratios"),
        ({"curriculum": {"inter_ratios": [0, 0, 2, 0.3]}}, "curriculum.inter_ratios"),
        ({"data": {"source": "dir", "path": "/nonexistent/data"}}, "data.path: dataset directory not found"),
        ({"height": 40}, "height: must be a multiple of 16"),
        ({"model": {"reactid": {"warp_speed": 1}}}, "model.reactid.warp_speed"),
        ({"optim": {"mixed_precision": "fp8"}}, "optim.mixed_precision"),
        ({"curriculum": {"mode": "sometimes"}}, "curriculum.mode"),
        ({"optim": {"fg_loss_weight": -1}}, "optim.fg_loss_weight"),
        ({"model": {"init_from": "/nonexistent/pipeline"}}, "model.init_from: directory not found"),
        ({"optim": {"binding_masks": "oracle"}}, "optim.binding_masks"),
        ({"optim": {"binding_none_prob": 1.5}}, "optim.binding_none_prob"),
        ({"vae": {"arch": "unet"}}, "vae.arch"),
        ({"data": {"prepare_workers": 0}}, "data.prepare_workers"),
        ({"data": {"reference_size": 20}}, "data.reference_size: must be 0 (the frame's shorter side) or a multiple of 16"),
        ({"optim": {"time_budget_s": -5}}, "optim.time_budget_s"),
    ],
)
def test_bad_configs_fail_naming_the_key(override, key):
    from train.config import _merge

    with pytest.raises(ConfigError) as exc:
        load_config(_merge(TINY, override))
    assert str(exc.value).startswith(key.split(":")[0]) and key in str(exc.value)


def test_cli_refuses_a_bad_config_before_training(tmp_path):
    res = run_train({**TINY, "optim": {**TINY["optim"], "steps": 0}}, tmp_path / "bad")
    assert res.returncode == 2 and "config error: optim.steps" in res.stderr
    assert not (tmp_path / "bad" / "log.jsonl").exists()


def test_presets_load():
    assert load_config("sprite").model.reactid["temporal_mode"] == "ta_rope"
    wan = load_config({**yaml.safe_load((ROOT / "train/presets/wan1.3b_8gpu.yaml").read_text()), "data": {"source": "sprites"}, "vae": {}, "text": {}, "model": {"reactid": {}}})
    assert wan.optim.lr == 1e-5 and wan.optim.warmup_steps == 500 and wan.optim.steps == 10000


def test_a_config_can_start_from_a_base(tmp_path):
    # The ladder presets are written as differences: level 2e is level 2d plus one key.
    l2e = load_config("ladder_l2e")
    assert l2e.model.reactid["absolute_position_grid"] == [8, 8] and l2e.output_dir == "runs/ladder_l2e"
    assert l2e.vae.checkpoint == "assets/sprite_pca_vae" and l2e.optim.lr == 0.0005  # from ladder_l2d
    assert l2e.data.world["placement"] == "canonical" and l2e.data.world["max_subjects"] == 2  # l2c's world, l2d's cap
    # a file's base may be a path beside it; mappings merge key by key, lists are replaced
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "world": {"actions": ["stay", "jump"], "max_subjects": 2}}}))
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ndata: {world: {actions: [stay]}}\noptim: {steps: 7}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.data.world == {"actions": ["stay"], "max_subjects": 2} and cfg.optim.steps == 7
    assert cfg.optim.batch_size == TINY["optim"]["batch_size"]
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="file not found: no_such_preset"):
        load_config({"base": "no_such_preset"})


def test_trainer_draws_batches_from_the_curriculum():
    from train.loop import make_curriculum, plan_step

    cfg = load_config({**TINY, "optim": {**TINY["optim"], "steps": 800, "batch_size": 64}})
    intra = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    cur = make_curriculum(cfg, intra, [x + 1 for x in intra])
    early = plan_step(cur, 10)
    assert early.phase == 0 and not early.inter.any() and max(intra[i] for i in early.indices) <= early.threshold
    late = [plan_step(cur, s) for s in range(700, 720)]
    assert all(p.phase == 3 for p in late) and 0.2 < np.mean([p.inter.mean() for p in late]) < 0.45
    assert (plan_step(cur, 10).indices == early.indices).all()  # a pure function of (seed, step)
    flat = make_curriculum(load_config({**TINY, "curriculum": {"mode": "none"}, "optim": {**TINY["optim"], "steps": 800, "batch_size": 256}}), intra, [x + 1 for x in intra])
    assert max(intra[i] for i, inter in zip(plan_step(flat, 0).indices, plan_step(flat, 0).inter) if not inter) == 0.8


def test_killed_run_resumes_with_the_same_losses(tmp_path):
    full = tmp_path / "full"
    res = run_train(TINY, full)
    assert res.returncode == 0, res.stderr[-2000:]
    want = losses(full / "log.jsonl")
    assert sorted(want) == [1, 2, 3, 4, 5, 6]
    cfg = {**TINY, "vae": {**TINY["vae"], "checkpoint": str(full / "vae")}}
    # same VAE for both runs, so only the transformer run is compared
    ref = tmp_path / "ref"
    assert run_train(cfg, ref).returncode == 0
    want = losses(ref / "log.jsonl")

    killed = tmp_path / "killed"
    proc = run_train(cfg, killed, wait=False)
    log = killed / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.exists() and any(json.loads(l).get("step", 0) >= 4 and "loss" in l for l in log.read_text().splitlines()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pt").exists()
    res = run_train(cfg, killed, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    text = log.read_text()
    assert '"event": "resumed", "step": 3' in text or '"event": "resumed", "step": 6' in text
    got = losses(log)
    for step in range(1, 7):
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-7), (step, got, want)


def test_mismatched_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    assert run_train(TINY, out).returncode == 0
    bigger = {**TINY, "vae": {**TINY["vae"], "checkpoint": str(out / "vae")}, "model": {**TINY["model"], "layers": 3}}
    res = run_train(bigger, out, "--resume")
    assert res.returncode != 0 and "checkpoint does not match the model config" in res.stderr and "num_layers" in res.stderr
