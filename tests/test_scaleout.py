"""Scale-out through accelerate: the launch command, the configs, and real multi-process training on CPUs.

Two CPU processes (gloo, train/accelerate/cpu_multiprocess.yaml) at batch 2 each train like one process at
batch 4: the same loss at every step and the same checkpoint format. A two-process run whose every process is
killed with SIGKILL resumes with the same data order (the same loss at every step as an uninterrupted run).
Two CPU processes with FSDP2 over gloo (train/accelerate/cpu_fsdp.yaml) train like one process too, write the
same checkpoint format, and resume from it exactly. DeepSpeed is refused before launch.
Each `accelerate launch` costs ~20-50 s on a loaded 2-core machine, mostly imports.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_train import TINY, losses
from train.launch import ACCELERATE_CONFIGS, DEEPSPEED_REFUSAL, LaunchError, LaunchOptions, accelerate_config_path, build_command, command_text, machine_problems

ROOT = Path(__file__).resolve().parents[1]
STEPS = 16


def tiny(out: Path, batch: int, **optim) -> dict:
    return {**TINY, "output_dir": str(out), "optim": {**TINY["optim"], "steps": STEPS, "batch_size": batch, "checkpoint_every": 4, **optim}}


def launch(cfg: dict, accelerate: str, processes: int | None = None, *extra: str, wait: bool = True):
    out = Path(cfg["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = build_command(path, LaunchOptions(accelerate_config=accelerate, num_processes=processes, threads=1)) + list(extra)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


# --------------------------------------------------------------------------------------------------
# The command and the configs (no processes)
# --------------------------------------------------------------------------------------------------
def test_every_accelerate_config_loads_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file

    want = {"cpu": "NO", "cpu_multiprocess": "MULTI_GPU", "single_gpu": "NO", "multi_gpu": "MULTI_GPU", "multi_node": "MULTI_GPU", "multi_node_fsdp": "FSDP",
            "cpu_fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED"}
    for name, dtype in want.items():
        c = load_config_from_file(str(accelerate_config_path(name)))
        assert str(c.distributed_type).endswith(dtype), (name, c.distributed_type)
    fsdp = load_config_from_file(str(accelerate_config_path("multi_node_fsdp")))
    assert fsdp.num_machines == 2 and fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "ReactIDBlock"
    assert set(want) == set(ACCELERATE_CONFIGS)


def test_launch_command_is_an_argument_list(tmp_path):
    cfg = tmp_path / "my run; rm -rf ~" / "train.yaml"  # a hostile path stays one argument
    argv = build_command(cfg, LaunchOptions("cpu_multiprocess", num_processes=2, threads=1), resume=True)
    assert argv[1:4] == ["launch", "--config_file", str(ROOT / "train/accelerate/cpu_multiprocess.yaml")]
    assert argv[argv.index("--num_processes") + 1] == "2" and argv[argv.index("--main_process_port") + 1] == "0"
    assert argv[argv.index("-m") + 1] == "train" and argv[argv.index("--config") + 1] == str(cfg)
    assert argv[-1] == "--resume" and "--threads" in argv
    assert shlex.split(command_text(argv)) == argv
    one = build_command("c.yaml", LaunchOptions("cpu"))
    assert "--num_processes" not in one and "--main_process_port" not in one and one[-2:] == ["--config", "c.yaml"]
    with pytest.raises(LaunchError, match="not one of"):
        build_command("c.yaml", LaunchOptions("warp_drive"))
    with pytest.raises(LaunchError, match="spread evenly"):
        build_command("c.yaml", LaunchOptions("multi_node", num_processes=3))


def test_gpu_configs_are_refused_on_a_machine_without_gpu():
    from train.config import load_config

    wan = yaml.safe_load((ROOT / "train/presets/wan1.3b_8gpu.yaml").read_text())
    wan.update(data={"source": "sprites"}, vae={}, text={})
    cfg = load_config(wan)
    problems = machine_problems(cfg, LaunchOptions("multi_gpu"), cuda_count=0)
    assert problems and "needs CUDA GPUs" in problems[0] and "mixed_precision is bf16" in problems[0] and "multi_gpu.yaml" in problems[0]
    assert "needs CUDA" in machine_problems(cfg, LaunchOptions("cpu"), cuda_count=0)[0]  # the preset itself needs them
    assert "4 processes on this machine" in machine_problems(cfg, LaunchOptions("multi_gpu", num_processes=4), cuda_count=2)[0]
    assert any("2 machines" in p for p in machine_problems(cfg, LaunchOptions("multi_node"), cuda_count=8))
    sprite = load_config(TINY)
    assert machine_problems(sprite, LaunchOptions("cpu_multiprocess", num_processes=2), cuda_count=0) == []
    assert machine_problems(sprite, LaunchOptions("cpu_fsdp", num_processes=2), cuda_count=0) == []
    assert DEEPSPEED_REFUSAL in machine_problems(sprite, LaunchOptions("deepspeed_zero2"), cuda_count=8)  # refused, not silently run


def test_reference_branch_inside_the_forward_gives_the_same_output():
    """FSDP runs the reference branch inside the forward (references=): the same numbers as the cached features."""
    from model.tiny import tiny_transformer_config
    from model.transformer import ReactIDTransformer

    torch.manual_seed(0)
    model = ReactIDTransformer(**tiny_transformer_config()).eval()
    with torch.no_grad():
        for p in model.parameters():  # the zero-initialised injections would hide a difference
            p.normal_(0, 0.2)
    g = torch.Generator().manual_seed(2)
    x, t, ctx = torch.randn(1, 4, 5, 8, 8, generator=g), torch.tensor([700.0]), torch.randn(1, 9, 32, generator=g)
    refs = (torch.randn(1, 3, 4, 8, 8, generator=g), torch.tensor([[0, 0, 1]]), torch.randn(1, 3, 5, 32, generator=g), 2)
    with torch.no_grad():
        cached = model(x, t, ctx, reference_features=model.encode_references(*refs))
        inside = model(x, t, ctx, references=refs)
    assert torch.equal(cached.sample, inside.sample) and torch.equal(cached.mask_logits, inside.mask_logits)


def test_optimizer_state_layouts_convert_both_ways():
    """The single-process optimizer layout (by position) <-> torch.distributed's full state (by name)."""
    from train.distributed import optimizer_state_by_name, optimizer_state_by_position

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW([{"params": [model[0].weight, model[1].weight]}, {"params": [model[0].bias, model[1].bias], "lr": 0.5}])
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    positional = opt.state_dict()
    named = optimizer_state_by_name(model, opt, positional)
    assert named["param_groups"][0]["params"] == ["0.weight", "1.weight"] and named["param_groups"][1]["params"] == ["0.bias", "1.bias"]
    assert named["state"]["1.bias"] is positional["state"][3]
    back = optimizer_state_by_position(named)
    assert back["param_groups"] == positional["param_groups"] and all(back["state"][i] is positional["state"][i] for i in range(4))


