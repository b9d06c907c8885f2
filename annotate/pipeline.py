"""The annotation pipeline over one video (ReactID-Data, paper §3.1, §3.3.1, App. B).

`Pipeline(config).process_video(path, out_dir)` reads the video, cuts it into clips and runs the
stages over each clip:

    scenes -> quality -> captions -> entities -> detection -> masks -> faces -> timeline

Each stage is a function over one clip with a pluggable backend (see the stage modules); the
offline defaults run on this machine, hub models load from local directories when given, and
every clip's `sources` names the backends that really ran. A stage that fails a clip raises
`StageError`: the clip is reported with the stage and the reason, and the next clip goes on. The
result is a list of `ClipAnnotation` documents (annotate/document.py) that the run writes into
the annotation store (annotate/store.py), from which the training dataset is exported by the one
writer of that format (annotate/exchange.py -> model.dataset_format.DatasetWriter).

Everything here is a pure function of the video, the captions beside it and the config, so a
process pool (annotate/run.py) or Ray runs it unchanged.
"""

from __future__ import annotations

import hashlib
import re
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from model.timeline import Subject, Timeline, TimelineError

from .common import ClipState, NotAvailable, StageError
from .document import AnnotationError, ClipAnnotation, Face
from .quality import QualityConfig
from .scenes import SceneConfig
from .timeline_labels import MotionConfig

PIPELINE_VERSION = 1


