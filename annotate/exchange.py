"""Export the annotation store and import it back: the training dataset format, Label-Studio-style
JSON, COCO masks (docs/ANNOTATION.md).

- `export_dataset` / `import_dataset`: the format `train/` reads (docs/DATASET.md). The files are
  written by `model.dataset_format.DatasetWriter`, the one writer of that format, and read back by
  `model.dataset_format.DatasetReader`, the one reader; the format lives in `model/` because DESIGN.md
  §2 lets `annotate` and `train` both import `model` and neither import the other. The one import of
  `train/` left in `annotate/` is the difficulty cues (`train.difficulty`), computed on export when
  `difficulty=True`, lazily inside `export_dataset` (see docs/ANNOTATION.md §5).
- `export_labelstudio` / `import_labelstudio`: one task per clip. Sub-actions are Label Studio
  `timelinelabels` regions (frame ranges, 1-based, inclusive, labelled with the subject id) with a
  per-region `textarea` caption; masks are `brushlabels` results per frame carrying COCO RLE
  (`"format": "coco_rle"`, not Label Studio's own brush RLE); faces are `rectanglelabels` in percent
  of the frame; review statuses are `choices`.
- `export_coco` / `import_coco`: COCO instance masks with video fields (YouTube-VIS/TAO style):
  one image per frame, one annotation per subject and frame (RLE segmentation; an empty mask is
  written with area 0, a frame never annotated is left out), one track per subject; faces are
  annotations of category "face".

Importing follows the store's conflict rule: every export records each clip's version, and an
import is saved as a change based on that version. If the clip changed in the store since the
export, the import of that clip is refused as a conflict (reported, nothing overwritten) unless
`force=True`. An import that changes nothing makes no new version. Per-clip problems are
collected in the report and the import goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from model.dataset_format import DatasetReader, DatasetWriter
from model.references import crop_subject
from model.timeline import Action, Subject, Timeline, TimelineError

from . import rle as R
from .document import REVIEW_ASPECTS, AnnotationError, ClipAnnotation, Face, Review, StoreError
from .store import AnnotationStore, ConflictError

REVIEW_FILTERS = ("accepted", "not-rejected", "all")
PROVENANCE = "reactid-annotation-store"  # marks meta["annotation"] written by export_dataset


@dataclass
class ExportReport:
    path: Path
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip id, why)

    def __str__(self) -> str:
        lines = [f"wrote {len(self.written)} clip(s) to {self.path}"]
        lines += [f"  skipped {cid}: {why}" for cid, why in self.skipped]
        return "\n".join(lines)


@dataclass
class ImportReport:
    source: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.errors

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                 f"{len(self.conflicts)} conflict(s), {len(self.errors)} error(s)"]
        lines += [f"  conflict {cid}: {msg}" for cid, msg in self.conflicts]
        lines += [f"  error {cid}: {msg}" for cid, msg in self.errors]
        return "\n".join(lines)


def _select(store: AnnotationStore, clips: Iterable[str] | None) -> list[ClipAnnotation]:
    """The clips to export (all live ones by default). An unknown or deleted id raises AnnotationError."""
    ids = list(clips) if clips is not None else store.clip_ids()
    return [store.get(cid) for cid in ids]


def _iter_docs(store: AnnotationStore, clips: Iterable[str] | None, report: ExportReport) -> Iterable[ClipAnnotation]:
    """One clip at a time (a big store's masks need not all be in memory); a clip that cannot be
    read is named in the report."""
    for cid in list(clips) if clips is not None else store.clip_ids():
        try:
            yield store.get(cid)
        except AnnotationError as exc:
            report.skipped.append((cid, str(exc)))


def _passes(doc: ClipAnnotation, review: str) -> str | None:
    """None if the clip passes the review filter, else why not."""
    if review not in REVIEW_FILTERS:
        raise ValueError(f"review filter must be one of {', '.join(REVIEW_FILTERS)}, got {review!r}")
    if review == "all":
        return None
    if doc.rejected:
        return "rejected (" + "; ".join(f"{a}: {doc.review[a].reason}" for a in REVIEW_ASPECTS if doc.review_status(a) == "rejected") + ")"
    if review == "accepted" and not doc.accepted:
        return "not accepted yet (" + ", ".join(f"{a}: {doc.review_status(a)}" for a in REVIEW_ASPECTS) + ")"
    return None


def _save_import(store: AnnotationStore, doc: ClipAnnotation, expected_version: int | None, annotator: str, operation: str,
                 report: ImportReport, force: bool, keep_media: bool = True) -> None:
    """Create or update one clip from an import, with the store's conflict rule."""
    cid = doc.clip_id
    try:
        if not store.exists(cid, include_deleted=True):
            saved = store.commit(cid, lambda _cur: doc, 0, annotator, operation)
            report.created.append(cid)
            return
        cur = store.get(cid, include_deleted=True)
        # Based on the version the file was exported from; a file from elsewhere (no version) about a
        # clip we hold is a conflict unless forced.
        base = cur.version if force else (expected_version if expected_version is not None else 0)

        def build(stored: ClipAnnotation | None) -> ClipAnnotation:
            new = doc.copy()
            if keep_media and stored is not None:  # the store's media stay; the import brings annotations
                new.frames, new.video = stored.frames, stored.video
                old_subjects = {s.id: s for s in stored.timeline.subjects}
                for s in new.timeline.subjects:
                    if s.id in old_subjects:
                        s.references = list(old_subjects[s.id].references)
                        if s.id in stored.inter_references:
                            new.inter_references[s.id] = list(stored.inter_references[s.id])
                        else:
                            new.inter_references.pop(s.id, None)
            return new
        saved = store.commit(cid, build, base, annotator, operation)
        (report.updated if saved.version != cur.version else report.unchanged).append(cid)
    except ConflictError as exc:
        report.conflicts.append((cid, str(exc)))
    except (StoreError, TimelineError) as exc:
        report.errors.append((cid, str(exc)))


def _rel_or_abs(path: Path, store: AnnotationStore) -> str:
    p = path.resolve()
    try:
        return p.relative_to(store.media_root.resolve()).as_posix()
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------------------
# The training dataset format (docs/DATASET.md)
# --------------------------------------------------------------------------------------------
def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _fit_reference(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or img.shape[:2] == (size, size):
        return img
    from model.references import crop_reference

    return np.asarray(crop_reference(Image.fromarray(img), size))


def load_frames(store: AnnotationStore, doc: ClipAnnotation) -> np.ndarray:
    """The clip's pixels, uint8 [F, H, W, 3], from its frames.npz or else its video."""
    where = f"clip {doc.clip_id!r}"
    if doc.frames:
        p = store.resolve(doc.frames)
        try:
            with np.load(p, allow_pickle=False) as z:
                frames = z["frames"]
        except (OSError, KeyError, ValueError) as exc:
            raise AnnotationError(f"{where}: cannot read frames {p}: {exc}", doc.clip_id) from None
    elif doc.video:
        from model.video import read_video

        p = store.resolve(doc.video)
        try:
            frames = read_video(p)[0]
        except Exception as exc:  # av raises its own error types
            raise AnnotationError(f"{where}: cannot decode video {p}: {exc}", doc.clip_id) from None
    else:
        raise AnnotationError(f"{where}: has neither frames nor video", doc.clip_id)
    if frames.dtype != np.uint8 or frames.shape != (doc.num_frames, doc.height, doc.width, 3):
        raise AnnotationError(f"{where}: frames are {frames.dtype} {tuple(frames.shape)}, the annotation expects uint8 "
                              f"{(doc.num_frames, doc.height, doc.width, 3)}", doc.clip_id)
    return frames


def export_dataset(store: AnnotationStore, out_dir: str | os.PathLike, *, clips: Iterable[str] | None = None, review: str = "accepted",
                   ref_size: int | None = 32, difficulty: bool = True, extractor=None, preview: bool = False,
                   overwrite: bool = False) -> ExportReport:
    """Write the clips that pass `review` ("accepted": every aspect accepted or fixed;
    "not-rejected"; "all") as a training dataset. A subject without a stored reference gets a crop
    around its largest mask (what the sprite world does). References are brought to
    `ref_size` x `ref_size` (the reader needs one size per sample). A clip that cannot be written
    (missing masks, unreadable frames) is skipped and named in the report."""
    if review not in REVIEW_FILTERS:
        raise ValueError(f"review filter must be one of {', '.join(REVIEW_FILTERS)}, got {review!r}")
    writer = DatasetWriter(out_dir, overwrite=overwrite)
    root = writer.root
    root.mkdir(parents=True, exist_ok=True)
    report = ExportReport(root)
    if difficulty:  # the cues are train/'s (paper §3.2); the one import of train/ in annotate/ (module docstring)
        from train.difficulty import get_extractor, sample_difficulty

        ex = get_extractor(extractor)
    else:
        ex = None
    with writer:  # a half-written export never looks complete
        for doc in _iter_docs(store, clips, report):
            why = _passes(doc, review)
            if why:
                report.skipped.append((doc.clip_id, why))
                continue
            try:
                frames = load_frames(store, doc)
                masks = doc.masks_array()
                refs: dict[str, dict[str, list[np.ndarray]]] = {}
                for k, s in enumerate(doc.timeline.subjects):
                    intra = []
                    for p in s.references:
                        try:
                            intra.append(_fit_reference(_load_png(store.resolve(p)), ref_size))
                        except OSError as exc:
                            raise AnnotationError(f"clip {doc.clip_id!r}, subject {s.id!r}: cannot read reference {p}: {exc}", doc.clip_id, s.id) from None
                    if not intra:
                        areas = masks[k].reshape(len(frames), -1).sum(1)
                        if areas.max() == 0:
                            raise AnnotationError(f"clip {doc.clip_id!r}, subject {s.id!r}: no reference image and never visible in its masks",
                                                  doc.clip_id, s.id)
                        f = int(areas.argmax())
                        intra = [crop_subject(frames[f], masks[k, f], size=ref_size or 32)]
                    inter = []
                    for p in doc.inter_references.get(s.id, []):
                        try:
                            inter.append(_fit_reference(_load_png(store.resolve(p)), ref_size))
                        except OSError as exc:
                            raise AnnotationError(f"clip {doc.clip_id!r}, subject {s.id!r}: cannot read inter reference {p}: {exc}",
                                                  doc.clip_id, s.id) from None
                    refs[s.id] = {"intra": intra, "inter": inter}
                diff = None
                if ex is not None:
                    sids = doc.subject_ids
                    diff = sample_difficulty(frames, masks, [refs[s]["intra"] for s in sids], [refs[s]["inter"] for s in sids], ex).to_dict()
                # the clip's own meta stays at the top (a sprite clip keeps its identities and actions)
                meta = {**doc.meta, "annotation": _provenance(doc, store)}
                writer.add(doc.clip_id, frames, masks, doc.timeline, refs, diff, meta, preview)
            except (AnnotationError, ValueError) as exc:
                report.skipped.append((doc.clip_id, str(exc)))
                continue
            report.written.append(doc.clip_id)
        writer.write_info("annotate.exchange", store=str(store.path), review=review, n=len(report.written),
                          skipped=[{"id": c, "reason": r} for c, r in report.skipped],
                          difficulty={"extractor": ex.name} if ex is not None else None)
    return report


def _provenance(doc: ClipAnnotation, store: AnnotationStore) -> dict:
    """What the dataset format has no field for, so that importing the dataset back restores it."""
    c = doc.content_dict()
    return {"format": PROVENANCE, "store": str(store.path), "clip_id": doc.clip_id, "version": doc.version, "updated_by": doc.updated_by, "updated_at": doc.updated_at,
            "frames": doc.frames, "video": doc.video, "faces": c["faces"], "confidence": c["confidence"], "sources": c["sources"],
            "review": c["review"], "errors": c["errors"],
            "references": {s.id: {"intra": list(s.references), "inter": list(doc.inter_references.get(s.id, []))} for s in doc.timeline.subjects}}


def import_dataset(store: AnnotationStore, root: str | os.PathLike, *, annotator: str, force: bool = False) -> ImportReport:
    """Bring a dataset directory (written by `export_dataset`, the sprite writer or the pipeline)
    into the store. Samples the reader skips are reported by id."""
    root = Path(root)
    report = ImportReport(str(root))
    ds = DatasetReader(root)  # the format's one reader

    def path(p: str) -> str:  # dataset paths are relative to the dataset (absolute ones allowed)
        q = Path(p)
        return _rel_or_abs(q if q.is_absolute() else root / q, store)

    report.errors += [(sid, reason) for sid, reason in ds.skipped]
    for i, rec in enumerate(ds.records):
        cid = str(rec["id"])
        try:
            arrays = ds.load_arrays(i)
        except ValueError as exc:
            report.errors.append((cid, str(exc)))
            continue
        tl = ds.timelines[i].copy()
        F, H, W = arrays["frames"].shape[:3]
        inter = {}
        for s in tl.subjects:
            r = rec["references"][s.id]
            s.references = [path(p) for p in r.get("intra") or []]
            if r.get("inter"):
                inter[s.id] = [path(p) for p in r["inter"]]
        meta = rec.get("meta") or {}
        prov = meta.get("annotation") if isinstance(meta.get("annotation"), dict) and meta["annotation"].get("format") == PROVENANCE else None
        try:
            doc = ClipAnnotation.new(cid, tl, F, H, W, masks=arrays["masks"], frames=path(rec["frames"]) if rec.get("frames") else None,
                                     video=path(rec["video"]) if rec.get("video") else None, inter_references=inter)
            expected = None
            if prov:
                doc.faces = [Face.from_dict(f) for f in prov.get("faces", [])]
                doc.confidence = dict(prov.get("confidence", {}))
                doc.sources = dict(prov.get("sources", {}))
                doc.review = {a: Review.from_dict(r) for a, r in prov.get("review", {}).items()}
                doc.meta = {k: v for k, v in meta.items() if k != "annotation"}
                doc.errors = list(prov.get("errors", []))
                expected = prov.get("version")
            else:
                doc.meta = dict(meta)
                doc.sources = {"dataset": str(root)}
        except (AnnotationError, TypeError, KeyError) as exc:
            report.errors.append((cid, str(exc)))
            continue
        _save_import(store, doc, expected, annotator, "import-dataset", report, force)
    return report


# --------------------------------------------------------------------------------------------
# Label-Studio-style JSON
# --------------------------------------------------------------------------------------------
def _frame_range(a: Action, fps: int) -> dict:
    return {"start": int(round(a.start * fps)) + 1, "end": int(round(a.end * fps))}


def to_labelstudio(doc: ClipAnnotation, task_id: int = 1) -> dict:
    """One Label Studio task for a clip (see the module docstring for the result types)."""
    fps, H, W = doc.timeline.fps, doc.height, doc.width
    results: list[dict] = []
    for s in doc.timeline.subjects:
        for k, a in enumerate(s.actions):
            rid = f"{s.id}-a{k}"
            results.append({"id": rid, "type": "timelinelabels", "from_name": "actions", "to_name": "video", "origin": "manual",
                            "value": {"ranges": [_frame_range(a, fps)], "timelinelabels": [s.id]}})
            results.append({"id": rid, "type": "textarea", "from_name": "caption", "to_name": "video", "origin": "manual",
                            "value": {"text": [a.text]}})
    for sid, rles in doc.masks.items():
        for f, r in enumerate(rles):
            if r is not None:
                results.append({"id": f"{sid}-m{f}", "type": "brushlabels", "from_name": "mask", "to_name": "video",
                                "original_width": W, "original_height": H,
                                "value": {"format": "coco_rle", "rle": dict(r), "frame": f + 1, "brushlabels": [sid]}})
    for k, face in enumerate(doc.faces):
        x, y, w, h = face.box
        value = {"x": 100.0 * x / W, "y": 100.0 * y / H, "width": 100.0 * w / W, "height": 100.0 * h / H, "rotation": 0,
                 "frame": int(face.frame) + 1, "rectanglelabels": [face.subject_id]}
        if face.mask is not None:
            value["mask"] = dict(face.mask)
        res = {"id": f"{face.subject_id}-f{k}", "type": "rectanglelabels", "from_name": "face", "to_name": "video",
               "original_width": W, "original_height": H, "value": value}
        if face.score is not None:
            res["score"] = float(face.score)
        results.append(res)
    for aspect in REVIEW_ASPECTS:
        r = doc.review.get(aspect) or Review()
        results.append({"id": f"review-{aspect}", "type": "choices", "from_name": f"{aspect}_review", "to_name": "video",
                        "value": {"choices": [r.status]}})
        if r.reason:
            results.append({"id": f"review-{aspect}", "type": "textarea", "from_name": f"{aspect}_review_reason", "to_name": "video",
                            "value": {"text": [r.reason]}})
    subjects = [{"id": s.id, "name": s.name, "kind": s.kind, "references": list(s.references),
                 "inter_references": list(doc.inter_references.get(s.id, [])), "confidence": doc.confidence.get(s.id)}
                for s in doc.timeline.subjects]
    return {
        "id": task_id,
        "data": {"video": doc.video, "frames": doc.frames, "clip_id": doc.clip_id, "prompt": doc.timeline.prompt, "fps": fps,
                 "duration": doc.timeline.duration, "num_frames": doc.num_frames, "height": H, "width": W, "subjects": subjects},
        "meta": {"reactid": {"version": doc.version, "sources": dict(doc.sources), "meta": doc.meta, "errors": list(doc.errors),
                             "review": {a: {"annotator": r.annotator, "at": r.at} for a, r in doc.review.items()}}},
        "annotations": [{"completed_by": doc.updated_by, "created_at": doc.created_at, "updated_at": doc.updated_at, "result": results}],
    }


def from_labelstudio(task: dict) -> tuple[ClipAnnotation, int | None]:
    """A task (as `to_labelstudio` writes it, possibly edited in Label Studio) -> (document, the
    store version it was exported from or None)."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise AnnotationError(f"a Label Studio task must be an object with 'data', got {type(task).__name__}")
    data = task["data"]
    cid = data.get("clip_id")
    where = f"clip {cid!r}" if cid else f"task {task.get('id')!r}"
    missing = [k for k in ("clip_id", "fps", "duration", "num_frames", "height", "width", "subjects") if k not in data]
    if missing:
        raise AnnotationError(f"{where}: task data lacks {', '.join(missing)}", cid)
    fps, H, W, F = int(data["fps"]), int(data["height"]), int(data["width"]), int(data["num_frames"])
    subjects = {}
    order = []
    for s in data["subjects"]:
        subjects[s["id"]] = Subject(s["id"], s["name"], s.get("kind", "object"), list(s.get("references") or []), [])
        order.append(s["id"])
    anns = task.get("annotations") or []
    results = anns[-1].get("result", []) if anns else []  # the latest annotation wins
    captions: dict[str, str] = {}
    ranges: dict[str, tuple[str, dict]] = {}
    masks: dict[str, list] = {sid: [None] * F for sid in order}
    faces: list[tuple[str, Face]] = []
    review: dict[str, Review] = {}
    reasons: dict[str, str] = {}
    rv_meta = ((task.get("meta") or {}).get("reactid") or {}).get("review") or {}

    def subject_of(labels: list, rid: str) -> str:
        if not labels or labels[0] not in subjects:
            raise AnnotationError(f"{where}: result {rid!r} is labelled {labels!r}, not one of the clip's subjects ({', '.join(order)})",
                                  cid, labels[0] if labels else None)
        return labels[0]

    for res in results:
        t, v, rid, name = res.get("type"), res.get("value") or {}, res.get("id"), res.get("from_name")
        if t == "timelinelabels":
            ranges[rid] = (subject_of(v.get("timelinelabels"), rid), v["ranges"][0])
        elif t == "textarea" and name == "caption":
            captions[rid] = (v.get("text") or [""])[0]
        elif t == "brushlabels":
            sid = subject_of(v.get("brushlabels"), rid)
            if v.get("format") != "coco_rle":
                raise AnnotationError(f"{where}, subject {sid!r}: mask {rid!r} is in format {v.get('format')!r}; this importer reads "
                                      f"'coco_rle' (Label Studio's own brush RLE is not supported)", cid, sid)
            f = int(v["frame"]) - 1
            if not 0 <= f < F:
                raise AnnotationError(f"{where}, subject {sid!r}: mask {rid!r} is on frame {f + 1}, outside 1..{F}", cid, sid)
            masks[sid][f] = v["rle"]
        elif t == "rectanglelabels":
            sid = subject_of(v.get("rectanglelabels"), rid)
            box = (round(v["x"] * W / 100.0, 6), round(v["y"] * H / 100.0, 6), round(v["width"] * W / 100.0, 6), round(v["height"] * H / 100.0, 6))
            faces.append((rid, Face(sid, int(v["frame"]) - 1, box, res.get("score"), v.get("mask"))))
        elif t == "choices" and name and name.endswith("_review"):
            aspect = name[: -len("_review")]
            who = rv_meta.get(aspect) or {}
            review[aspect] = Review((v.get("choices") or ["pending"])[0], "", who.get("annotator", ""), who.get("at", ""))
        elif t == "textarea" and name and name.endswith("_review_reason"):
            reasons[name[: -len("_review_reason")]] = (v.get("text") or [""])[0]
    for aspect, reason in reasons.items():
        review.setdefault(aspect, Review()).reason = reason
    for rid, (sid, rg) in ranges.items():
        if rid not in captions:
            raise AnnotationError(f"{where}, subject {sid!r}: action {rid!r} has no caption", cid, sid)
        subjects[sid].actions.append(Action(round((int(rg["start"]) - 1) / fps, 6), round(int(rg["end"]) / fps, 6), captions[rid]))
    for s in subjects.values():
        s.actions.sort(key=lambda a: (a.start, a.end))
    tl = Timeline(float(data["duration"]), [subjects[sid] for sid in order], data.get("prompt", ""), fps)
    rx = (task.get("meta") or {}).get("reactid") or {}
    doc = ClipAnnotation(cid, tl, F, H, W, data.get("frames"), data.get("video"), masks, [f for _, f in faces],
                         {s["id"]: list(s["inter_references"]) for s in data["subjects"] if s.get("inter_references")},
                         {s["id"]: s["confidence"] for s in data["subjects"] if s.get("confidence") is not None},
                         dict(rx.get("sources") or {}), review, dict(rx.get("meta") or {}), list(rx.get("errors") or []))
    return doc, rx.get("version")


def export_labelstudio(store: AnnotationStore, path: str | os.PathLike, *, clips: Iterable[str] | None = None) -> Path:
    """Write one task per clip to a JSON file (a list of tasks, what Label Studio imports)."""
    tasks = [to_labelstudio(doc, i + 1) for i, doc in enumerate(_select(store, clips))]
    return _write_json(Path(path), tasks)


def import_labelstudio(store: AnnotationStore, source: str | os.PathLike | list, *, annotator: str, force: bool = False) -> ImportReport:
    tasks, name = _read_json(source)
    report = ImportReport(name)
    if not isinstance(tasks, list):
        report.errors.append(("-", f"{name}: expected a list of tasks, got {type(tasks).__name__}"))
        return report
    for i, task in enumerate(tasks):
        try:
            doc, version = from_labelstudio(task)
        except (AnnotationError, TimelineError) as exc:
            report.errors.append((str((task.get("data") or {}).get("clip_id") or f"task {i + 1}") if isinstance(task, dict) else f"task {i + 1}", str(exc)))
            continue
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            cid = (task.get("data") or {}).get("clip_id") if isinstance(task, dict) else None
            report.errors.append((str(cid or f"task {i + 1}"), f"malformed task: {type(exc).__name__}: {exc}"))
            continue
        _save_import(store, doc, version, annotator, "import-labelstudio", report, force)
    return report


# --------------------------------------------------------------------------------------------
# COCO masks
# --------------------------------------------------------------------------------------------
KIND_CATEGORIES = ("human", "animal", "object")
FACE_CATEGORY = "face"


def export_coco(store: AnnotationStore, path: str | os.PathLike, *, clips: Iterable[str] | None = None) -> Path:
    """COCO instance masks of every (subject, frame), with videos and tracks."""
    cats = [{"id": i + 1, "name": n, "supercategory": "subject" if n != FACE_CATEGORY else "face"}
            for i, n in enumerate((*KIND_CATEGORIES, FACE_CATEGORY))]
    cat_id = {c["name"]: c["id"] for c in cats}
    videos, images, anns, tracks = [], [], [], []
    for v, doc in enumerate(_select(store, clips), 1):
        videos.append({"id": v, "name": doc.clip_id, "width": doc.width, "height": doc.height, "length": doc.num_frames,
                       "fps": doc.timeline.fps, "frames_path": doc.frames, "video_path": doc.video, "reactid_version": doc.version})
        image_id = {}
        for f in range(doc.num_frames):
            image_id[f] = len(images) + 1
            images.append({"id": image_id[f], "video_id": v, "frame_id": f, "file_name": f"{doc.clip_id}/{f:06d}.png",
                           "width": doc.width, "height": doc.height})
        for s in doc.timeline.subjects:
            tid = len(tracks) + 1
            tracks.append({"id": tid, "video_id": v, "category_id": cat_id[s.kind], "subject_id": s.id, "name": s.name})
            for f, r in enumerate(doc.masks.get(s.id) or []):
                if r is None:
                    continue
                anns.append({"id": len(anns) + 1, "image_id": image_id[f], "video_id": v, "track_id": tid, "category_id": cat_id[s.kind],
                             "segmentation": dict(r), "area": R.area(r), "bbox": R.bbox(r), "iscrowd": 0,
                             "attributes": {"clip_id": doc.clip_id, "subject_id": s.id}})
        for face in doc.faces:
            x, y, w, h = face.box
            seg = dict(face.mask) if face.mask is not None else [[x, y, x + w, y, x + w, y + h, x, y + h]]
            anns.append({"id": len(anns) + 1, "image_id": image_id[int(face.frame)], "video_id": v, "category_id": cat_id[FACE_CATEGORY],
                         "segmentation": seg, "area": R.area(face.mask) if face.mask is not None else float(w * h), "bbox": [x, y, w, h],
                         "iscrowd": 0, "score": face.score,
                         "attributes": {"clip_id": doc.clip_id, "subject_id": face.subject_id, "has_mask": face.mask is not None}})
    coco = {"info": {"description": "ReactID annotation store: subject and face masks", "version": "1", "store": str(store.path)},
            "licenses": [], "categories": cats, "videos": videos, "images": images, "annotations": anns, "tracks": tracks}
    return _write_json(Path(path), coco)


def import_coco(store: AnnotationStore, source: str | os.PathLike | dict, *, annotator: str, force: bool = False) -> ImportReport:
    """Masks and faces from COCO back into the store. A clip it does not hold is created with the
    tracks as subjects and no actions (its timeline still needs labels)."""
    coco, name = _read_json(source)
    report = ImportReport(name)
    try:
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        images = {im["id"]: im for im in coco["images"]}
        tracks_by_video: dict[int, list[dict]] = {}
        for t in coco.get("tracks", []):
            tracks_by_video.setdefault(t["video_id"], []).append(t)
        anns_by_video: dict[int, list[dict]] = {}
        for a in coco["annotations"]:
            anns_by_video.setdefault(images[a["image_id"]]["video_id"], []).append(a)
        videos = coco["videos"]
    except (KeyError, TypeError) as exc:
        report.errors.append(("-", f"{name}: not a COCO file with videos, images, annotations and categories ({type(exc).__name__}: {exc})"))
        return report
    for video in videos:
        cid = str(video.get("name"))
        try:
            F, H, W, fps = int(video["length"]), int(video["height"]), int(video["width"]), int(video.get("fps") or 16)
            tracks = {t["id"]: t for t in tracks_by_video.get(video["id"], [])}
            if store.exists(cid, include_deleted=True):
                doc = store.get(cid, include_deleted=True)
                if (F, H, W) != (doc.num_frames, doc.height, doc.width):
                    raise AnnotationError(f"clip {cid!r}: the COCO video is {F} frames of {H}x{W}, the stored clip {doc.num_frames} frames of "
                                          f"{doc.height}x{doc.width}", cid)
                known = doc.subject_ids
                for t in tracks.values():
                    if t["subject_id"] not in known:
                        raise AnnotationError(f"clip {cid!r}: unknown subject {t['subject_id']!r} (known: {', '.join(map(repr, known))})",
                                              cid, t["subject_id"])
            else:
                subs = [Subject(t["subject_id"], t.get("name") or t["subject_id"], cats.get(t["category_id"], "object")) for t in tracks.values()]
                doc = ClipAnnotation.new(cid, Timeline(max(F - 1, 4) / fps, subs, "", fps), F, H, W, frames=video.get("frames_path"),
                                         video=video.get("video_path"))
            for t in tracks.values():
                doc.masks[t["subject_id"]] = [None] * F
            faces = []
            for a in anns_by_video.get(video["id"], []):
                frame = int(images[a["image_id"]]["frame_id"])
                sid = (a.get("attributes") or {}).get("subject_id")
                if cats.get(a["category_id"]) == FACE_CATEGORY:
                    seg = a.get("segmentation")
                    faces.append(Face(sid, frame, tuple(a["bbox"]), a.get("score"), seg if isinstance(seg, dict) else None))
                    continue
                if a.get("track_id") in tracks:
                    sid = tracks[a["track_id"]]["subject_id"]
                if not isinstance(a.get("segmentation"), dict):
                    raise AnnotationError(f"clip {cid!r}, subject {sid!r}, frame {frame}: only RLE segmentations are read, got polygons", cid, sid)
                doc.set_mask(sid, frame, a["segmentation"])
            doc.faces = faces
        except (AnnotationError, TimelineError) as exc:
            report.errors.append((cid, str(exc)))
            continue
        except (KeyError, TypeError, ValueError) as exc:
            report.errors.append((cid, f"malformed COCO entry: {type(exc).__name__}: {exc}"))
            continue
        _save_import(store, doc, video.get("reactid_version"), annotator, "import-coco", report, force, keep_media=False)
    return report


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_json(source) -> tuple[Any, str]:
    if isinstance(source, (list, dict)):
        return source, "(in memory)"
    p = Path(source)
    try:
        return json.loads(p.read_text(encoding="utf-8")), str(p)
    except (OSError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"cannot read {p}: {exc}") from None


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
FORMATS = ("dataset", "labelstudio", "coco")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m annotate.exchange", description="Export the annotation store or import into it.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("--db", required=True, help="the annotation database (SQLite file)")
    ex.add_argument("--format", choices=FORMATS, required=True)
    ex.add_argument("--out", required=True, help="dataset directory, or JSON file")
    ex.add_argument("--review", choices=REVIEW_FILTERS, default="accepted", help="dataset: which clips (default: accepted)")
    ex.add_argument("--clip", action="append", help="only these clip ids (repeatable)")
    ex.add_argument("--overwrite", action="store_true")
    im = sub.add_parser("import")
    im.add_argument("--db", required=True)
    im.add_argument("--format", choices=FORMATS, required=True)
    im.add_argument("--in", dest="src", required=True, help="dataset directory, or JSON file")
    im.add_argument("--annotator", required=True, help="recorded on every change")
    im.add_argument("--force", action="store_true", help="replace clips that changed since the export (still kept in the history)")
    args = ap.parse_args(argv)
    try:
        with AnnotationStore(args.db) as store:
            if args.cmd == "export":
                if args.format == "dataset":
                    print(export_dataset(store, args.out, clips=args.clip, review=args.review, overwrite=args.overwrite))
                    return 0
                fn = export_labelstudio if args.format == "labelstudio" else export_coco
                print(f"wrote {fn(store, args.out, clips=args.clip)}")
                return 0
            fn = {"dataset": import_dataset, "labelstudio": import_labelstudio, "coco": import_coco}[args.format]
            report = fn(store, args.src, annotator=args.annotator, force=args.force)
            print(report)
            return 0 if report.ok else 1
    except (StoreError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