# --------------------------------------------------------------------------------------------------
# Real runs
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process at batch 4 (it trains the VAE), then two processes at batch 2 each with that VAE."""
    root = tmp_path_factory.mktemp("scaleout")
    one = tiny(root / "one", 4)
    launch(one, "cpu")
    shared = {"vae": {**TINY["vae"], "checkpoint": str(root / "one" / "vae")}}
    two = {**tiny(root / "two", 2), **shared}
    res = launch(two, "cpu_multiprocess", 2)
    return root, one, two, shared, res


def test_two_processes_train_like_one_at_the_same_global_batch(runs):
    root, one, two, _, res = runs
    log1, log2 = root / "one" / "log.jsonl", root / "two" / "log.jsonl"
    l1, l2 = losses(log1), losses(log2)
    assert sorted(l1) == sorted(l2) == list(range(1, STEPS + 1))
    for step in l1:  # gradients are all-reduced over gloo, so only float rounding differs
        assert l2[step] == pytest.approx(l1[step], rel=2e-4), (step, l1, l2)
    recs1 = [json.loads(l) for l in log1.read_text().splitlines() if '"loss"' in l]
    recs2 = [json.loads(l) for l in log2.read_text().splitlines() if '"loss"' in l]
    for a, b in zip(recs1, recs2):  # the same schedule: lr, phase and threshold per step
        assert (a["lr"], a["phase"], a["threshold"], a["inter_frac"]) == pytest.approx((b["lr"], b["phase"], b["threshold"], b["inter_frac"]))
    # one log, written once: the second process writes nothing
    assert len(recs2) == STEPS and log2.read_text().count('"event": "done"') == 1
    c1 = torch.load(root / "one" / "checkpoint.pt", map_location="cpu", weights_only=False)
    c2 = torch.load(root / "two" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert set(c1) == set(c2) and c1["step"] == c2["step"] == STEPS
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # diffusers' bookkeeping lists are unordered
    assert public(c1["model_config"]) == public(c2["model_config"])
    assert set(c1["model"]) == set(c2["model"])  # no "module." prefix from DDP
    for k, v in c1["model"].items():
        assert c2["model"][k].shape == v.shape and c2["model"][k].dtype == v.dtype
        assert torch.allclose(c2["model"][k], v, rtol=1e-3, atol=1e-4), k
    assert c1["optimizer"]["param_groups"][0]["lr"] == pytest.approx(c2["optimizer"]["param_groups"][0]["lr"])
    assert len(c1["optimizer"]["state"]) == len(c2["optimizer"]["state"])
    assert c1["scheduler"]["last_epoch"] == c2["scheduler"]["last_epoch"] == STEPS  # the schedule advanced once per step


def test_killed_two_process_run_resumes_with_the_same_data_order(runs):
    import psutil

    root, _, two, shared, _ = runs
    killed = {**tiny(root / "killed", 2), **shared}
    proc = launch(killed, "cpu_multiprocess", 2, wait=False)
    log = root / "killed" / "log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and any('"loss"' in l and json.loads(l)["step"] >= 6 for l in log.read_text().splitlines()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    # a crash: every process of the run (accelerate's launcher and torchrun's workers, which have their own
    # sessions) dies at once with SIGKILL
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert len(family) >= 3, family  # the launcher and two workers
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    time.sleep(0.5)
    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert not [p for p in family if alive(p)]
    before = losses(log)
    assert max(before) < STEPS, "the kill came after the last step"
    ck = torch.load(root / "killed" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["step"] % 4 == 0 and ck["step"] < STEPS  # the last whole checkpoint survived the kill
    launch(killed, "cpu_multiprocess", 2, "--resume")
    text = log.read_text()
    assert f'"event": "resumed", "step": {ck["step"]}' in text
    got, want = losses(log), losses(root / "two" / "log.jsonl")
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):  # same batches, noise and schedule after the resume
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-7), (step, got, want)


def test_two_processes_agree_on_a_time_budget_s_fitted_schedule(runs):
    """Each process measures its own step rate; they must all stop at the same step (else one waits forever in a
    collective for the other)."""
    root, _, _, shared, _ = runs
    out = root / "budget"
    cfg = {**tiny(out, 2, steps=100_000, time_budget_s=4.0, time_budget_calibration_steps=3), **shared}
    launch(cfg, "cpu_multiprocess", 2)
    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    fitted = [r for r in records if r.get("event") == "time_budget"]
    assert len(fitted) == 1 and 4 < fitted[0]["total_steps"] < 100_000
    assert [r for r in records if "loss" in r][-1]["step"] == fitted[0]["total_steps"]
    assert torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["step"] == fitted[0]["total_steps"]


def test_fsdp_on_cpus_trains_like_one_process_and_resumes_exactly(runs):
    """FSDP2 over gloo: stopped after step 8 (checkpoint), resumed to step 16. Every step's loss is one process's
    at the same global batch; the checkpoint has the single-process format, with the whole optimizer state."""
    root, _, _, shared, _ = runs
    fsdp = {**tiny(root / "fsdp", 2), **shared}
    launch(fsdp, "cpu_fsdp", 2, "--max-steps", "8")
    assert torch.load(root / "fsdp" / "checkpoint.pt", map_location="cpu", weights_only=False)["step"] == 8
    launch(fsdp, "cpu_fsdp", 2, "--resume")
    log = root / "fsdp" / "log.jsonl"
    assert '"event": "resumed", "step": 8' in log.read_text()
    got, want = losses(log), losses(root / "one" / "log.jsonl")
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):  # seen: equal to 5e-7; a lost optimizer state or another batch is far larger
        assert got[step] == pytest.approx(want[step], rel=1e-5), (step, got, want)
    c1 = torch.load(root / "one" / "checkpoint.pt", map_location="cpu", weights_only=False)
    cf = torch.load(root / "fsdp" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert set(c1) == set(cf) and cf["step"] == STEPS and cf["scheduler"]["last_epoch"] == STEPS
    assert set(c1["model"]) == set(cf["model"])
    for k, v in c1["model"].items():  # whole tensors (not shards, not DTensors), as one process writes them
        assert type(cf["model"][k]) is torch.Tensor and cf["model"][k].shape == v.shape and cf["model"][k].dtype == v.dtype
        assert torch.allclose(cf["model"][k], v, rtol=1e-3, atol=1e-4), k  # as DDP: Adam magnifies rounding where gradients are ~0
    o1, of = c1["optimizer"], cf["optimizer"]
    assert [g["params"] for g in o1["param_groups"]] == [g["params"] for g in of["param_groups"]]
    assert set(o1["state"]) == set(of["state"])
    # Adam's moments and step count came through the stop and the resume. They differ from one process's as
    # much as the DDP run's do (seen: 3e-5 on exp_avg of scale 4e-2, 7e-8 on exp_avg_sq of scale 1e-3); moments
    # restarted at step 8 would be off by a large fraction of their scale
    for i, st in o1["state"].items():
        assert float(of["state"][i]["step"]) == float(st["step"]) == STEPS
        assert torch.allclose(of["state"][i]["exp_avg"], st["exp_avg"], rtol=1e-3, atol=1e-4), i
        assert torch.allclose(of["state"][i]["exp_avg_sq"], st["exp_avg_sq"], rtol=1e-3, atol=1e-6), i
