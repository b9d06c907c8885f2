"""`python -m annotate run <videos> --out <dataset> --workers N`: the pipeline at dataset scale.

- **Engines.** `local` (default): a process pool of N workers, one video per task, one core per
  worker (torch, OpenCV and onnxruntime held to one thread each). `ray`: the same function as Ray
  tasks (`ray.init()` joins a running cluster when RAY_ADDRESS is set, else starts a local one with
  N CPUs). With N = 1 and the local engine the videos run in this process.
- **One writer.** Workers only compute; this process writes every result into the annotation
  store (`<out>/annotations.db`, annotate/store.py), then exports the training dataset from the
  store with `annotate.exchange.export_dataset`, the format's one writer (`<out>/manifest.jsonl`,
  `<out>/samples/`, loadable by model.dataset_format.DatasetReader and train.dataset.ReactIDDataset).
- **Resumable.** Per video, a status file `<out>/pipeline/videos/<key>.json` records the file's size
  and modification time, the clips stored and the errors. A re-run skips videos whose status says
  done for the same file, and clips the store already holds from the pipeline. `--retry-failed`
  runs failed videos (unreadable, no clip) again.
- **Errors per clip.** A clip that a stage fails is recorded (`<out>/pipeline/errors.jsonl`, the
  video's status file, the final report) with the stage and the reason, and the run goes on.
  Problems that do not fail a clip are in its `errors` in the store.
- A progress bar (tqdm) counts videos, clips and errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import NotAvailable, limit_threads
from .document import ClipAnnotation, StoreError
from .pipeline import PIPELINE_VERSION, Pipeline, PipelineConfig, clip_id_for, video_signature
from .store import AnnotationStore, ConflictError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
ANNOTATOR = "pipeline"
DB_NAME = "annotations.db"


@dataclass
class RunReport:
    out: Path
    videos: int = 0
    processed: int = 0
    skipped_videos: list[str] = field(default_factory=list)
    clips_stored: list[str] = field(default_factory=list)
    clips_skipped: list[str] = field(default_factory=list)  # already in the store
    clips_kept: list[str] = field(default_factory=list)  # changed by a person since: not overwritten
    errors: list[dict] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)
    export_skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"

    def to_dict(self) -> dict:
        return {"out": str(self.out), "videos": self.videos, "processed": self.processed, "skipped_videos": self.skipped_videos,
                "clips_stored": self.clips_stored, "clips_skipped": self.clips_skipped, "clips_kept": self.clips_kept,
                "errors": self.errors, "exported": self.exported, "export_skipped": [list(x) for x in self.export_skipped],
                "seconds": round(self.seconds, 2), "engine": self.engine}

    def __str__(self) -> str:
        lines = [f"{self.videos} video(s): {self.processed} processed, {len(self.skipped_videos)} skipped (done before); "
                 f"{len(self.clips_stored)} clip(s) stored, {len(self.clips_skipped)} already stored, {len(self.errors)} error(s); "
                 f"{len(self.exported)} clip(s) in the dataset {self.out} ({self.seconds:.1f} s, engine {self.engine})"]
        lines += [f"  error: {e['error']}" for e in self.errors]
        lines += [f"  kept (changed by a person since): {c}" for c in self.clips_kept]
        lines += [f"  not exported {c}: {why}" for c, why in self.export_skipped]
        return "\n".join(lines)


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """Files as given (any extension), directories searched recursively for video files."""
    out: list[Path] = []
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            out.append(p)
    seen, uniq = set(), []
    for p in out:
        k = str(p.resolve())
        if k not in seen:
            seen.add(k)
            uniq.append(p)
    return uniq


def video_key(path: Path) -> str:
    h = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in path.stem)[:80]
    return f"{stem}-{h}"


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(config: PipelineConfig) -> None:
    limit_threads(1)
    _WORKER["config"] = config
    _WORKER.pop("pipeline", None)


def _pipeline() -> Pipeline:
    if "pipeline" not in _WORKER:
        _WORKER["pipeline"] = Pipeline(_WORKER.get("config") or PipelineConfig())
    return _WORKER["pipeline"]


def _task(args: tuple) -> dict:
    path, out, skip = args
    try:
        return _pipeline().process_video(path, out, skip)
    except NotAvailable as exc:
        return {"video": str(path), "clips": [], "skipped": [], "failed": True,
                "errors": [{"clip_id": None, "stage": "setup", "message": str(exc), "error": f"setup: {exc}", "video": str(path)}]}


def process_one(config: PipelineConfig, path: str, out: str, skip: list[str]) -> dict:
    """What a Ray task runs (module-level, so Ray can pickle it by reference)."""
    if _WORKER.get("config") != config:  # Ray hands each task its own copy: compare by value, build once per worker
        _init_worker(config)
    return _task((path, out, set(skip)))


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def run(videos: list[str | Path], out: str | Path, *, workers: int = 1, engine: str = "local", config: PipelineConfig | None = None,
        retry_failed: bool = False, export: bool = True, export_review: str = "not-rejected", progress: bool = True,
        difficulty: bool = True) -> RunReport:
    config = config or PipelineConfig()
    out = Path(out)
    state = out / "pipeline" / "videos"
    state.mkdir(parents=True, exist_ok=True)
    (out / "pipeline" / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    report = RunReport(out, engine=engine)
    t0 = time.time()
    paths = find_videos(videos)
    report.videos = len(paths)
    store = AnnotationStore(out / DB_NAME, media_root=out)
    try:
        stored = store.clip_ids()
        todo = []
        for p in paths:
            key = video_key(p)
            status_file = state / f"{key}.json"
            sig = video_signature(p)
            if status_file.is_file():
                try:
                    st = json.loads(status_file.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    st = {}
                same = st.get("signature") == sig and st.get("pipeline_version") == PIPELINE_VERSION
                if same and (st.get("status") == "done" or (st.get("status") == "failed" and not retry_failed)):
                    report.skipped_videos.append(str(p))
                    continue
            prefix = clip_id_for(p, 0)[:-3]  # clips of this video the store already holds (a run stopped halfway)
            skip = sorted(c for c in stored if c.startswith(prefix) and _pipeline_clip_of(store, c, p, sig))
            todo.append((str(p), str(out), skip, key, sig))
        bar = _bar(len(todo), progress, out)
        for res in _results(todo, config, workers, engine):
            report.processed += 1
            item = next(t for t in todo if t[0] == res["video"])
            _store_result(store, res, report, out)
            _write_status(state / f"{item[3]}.json", res, item[4], report)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(clips=len(report.clips_stored), errors=len(report.errors))
        if bar is not None:
            bar.close()
        if export:
            from .exchange import export_dataset

            ex = export_dataset(store, out, review=export_review, overwrite=True, difficulty=difficulty)
            report.exported = list(ex.written)
            report.export_skipped = list(ex.skipped)
    finally:
        store.close()
    report.seconds = time.time() - t0
    (out / "pipeline" / "report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return report


def _pipeline_clip_of(store: AnnotationStore, clip_id: str, video: Path, sig: dict) -> bool:
    """Is this stored clip one the pipeline made from this very video file (same size and time)?"""
    try:
        doc = store.get(clip_id)
    except StoreError:
        return False
    p = doc.meta.get("pipeline") or {}
    return p.get("video") == str(video.resolve()) and p.get("video_signature") == sig


def _bar(n: int, progress: bool, out: Path):
    if not progress:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=n, desc=f"annotate -> {out}", unit="video")
    except ImportError:  # pragma: no cover
        return None


def _results(todo: list, config: PipelineConfig, workers: int, engine: str):
    if engine == "ray":
        yield from _ray_results(todo, config, workers)
        return
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    args = [(t[0], t[1], set(t[2])) for t in todo]
    if workers <= 1 or len(args) <= 1:
        _init_worker(config)
        _pipeline()  # a backend that is not available stops the run here, before any video
        for a in args:
            yield _task(a)
        return
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(processes=workers, initializer=_init_worker, initargs=(config,), maxtasksperchild=50) as pool:
        yield from pool.imap_unordered(_task, args)


def _ray_results(todo: list, config: PipelineConfig, workers: int):
    try:
        import ray
    except ImportError as exc:
        raise NotAvailable(f"the ray engine is not available: {exc} (pip install ray==2.60.0)") from None
    started = False
    if not ray.is_initialized():
        kw = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": max(1, workers)}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(process_one)
        cfg_ref = ray.put(config)
        pending = [remote.remote(cfg_ref, t[0], t[1], list(t[2])) for t in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def _store_result(store: AnnotationStore, res: dict, report: RunReport, out: Path) -> None:
    errors_file = out / "pipeline" / "errors.jsonl"
    for d in res.get("clips", []):
        doc = ClipAnnotation.from_dict(d)
        try:
            if store.exists(doc.clip_id, include_deleted=True):
                cur = store.get(doc.clip_id, include_deleted=True)
                if cur.updated_by != ANNOTATOR or any(r.status != "pending" for r in cur.review.values()):
                    report.clips_kept.append(doc.clip_id)  # a person worked on it: theirs stays
                    continue
                store.save(doc, annotator=ANNOTATOR, expected_version=cur.version, operation="pipeline")
            else:
                store.add(doc, annotator=ANNOTATOR)
            report.clips_stored.append(doc.clip_id)
        except (StoreError, ConflictError) as exc:
            res.setdefault("errors", []).append({"clip_id": doc.clip_id, "stage": "store", "message": str(exc),
                                                 "error": f"clip {doc.clip_id!r}, store: {exc}", "video": res["video"]})
    report.clips_skipped += res.get("skipped", [])
    if res.get("errors"):
        with open(errors_file, "a", encoding="utf-8") as fh:
            for e in res["errors"]:
                fh.write(json.dumps({k: v for k, v in e.items() if k != "traceback"} | {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        report.errors += res["errors"]


def _write_status(path: Path, res: dict, sig: dict, report: RunReport) -> None:
    st = {"video": res["video"], "signature": sig, "pipeline_version": PIPELINE_VERSION,
          "status": "failed" if res.get("failed") else "done", "clips": [d["clip_id"] for d in res.get("clips", [])],
          "skipped": res.get("skipped", []), "errors": [{k: v for k, v in e.items() if k != "traceback"} for e in res.get("errors", [])],
          "scenes": res.get("scenes"), "seconds": round(res.get("seconds", 0.0), 3), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(st, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def build_config(args) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.scenes.min_seconds = args.min_seconds
    cfg.scenes.max_seconds = args.max_seconds if args.max_seconds > 0 else None
    cfg.quality.ocr = args.ocr
    cfg.quality.min_motion = args.min_motion
    cfg.captioner = args.captioner
    cfg.vlm_model = args.vlm_model
    cfg.scene_model = args.scene_model
    cfg.raft_weights = args.raft_weights
    cfg.detector_model = args.detector_model
    cfg.verifier_model = args.verifier_model
    cfg.masker = args.masker
    cfg.mask_model = args.mask_model
    cfg.faces = not args.no_faces
    cfg.taxonomy = list(args.taxonomy or [])
    cfg.filter_plural = not args.keep_plural
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m annotate run", description="Annotate videos into the training dataset format (docs/ANNOTATION.md).")
    ap.add_argument("videos", nargs="+", help="video files or directories (searched recursively)")
    ap.add_argument("--out", required=True, help="the dataset directory (also holds annotations.db and pipeline/)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="drop scenes shorter than this (the paper keeps > 5 s)")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="split longer scenes (0: never)")
    ap.add_argument("--ocr", choices=("rapidocr", "none"), default="rapidocr")
    ap.add_argument("--min-motion", type=float, default=None, help="fail clips whose foreground motion (px/frame) is below this")
    ap.add_argument("--captioner", choices=("sidecar", "qwen2.5-vl"), default="sidecar")
    ap.add_argument("--vlm-model", help="Qwen2.5-VL directory (captions, living-subject labels, timeline proposals)")
    ap.add_argument("--scene-model", help="DINOv2 directory for the scene-cut features")
    ap.add_argument("--raft-weights", help="RAFT weights for the motion score")
    ap.add_argument("--detector-model", help="Florence-2 directory")
    ap.add_argument("--verifier-model", help="SigLIP directory")
    ap.add_argument("--masker", choices=("grabcut", "sam2"), default="grabcut")
    ap.add_argument("--mask-model", help="SAM2 directory (with --masker sam2)")
    ap.add_argument("--no-faces", action="store_true")
    ap.add_argument("--taxonomy", action="append", help="extra taxonomy JSON (repeatable)")
    ap.add_argument("--keep-plural", action="store_true", help="keep captions with plural subjects (the paper filters them)")
    ap.add_argument("--retry-failed", action="store_true", help="run videos that failed before again")
    ap.add_argument("--export-review", choices=("accepted", "not-rejected", "all"), default="not-rejected")
    ap.add_argument("--no-export", action="store_true", help="only fill the store")
    ap.add_argument("--no-difficulty", action="store_true", help="export without the difficulty cues")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        report = run(args.videos, args.out, workers=args.workers, engine=args.engine, config=build_config(args), retry_failed=args.retry_failed,
                     export=not args.no_export, export_review=args.export_review, progress=not args.quiet, difficulty=not args.no_difficulty)
    except NotAvailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0 if not report.errors else 1


__all__ = ["RunReport", "find_videos", "main", "process_one", "run", "video_key"]
