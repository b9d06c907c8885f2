"""Data parallelism for the training loop (`accelerate launch`: DDP on GPUs, gloo on CPUs).

A step's *global* batch is what the curriculum draws for that step with optim.batch_size × processes samples,
and every random number of the step (noise, σ, caption dropout) is drawn for the whole global batch from the
step's generator. Each process then keeps its own contiguous share. So:

- the data order and the noise depend only on (seed, step), never on the number of processes: a run killed
  and resumed (with any process count of the same global batch) continues with the same batches;
- with one process nothing changes: the share is the whole batch, and the draws are the ones the loop
  always made.

The losses are weighted means (flow: weighted by subject coverage; mask head: over real subjects). DDP
averages the processes' gradients, and a mean of per-process means is not the mean over the global batch
when the processes' denominators differ. `global_share` rescales each process's mean by
P · (its denominator) / (the global denominator), so the averaged gradient, and the logged loss, are those of
one process holding the whole global batch.

STOP and SAVE flag files are read by the main process and broadcast, so every process stops (or saves) after
the same step: a process that stopped alone would leave the others waiting in the next all-reduce.

FSDP (FSDP2: parameters, gradients and optimizer state sharded, one shard unit per ReactIDBlock):
- accelerate turns FSDP on only for GPU-type backends; on CPUs it would quietly train with plain data
  parallelism instead. Torch's FSDP2 runs over gloo, so `enable_cpu_fsdp` switches accelerate's state to it.
- `checkpoint.pt` keeps the single-process layout under FSDP too: `gather_training_state` collects the full
  model and optimizer state (torch keys the optimizer's by parameter name, torch.optim by position: converted),
  and `load_training_state` shards such a checkpoint again. So a checkpoint moves freely between one process,
  DDP and FSDP.
- The reference branch runs inside the transformer's forward (`references=`): FSDP gathers a module's
  parameters only inside its forward.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch


def world_size() -> int:
    """Processes of this run, from the launcher's environment (before any Accelerator exists)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def accelerator_kwargs() -> dict:
    """Settings of the trainer's Accelerator.

    - split_batches: a step's batch is the global batch split over the processes (above). accelerate then
      steps the LR schedule once per optimizer step; without it, it steps the schedule once per process per
      step (it assumes each process adds a batch), and a 2-process run would race through warmup and decay
      twice as fast as the schedule in optim.steps says.
    - Several processes: DDP looks for parameters that got no gradient in a step (the timeline branch of a
      batch whose captions were all dropped, say) instead of failing at the next step."""
    from accelerate import DistributedDataParallelKwargs
    from accelerate.utils import DataLoaderConfiguration

    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if world_size() > 1 else []
    return {"kwargs_handlers": handlers, "dataloader_config": DataLoaderConfiguration(split_batches=True)}


def shard(n: int, rank: int, processes: int) -> slice:
    """This process's contiguous share of a global batch of n samples (n is a multiple of processes)."""
    if processes <= 1:
        return slice(0, n)
    if n % processes:
        raise ValueError(f"a global batch of {n} samples cannot be split over {processes} processes")
    per = n // processes
    return slice(rank * per, (rank + 1) * per)


def shard_plan(plan, sl: slice):
    """The StepPlan restricted to this process's share (train/loop.py StepPlan)."""
    if sl == slice(0, len(plan.indices)):
        return plan
    return type(plan)(np.asarray(plan.indices)[sl], np.asarray(plan.inter)[sl], plan.phase, plan.threshold)


def global_share(accelerator, local_denominator: torch.Tensor | float, minimum: float) -> torch.Tensor:
    """Factor turning this process's weighted mean (sum / max(local_den, minimum)) into its share of the
    global weighted mean, such that DDP's average over processes is the global mean."""
    P = accelerator.num_processes
    den = torch.as_tensor(local_denominator, dtype=torch.float64, device=accelerator.device).reshape(1).detach()
    total = accelerator.reduce(den.clone(), reduction="sum")
    return (P * den.clamp_min(minimum) / total.clamp_min(minimum)).squeeze(0).float()


def mean_over_processes(accelerator, stats: dict) -> dict:
    """Average logged numbers over processes (each already scaled by `global_share`, so this is the global value)."""
    if accelerator.num_processes <= 1 or not stats:
        return stats
    keys = sorted(stats)
    t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def min_over_processes(accelerator, value: int) -> int:
    """The smallest of every process's value, on every process (e.g. the steps a time budget fits: each process
    measures its own rate, and all of them must stop at the same step)."""
    if accelerator.num_processes <= 1:
        return value
    t = accelerator.gather(torch.tensor([int(value)], dtype=torch.int64, device=accelerator.device))
    return int(t.min())


