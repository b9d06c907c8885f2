"""The `accelerate launch` command of a training run, and whether this machine can run it.

    argv = build_command("runs/try/train.yaml", LaunchOptions(accelerate_config="cpu_multiprocess", num_processes=2, threads=1))
    print(command_text(argv))   # accelerate launch --config_file .../train/accelerate/cpu_multiprocess.yaml ... -m train --config ...

The studio's Start button runs exactly this argument list (a list, never a shell string, so no field of the
form can inject anything) and its "Show command" prints it, so the same run can be started from a terminal or a
cluster scheduler. The accelerate configs live in train/accelerate/ (docs/TRAINING.md, "Scale-out").
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_DIR = Path(__file__).with_name("accelerate")

# name -> (file, needs CUDA GPUs, what it is for)
ACCELERATE_CONFIGS: dict[str, tuple[str, bool, str]] = {
    "cpu": ("cpu.yaml", False, "one CPU process (the sprite model)"),
    "cpu_multiprocess": ("cpu_multiprocess.yaml", False, "several CPU processes on this machine, data-parallel over gloo"),
    "single_gpu": ("single_gpu.yaml", True, "one GPU"),
    "multi_gpu": ("multi_gpu.yaml", True, "several GPUs on one machine (DDP)"),
    "multi_node": ("multi_node.yaml", True, "several machines (DDP); run on every node with its --machine_rank"),
    "cpu_fsdp": ("cpu_fsdp.yaml", False, "several CPU processes on this machine, FSDP2 sharding over gloo"),
    "multi_node_fsdp": ("multi_node_fsdp.yaml", True, "several machines, FSDP2 sharding (the same code as cpu_fsdp; not run on GPUs here)"),
    "deepspeed_zero2": ("deepspeed_zero2.yaml", True, "DeepSpeed ZeRO-2 (not supported by the trainer yet; docs/TRAINING.md)"),
}
DEEPSPEED_REFUSAL = ("DeepSpeed is not supported by the trainer yet: ZeRO partitions the optimizer state, and checkpoint.pt keeps it in "
                     "the single-process layout, which nothing gathers from ZeRO's partitions yet. Use multi_gpu.yaml (DDP) or an FSDP "
                     "config (cpu_fsdp.yaml, multi_node_fsdp.yaml); docs/TRAINING.md, \"Scale-out\".")


class LaunchError(ValueError):
    """The launch cannot be built or cannot run here; the message says why and what to do."""


@dataclass
class LaunchOptions:
    accelerate_config: str = "cpu"  # a name in ACCELERATE_CONFIGS or a path to an accelerate config YAML
    num_processes: int | None = None  # all processes on all machines; None: the accelerate config's
    machine_rank: int | None = None  # multi-node: this machine's rank; None: the config's
    main_process_ip: str | None = None  # multi-node
    threads: int = 0  # torch CPU threads per training process (python -m train --threads); 0: torch's default
    max_steps: int | None = None  # stop after this many steps (the schedule still spans optim.steps)
    export: str | None = None  # write a pipeline directory here when training ends


def accelerate_config_path(name: str) -> Path:
    if name in ACCELERATE_CONFIGS:
        return ACCELERATE_DIR / ACCELERATE_CONFIGS[name][0]
    p = Path(name)
    if p.suffix in (".yaml", ".yml", ".json") and p.is_file():
        return p.resolve()
    raise LaunchError(f"accelerate config {name!r}: not one of {', '.join(ACCELERATE_CONFIGS)} and not a config file")


def read_accelerate_config(name: str) -> dict:
    path = accelerate_config_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"accelerate config {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise LaunchError(f"accelerate config {path}: expected a mapping")
    return data


def needs_gpu(opts: LaunchOptions) -> bool:
    if opts.accelerate_config in ACCELERATE_CONFIGS:
        return ACCELERATE_CONFIGS[opts.accelerate_config][1]
    acc = read_accelerate_config(opts.accelerate_config)
    return not acc.get("use_cpu", False) and str(acc.get("distributed_type", "NO")) != "NO"


def process_counts(opts: LaunchOptions) -> tuple[int, int]:
    """(processes on all machines, machines)."""
    acc = read_accelerate_config(opts.accelerate_config)
    machines = int(acc.get("num_machines", 1) or 1)
    total = int(opts.num_processes if opts.num_processes is not None else acc.get("num_processes", 1) or 1)
    return total, machines


def accelerate_executable() -> str:
    """The `accelerate` script of the Python that runs this code (the project's virtualenv)."""
    beside = Path(sys.executable).with_name("accelerate")
    if beside.is_file():
        return str(beside)
    found = shutil.which("accelerate")
    if found:
        return found
    raise LaunchError("the `accelerate` command was not found beside this Python; install the requirements (pip install accelerate)")


def build_command(config_path: str | Path, opts: LaunchOptions, resume: bool = False) -> list[str]:
    """The argument list: accelerate launch <launch options> -m train --config <config_path> <train options>."""
    total, machines = process_counts(opts)
    if total < 1:
        raise LaunchError(f"processes: must be at least 1, got {total}")
    if opts.threads < 0:
        raise LaunchError(f"threads: must be 0 (torch's default) or more, got {opts.threads}")
    if opts.max_steps is not None and opts.max_steps < 0:
        raise LaunchError(f"max steps: must be 0 or more, got {opts.max_steps}")
    if total % machines:
        raise LaunchError(f"processes: {total} processes cannot be spread evenly over {machines} machines")
    argv = [accelerate_executable(), "launch", "--config_file", str(accelerate_config_path(opts.accelerate_config))]
    if opts.num_processes is not None:
        argv += ["--num_processes", str(int(opts.num_processes))]
    if total > 1 and machines == 1:
        argv += ["--main_process_port", "0"]  # a free port, so two runs on one machine never collide
    if opts.machine_rank is not None:
        argv += ["--machine_rank", str(int(opts.machine_rank))]
    if opts.main_process_ip:
        argv += ["--main_process_ip", str(opts.main_process_ip)]
    if opts.threads:
        argv += ["--num_cpu_threads_per_process", str(int(opts.threads))]
    argv += ["-m", "train", "--config", str(config_path)]
    if opts.threads:
        argv += ["--threads", str(int(opts.threads))]
    if resume:
        argv.append("--resume")
    if opts.max_steps is not None:
        argv += ["--max-steps", str(int(opts.max_steps))]
    if opts.export:
        argv += ["--export", str(opts.export)]
    return argv


def command_text(argv: list[str]) -> str:
    """The argument list as one line a POSIX shell reads back into the same list."""
    return shlex.join(argv)


def cuda_device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install counts as no GPU
        return 0


def gpu_requirements(cfg, opts: LaunchOptions) -> list[str]:
    """Why this run wants CUDA GPUs, in words (empty: it runs on CPUs)."""
    why = []
    if needs_gpu(opts):
        why.append(f"the accelerate config {accelerate_config_path(opts.accelerate_config).name} starts one process per GPU")
    if getattr(cfg.optim, "mixed_precision", "no") != "no":
        why.append(f"optim.mixed_precision is {cfg.optim.mixed_precision}")
    if getattr(cfg.model, "base", None):
        why.append(f"model.base is {cfg.model.base} (Wan2.1 weights)")
    return why


def machine_problems(cfg, opts: LaunchOptions, cuda_count: int | None = None) -> list[str]:
    """What stops this run on this machine (empty: it can start). `cfg` is a validated TrainConfig."""
    cuda = cuda_device_count() if cuda_count is None else cuda_count
    why = gpu_requirements(cfg, opts)
    total, machines = process_counts(opts)
    problems = []
    if str(read_accelerate_config(opts.accelerate_config).get("distributed_type", "NO")) == "DEEPSPEED":
        problems.append(DEEPSPEED_REFUSAL)
    if why and cuda == 0:
        problems.append("this run needs CUDA GPUs (" + "; ".join(why) + ") and this machine has none. "
                        "Use \"Show command\" to run it on a GPU machine or cluster, "
                        "or pick the sprite preset with the cpu accelerate config here.")
    elif needs_gpu(opts) and total // machines > cuda:
        problems.append(f"the accelerate config starts {total // machines} processes on this machine, one per GPU, "
                        f"and it has {cuda} CUDA GPU(s). Lower the process count or run it where the GPUs are.")
    if machines > 1:
        problems.append(f"the accelerate config spans {machines} machines: the studio starts runs on this machine only. "
                        "Use \"Show command\" and run it on every node (each with its --machine_rank).")
    return problems


__all__ = ["ACCELERATE_CONFIGS", "ACCELERATE_DIR", "DEEPSPEED_REFUSAL", "LaunchError", "LaunchOptions", "accelerate_config_path", "build_command",
           "command_text", "cuda_device_count", "gpu_requirements", "machine_problems", "needs_gpu", "process_counts", "read_accelerate_config"]
