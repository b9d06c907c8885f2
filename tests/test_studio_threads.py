"""The thread count of a CPU generation follows the cores that are free (studio/cpu.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from studio import cpu


def test_threads_for_free_cores():
    assert cpu.threads_for(2, 0.05) == 2  # idle
    assert cpu.threads_for(2, 1.0) == 1  # a neighbour keeps one core busy
    assert cpu.threads_for(2, 1.9) == 1  # a training job on both: still 1, never 0
    assert cpu.threads_for(16, 3.4) == 13
    assert cpu.threads_for(16, 0.0, quota=2.0) == 2  # a container's quota, not the host's cores
    assert cpu.threads_for(16, 0.0, quota=1.5) == 2
    assert cpu.threads_for(1, 5.0) == 1


def test_quota_is_read_from_cgroup_cpu_max(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("200000 100000\n")
    assert cpu.quota_cores(f) == 2.0
    f.write_text("max 100000\n")
    assert cpu.quota_cores(f) is None
    assert cpu.quota_cores(tmp_path / "missing") is None


def test_a_busy_core_is_measured_and_left_alone():
    """With a process spinning on one core, the measured load covers at least that core and the studio
    leaves it (on 2+ cores): whoever the core goes to, it is busy."""
    cpus = cpu.allowed_cpus()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = cpu.busy_cores(cpus, seconds=0.5)
        assert busy >= 0.8, busy
        if len(cpus) >= 2:
            assert cpu.threads_for(len(cpus), busy) <= len(cpus) - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_the_count_is_set_in_the_generating_thread(monkeypatch):
    import torch

    monkeypatch.setenv("REACTID_THREADS", "1")
    seen = {}

    def generate():
        seen["set"] = cpu.use_generation_threads()
        seen["torch"] = torch.get_num_threads()

    t = threading.Thread(target=generate)
    t.start()
    t.join()
    assert seen == {"set": 1, "torch": 1}
    monkeypatch.delenv("REACTID_THREADS")
    n = cpu.generation_threads()
    assert 1 <= n <= len(cpu.allowed_cpus())


def test_engine_generation_uses_the_measured_count(monkeypatch):
    from model.timeline import Timeline
    from studio.app import initial_document
    from studio.engine import GenerationRequest
    from tests.studio_fixtures import default_engine

    engine, _ = default_engine()
    tl = Timeline.from_dict(initial_document(engine.limits().fps))  # the first example scene, with its references
    monkeypatch.setenv("REACTID_THREADS", "1")
    engine.generate(GenerationRequest(tl, steps=1, seed=0))
    assert engine.last_threads == 1
