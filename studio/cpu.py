"""How many torch threads a CPU generation should use: the cores that are free now, not all of them.

torch starts one thread per core. When another process keeps a core busy (a training job, a second
user, the host of a shared Space), those threads wait for each other at every operation: on 2 cores
with one busy, a 2-thread generation of the default model took 10 s against 2.7 s with 1 thread (and
1.6 s on 2 idle cores). So before each generation the studio measures how busy the cores it may run
on are, over a short window, and uses the rest (at least 1 thread).

`REACTID_THREADS=N` fixes the count instead (for measurements, or a host the operator splits by hand).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.1  # /proc/stat counts in 1/100 s: 10 ticks per core in this window


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def quota_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The container's CPU quota in cores (cgroup v2 `cpu.max`, e.g. "200000 100000" = 2), or None."""
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]] | None:
    """(busy, total) clock ticks per CPU from /proc/stat, or None where there is no /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted, out = set(cpus), {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpu in wanted:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
            busy = user + nice + system + irq + softirq + steal
            out[cpu] = (busy, busy + idle + iowait)
    return out


def busy_cores(cpus: list[int] | None = None, seconds: float = SAMPLE_SECONDS) -> float:
    """How many of `cpus` (default: the allowed ones) were busy over the next `seconds`, in cores.
    Without /proc/stat: the 1-minute load average (0 where there is none)."""
    cpus = allowed_cpus() if cpus is None else cpus
    before = _cpu_times(cpus)
    if not before:
        try:
            return min(float(len(cpus)), os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    time.sleep(seconds)
    after = _cpu_times(cpus) or {}
    busy = 0.0
    for cpu, (b0, t0) in before.items():
        b1, t1 = after.get(cpu, (b0, t0))
        if t1 > t0:
            busy += (b1 - b0) / (t1 - t0)
    return busy


def threads_for(allowed: int, busy: float, quota: float | None = None) -> int:
    """Threads for a generation: the allowed cores minus the busy ones (rounded), within the quota, at least 1."""
    free = int(allowed - busy + 0.5)
    if quota is not None:
        free = min(free, math.ceil(quota - 1e-9))
    return max(1, min(allowed, free))


def generation_threads() -> int:
    """The thread count for the next CPU generation (`REACTID_THREADS` if set)."""
    fixed = os.environ.get("REACTID_THREADS", "").strip()
    if fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    cpus = allowed_cpus()
    return threads_for(len(cpus), busy_cores(cpus), quota_cores())


def use_generation_threads() -> int:
    """Set torch's thread count for this thread's next generation; returns it. torch keeps the count per
    calling thread (OpenMP), so call it in the thread that runs the pipeline."""
    import torch

    n = generation_threads()
    torch.set_num_threads(n)
    return n
