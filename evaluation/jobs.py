"""One evaluation at a time as a background process (the studio's Train tab, "Evaluate").

    jobs = EvalJobManager(state_dir)
    job = jobs.start(job_dir, folder, threads=1)                      # python -m evaluation eval <folder> ...
    job = jobs.start(job_dir, job_dir / "samples", threads=1, scenes=4, models={"step-40": export_dir})
    jobs.current()            # re-attached from state_dir/eval-current.json, its state brought up to date
    jobs.progress(job)        # evaluation.progress.Progress: fraction done, a sentence, the error
    jobs.cancel()             # SIGTERM, then SIGKILL, to every process of the job

- The command is an argument list (`eval_command`), never a shell string. It runs `--progress jsonl`: its
  stderr (<job_dir>/progress.jsonl) is one JSON event per line, its stdout (<job_dir>/output.txt) the tables.
  Results go to <job_dir>/results (results.json, the CSV files, comparison.html).
- Like training jobs (train/jobs.py), the job runs in its own session with REACTID_JOB_ID in its environment,
  so Cancel finds and ends every process it started, and a reloaded page or a restarted studio finds the job
  again from its record (<job_dir>/job.json and state_dir/eval-current.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from train.jobs import ENV_MARKER, end_processes, job_processes, process_alive, wait_until_ended, write_record

from .progress import Progress, summarize

ROOT = Path(__file__).resolve().parents[1]
TERM_GRACE_S = 5.0  # after SIGTERM, before SIGKILL


class EvalJobError(RuntimeError):
    """An action on the evaluation job that cannot be done; the message says why."""


@dataclass
class EvalJob:
    id: str
    job_dir: str
    folder: str  # what is evaluated
    argv: list[str]
    pid: int
    pid_create_time: float
    started: float
    label: str = ""  # what the studio calls it ("checkpoint step 40", "folder X")
    state: str = "running"  # running | cancelling | finished | failed | cancelled
    returncode: int | None = None
    ended: float | None = None
    message: str = ""
    cancel_requested: float | None = None

    @property
    def alive(self) -> bool:
        return self.state in ("running", "cancelling")

    @property
    def results_dir(self) -> Path:
        return Path(self.job_dir) / "results"

    @classmethod
    def from_dict(cls, d: dict) -> "EvalJob":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def eval_command(folder: str | Path, out: str | Path, *, threads: int = 0, scenes: int = 0, models: dict[str, str] | None = None,
                 steps: int = 20, guidance: float = 3.0, world: dict | None = None) -> list[str]:
    """python -m evaluation eval <folder> --out <out> --progress jsonl [...]: with `scenes`, the run first writes that
    many held-out sprite scenes (ground truth and each model) into <folder>."""
    argv = [sys.executable, "-m", "evaluation", "eval", str(folder), "--out", str(out), "--progress", "jsonl"]
    if threads:
        argv += ["--threads", str(int(threads))]
    if scenes:
        argv += ["--sprite-scenes", str(int(scenes)), "--steps", str(int(steps)), "--guidance", str(float(guidance))]
        for name, path in (models or {}).items():
            argv += ["--model", f"{name}={path}"]
        if world:
            argv += ["--world", json.dumps(world)]
    return argv


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


class EvalJobManager:
    def __init__(self, state_dir: str | Path, term_grace: float = TERM_GRACE_S):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.term_grace = term_grace
        self._lock = threading.RLock()
        self._popen: dict[str, subprocess.Popen] = {}

    # ---- records ---------------------------------------------------------------------------------
    @property
    def _current_file(self) -> Path:
        return self.state_dir / "eval-current.json"

    def _write(self, job: EvalJob) -> None:
        write_record(asdict(job), [Path(job.job_dir) / "job.json", self._current_file])

    def _read(self) -> EvalJob | None:
        try:
            return EvalJob.from_dict(json.loads(self._current_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    # ---- state -----------------------------------------------------------------------------------
    def current(self) -> EvalJob | None:
        """The current (or last) job; a job whose process has ended gets its final state here."""
        with self._lock:
            job = self._read()
            if job is None or not job.alive:
                return job
            popen = self._popen.get(job.id)
            rc = popen.poll() if popen is not None else None
            if rc is None and (popen is not None or process_alive(job.pid, job.pid_create_time)):
                return job
            self._finish(job, rc)
            return job

    def running(self) -> EvalJob | None:
        job = self.current()
        return job if job is not None and job.alive else None

    def progress(self, job: EvalJob) -> Progress:
        return summarize(read_lines(Path(job.job_dir) / "progress.jsonl"))

    def _finish(self, job: EvalJob, rc: int | None) -> None:
        left = job_processes(job.id)
        if left:  # the process is gone but something it started is not
            end_processes(job.id, self.term_grace)
        prog = self.progress(job)
        if rc is None and prog.done is not None:  # ended while no studio watched it: its last event says how
            rc = int(prog.done.get("exit", 1))
        job.returncode, job.ended = rc, time.time()
        if job.cancel_requested:
            job.state = "cancelled"
        elif rc == 0:
            job.state = "finished"
        else:
            job.state = "failed"
            why = prog.error or prog.last_line
            if rc is None and why is None:
                why = "the process ended without reporting (killed, or the studio was down)"
            job.message = why or f"exit status {rc}"
        self._popen.pop(job.id, None)
        self._write(job)

    # ---- actions ---------------------------------------------------------------------------------
    def start(self, job_dir: str | Path, folder: str | Path, *, label: str = "", threads: int = 0, **command) -> EvalJob:
        """Start `python -m evaluation eval` on `folder` with its files in `job_dir` (created; must be new or empty).
        `command`: eval_command's scenes, models, steps, guidance, world."""
        with self._lock:
            busy = self.running()
            if busy is not None:
                raise EvalJobError(f"an evaluation is already running ({busy.label or busy.folder}); one at a time: cancel it or wait. Nothing was started.")
            job_dir = Path(job_dir).resolve()
            if job_dir.exists() and any(job_dir.iterdir()):
                raise EvalJobError(f"{job_dir} is not empty; an evaluation writes into a folder of its own")
            job_dir.mkdir(parents=True, exist_ok=True)
            argv = eval_command(folder, job_dir / "results", threads=threads, **command)
            job_id = "eval-" + uuid.uuid4().hex[:12]
            env = {**os.environ, ENV_MARKER: job_id, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            with open(job_dir / "output.txt", "wb") as out, open(job_dir / "progress.jsonl", "wb") as err:
                try:
                    popen = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
                except OSError as exc:
                    raise EvalJobError(f"could not start {argv[0]}: {exc}") from None
            import psutil

            try:
                created = psutil.Process(popen.pid).create_time()
            except psutil.NoSuchProcess:
                created = time.time()
            job = EvalJob(job_id, str(job_dir), str(folder), argv, popen.pid, created, time.time(), label=label)
            self._popen[job_id] = popen
            self._write(job)
            threading.Thread(target=self._wait, args=(job_id, popen), daemon=True, name=f"eval-job-{job_id}").start()
            return job

    def _wait(self, job_id: str, popen: subprocess.Popen) -> None:
        rc = popen.wait()
        with self._lock:
            job = self._read()
            if job is not None and job.id == job_id and job.alive:
                self._finish(job, rc)

    def cancel(self) -> EvalJob:
        """End the running job: SIGTERM to every process it started, SIGKILL to what is left after term_grace
        seconds. Returns the job in its final state."""
        with self._lock:
            job = self.current()
            if job is None or not job.alive:
                raise EvalJobError("no evaluation is running; nothing to cancel.")
            job.state, job.cancel_requested = "cancelling", time.time()
            self._write(job)
        end_processes(job.id, self.term_grace)  # outside the lock: the waiting thread finishes the record
        popen = self._popen.get(job.id)
        if popen is not None:
            try:
                popen.wait(timeout=self.term_grace + 5)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
        with self._lock:
            job = self.current()
            if job is not None and job.alive and not process_alive(job.pid, job.pid_create_time):
                self._finish(job, popen.poll() if popen is not None else None)
            return self.current()

    def wait(self, timeout: float) -> EvalJob | None:
        """Block until the current job has ended (tests, scripts)."""
        return wait_until_ended(self.current, timeout)


__all__ = ["EvalJob", "EvalJobError", "EvalJobManager", "eval_command"]
