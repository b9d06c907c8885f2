"""One training job at a time, as a subprocess with its own run directory (the studio's training tab).

    jobs = JobManager(state_dir)
    job = jobs.start(config_dict, LaunchOptions(...))      # writes <output_dir>/train.yaml, runs `accelerate launch ...`
    jobs.current()                                         # the job, re-attached from state_dir/current.json
    jobs.save_now(); jobs.stop()                           # SAVE / STOP files, then signals if it does not end

- The command is an argument list (train/launch.py), never a shell string.
- The job runs in its own session with REACTID_JOB_ID=<id> in its environment. Every process it starts
  (accelerate's launcher, torchrun's workers, which start their own sessions) inherits that variable, so the
  manager finds them all, even orphans of a killed launcher, and Stop makes sure that each one has ended.
- state_dir/current.json and <run_dir>/job.json record the job, so a reloaded page, a second browser tab or a
  restarted studio finds it again ("re-attach"); while its processes live, no second job starts.
- Nothing here deletes a run's files. Start refuses an output_dir that already holds a checkpoint (Resume
  continues it), so a finished run is never overwritten.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .launch import ROOT, LaunchOptions, build_command, command_text

ENV_MARKER = "REACTID_JOB_ID"
STOP_GRACE_S = 120.0  # after STOP, how long the trainer may take to finish its step and save, before signals
TERM_GRACE_S = 10.0  # after SIGTERM, before SIGKILL


class JobError(RuntimeError):
    """A job action that cannot be done; the message says why and what to do."""


@dataclass
class Job:
    id: str
    run_dir: str
    argv: list[str]
    pid: int
    pid_create_time: float
    started: float
    resume: bool = False
    threads: int = 0
    total_steps: int | None = None
    state: str = "running"  # running | stopping | finished | stopped | failed | killed
    returncode: int | None = None
    ended: float | None = None
    message: str = ""
    stop_requested: float | None = None

    @property
    def command(self) -> str:
        return command_text(self.argv)

    @property
    def alive(self) -> bool:
        return self.state in ("running", "stopping")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------
def job_processes(job_id: str) -> list:
    """Every live process carrying the job's marker in its environment (psutil.Process list)."""
    import psutil

    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(ENV_MARKER) == job_id and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def process_alive(pid: int, created: float) -> bool:
    """Is the process `pid` that started at `created` (not a later one given the same pid) still running?"""
    import psutil

    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - created) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _launcher_alive(job: Job) -> bool:
    return process_alive(job.pid, job.pid_create_time)