def read_flags(accelerator, *paths: Path | None) -> list[bool]:
    """Which of the flag files exist, as seen by the main process, on every process."""
    seen = [bool(p is not None and accelerator.is_main_process and p.exists()) for p in paths]
    if accelerator.num_processes <= 1:
        return seen
    t = torch.tensor([float(x) for x in seen], device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum")
    return [bool(v > 0) for v in t.tolist()]


class SetupError(RuntimeError):
    """A launch setting the trainer cannot run; the message says why and what to use instead."""


def refuse_unsupported(accelerator) -> None:
    """DeepSpeed: refused before any work (train/launch.py DEEPSPEED_REFUSAL says why)."""
    from accelerate.utils import DistributedType

    from .launch import DEEPSPEED_REFUSAL

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise SetupError(DEEPSPEED_REFUSAL)


def enable_cpu_fsdp(accelerator) -> bool:
    """Under `accelerate launch` with an FSDP config on a machine without CUDA, switch accelerate (which left
    it at MULTI_CPU, i.e. DDP over gloo) to FSDP2, with the plugin built from the same launch settings.
    Returns whether it did. FSDP1 on CPUs is refused: only FSDP2 was checked here (tests/test_scaleout.py)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables accelerate launch set from the config
    if plugin.fsdp_version != 2:
        raise SetupError("FSDP on CPUs needs fsdp_version: 2 in the accelerate config (FSDP1 is not supported on CPUs here)")
    if plugin.cpu_ram_efficient_loading:
        raise SetupError("FSDP on CPUs: set fsdp_cpu_ram_efficient_loading: false (the trainer builds the model on every process)")
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    return True


def is_sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _torch_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps torch's


def optimizer_state_by_position(named: dict) -> dict:
    """torch.distributed's full optimizer state (parameters keyed by name) in torch.optim's own layout (keyed by
    position over the param groups), which is what one process saves."""
    index: dict[str, int] = {}
    groups = []
    for g in named["param_groups"]:
        ids = []
        for name in g["params"]:
            index[name] = len(index)
            ids.append(index[name])
        groups.append({**g, "params": ids})
    return {"state": {index[n]: v for n, v in named["state"].items()}, "param_groups": groups}


def optimizer_state_by_name(model, optimizer, positional: dict) -> dict:
    """The inverse of optimizer_state_by_position for this model's optimizer."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in _torch_optimizer(optimizer).param_groups for p in g["params"]]
    if len(order) != sum(len(g["params"]) for g in positional["param_groups"]):
        raise ValueError("the checkpoint's optimizer has another number of parameters than this model's")
    groups, k = [], 0
    for g in positional["param_groups"]:
        groups.append({**g, "params": order[k : k + len(g["params"])]})
        k += len(g["params"])
    return {"state": {order[i]: v for i, v in positional["state"].items()}, "param_groups": groups}


def gather_training_state(accelerator, model, optimizer) -> tuple[dict, dict] | None:
    """FSDP: (model state, optimizer state) of the whole model in the single-process layout, on the main process
    (None on the others). A collective: every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    model_state, optim_state = get_state_dict(model, _torch_optimizer(optimizer), options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not accelerator.is_main_process:
        return None
    return model_state, optimizer_state_by_position(optim_state)


def gather_model_state(accelerator, model) -> dict | None:
    """FSDP: the whole model's state on the main process (None on the others). A collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if accelerator.is_main_process else None


def load_training_state(model, optimizer, model_state: dict, optim_state: dict) -> None:
    """FSDP: load a single-process checkpoint's model and optimizer state into the shards. Every process calls
    it with the whole state (each reads checkpoint.pt) and keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, _torch_optimizer(optimizer), model_state_dict=model_state, optim_state_dict=optimizer_state_by_name(model, optimizer, optim_state),
                   options=StateDictOptions(full_state_dict=True, strict=True))


def keep_checkpoint(checkpoint: Path, step: int) -> Path:
    """A kept copy of checkpoint.pt as checkpoints/step-NNNNNNN.pt ("save now"): a hard link where the file
    system allows it (no extra space; the next save replaces checkpoint.pt by rename, so the link keeps this
    one), else a copy."""
    kept = checkpoint.parent / "checkpoints" / f"step-{int(step):07d}.pt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(checkpoint, tmp)
    except OSError:
        shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, kept)
    return kept


__all__ = ["SetupError", "accelerator_kwargs", "enable_cpu_fsdp", "gather_model_state", "gather_training_state", "global_share", "is_sharded", "keep_checkpoint", "load_training_state",
           "mean_over_processes", "optimizer_state_by_name", "optimizer_state_by_position", "read_flags", "refuse_unsupported", "shard", "shard_plan", "world_size"]
