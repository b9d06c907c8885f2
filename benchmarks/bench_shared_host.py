"""Generation on a shared host: the default model's clip with every core idle, and beside a process that keeps one
core busy (a training job, a second user, the host of a shared Space), side by side in one run.

    python benchmarks/bench_shared_host.py [--steps 20] [--repeats 3]

Each row runs in a fresh subprocess (its own torch thread pool) that loads the default pipeline, warms up and
times `--repeats` generations of a 2-subject, 4-second clip with CFG 3. Rows:
- idle, studio threads: nothing else running; threads from studio/cpu.py (what the studio does);
- busy core, all threads: one busy-looping process beside it, torch's default of one thread per core;
- busy core, studio threads: the same, threads from studio/cpu.py (it sees the busy core and uses the rest).
The ratio column is each row's median over the idle row's: the studio's goal is at most 2x beside one busy core.
Run it on an otherwise idle machine; the busy process is started and stopped by the benchmark itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {root!r})
import torch
from model.default import load_default_pipeline, sprite_world
from studio.cpu import use_generation_threads
from train.sprites import WorldConfig, generate_clip
mode, steps, repeats = {mode!r}, {steps}, {repeats}
pipe = load_default_pipeline()
world = {{**(sprite_world() or {{}}), "duration": 4.0, "min_subjects": 2, "max_subjects": 2}}
world.setdefault("fps", int(pipe.default_fps))
clip = generate_clip(900_123, WorldConfig.from_kwargs(**world))
refs = {{s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}}
threads = []
def pick():
    if mode == "all":
        torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
        return torch.get_num_threads()
    return use_generation_threads()
threads.append(pick())
pipe(clip.timeline, refs, num_inference_steps=2, progress=False)  # warm-up
times = []
for r in range(repeats):
    threads.append(pick())
    t = time.perf_counter()
    pipe(clip.timeline, refs, seed=r, num_inference_steps=steps, guidance_scale=3.0, progress=False)
    times.append(time.perf_counter() - t)
print("RESULT " + json.dumps({{"times": times, "threads": threads[1:]}}))
"""


def run_row(mode: str, steps: int, repeats: int, busy: bool) -> dict:
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)  # let the busy core show in /proc/stat before the child measures it
    try:
        env = dict(os.environ)
        env.pop("REACTID_THREADS", None)
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), mode=mode, steps=steps, repeats=repeats)],
                             capture_output=True, text=True, env=env, check=True, timeout=900)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    rows = [("idle, studio threads", "studio", False), ("busy core, all threads", "all", True), ("busy core, studio threads", "studio", True)]
    results = []
    for name, mode, busy in rows:
        r = run_row(mode, args.steps, args.repeats, busy)
        results.append({"row": name, "median_s": statistics.median(r["times"]), "min_s": min(r["times"]), "threads": r["threads"]})
    idle = results[0]["median_s"]
    for r in results:
        r["ratio"] = r["median_s"] / idle
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"default model, {args.steps} steps, CFG 3, 2-subject 4 s clip; {os.cpu_count()} cores; {args.repeats} repeats per row")
    print(f"{'row':28s} {'threads':>8s} {'median s':>9s} {'min s':>7s} {'x idle':>7s}")
    for r in results:
        th = ",".join(str(t) for t in sorted(set(r["threads"])))
        print(f"{r['row']:28s} {th:>8s} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['ratio']:7.2f}")


if __name__ == "__main__":
    main()
