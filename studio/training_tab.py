"""The studio's Train tab: configure, launch and watch curriculum training; use and evaluate its checkpoints.

    studio = build_studio(engine, extra_tabs=[training_tab(engine, workdir)])     # app.py does this

- Config: a preset (train/presets/*.yaml) in an editable YAML box, the main keys as form fields (kept in step
  with the YAML), saved and loaded as YAML files, checked with train.config.load_config (the message names the
  key).
- Dataset: size and a few samples with their timelines (train/overview.py).
- Curriculum: the difficulty histogram with the thresholds, the phase schedule, the inter-clip share per
  phase, and where the running job is.
- Launch: "Show command" prints the `accelerate launch ...` argument list that Start runs (train/launch.py);
  the job is a subprocess with its own run directory (train/jobs.py). State lives in the server, not the page,
  so a reloaded page or a second browser tab shows the same job.
- Checkpoints: listed; "Generate a sample" exports one (train/checkpoints.py) and renders a held-out sprite
  scene with it; "Use in the Generate tab" swaps the studio's model; "Save now" asks the job for a checkpoint.
- Evaluate: evaluation/ on a checkpoint's samples (or any folder in its layout), as a background process
  (evaluation/jobs.py) with a progress bar and Cancel; its table and chart appear when it ends, also in a page
  opened (or reloaded) later.

Threads: training processes get their own thread count (the form's "threads per process"); while a job runs,
the studio's own torch work (generation, evaluation) uses the cores left over (docs/TRAINING.md).
"""

from __future__ import annotations

import copy
import html
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import yaml

from evaluation.jobs import EvalJob, EvalJobError, EvalJobManager
from train.config import PRESETS_DIR, ConfigError, load_config, read_config_file
from train.jobs import Job, JobError, JobManager, tail
from train.launch import ACCELERATE_CONFIGS, LaunchError, LaunchOptions, build_command, command_text, machine_problems

from . import training_plots as plots

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "reactid-studio"  # = studio.app.DEFAULT_WORKDIR
FORM_FIELDS = (
    ("output_dir", "Run directory (output_dir)"),
    ("optim.steps", "Steps"),
    ("optim.batch_size", "Batch size per process"),
    ("optim.lr", "Learning rate"),
    ("optim.warmup_steps", "Warmup steps"),
    ("data.num_clips", "Clips (sprite world)"),
    ("optim.log_every", "Log every (steps)"),
    ("optim.checkpoint_every", "Checkpoint every (steps)"),
)
WEIGHT_KEYS = ("vae.checkpoint", "text.checkpoint", "model.init_from")
PATH_KEYS = ("data.path",) + WEIGHT_KEYS
STATE_BADGE = {"running": "running", "stopping": "stopping (after the current step)", "finished": "finished", "stopped": "stopped",
               "failed": "failed", "killed": "ended by signals"}
SWITCH_TO_GENERATE_JS = """() => {
  const tab = [...document.querySelectorAll('button[role="tab"]')].find(b => b.textContent.trim() === 'Generate');
  if (tab) tab.click();
  return [];
}"""


class UserError(ValueError):
    """Shown to the user as it is."""


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------------------------------
# YAML <-> dict <-> form
# --------------------------------------------------------------------------------------------------
def parse_yaml(text: str) -> dict:
    try:
        obj = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UserError(f"the YAML does not parse{where}: {getattr(exc, 'problem', None) or exc}") from None
    if obj is None:
        raise UserError("the config is empty: load a preset or paste a YAML config")
    if not isinstance(obj, dict):
        raise UserError(f"the config must be a YAML mapping (key: value lines), got a {type(obj).__name__}")
    return obj


def get_key(d: dict, dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def set_key(d: dict, dotted: str, value: Any) -> dict:
    out = copy.deepcopy(d)
    cur = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value
    return out


def dump_yaml(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=140)


def form_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).split("\n")[0]


def effective_value(cfg_dict: dict, dotted: str) -> Any:
    """A key's value in the YAML, else the trainer's default for it."""
    v = get_key(cfg_dict, dotted)
    if v is not None:
        return v
    from train.config import TrainConfig

    obj: Any = TrainConfig()
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj


def check_config(cfg_dict: dict, strict: bool = True, relax: tuple[str, ...] = PATH_KEYS):
    """(TrainConfig, warnings). strict=False: the `relax` paths that do not exist here are reported, not
    refused (a command shown for another machine; the dataset views of a config whose weights are elsewhere)."""
    warnings: list[str] = []
    probe = copy.deepcopy(cfg_dict)
    placeholder = tempfile.gettempdir()
    for _ in range(len(PATH_KEYS) + 1):
        try:
            return load_config(probe), warnings
        except ConfigError as exc:
            key = str(exc).split(":", 1)[0]
            if strict or key not in relax or "not found" not in str(exc):
                raise
            warnings.append(f"{exc} — fine if the command runs on another machine")
            probe = set_key(probe, key, placeholder)
    raise ConfigError("config: could not be checked")


def _int_or_none(x) -> int | None:
    if x is None or x == "":
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise UserError(f"{x!r} is not a number") from None
    if v != int(v):
        raise UserError(f"{x!r} is not a whole number")
    return int(v)