@dataclass
class PipelineConfig:
    """Everything a worker needs to build its stages (plain data, so it pickles to a pool or Ray)."""

    scenes: SceneConfig = field(default_factory=SceneConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    captioner: str = "sidecar"  # or "qwen2.5-vl"
    vlm_model: str | None = None  # Qwen2.5-VL directory: captions, living-subject labels, timeline proposals
    scene_model: str | None = None  # DINOv2 directory for the scene-cut features
    raft_weights: str | None = None  # RAFT weights for the motion score
    detector_model: str | None = None  # Florence-2 directory
    verifier_model: str | None = None  # SigLIP directory
    masker: str = "grabcut"  # or "sam2"
    mask_model: str | None = None  # SAM2 directory
    faces: bool = True
    taxonomy: list[str] = field(default_factory=list)  # extra taxonomy files
    filter_plural: bool = True
    close_px: int = 1
    timeline_grounder: bool = True  # the offline motion-grounder's candidates in the timeline ensemble

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quality"].pop("hooks", None)
        return d


def clip_id_for(video: Path, index: int) -> str:
    """`<stem>-<6 hex of the absolute path>-c<index>`: readable, and unique when two folders hold
    videos of the same name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", video.stem).strip("-._") or "video"
    h = hashlib.sha1(str(Path(video).resolve()).encode()).hexdigest()[:6]
    return f"{stem[:100]}-{h}-c{index:03d}"


def video_signature(path: Path) -> dict:
    """Size and modification time: a re-run redoes a video whose file changed."""
    try:
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"size": None, "mtime_ns": None}


def read_video_checked(path: Path) -> tuple[np.ndarray, float]:
    """Frames and fps, or StageError("read", ...) saying what is wrong with the file."""
    from model.video import read_video

    if not path.exists():
        raise StageError("read", f"{path} does not exist")
    if path.is_dir():
        raise StageError("read", f"{path} is a directory, not a video")
    size = path.stat().st_size
    if size == 0:
        raise StageError("read", f"{path.name} is empty (0 bytes)")
    try:
        frames, fps = read_video(path)
    except Exception as exc:  # PyAV raises its own types (InvalidDataError is also a ValueError)
        if type(exc) is ValueError and "no video frames" in str(exc):
            raise StageError("read", f"{path.name} has no video frames") from None
        raise StageError("read", f"{path.name} cannot be decoded as a video ({type(exc).__name__}: {exc})") from None
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise StageError("read", f"{path.name} decoded to an unexpected shape {frames.shape}")
    if not fps or fps <= 0:
        raise StageError("read", f"{path.name} has no frame rate")
    return frames, fps


class Pipeline:
    def __init__(self, config: PipelineConfig | None = None):
        from .captions import SidecarCaptions, VlmCaptions
        from .detection import DetectionStage, default_detectors
        from .entities import EntityStage, Taxonomy
        from .faces import FaceStage
        from .masks import GrabCutMasker, MaskStage
        from .timeline_labels import default_timeline_stage

        self.config = cfg = config or PipelineConfig()
        self.taxonomy = Taxonomy.load(*cfg.taxonomy)
        vlm = None
        if cfg.vlm_model or cfg.captioner == "qwen2.5-vl":
            from .hub import QwenVL

            vlm = QwenVL(cfg.vlm_model)
        if cfg.captioner not in ("sidecar", "qwen2.5-vl"):
            raise NotAvailable(f"unknown captioner {cfg.captioner!r} (sidecar or qwen2.5-vl)")
        self.captioner = SidecarCaptions() if cfg.captioner == "sidecar" else VlmCaptions(vlm)
        self.scene_feature = None
        if cfg.scene_model:
            from .hub import DinoV2Features

            self.scene_feature = DinoV2Features(cfg.scene_model)
        self.quality = cfg.quality
        if cfg.raft_weights:
            from .hub import RaftFlow

            self.quality = replace(cfg.quality, flow=RaftFlow(cfg.raft_weights))  # the config itself stays plain data
        self.entities = EntityStage(self.taxonomy, vlm, cfg.filter_plural)
        self.detection = DetectionStage(default_detectors(self.taxonomy, cfg.detector_model, cfg.verifier_model))
        if cfg.masker == "sam2":
            from .hub import Sam2Masker

            masker = Sam2Masker(cfg.mask_model)
        elif cfg.masker == "grabcut":
            masker = GrabCutMasker()
        else:
            raise NotAvailable(f"unknown masker {cfg.masker!r} (grabcut or sam2)")
        self.masks = MaskStage(masker, cfg.close_px)
        self.faces = FaceStage(masker=masker) if cfg.faces else None
        self.timeline = default_timeline_stage(self.taxonomy.actions, vlm, cfg.motion, grounder=cfg.timeline_grounder)

    # ------------------------------------------------------------------------------------
    def process_video(self, path: str | Path, out_dir: str | Path, skip_clips: set[str] | frozenset = frozenset()) -> dict:
        """-> {"video", "clips": [content dicts], "errors": [...], "skipped": [...], "scenes": {...}, "seconds"}.
        Frames of each clip are written to out_dir/media/<clip id>/frames.npz."""
        from .scenes import split_video

        t0 = time.time()
        path = Path(path)
        res: dict = {"video": str(path), "clips": [], "errors": [], "skipped": [], "scenes": None}
        try:
            frames, fps_f = read_video_checked(path)
            fps = int(round(fps_f))
            spans, info = split_video(frames, fps, self.config.scenes, self.scene_feature, path.name)
            res["scenes"] = {"backend": info["backend"], "cuts": info["cuts"], "clips": spans,
                             "dropped": [list(d) for d in info["dropped"]], "fps": fps, "frames": int(len(frames))}
        except StageError as exc:
            res["errors"].append({**exc.to_dict(), "video": str(path)})
            res["failed"] = True
            res["seconds"] = time.time() - t0
            return res
        for index, (a, b) in enumerate(spans):
            cid = clip_id_for(path, index)
            if cid in skip_clips:
                res["skipped"].append(cid)
                continue
            clip = ClipState(cid, np.ascontiguousarray(frames[a:b]), fps,
                             source={"video": str(path.resolve()), "index": index, "start_frame": int(a), "end_frame": int(b), "crop": None,
                                     "signature": video_signature(path)})
            clip.sources["scenes"] = info["backend"]
            stage = "quality"
            try:
                doc = self.annotate_clip(clip, path, index, out_dir)
                res["clips"].append(doc.content_dict())
            except StageError as exc:
                res["errors"].append({**exc.to_dict(), "video": str(path)})
            except (AnnotationError, TimelineError) as exc:
                res["errors"].append({"clip_id": cid, "stage": "store", "message": str(exc), "error": f"clip {cid!r}, store: {exc}", "video": str(path)})
            except Exception as exc:  # a bug or a backend failure: recorded, the run goes on
                tb = traceback.format_exc(limit=3)
                res["errors"].append({"clip_id": cid, "stage": getattr(clip, "_stage", stage), "message": f"{type(exc).__name__}: {exc}",
                                      "error": f"clip {cid!r}, {getattr(clip, '_stage', stage)}: unexpected {type(exc).__name__}: {exc}",
                                      "traceback": tb, "video": str(path)})
        res["seconds"] = time.time() - t0
        return res

    def annotate_clip(self, clip: ClipState, video: Path | None, index: int, out_dir: str | Path) -> ClipAnnotation:
        """Run the clip stages and build its annotation document (frames written under out_dir)."""
        from .quality import assess

        clip._stage = "quality"
        frames, q = assess(clip.frames, self.quality, clip.clip_id)
        if frames is not clip.frames:
            clip.source["crop"] = list(q["text"]["crop"])
            clip.frames = frames
        clip.quality = q
        clip.sources["quality"] = ", ".join(f"{k}: {v}" for k, v in q["backends"].items())

        clip._stage = "captions"
        clip.caption = self.captioner(clip, video, index)
        clip.sources["captions"] = self.captioner.name
        clip._stage = "entities"
        clip.entities = self.entities(clip)
        clip._stage = "detection"
        clip.tracks = self.detection(clip)
        clip._stage = "masks"
        self.masks(clip)
        if self.faces is not None:
            clip._stage = "faces"
            try:
                clip.faces = self.faces(clip)
            except NotAvailable as exc:
                clip.warn("faces", str(exc))
        clip._stage = "timeline"
        sids = [f"s{i + 1}" for i in range(len(clip.tracks))]
        actions = self.timeline(clip, sids)
        clip._stage = "store"
        return self._document(clip, sids, actions, out_dir)

    def _document(self, clip: ClipState, sids: list[str], actions: dict, out_dir: str | Path) -> ClipAnnotation:
        F, H, W = clip.shape
        subjects = [Subject(sid, t.entity.label, t.entity.kind, [], actions.get(sid, [])) for sid, t in zip(sids, clip.tracks)]
        tl = Timeline(duration=(F - 1) / clip.fps, subjects=subjects, prompt=clip.caption or "", fps=clip.fps)
        problems = tl.problems()
        if problems:
            raise StageError("timeline", "; ".join(p.message for p in problems), clip.clip_id)
        rel = f"media/{clip.clip_id}/frames.npz"
        p = Path(out_dir) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name("frames.partial.npz")
        np.savez_compressed(tmp, frames=clip.frames)
        tmp.replace(p)
        masks = np.stack([t.masks for t in clip.tracks])
        faces = []
        for d in clip.faces:
            from . import rle as R

            faces.append(Face(d["subject_id"], d["frame"], d["box"], d["score"], R.encode(d["mask"]) if d.get("mask") is not None else None))
        meta = {
            "source": "annotate.pipeline",
            "pipeline": {"version": PIPELINE_VERSION, "video": clip.source.get("video"), "clip_index": clip.source.get("index"),
                         "start_frame": clip.source.get("start_frame"), "end_frame": clip.source.get("end_frame"), "crop": clip.source.get("crop"),
                         "video_signature": clip.source.get("signature")},
            "caption": clip.caption,
            "entities": [e.to_dict() for e in clip.entities],
            "detected": [{"subject_id": sid, "label": t.entity.label, "detector": t.detector, "found_frames": int(t.found.sum()),
                          "verified": round(float(t.verified), 4),
                          "boxes": [None if b is None else [round(float(v), 2) for v in b] for b in t.boxes]} for sid, t in zip(sids, clip.tracks)],
            "quality": _jsonable(clip.quality),
            "timeline_candidates": clip.timeline_candidates,
        }
        doc = ClipAnnotation.new(clip.clip_id, tl, F, H, W, masks=masks, frames=rel, faces=faces,
                                 confidence={sid: round(t.confidence, 4) for sid, t in zip(sids, clip.tracks)},
                                 sources=dict(clip.sources), meta=meta, errors=list(clip.warnings))
        return doc.validate()


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


__all__ = ["PIPELINE_VERSION", "Pipeline", "PipelineConfig", "clip_id_for", "read_video_checked", "video_signature"]