def write_record(data: dict, paths: list[Path]) -> None:
    """Write a job record as JSON to each path, atomically (a reader never sees half a file)."""
    text = json.dumps(data, indent=2) + "\n"
    for path in paths:
        # one temporary name per process and thread: two threads writing the same record must not share one
        tmp = path.with_name(path.name + f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def wait_until_ended(current, timeout: float):
    """Poll `current()` (a job manager's) until its job has ended or `timeout` seconds pass; tests and scripts."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = current()
        if job is None or not job.alive:
            return job
        time.sleep(0.2)
    return current()


def _signal_all(procs: list, sig: int) -> None:
    import psutil

    for p in procs:
        try:
            p.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def end_processes(job_id: str, term_grace: float = TERM_GRACE_S) -> list[int]:
    """SIGTERM every process of the job, SIGKILL what is left after term_grace seconds. Returns the pids that
    had to be signalled."""
    import psutil

    procs = job_processes(job_id)
    if not procs:
        return []
    pids = [p.pid for p in procs]
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=term_grace)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    rest = job_processes(job_id)  # a child started during the TERM wait
    if rest:
        _signal_all(rest, signal.SIGKILL)
        psutil.wait_procs(rest, timeout=5)
    return pids


# --------------------------------------------------------------------------------------------------
# The log
# --------------------------------------------------------------------------------------------------
class RunLog:
    """log.jsonl of a run, read incrementally (only the new bytes on every call)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "log.jsonl"
        self.records: list[dict] = []
        self._offset = 0
        self._ino = None
        self._lock = threading.Lock()

    def refresh(self) -> list[dict]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self.records, self._offset, self._ino = [], 0, None
                return self.records
            if st.st_ino != self._ino or st.st_size < self._offset:  # replaced or truncated: read again
                self.records, self._offset, self._ino = [], 0, st.st_ino
            if st.st_size > self._offset:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read(st.st_size - self._offset)
                end = chunk.rfind(b"\n") + 1  # a line being written stays for the next call
                for line in chunk[:end].splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        self.records.append(rec)
                self._offset += end
            return self.records

    def steps(self) -> list[dict]:
        """Training-step records, a step logged again after a resume replacing the earlier one."""
        by_step: dict[int, dict] = {}
        for r in self.refresh():
            if "loss" in r and "step" in r:
                by_step[int(r["step"])] = r
        return [by_step[k] for k in sorted(by_step)]

    def last(self, pred) -> dict | None:
        for r in reversed(self.refresh()):
            if pred(r):
                return r
        return None


def tail(path: str | Path, max_bytes: int = 40_000, max_lines: int = 200) -> str:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = text.splitlines()
    if size > max_bytes:
        lines = lines[1:]  # the first one is cut
    return "\n".join(lines[-max_lines:])


# --------------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------------
class JobManager:
    def __init__(self, state_dir: str | Path, stop_grace: float = STOP_GRACE_S, term_grace: float = TERM_GRACE_S):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop_grace, self.term_grace = stop_grace, term_grace
        self._lock = threading.RLock()
        self._popen: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, RunLog] = {}

    # ---- persistence ---------------------------------------------------------------------------
    @property
    def _current_file(self) -> Path:
        return self.state_dir / "current.json"

    def _write(self, job: Job) -> None:
        write_record(job.to_dict(), [Path(job.run_dir) / "job.json", self._current_file])

    def _read(self) -> Job | None:
        try:
            return Job.from_dict(json.loads(self._current_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def log(self, run_dir: str | Path) -> RunLog:
        key = str(Path(run_dir).resolve())
        if key not in self._logs:
            self._logs[key] = RunLog(key)
        return self._logs[key]

    # ---- state -----------------------------------------------------------------------------------
    def current(self) -> Job | None:
        """The current (or last) job, with its state brought up to date: a job whose processes have all
        ended is finished, stopped or failed, by its exit status or, after a studio restart, by its log."""
        with self._lock:
            job = self._read()
            if job is None or not job.alive:
                return job
            popen = self._popen.get(job.id)
            rc = popen.poll() if popen is not None else None
            launcher = rc is None and (popen is not None or _launcher_alive(job))
            if launcher:
                return job
            self._finish(job, rc, signalled=self._end_leftovers(job))
            return job

    def _end_leftovers(self, job: Job) -> bool:
        """The launcher is gone but workers live on (it was killed): end them, and say so. True if any were."""
        if not job_processes(job.id):
            return False
        pids = end_processes(job.id, self.term_grace)
        job.message = (job.message + " " if job.message else "") + f"ended {len(pids)} process(es) the launcher left behind."
        return bool(pids)

    def _finish(self, job: Job, rc: int | None, signalled: bool = False) -> None:
        log = self.log(job.run_dir)
        last_event = log.last(lambda r: "event" in r and r["event"] in ("done", "stopped", "resumed"))
        job.returncode = rc
        job.ended = time.time()
        stopped = log.last(lambda r: r.get("event") == "stopped")
        done = last_event is not None and last_event["event"] == "done"
        if job.stop_requested and not done:
            # rc alone cannot say: when psutil waits for the signalled launcher it reaps it, and Popen then
            # reports 0 (ECHILD). A stopped trainer always logs "done" after "stopped", so no "done" = cut short.
            job.state = "killed" if signalled or (rc is not None and rc < 0) else "stopped"
        elif rc == 0 or (rc is None and done):
            job.state = "stopped" if (stopped is not None and job.stop_requested) else "finished"
        elif job.stop_requested:
            job.state = "killed" if rc is not None and rc < 0 else "stopped"
        else:
            job.state = "failed"
            last = [l for l in tail(Path(job.run_dir) / "job.log", 8000).splitlines() if l.strip() and not l.startswith("{")]
            if last:
                job.message = (job.message + " " if job.message else "") + f"last line of job.log: {last[-1].strip()[:300]}"
            if rc is None:
                job.message = (job.message + " " if job.message else "") + "its processes ended without a 'done' event in the log (killed, or the studio was down)."
        self._popen.pop(job.id, None)
        self._write(job)

    def running(self) -> Job | None:
        job = self.current()
        return job if job is not None and job.alive else None

    # ---- actions ---------------------------------------------------------------------------------
    def start(self, config: dict, opts: LaunchOptions, resume: bool = False) -> Job:
        """Start `config` (a dict that train.config.load_config accepts; its output_dir is the run directory)."""
        from .checkpoints import CheckpointError, read_checkpoint
        from .config import load_config

        with self._lock:
            busy = self.running()
            if busy is not None:
                raise JobError(f"a training job is already running ({busy.run_dir}, started {time.strftime('%H:%M:%S', time.localtime(busy.started))}). "
                               "One job at a time: stop it first. Nothing was started.")
            cfg = load_config(config)  # ConfigError names the key
            run_dir = Path(cfg.output_dir)
            if not run_dir.is_absolute():
                run_dir = (ROOT / run_dir).resolve()
            ck = run_dir / "checkpoint.pt"
            if resume:
                if not ck.is_file():
                    raise JobError(f"nothing to resume: {run_dir} has no checkpoint.pt. Press Start to begin this run.")
                try:
                    read_checkpoint(ck)
                except CheckpointError as exc:
                    raise JobError(f"cannot resume: {exc} Its kept copies are in {run_dir / 'checkpoints'}.") from None
            elif ck.is_file():
                try:
                    step = f" at step {read_checkpoint(ck)['step']}"
                except CheckpointError:
                    step = ""
                raise JobError(f"{run_dir} already holds a checkpoint{step}. Press Resume to continue that run, "
                               "or set another output_dir for a new one. Nothing was started or overwritten.")
            run_dir.mkdir(parents=True, exist_ok=True)
            config = {**config, "output_dir": str(run_dir)}
            config_path = run_dir / "train.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            argv = build_command(config_path, opts, resume=resume)
            job_id = uuid.uuid4().hex[:12]
            env = {**os.environ, ENV_MARKER: job_id, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   "PYTHONUNBUFFERED": "1"}
            if opts.threads:
                env["OMP_NUM_THREADS"] = str(opts.threads)
            for flag in ("STOP", "SAVE"):
                (run_dir / flag).unlink(missing_ok=True)
            log_file = open(run_dir / "job.log", "ab")
            log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'}: {command_text(argv)}\n".encode())
            log_file.flush()
            try:
                popen = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            except OSError as exc:
                raise JobError(f"could not start {argv[0]}: {exc}") from None
            finally:
                log_file.close()  # the child holds its own copy
            import psutil

            try:
                created = psutil.Process(popen.pid).create_time()
            except psutil.NoSuchProcess:
                created = time.time()
            job = Job(job_id, str(run_dir), argv, popen.pid, created, time.time(), resume=resume, threads=opts.threads, total_steps=cfg.optim.steps)
            self._popen[job_id] = popen
            self._write(job)
            threading.Thread(target=self._wait, args=(job_id, popen), daemon=True, name=f"train-job-{job_id}").start()
            return job

    def _wait(self, job_id: str, popen: subprocess.Popen) -> None:
        rc = popen.wait()
        with self._lock:
            job = self._read()
            if job is None or job.id != job_id or not job.alive:
                return
            self._finish(job, rc, signalled=self._end_leftovers(job))

    def stop(self) -> Job:
        """Ask the job to stop after its current step (STOP file; it saves a checkpoint). If it has not ended
        after stop_grace seconds, SIGTERM then SIGKILL every process it started. Returns at once."""
        with self._lock:
            job = self.current()
            if job is None:
                raise JobError("no training job has been started here; nothing to stop.")
            if not job.alive:
                step = self.log(job.run_dir).steps()
                at = f" at step {step[-1]['step']}" if step else ""
                raise JobError(f"the job in {job.run_dir} already ended ({job.state}{at}); nothing to stop. Its files are untouched.")
            (Path(job.run_dir) / "STOP").touch()
            if job.state != "stopping":
                job.state, job.stop_requested = "stopping", time.time()
                self._write(job)
                threading.Thread(target=self._escalate, args=(job.id,), daemon=True, name=f"train-stop-{job.id}").start()
            return job

    def _escalate(self, job_id: str) -> None:
        deadline = time.time() + self.stop_grace
        while time.time() < deadline:
            job = self.current()
            if job is None or job.id != job_id or not job.alive:
                return
            time.sleep(0.5)
        with self._lock:
            job = self.current()
            if job is None or job.id != job_id or not job.alive:
                return
            pids = end_processes(job_id, self.term_grace)
            job.message = f"did not stop within {self.stop_grace:.0f} s of the STOP file; ended {len(pids)} process(es) with signals."
            popen = self._popen.get(job_id)
            self._finish(job, popen.poll() if popen is not None else None, signalled=bool(pids))

    def save_now(self) -> Job:
        job = self.running()
        if job is None:
            raise JobError("no training job is running; a checkpoint is saved only by a running job.")
        (Path(job.run_dir) / "SAVE").touch()
        return job

    def wait(self, timeout: float) -> Job | None:
        """Block until the current job has ended (tests, scripts)."""
        return wait_until_ended(self.current, timeout)


__all__ = ["ENV_MARKER", "Job", "JobError", "JobManager", "RunLog", "end_processes", "job_processes", "process_alive", "tail", "wait_until_ended",
           "write_record"]