# --------------------------------------------------------------------------------------------------
# The tab
# --------------------------------------------------------------------------------------------------
class TrainingTab:
    def __init__(self, engine=None, workdir: str | Path | None = None, jobs: JobManager | None = None, dataset_roots: list | None = None,
                 eval_jobs: EvalJobManager | None = None):
        self.engine = engine
        self.workdir = Path(workdir or DEFAULT_WORKDIR).resolve()
        self.media = self.workdir / "training" / "media"
        self.media.mkdir(parents=True, exist_ok=True)
        self.jobs = jobs or JobManager(self.workdir / "training")
        self.eval_jobs = eval_jobs or EvalJobManager(self.workdir / "training")
        self.dataset_roots = dataset_roots if dataset_roots is not None else [ROOT / "data", ROOT / "datasets", ROOT / "runs", self.workdir / "datasets"]
        self.cores = available_cores()
        self._pipes: dict[str, Any] = {}
        self._pipe_lock = threading.Lock()
        self._original_model = None
        self._threads_before: int | None = None

    # ---- config ----------------------------------------------------------------------------------
    def preset_yaml(self, name: str) -> str:
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.is_file():
            raise UserError(f"no preset named {name!r} (have: {', '.join(presets())})")
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
        if isinstance(raw, dict) and "base" in raw:
            # The form and the editor show every key the run will use, so a preset written as a difference from
            # another comes here merged with its base chain.
            comments = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
            merged = read_config_file(path)
            return (comments + f"# (preset {name}: its base chain merged in, {raw['base']} first)\n"
                    + yaml.safe_dump(merged, sort_keys=False, default_flow_style=None, width=120))
        return text

    def validate(self, text: str) -> str:
        try:
            cfg, _ = check_config(parse_yaml(text))
        except (UserError, ConfigError) as exc:
            return f"Warning: config error: {exc}"
        return (f"valid: {cfg.optim.steps} steps, batch {cfg.optim.batch_size} per process, lr {cfg.optim.lr:g}, "
                f"data {cfg.data.source}{' ' + str(cfg.data.path) if cfg.data.source == 'dir' else ''}, run directory `{self.run_dir(cfg.output_dir)}`.")

    def form_values(self, text: str) -> list:
        try:
            d = parse_yaml(text)
        except UserError:
            return [gr.skip() for _ in FORM_FIELDS]
        return [form_text(effective_value(d, key)) for key, _ in FORM_FIELDS]

    def apply_form(self, text: str, key: str, value: str):
        """One form field edited: the same key in the YAML (other keys and their order kept)."""
        try:
            d = parse_yaml(text)
        except UserError:
            return gr.skip(), "Warning: fix the YAML first: the form edits it"
        if not (value or "").strip():  # an emptied field leaves the key as it is
            return gr.skip(), gr.skip()
        try:
            v = yaml.safe_load(value)
        except yaml.YAMLError:
            v = value
        if v == effective_value(d, key):
            return gr.skip(), gr.skip()
        return dump_yaml(set_key(d, key, v)), gr.skip()

    def run_dir(self, output_dir: str) -> Path:
        p = Path(output_dir)
        return p if p.is_absolute() else (ROOT / p).resolve()

    def save_yaml(self, text: str, path: str):
        try:
            d = parse_yaml(text)
        except UserError as exc:
            return f"Warning: not saved: {exc}", None
        note = ""
        try:
            check_config(d, strict=False)
        except ConfigError as exc:
            note = f" It does not validate yet: {exc}"
        name = (path or "").strip() or "train-config.yaml"
        target = Path(name)
        if not target.is_absolute():
            target = self.workdir / "training" / "configs" / target.name
        if target.suffix not in (".yaml", ".yml"):
            target = target.with_suffix(".yaml")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text if text.endswith("\n") else text + "\n")
        copy_for_download = self.media / target.name
        shutil.copyfile(target, copy_for_download)
        return f"saved `{target}`.{note}", str(copy_for_download)

    def load_yaml_file(self, file) -> tuple[Any, str]:
        if file is None:
            return gr.skip(), "Warning: choose a .yaml file first"
        path = Path(file if isinstance(file, str) else getattr(file, "name", ""))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return gr.skip(), f"Warning: {path.name} cannot be read as text: {exc}"
        try:
            d = parse_yaml(text)
        except UserError as exc:
            return gr.skip(), f"Warning: {path.name}: {exc}; the editor was left as it was"
        try:
            check_config(d, strict=False)
            msg = f"loaded {path.name}."
        except ConfigError as exc:
            msg = f"loaded {path.name}, but it does not validate: {exc}"
        return text, msg

    def job_config(self, n_fields: int) -> list:
        """On page (re)load: the editor shows the config of the current (or last) job, so Stop and Resume act on
        the run the page shows."""
        job = self.jobs.current()
        path = Path(job.run_dir) / "train.yaml" if job is not None else None
        if path is None or not path.is_file():
            return [gr.skip()] * (3 + n_fields)
        text = path.read_text()
        return [text, f"showing the config of job `{job.id}` ({STATE_BADGE.get(job.state, job.state)}): `{path}`.", job.command] + self.form_values(text)

    # ---- launch ------------------------------------------------------------------------------
    def options(self, accelerate: str, processes, threads, max_steps) -> LaunchOptions:
        procs = _int_or_none(processes)
        th = _int_or_none(threads) or 0
        ms = _int_or_none(max_steps)
        if procs is not None and procs < 1:
            raise UserError("processes: at least 1 (or leave empty for the accelerate config's count)")
        return LaunchOptions(accelerate_config=accelerate or "cpu", num_processes=procs, threads=th, max_steps=ms)

    def show_command(self, text, accelerate, processes, threads, max_steps) -> tuple[str, str]:
        try:
            d = parse_yaml(text)
            cfg, warnings = check_config(d, strict=False)
            opts = self.options(accelerate, processes, threads, max_steps)
            run_dir = self.run_dir(cfg.output_dir)
            config_path = run_dir / "train.yaml"
            running = self.jobs.running()
            if running is not None and Path(running.run_dir) == run_dir:
                return running.command, f"this run directory's job is running; this is the command it runs."
            argv = build_command(config_path, opts)
        except (UserError, ConfigError, LaunchError) as exc:
            return gr.skip(), f"Warning: {'config error: ' if isinstance(exc, ConfigError) else ''}{exc}"
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(dump_yaml({**d, "output_dir": str(run_dir)}))
        notes = [f"Wrote the config it reads to `{config_path}`. Run the command from `{ROOT}`."]
        notes += [f"Warning: {w}" for w in warnings]
        problems = machine_problems(cfg, opts)
        notes += [f"not on this machine: {p}" for p in problems]
        return command_text(argv), "\n\n".join(notes)

    def start(self, text, accelerate, processes, threads, max_steps, resume: bool = False) -> tuple[str, Any]:
        try:
            d = parse_yaml(text)
            cfg, _ = check_config(d, strict=False)
            opts = self.options(accelerate, processes, threads, max_steps)
            problems = machine_problems(cfg, opts)
            if problems:
                return "Warning: " + " ".join(problems) + " Nothing was started.", gr.skip()
            load_config(d)  # now every path must exist here
            job = self.jobs.start({**d, "output_dir": str(self.run_dir(cfg.output_dir))}, opts, resume=resume)
        except ConfigError as exc:
            return f"Warning: config error: {exc}. Nothing was started.", gr.skip()
        except (UserError, LaunchError, JobError) as exc:
            return f"Warning: {exc}", gr.skip()
        self.split_threads(job)
        return f"{'resumed' if resume else 'started'} job `{job.id}` in `{job.run_dir}` (launcher pid {job.pid}).", job.command

    def stop(self) -> str:
        try:
            job = self.jobs.stop()
        except JobError as exc:
            return f"{exc}"
        return (f"asked the job to stop: it finishes its step, saves a checkpoint and exits. If it has not ended after "
                f"{self.jobs.stop_grace:.0f} s, every process it started is ended with signals. Run directory: `{job.run_dir}`.")

    def save_now(self) -> str:
        try:
            job = self.jobs.save_now()
        except JobError as exc:
            return f"{exc}"
        return f"asked the job to save a checkpoint after its current step; it will be kept as `checkpoints/step-N.pt` in `{job.run_dir}`."

    @staticmethod
    def training_threads(job: Job | None) -> int:
        """Threads the job's training processes use together (0: no job running)."""
        if job is None or not job.alive:
            return 0
        procs = 1
        try:
            i = job.argv.index("--num_processes")
            procs = int(job.argv[i + 1])
        except (ValueError, IndexError):
            if "cpu_multiprocess" in " ".join(job.argv) or "cpu_fsdp" in " ".join(job.argv):
                procs = 2
        return (job.threads or 1) * procs

    def split_threads(self, job: Job | None) -> None:
        """While a job runs, the studio's own torch work gets the cores the training processes leave."""
        import torch

        if job is not None and job.alive:
            want = max(1, self.cores - self.training_threads(job))
            if self._threads_before is None:
                self._threads_before = torch.get_num_threads()
            if torch.get_num_threads() != want:
                torch.set_num_threads(want)
        elif self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    # ---- watching ------------------------------------------------------------------------------
    def status_markdown(self, job: Job | None) -> str:
        if job is None:
            return "No training job yet. Load a preset, check it, and press **Start**."
        recs = self.jobs.log(job.run_dir).steps()
        last = recs[-1] if recs else None
        parts = [f"**{STATE_BADGE.get(job.state, job.state)}** · job `{job.id}` · run directory `{job.run_dir}`"]
        if last is not None:
            total = self.schedule_steps(job) or "?"
            if total != job.total_steps:
                total = f"{total} (fitted to the time budget)"
            parts.append(f"step **{last['step']}** / {total} · phase **{last.get('phase', '?')}** / 4 · threshold τ **{last.get('threshold', float('nan')):.3f}** · "
                         f"lr **{last.get('lr', float('nan')):.2e}** · **{last.get('samples_per_s', float('nan')):.1f}** samples/s · "
                         f"inter-clip share {last.get('inter_frac', 0):.0%}")
        else:
            ev = self.jobs.log(job.run_dir).last(lambda r: "event" in r)
            parts.append("preparing: " + (f"{ev['event']}" + (f" {ev.get('done', '')}/{ev.get('of', '')}" if "of" in ev else "") if ev else "starting the processes"))
        elapsed = (job.ended or time.time()) - job.started
        parts.append(f"elapsed {elapsed:.0f} s" + (f" · exit status {job.returncode}" if job.returncode is not None else ""))
        if job.message:
            parts.append(f"{job.message}")
        return "\n\n".join(parts)

    def schedule_steps(self, job: Job) -> int | None:
        """The run's schedule length: optim.steps, or what optim.time_budget_s fitted it to (the log's time_budget
        event), so the progress line and the curriculum view follow the steps the run will actually take."""
        fitted = self.jobs.log(job.run_dir).last(lambda r: r.get("event") == "time_budget")
        return int(fitted["total_steps"]) if fitted else job.total_steps

    def checkpoint_rows(self, run_dir: str | Path | None) -> tuple[list[list], list[tuple[str, str]]]:
        from train.checkpoints import list_checkpoints

        if not run_dir:
            return [], []
        rows, choices = [], []
        for c in list_checkpoints(run_dir):
            rows.append([c["name"], c["step"] if c["step"] is not None else "—", c["size_mb"], c["modified"], "ok" if not c["error"] else f"Warning: {c['error']}"])
            label = f"{c['name']} — step {c['step']}" if c["step"] is not None else f"{c['name']} — unreadable"
            choices.append((label, c["path"]))
        return rows, choices

    def tick(self, view: dict | None):
        """Everything that follows the job: called every second by the page's timer and on page load."""
        view = dict(view or {})
        job = self.jobs.current()
        self.split_threads(job)
        skip = gr.skip()
        status = self.status_markdown(job)
        if job is None:
            return status, "", skip, skip, skip, skip, skip, view
        log = self.jobs.log(job.run_dir)
        recs = log.steps()
        log_path = Path(job.run_dir) / "job.log"
        try:
            st = log_path.stat()
            log_sig = [st.st_size, st.st_mtime]
        except FileNotFoundError:
            log_sig = None
        log_text = tail(log_path) if view.get("log_sig") != log_sig or view.get("job") != job.id else skip
        changed = view.get("job") != job.id or view.get("n") != len(recs)
        loss = plots.loss_figure(recs, revision=job.id) if changed or view.get("state") != job.state else skip
        ck_sig = self._ck_signature(job.run_dir)
        if view.get("ck") != ck_sig or view.get("job") != job.id:
            rows, choices = self.checkpoint_rows(job.run_dir)
            table = gr.update(value=rows)
            dd = gr.update(choices=choices, value=choices[0][1] if choices else None)
        else:
            table = dd = skip
        sched = inter = skip
        step = recs[-1]["step"] if recs else None
        bucket = None if step is None else (recs[-1].get("phase"), int(20 * step / max(1, self.schedule_steps(job) or 1)))
        if (view.get("job") != job.id or view.get("bucket") != bucket) and (Path(job.run_dir) / "curriculum.json").is_file():
            try:
                desc = json.loads((Path(job.run_dir) / "curriculum.json").read_text())
                from train.overview import observed_inter_share

                sched = plots.schedule_figure(desc, step)
                inter = plots.inter_share_figure(desc, observed_inter_share(recs), recs[-1].get("phase") if recs else None)
                view["bucket"] = bucket
            except (ValueError, KeyError):
                pass
        view.update({"job": job.id, "n": len(recs), "state": job.state, "log_sig": log_sig, "ck": ck_sig})
        return status, log_text, loss, table, dd, sched, inter, view

    @staticmethod
    def _ck_signature(run_dir: str) -> list:
        sig = []
        for p in [Path(run_dir) / "checkpoint.pt"] + sorted((Path(run_dir) / "checkpoints").glob("step-*.pt")):
            try:
                st = p.stat()
                sig.append([p.name, st.st_mtime, st.st_size])
            except FileNotFoundError:
                pass
        return sig

    # ---- dataset and curriculum ---------------------------------------------------------------
    def dataset_choices(self) -> list[tuple[str, str]]:
        from train.overview import find_datasets

        return [("sprite world (generated from data.seed)", "sprites")] + [(str(p), str(p)) for p in find_datasets(self.dataset_roots)]

    def choose_dataset(self, text: str, choice: str):
        try:
            d = parse_yaml(text)
        except UserError as exc:
            return gr.skip(), f"Warning: {exc}"
        if not choice:
            return gr.skip(), gr.skip()
        if choice == "sprites":
            d = set_key(d, "data.source", "sprites")
            data = {k: v for k, v in d["data"].items() if k != "path"}
            d["data"] = data
        else:
            p = Path(choice).expanduser()
            if not (p / "manifest.jsonl").is_file():
                return gr.skip(), f"Warning: data.path: {p} is not a dataset directory (no manifest.jsonl; docs/DATASET.md)"
            d = set_key(set_key(d, "data.source", "dir"), "data.path", str(p.resolve()))
        return dump_yaml(d), "dataset set in the config; press **Inspect dataset** to see it."

    def inspect_dataset(self, text: str):
        from train.overview import DatasetError, dataset_summary, frame_strip, timeline_lines

        try:
            cfg, _ = check_config(parse_yaml(text), strict=False, relax=WEIGHT_KEYS)
            summary = dataset_summary(cfg)
        except (UserError, ConfigError, DatasetError) as exc:
            return f"Warning: {exc}", [], ""
        head = f"**{summary.num_clips} clips** · {summary.description}"
        if summary.size_mb is not None:
            head += f" · {summary.size_mb} MB on disk"
        if summary.skipped:
            head += f"\n\n{len(summary.skipped)} sample(s) skipped as unreadable: " + "; ".join(summary.skipped[:5])
        gallery, lines = [], []
        for i, clip in enumerate(summary.samples):
            name = getattr(clip, "id", None) or f"sample {i}"
            gallery.append((frame_strip(clip.frames), f"{name}: {clip.timeline.prompt}"))
            lines.append(f"**{name}** — {clip.timeline.prompt} ({clip.timeline.duration:g} s)\n" + "\n".join(f"- {l}" for l in timeline_lines(clip.timeline)))
        return head, gallery, "\n\n".join(lines)

    def preview_curriculum(self, text: str):
        from train.overview import DatasetError, curriculum_description, observed_inter_share

        try:
            cfg, _ = check_config(parse_yaml(text), strict=False, relax=WEIGHT_KEYS)
            run_dir = self.run_dir(cfg.output_dir)
            desc, source = curriculum_description(cfg, run_dir)
        except (UserError, ConfigError, DatasetError, ValueError) as exc:
            return f"Warning: {exc}", gr.skip(), gr.skip(), gr.skip()
        job = self.jobs.current()
        step = phase = None
        observed = None
        if job is not None and Path(job.run_dir) == run_dir:
            recs = self.jobs.log(job.run_dir).steps()
            if recs:
                step, phase = recs[-1]["step"], recs[-1].get("phase")
                observed = observed_inter_share(recs)
        th = ", ".join(f"τ{i + 1} = {t:.3f}" for i, t in enumerate(desc["thresholds"]))
        md = f"From {source}. Thresholds: {th}. Phase boundaries (steps): {desc['boundaries']}."
        return md, plots.difficulty_figure(desc), plots.schedule_figure(desc, step), plots.inter_share_figure(desc, observed, phase)

    # ---- checkpoints: generate, use, evaluate -----------------------------------------------------
    def _export(self, checkpoint: str) -> dict:
        from train.checkpoints import CheckpointError, export_checkpoint, read_checkpoint

        if not checkpoint:
            raise UserError("choose a checkpoint first")
        ck = Path(checkpoint)
        run_dir = ck.parent if ck.name == "checkpoint.pt" else ck.parent.parent
        try:
            step = read_checkpoint(ck)["step"]
            out = run_dir / "exports" / f"step-{step:07d}" if ck.name != "checkpoint.pt" else run_dir / "exports" / f"latest-step-{step:07d}"
            marker = out / "checkpoint_source.json"
            if marker.is_file() and marker.stat().st_mtime >= ck.stat().st_mtime:
                kind = "reactid_checkpoint" if (out / "reactid_config.json").is_file() else "pipeline"
                return {"path": str(out), "kind": kind, "step": step, "use": ""}
            return export_checkpoint(run_dir, ck, out)
        except CheckpointError as exc:
            raise UserError(str(exc)) from None

    @staticmethod
    def _sample_world(info: dict) -> dict:
        """The sprite world the checkpoint's run trained on (its config.json), at the exported pipeline's size."""
        world = {"duration": 4.0, "max_subjects": 2, "max_actions": 3}
        src = Path(info["path"]).parent.parent / "config.json"
        try:
            data = json.loads(src.read_text()).get("data", {})
            if data.get("source") == "sprites" and isinstance(data.get("world"), dict):
                world = dict(data["world"])
        except (OSError, ValueError):
            pass
        from model.pipeline import PIPELINE_CONFIG

        try:
            pc = json.loads((Path(info["path"]) / PIPELINE_CONFIG).read_text())
        except (OSError, ValueError):
            pc = {}
        return {**world, "height": int(pc.get("default_height", 64)), "width": int(pc.get("default_width", 64))}

    def _pipeline(self, path: str):
        from model.pipeline import ReactIDPipeline

        with self._pipe_lock:
            if path not in self._pipes:
                self._pipes = {path: ReactIDPipeline.from_pretrained(path)}  # keep one: they can be large
            return self._pipes[path]

    def generate_sample(self, checkpoint: str, steps=20):
        from model.video import export_mp4
        from train.sprites import WorldConfig, generate_clip

        try:
            info = self._export(checkpoint)
            if info["kind"] != "pipeline":
                return None, f"a run on Wan weights exports ReactID weights: `{info['path']}`. Generate with `python app.py --model <Wan dir> --reactid-checkpoint {info['path']}` on a GPU machine."
            pipe = self._pipeline(info["path"])
            h, w = int(pipe.default_height), int(pipe.default_width)
            clip = generate_clip(900_000, WorldConfig.from_kwargs(**self._sample_world(info)))  # a held-out seed (evaluation/)
            refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
            out = pipe(clip.timeline, refs, num_inference_steps=int(steps or 20), guidance_scale=3.0, seed=0, progress=False)
            video = self.media / f"sample-{Path(info['path']).name}-{int(time.time())}.mp4"
            frames = out.frames
            scale = max(1, 256 // max(h, w))
            if scale > 1:
                frames = np.asarray(frames).repeat(scale, 1).repeat(scale, 2)
            export_mp4(frames, video, fps=clip.fps)
        except UserError as exc:
            return None, f"Warning: {exc}"
        except Exception as exc:  # noqa: BLE001 - a failed generation is a message, the studio stays up
            return None, f"Warning: generation from this checkpoint failed: {exc.__class__.__name__}: {exc}"
        actions = "; ".join(f"{s.name}: " + ", ".join(a.text for a in s.actions) for s in clip.timeline.subjects)
        return str(video), (f"step {info['step']}, held-out scene (seed 900000): {clip.timeline.prompt} — {actions}.\n\n"
                            f"Exported pipeline: `{info['path']}` (`python app.py --model {info['path']} --device cpu`).")

    def use_in_generate(self, checkpoint: str) -> str:
        if self.engine is None:
            raise gr.Error("this studio has no Generate tab engine to hand the checkpoint to")
        try:
            info = self._export(checkpoint)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        if info["kind"] != "pipeline":
            raise gr.Error(f"a Wan-based run exports ReactID weights ({info['path']}); start the studio with --model <Wan dir> --reactid-checkpoint {info['path']}")
        pipe = self._pipeline(info["path"])
        before = self.engine.limits()
        name = f"checkpoint step {info['step']} ({info['path']})"
        after = (int(pipe.default_height), int(pipe.default_width), int(pipe.default_fps), int(pipe.max_subjects))
        if after != (before.height, before.width, before.fps, before.max_subjects):
            raise gr.Error(f"this checkpoint makes {after[1]}x{after[0]} video at {after[2]} fps; the Generate tab was built for "
                           f"{before.width}x{before.height} at {before.fps} fps. Open it in its own studio: python app.py --model {info['path']} --device cpu")
        if self._original_model is None:
            self._original_model = (self.engine._pipe, self.engine.name)
        self.engine.use_pipeline(pipe, name)
        return f"The Generate tab now uses {name} (for every visitor of this studio). **Restore the studio's model** switches back."

    def restore_model(self) -> str:
        if self.engine is None or self._original_model is None:
            return "the Generate tab already uses the studio's own model."
        pipe, name = self._original_model
        self.engine.use_pipeline(pipe, name)
        self._original_model = None
        return f"The Generate tab uses {name} again."

    # ---- evaluation (a background job: evaluation/jobs.py) ---------------------------------------------
    def start_eval(self, checkpoint: str, scenes=4, steps=20, folder: str = "") -> str:
        """Start evaluation/ on a folder: the given one, else held-out sprite scenes that the job renders with the
        checkpoint (beside their ground truth). Returns the message; the progress, table and chart follow in
        eval_view."""
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            threads = max(1, self.cores - self.training_threads(self.jobs.current()))  # the cores training leaves
            if folder and folder.strip():
                root = Path(folder.strip()).expanduser().resolve()
                if not root.is_dir():
                    raise UserError(f"evaluation folder not found: {root}")
                job_dir = self.workdir / "training" / "eval" / f"{root.name}-{stamp}"
                job = self.eval_jobs.start(job_dir, root, label=f"folder {root}", threads=threads)
            else:
                n = _int_or_none(scenes) or 4
                if not 1 <= n <= 64:
                    raise UserError("scenes: between 1 and 64")
                if self.eval_jobs.running() is not None:  # before the export, which takes a while
                    raise UserError("an evaluation is already running; one at a time: cancel it or wait. Nothing was started.")
                info = self._export(checkpoint)
                if info["kind"] != "pipeline":
                    raise UserError("a Wan-based run's samples are generated on a GPU machine; give their folder in 'Evaluate a folder instead'")
                job_dir = Path(info["path"]).parent.parent / "eval" / f"{Path(info['path']).name}-{stamp}"
                job = self.eval_jobs.start(job_dir, job_dir / "samples", label=f"checkpoint step {info['step']}", threads=threads, scenes=n,
                                           models={f"step-{info['step']}": info["path"]}, steps=_int_or_none(steps) or 20, guidance=3.0,
                                           world=self._sample_world(info))
        except (UserError, EvalJobError) as exc:
            return f"Warning: {exc}"
        return f"started the evaluation of {job.label} ({threads} thread{'s' if threads != 1 else ''}); files in `{job.job_dir}`."

    def cancel_eval(self) -> str:
        try:
            job = self.eval_jobs.cancel()
        except EvalJobError as exc:
            return f"{exc}"
        return f"cancelled the evaluation of {job.label} after {(job.ended or time.time()) - job.started:.0f} s; every process it started has ended."

    @staticmethod
    def progress_html(job: EvalJob | None, prog) -> str:
        if job is None:
            return "<div class='rt-eval-progress'>No evaluation yet.</div>"
        frac = 1.0 if job.state == "finished" else prog.fraction
        words = {"running": prog.text, "cancelling": "cancelling…", "finished": prog.text, "cancelled": "cancelled", "failed": "failed"}[job.state]
        elapsed = (job.ended or time.time()) - job.started
        return (f"<div class='rt-eval-progress' data-state='{job.state}'><progress value='{frac:.3f}' max='1' style='width:100%'></progress>"
                f"<div>{frac:.0%} · {html.escape(words)} · {html.escape(job.label)} · {elapsed:.0f} s</div></div>")

    def eval_result(self, job: EvalJob) -> tuple[str, Any, str]:
        """(tables, chart or None, message) of an ended job."""
        from evaluation.report import chart_figure, render
        from evaluation.run import Results

        if job.state == "cancelled":
            return "", None, f"the evaluation of {job.label} was cancelled; its partial files are in `{job.job_dir}`."
        path = job.results_dir / "results.json"
        try:
            res = Results.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            return "", None, f"Warning: the evaluation of {job.label} failed: {job.message or exc}"
        failed = [i for i in res.items if not i["ok"]]
        msg = [f"{res.evaluated} of {len(res.items)} clip(s) evaluated in {res.seconds:.1f} s from `{res.root}`. Files: `{path}` (and the CSV files, "
               f"comparison.html beside it)."]
        if job.state == "failed":
            msg.insert(0, f"Warning: {job.message}")
        if failed:
            msg.append("**Not evaluated:**\n" + "\n".join(f"- {i['method']}/{i['clip']}: {i['notes'][0] if i['notes'] else 'unknown reason'}" for i in failed))
        if res.problems:
            msg.append("**Skipped files:**\n" + "\n".join(f"- {p}" for p in res.problems))
        if not res.items:
            msg.append("Warning: no clip found: the folder needs <clip>.mp4 with <clip>.json (docs/EVALUATION.md).")
        return render(res), (chart_figure(res) if res.evaluated else None), "\n\n".join(msg)

    def eval_view(self, view: dict | None):
        """The evaluation part of the page (timer and page load): progress while the job runs, then its table,
        chart and message, once per job (a reloaded page starts with an empty view, so it gets them again)."""
        view = dict(view or {})
        job = self.eval_jobs.current()
        skip = gr.skip()
        if job is None:
            return (self.progress_html(None, None) if view.get("job") != "none" else skip), skip, skip, skip, {"job": "none"}
        prog = self.eval_jobs.progress(job)
        sig = [job.id, job.state, round(prog.fraction, 3), prog.text, int(time.time() - job.started) if job.alive else None]
        bar = self.progress_html(job, prog) if view.get("sig") != sig else skip
        table = plot = msg = skip
        if not job.alive and view.get("shown") != job.id:
            text, chart, msg = self.eval_result(job)
            table, plot = text, chart
            view["shown"] = job.id
        elif job.alive and view.get("job") != job.id:
            table, plot, msg = "", None, f"evaluating {job.label}; the table and chart appear when it ends. Files in `{job.job_dir}`."
        view.update({"job": job.id, "sig": sig})
        return bar, msg, table, plot, view

    # ---- UI ------------------------------------------------------------------------------------
    def build(self) -> None:
        names = presets()
        first = "sprite" if "sprite" in names else (names[0] if names else None)
        text0 = self.preset_yaml(first) if first else ""
        default_threads = max(1, self.cores // 2)
        gr.Markdown("Curriculum training of the ReactID model as a background job (docs/TRAINING.md). The job keeps running when this page "
                    "is closed; reopen the tab to watch it again.")
        with gr.Accordion("1 · Configuration", open=True):
            with gr.Row():
                preset = gr.Dropdown(names, value=first, label="Preset", scale=2, elem_id="rt-train-preset")
                load_preset = gr.Button("Load preset", scale=1, elem_id="rt-train-load-preset")
                validate_btn = gr.Button("Check config", scale=1, elem_id="rt-train-validate")
            with gr.Row():
                fields = [gr.Textbox(value=v, label=label, elem_id=f"rt-train-f-{key.replace('.', '-')}", min_width=140)
                          for (key, label), v in zip(FORM_FIELDS, self.form_values(text0))]
            config = gr.Code(value=text0, language="yaml", label="Config (YAML: every key of train/config.py)", lines=16, max_lines=40,
                             interactive=True, elem_id="rt-train-yaml")
            config_msg = gr.Markdown("", elem_id="rt-train-config-msg")
            with gr.Row():
                save_path = gr.Textbox(value="my-run.yaml", label="Save as", scale=2, elem_id="rt-train-save-path")
                save_btn = gr.Button("Save YAML", scale=1, elem_id="rt-train-save")
                saved_file = gr.File(label="Saved file", scale=2, interactive=False, elem_id="rt-train-saved-file")
                upload = gr.File(label="Load a YAML config", file_types=[".yaml", ".yml"], scale=2, elem_id="rt-train-upload")
        with gr.Accordion("2 · Dataset", open=False):
            with gr.Row():
                ds_pick = gr.Dropdown(self.dataset_choices(), value="sprites", label="Dataset", allow_custom_value=True, scale=3, elem_id="rt-train-dataset")
                ds_refresh = gr.Button("Find datasets", scale=1)
                ds_inspect = gr.Button("Inspect dataset", scale=1, elem_id="rt-train-inspect")
            ds_summary = gr.Markdown("", elem_id="rt-train-ds-summary")
            ds_gallery = gr.Gallery(label="Samples (frames across each clip)", columns=2, height=260, elem_id="rt-train-ds-gallery")
            ds_timelines = gr.Markdown("", elem_id="rt-train-ds-timelines")
        with gr.Accordion("3 · Curriculum", open=False):
            cur_btn = gr.Button("Show the curriculum of this config", elem_id="rt-train-curriculum")
            cur_msg = gr.Markdown("")
            with gr.Row():
                hist_plot = gr.Plot(label="Difficulty", elem_id="rt-train-hist")
                sched_plot = gr.Plot(label="Phases", elem_id="rt-train-schedule")
                inter_plot = gr.Plot(label="Inter-clip share", elem_id="rt-train-inter")
        with gr.Accordion("4 · Run", open=True):
            with gr.Row():
                acc = gr.Dropdown([(f"{k}: {v[2]}", k) for k, v in ACCELERATE_CONFIGS.items()], value="cpu", label="accelerate config (train/accelerate/)",
                                  scale=3, elem_id="rt-train-accelerate")
                procs = gr.Textbox(value="", label="Processes (empty: the config's)", scale=1, elem_id="rt-train-procs")
                threads = gr.Textbox(value=str(default_threads), label=f"Threads per process ({self.cores} core{'s' if self.cores != 1 else ''} free here)", scale=1, elem_id="rt-train-threads")
                max_steps = gr.Textbox(value="", label="Stop after step (empty: all)", scale=1, elem_id="rt-train-max-steps")
            with gr.Row():
                show_btn = gr.Button("Show command", elem_id="rt-train-show")
                start_btn = gr.Button("Start", variant="primary", elem_id="rt-train-start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="rt-train-stop")
                resume_btn = gr.Button("Resume", elem_id="rt-train-resume")
                save_now_btn = gr.Button("Save now", elem_id="rt-train-save-now")
            command = gr.Textbox(label="Command (the argument list Start runs, as a shell line)", lines=2, interactive=False, buttons=["copy"],
                                 elem_id="rt-train-command")
            run_msg = gr.Markdown("", elem_id="rt-train-msg")
            status = gr.Markdown(self.status_markdown(self.jobs.current()), elem_id="rt-train-status")
            loss_plot = gr.Plot(label="Loss", elem_id="rt-train-loss")
            log_box = gr.Textbox(label="Live log (job.log)", lines=14, max_lines=14, autoscroll=True, interactive=False, elem_id="rt-train-log")
        with gr.Accordion("5 · Checkpoints", open=True):
            ck_table = gr.Dataframe(headers=["checkpoint", "step", "MB", "saved", "status"], interactive=False, elem_id="rt-train-ckpts")
            with gr.Row():
                ck_pick = gr.Dropdown([], label="Checkpoint", scale=3, elem_id="rt-train-ckpt")
                sample_steps = gr.Number(value=20, precision=0, minimum=1, maximum=100, label="Sampling steps", scale=1)
            with gr.Row():
                gen_btn = gr.Button("Generate a sample from this checkpoint", elem_id="rt-train-generate")
                use_btn = gr.Button("Use it in the Generate tab", elem_id="rt-train-use")
                restore_btn = gr.Button("Restore the studio's model", elem_id="rt-train-restore")
            ck_msg = gr.Markdown("", elem_id="rt-train-ck-msg")
            sample_video = gr.Video(label="Sample", interactive=False, autoplay=True, loop=True, elem_id="rt-train-sample")
        with gr.Accordion("6 · Evaluate", open=False):
            gr.Markdown("The evaluation suite (docs/EVALUATION.md) on the checkpoint above: it renders held-out sprite scenes with it and "
                        "measures them beside their ground truth. Or give a folder of generated clips in the suite's layout.")
            with gr.Row():
                ev_scenes = gr.Number(value=4, precision=0, minimum=1, maximum=64, label="Scenes", scale=1)
                ev_folder = gr.Textbox(value="", label="Evaluate a folder instead (optional)", scale=3, elem_id="rt-train-eval-folder")
                ev_btn = gr.Button("Evaluate", scale=1, elem_id="rt-train-evaluate")
                ev_cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="rt-train-eval-cancel")
            ev_start_msg = gr.Markdown("", elem_id="rt-train-eval-start-msg")
            ev_progress = gr.HTML(self.progress_html(None, None), elem_id="rt-train-eval-progress")
            ev_msg = gr.Markdown("", elem_id="rt-train-eval-msg")
            ev_table = gr.Textbox(label="Tables", lines=12, interactive=False, elem_id="rt-train-eval-table")
            ev_plot = gr.Plot(label="Comparison", elem_id="rt-train-eval-plot")
        view = gr.State({})
        ev_view = gr.State({})
        timer = gr.Timer(1.0)

        # ---- wiring ----
        fast = dict(concurrency_limit=None, show_progress="hidden")

        def do_load_preset(name):
            try:
                text = self.preset_yaml(name)
            except UserError as exc:
                return [gr.skip(), f"Warning: {exc}"] + [gr.skip()] * len(fields)
            return [text, f"preset **{name}** loaded."] + self.form_values(text)

        load_preset.click(do_load_preset, [preset], [config, config_msg] + fields, api_name="train_load_preset", **fast)
        validate_btn.click(self.validate, [config], [config_msg], api_name="train_validate", **fast)
        for (key, _), box in zip(FORM_FIELDS, fields):
            box.change(lambda text, value, _k=key: self.apply_form(text, _k, value), [config, box], [config, config_msg], trigger_mode="always_last", **fast)
        config.change(self.form_values, [config], fields, trigger_mode="always_last", **fast)
        save_btn.click(self.save_yaml, [config, save_path], [config_msg, saved_file], api_name="train_save_yaml", **fast)

        def do_upload(file):
            text, msg = self.load_yaml_file(file)
            return [text, msg] + (self.form_values(text) if isinstance(text, str) else [gr.skip()] * len(fields))

        upload.upload(do_upload, [upload], [config, config_msg] + fields, **fast)
        ds_refresh.click(lambda: gr.update(choices=self.dataset_choices()), None, [ds_pick], **fast)
        ds_pick.input(self.choose_dataset, [config, ds_pick], [config, ds_summary], **fast)
        ds_inspect.click(self.inspect_dataset, [config], [ds_summary, ds_gallery, ds_timelines], api_name="train_inspect_dataset")
        cur_btn.click(self.preview_curriculum, [config], [cur_msg, hist_plot, sched_plot, inter_plot], api_name="train_curriculum")
        launch_in = [config, acc, procs, threads, max_steps]
        show_btn.click(self.show_command, launch_in, [command, run_msg], api_name="train_show_command", **fast)
        start_btn.click(lambda *a: self.start(*a, resume=False), launch_in, [run_msg, command], api_name="train_start", concurrency_limit=1,
                        concurrency_id="train-job", show_progress="hidden")
        resume_btn.click(lambda *a: self.start(*a, resume=True), launch_in, [run_msg, command], api_name="train_resume", concurrency_limit=1,
                         concurrency_id="train-job", show_progress="hidden")
        stop_btn.click(self.stop, None, [run_msg], api_name="train_stop", **fast)
        save_now_btn.click(self.save_now, None, [run_msg], api_name="train_save_now", **fast)
        outs = [status, log_box, loss_plot, ck_table, ck_pick, sched_plot, inter_plot, view]
        ev_outs = [ev_progress, ev_msg, ev_table, ev_plot, ev_view]

        def tick_all(v, ev):  # one event per second for both jobs: a loaded machine feels every extra request
            return (*self.tick(v), *self.eval_view(ev))

        timer.tick(tick_all, [view, ev_view], outs + ev_outs, api_name="train_tick", **fast)
        gen_btn.click(self.generate_sample, [ck_pick, sample_steps], [sample_video, ck_msg], api_name="train_generate_sample")
        use_btn.click(self.use_in_generate, [ck_pick], [ck_msg], api_name="train_use_checkpoint").success(None, None, None, js=SWITCH_TO_GENERATE_JS)
        restore_btn.click(self.restore_model, None, [ck_msg], **fast)
        ev_btn.click(self.start_eval, [ck_pick, ev_scenes, sample_steps, ev_folder], [ev_start_msg], api_name="train_evaluate", concurrency_limit=1,
                     concurrency_id="eval-job", show_progress="hidden")
        ev_cancel.click(self.cancel_eval, None, [ev_start_msg], api_name="train_eval_cancel", **fast)
        from gradio.context import Context

        root = Context.root_block
        if root is not None:  # re-attach at once on (re)load, not one timer period later, with the job's own config
            root.load(tick_all, [view, ev_view], outs + ev_outs, **fast)
            root.load(lambda: self.job_config(len(fields)), None, [config, config_msg, command] + fields, **fast)


def training_disabled() -> str | None:
    """Why the tab must not launch anything here (a public deployment), or None."""
    if os.environ.get("REACTID_DISABLE_TRAINING"):
        return "REACTID_DISABLE_TRAINING is set"
    if os.environ.get("SPACE_ID"):
        return "this studio runs on a public Hugging Face Space"
    return None


def training_tab(engine=None, workdir: str | Path | None = None, **kwargs) -> tuple[str, Any]:
    """(label, build function) for build_studio(extra_tabs=...). On a public deployment the tab only says why it is
    off: it starts processes and writes files wherever its config says."""
    why = training_disabled()
    if why:
        return "Train", lambda: gr.Markdown(f"Training from the studio is off: {why}. Train with `python -m train` (docs/TRAINING.md).",
                                            elem_id="rt-train-disabled")
    tab = TrainingTab(engine, workdir, **kwargs)
    return "Train", tab.build


__all__ = ["TrainingTab", "UserError", "check_config", "training_disabled", "training_tab"]
