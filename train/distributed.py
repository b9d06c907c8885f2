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


def read_flags(accelerator, *paths: Path | None) -> list[bool]:
    """Which of the flag files exist, as seen by the main process, on every process."""
    seen = [bool(p is not None and accelerator.is_main_process and p.exists()) for p in paths]
    if accelerator.num_processes <= 1:
        return seen
    t = torch.tensor([float(x) for x in seen], device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum")
    return [bool(v > 0) for v in t.tolist()]


def sharded_model_state(accelerator, model) -> dict | None:
    """The full model state gathered from the shards under FSDP (a collective: every process calls it), else
    None (the caller reads the unwrapped model's state_dict, as one process does)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return accelerator.get_state_dict(model)
    return None


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


__all__ = ["accelerator_kwargs", "global_share", "keep_checkpoint", "mean_over_processes", "read_flags", "shard", "shard_plan", "sharded_model_state", "world_size"]
