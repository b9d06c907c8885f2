"""One clip's annotation as a document: what the store saves, versions, diffs and exports.

A `ClipAnnotation` holds everything annotators review for one clip:

- the **timeline document** (`model.timeline.Timeline`, DESIGN.md §3): subjects (id, name, kind,
  intra references) and their sub-actions. It is validated by `model.timeline`, the one place its
  rules live;
- **masks**: per subject, one COCO RLE per frame (`None` where that frame has not been annotated;
  an empty RLE where the subject is not visible);
- **faces**: boxes (and optional masks) per subject and frame;
- per subject: inter-clip references and a confidence (what the review queue filters on);
- `sources`: which backend produced what ("masks": "grabcut-offline", ...), named honestly;
- `review`: one status per aspect ("masks", "timeline"): pending / accepted / fixed / rejected;
- `meta` (free-form JSON) and `errors` (what the pipeline could not do for this clip);
- `deleted`: a deleted clip keeps its history and can be restored by a revert.

Plus read-only bookkeeping filled in by the store: version, created/updated time and annotator.
`content_dict()` is the document without that bookkeeping: two documents with equal content are
the same annotation, and `describe_changes` says in words what differs between two of them.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from model.timeline import Timeline, TimelineError

from . import rle as R

REVIEW_ASPECTS = ("masks", "timeline")
REVIEW_STATUSES = ("pending", "accepted", "fixed", "rejected")
DONE_STATUSES = ("accepted", "fixed")
_CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # also a directory name in exports


class StoreError(Exception):
    """Base class of everything the annotation store raises on purpose."""


class AnnotationError(StoreError, ValueError):
    """Bad input: the message names the clip (and subject / frame) it is about. `.problems` lists
    every problem found, not only the first."""

    def __init__(self, problems: str | list[str], clip_id: str | None = None, subject_id: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.clip_id = clip_id
        self.subject_id = subject_id
        super().__init__("; ".join(self.problems))


def _where(clip_id: str, subject_id: str | None = None, frame: int | None = None) -> str:
    s = f"clip {clip_id!r}"
    if subject_id is not None:
        s += f", subject {subject_id!r}"
    if frame is not None:
        s += f", frame {frame}"
    return s


def frame_ranges(frames: Iterable[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    fs = sorted(set(int(f) for f in frames))
    out, i = [], 0
    while i < len(fs):
        j = i
        while j + 1 < len(fs) and fs[j + 1] == fs[j] + 1:
            j += 1
        out.append(str(fs[i]) if i == j else f"{fs[i]}-{fs[j]}")
        i = j + 1
    return ", ".join(out)


@dataclass
class Review:
    status: str = "pending"
    reason: str = ""
    annotator: str = ""
    at: str = ""

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "annotator": self.annotator, "at": self.at}

    @classmethod
    def from_dict(cls, d: dict) -> "Review":
        return cls(str(d.get("status", "pending")), str(d.get("reason", "") or ""), str(d.get("annotator", "") or ""), str(d.get("at", "") or ""))


@dataclass
class Face:
    """A face of one subject in one frame: box = (x, y, width, height) in pixels."""

    subject_id: str
    frame: int
    box: tuple[float, float, float, float]
    score: float | None = None
    mask: dict | None = None  # COCO RLE, optional

    def to_dict(self) -> dict:
        return {"subject_id": self.subject_id, "frame": int(self.frame), "box": [float(v) for v in self.box],
                "score": None if self.score is None else float(self.score), "mask": copy.deepcopy(self.mask)}

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        if not isinstance(d, dict):
            raise TypeError(f"a face must be an object, got {type(d).__name__}")
        unknown = set(d) - {"subject_id", "frame", "box", "score", "mask"}
        if unknown:
            raise KeyError(f"unknown face key(s) {sorted(unknown)}")
        box = d.get("box")
        return cls(d.get("subject_id"), d.get("frame"), tuple(box) if isinstance(box, (list, tuple)) else box, d.get("score"), d.get("mask"))


_CONTENT_KEYS = ("clip_id", "frames", "video", "num_frames", "height", "width", "timeline", "masks", "faces",
                 "inter_references", "confidence", "sources", "review", "meta", "errors", "deleted")
_BOOKKEEPING_KEYS = ("version", "created_at", "created_by", "updated_at", "updated_by")


@dataclass
class ClipAnnotation:
    clip_id: str
    timeline: Timeline
    num_frames: int
    height: int
    width: int
    frames: str | None = None  # path to frames.npz ("frames": uint8 [F, H, W, 3]); relative to the store's media root
    video: str | None = None  # path to the clip's video
    masks: dict[str, list[dict | None]] = field(default_factory=dict)
    faces: list[Face] = field(default_factory=list)
    inter_references: dict[str, list[str]] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    review: dict[str, Review] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    deleted: bool = False
    # bookkeeping, filled in by the store
    version: int = 0
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    updated_by: str = ""

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def new(cls, clip_id: str, timeline: Timeline, num_frames: int, height: int, width: int, *, masks: np.ndarray | None = None,
            **kwargs) -> "ClipAnnotation":
        """A new clip (version 0). `masks`: optional bool [S, F, H, W] in timeline subject order."""
        doc = cls(clip_id, timeline.copy(), int(num_frames), int(height), int(width), **kwargs)
        for s in doc.timeline.subjects:
            doc.masks.setdefault(s.id, [None] * doc.num_frames)
        if masks is not None:
            masks = np.asarray(masks)
            if masks.ndim != 4 or masks.shape[0] != len(doc.timeline.subjects):
                raise AnnotationError(f"{_where(clip_id)}: masks must be bool [S, F, H, W] with one row per timeline subject "
                                      f"({len(doc.timeline.subjects)}), got shape {masks.shape}", clip_id)
            for s, m in zip(doc.timeline.subjects, masks):
                doc.set_masks(s.id, m)
        for a in REVIEW_ASPECTS:
            doc.review.setdefault(a, Review())
        return doc

    def copy(self) -> "ClipAnnotation":
        return copy.deepcopy(self)

    # ---- conversion -----------------------------------------------------------------------
    def content_dict(self) -> dict:
        return {
            "clip_id": self.clip_id,
            "frames": self.frames,
            "video": self.video,
            "num_frames": int(self.num_frames),
            "height": int(self.height),
            "width": int(self.width),
            "timeline": self.timeline.to_dict(),
            "masks": {sid: [None if r is None else {"size": list(r["size"]), "counts": r["counts"]} for r in rs] for sid, rs in self.masks.items()},
            "faces": [f.to_dict() for f in self.faces],
            "inter_references": {k: list(v) for k, v in self.inter_references.items()},
            "confidence": {k: float(v) for k, v in self.confidence.items()},
            "sources": dict(self.sources),
            "review": {k: v.to_dict() for k, v in self.review.items()},
            "meta": copy.deepcopy(self.meta),
            "errors": list(self.errors),
            "deleted": bool(self.deleted),
        }

    def to_dict(self) -> dict:
        d = self.content_dict()
        d.update({k: getattr(self, k) for k in _BOOKKEEPING_KEYS})
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "ClipAnnotation":
        """Parse a document (content keys, bookkeeping keys optional). Shape errors raise
        AnnotationError naming the clip; call `validate()` for the rules."""
        if not isinstance(d, dict):
            raise AnnotationError(f"a clip annotation must be a JSON object, got {type(d).__name__}")
        cid = d.get("clip_id")
        where = _where(cid) if isinstance(cid, str) else "clip annotation"
        unknown = set(d) - set(_CONTENT_KEYS) - set(_BOOKKEEPING_KEYS)
        if unknown:
            raise AnnotationError(f"{where}: unknown key(s) {sorted(unknown)}", cid)
        missing = [k for k in ("clip_id", "timeline", "num_frames", "height", "width") if k not in d]
        if missing:
            raise AnnotationError(f"{where}: missing key(s) {missing}", cid)
        try:
            tl = Timeline.from_dict(d["timeline"], validate=False)
        except TimelineError as exc:
            raise AnnotationError([f"{where}: {p.message}" for p in exc.problems], cid) from None
        try:
            faces = [Face.from_dict(f) for f in d.get("faces") or []]
        except (TypeError, KeyError) as exc:
            raise AnnotationError(f"{where}: {exc}", cid) from None
        review = d.get("review") or {}
        if not isinstance(review, dict) or not all(isinstance(v, dict) for v in review.values()):
            raise AnnotationError(f"{where}: review must map aspect -> {{status, reason, annotator, at}}", cid)
        masks = d.get("masks") or {}
        if not isinstance(masks, dict) or not all(isinstance(v, list) for v in masks.values()):
            raise AnnotationError(f"{where}: masks must map subject id -> a list with one RLE (or null) per frame", cid)
        doc = cls(
            clip_id=cid, timeline=tl, num_frames=d["num_frames"], height=d["height"], width=d["width"],
            frames=d.get("frames"), video=d.get("video"), masks={k: list(v) for k, v in masks.items()}, faces=faces,
            inter_references={k: list(v) if isinstance(v, list) else v for k, v in (d.get("inter_references") or {}).items()},
            confidence=dict(d.get("confidence") or {}), sources=dict(d.get("sources") or {}),
            review={k: Review.from_dict(v) for k, v in review.items()}, meta=copy.deepcopy(d.get("meta") or {}),
            errors=list(d.get("errors") or []), deleted=bool(d.get("deleted", False)),
        )
        for k in _BOOKKEEPING_KEYS:
            if k in d:
                setattr(doc, k, d[k])
        return doc

    # ---- subjects -------------------------------------------------------------------------
    @property
    def subject_ids(self) -> list[str]:
        return [s.id for s in self.timeline.subjects]

    def _subject(self, subject_id: str) -> None:
        if subject_id not in self.subject_ids:
            known = ", ".join(repr(s) for s in self.subject_ids) or "none"
            raise AnnotationError(f"{_where(self.clip_id)}: unknown subject {subject_id!r} (known: {known})", self.clip_id, subject_id)

    def _frame(self, subject_id: str, frame: int) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= int(frame) < self.num_frames:
            raise AnnotationError(f"{_where(self.clip_id, subject_id)}: frame {frame!r} is outside the clip (0..{self.num_frames - 1})",
                                  self.clip_id, subject_id)
        return int(frame)

    def _mask_rle(self, subject_id: str, frame: int, mask: Any) -> dict:
        where = _where(self.clip_id, subject_id, frame)
        if isinstance(mask, dict):
            try:
                return R.check(mask, (self.height, self.width))
            except R.RLEError as exc:
                raise AnnotationError(f"{where}: {exc}", self.clip_id, subject_id) from None
        m = np.asarray(mask)
        if m.ndim != 2:
            raise AnnotationError(f"{where}: a mask must be 2-D [height, width], got shape {m.shape}", self.clip_id, subject_id)
        if m.shape != (self.height, self.width):
            raise AnnotationError(f"{where}: mask is {m.shape[0]}x{m.shape[1]} (height x width) but the clip's frames are "
                                  f"{self.height}x{self.width}", self.clip_id, subject_id)
        if m.dtype != bool:
            if not np.isin(m, (0, 1)).all():
                raise AnnotationError(f"{where}: mask values must be 0/1 or bool (got {m.dtype} with other values)", self.clip_id, subject_id)
            m = m.astype(bool)
        return R.encode(m)

    # ---- masks ----------------------------------------------------------------------------
    def set_mask(self, subject_id: str, frame: int, mask: Any) -> None:
        """One frame's mask: bool [H, W] array, an RLE dict, or None (= not annotated)."""
        self._subject(subject_id)
        frame = self._frame(subject_id, frame)
        rles = self.masks.setdefault(subject_id, [None] * self.num_frames)
        if len(rles) != self.num_frames:
            raise AnnotationError(f"{_where(self.clip_id, subject_id)}: has {len(rles)} mask frames for a {self.num_frames}-frame clip",
                                  self.clip_id, subject_id)
        rles[frame] = None if mask is None else self._mask_rle(subject_id, frame, mask)

    def set_masks(self, subject_id: str, masks: Any) -> None:
        """A subject's masks: bool [F, H, W] for the whole clip, or {frame: mask} for some frames."""
        self._subject(subject_id)
        if isinstance(masks, dict):
            for f, m in masks.items():
                self.set_mask(subject_id, f, m)
            return
        m = np.asarray(masks)
        if m.ndim != 3 or m.shape[0] != self.num_frames:
            raise AnnotationError(f"{_where(self.clip_id, subject_id)}: masks must be [frames, height, width] with {self.num_frames} frames, "
                                  f"got shape {m.shape}", self.clip_id, subject_id)
        if m.shape[1:] != (self.height, self.width):
            raise AnnotationError(f"{_where(self.clip_id, subject_id)}: masks are {m.shape[1]}x{m.shape[2]} (height x width) but the clip's "
                                  f"frames are {self.height}x{self.width}", self.clip_id, subject_id)
        if m.dtype != bool:
            if not np.isin(m, (0, 1)).all():
                raise AnnotationError(f"{_where(self.clip_id, subject_id)}: mask values must be 0/1 or bool", self.clip_id, subject_id)
            m = m.astype(bool)
        self.masks[subject_id] = R.encode_frames(m)

    def mask(self, subject_id: str, frame: int) -> np.ndarray | None:
        self._subject(subject_id)
        frame = self._frame(subject_id, frame)
        r = (self.masks.get(subject_id) or [None] * self.num_frames)[frame]
        return None if r is None else R.decode(r)

    def missing_mask_frames(self, subject_id: str) -> list[int]:
        rles = self.masks.get(subject_id) or [None] * self.num_frames
        return [f for f, r in enumerate(rles) if r is None]

    def mask_array(self, subject_id: str, missing: str = "error") -> np.ndarray:
        """bool [F, H, W]. Frames without a mask raise (missing="error") or are empty ("empty")."""
        self._subject(subject_id)
        rles = self.masks.get(subject_id) or [None] * self.num_frames
        gaps = [f for f, r in enumerate(rles) if r is None]
        if gaps and missing == "error":
            raise AnnotationError(f"{_where(self.clip_id, subject_id)}: no mask for frame(s) {frame_ranges(gaps)}", self.clip_id, subject_id)
        out = np.zeros((self.num_frames, self.height, self.width), dtype=bool)
        have = [f for f, r in enumerate(rles) if r is not None]
        if have:
            out[have] = R.decode_frames([rles[f] for f in have])
        return out

    def masks_array(self, missing: str = "error") -> np.ndarray:
        """bool [S, F, H, W] in timeline subject order (the dataset format's layout)."""
        problems = []
        if missing == "error":
            for sid in self.subject_ids:
                gaps = self.missing_mask_frames(sid)
                if gaps:
                    problems.append(f"{_where(self.clip_id, sid)}: no mask for frame(s) {frame_ranges(gaps)}")
        if problems:
            raise AnnotationError(problems, self.clip_id)
        if not self.subject_ids:
            return np.zeros((0, self.num_frames, self.height, self.width), dtype=bool)
        return np.stack([self.mask_array(sid, "empty") for sid in self.subject_ids])

    # ---- review ---------------------------------------------------------------------------
    def set_review(self, aspect: str, status: str, reason: str = "", annotator: str = "", at: str = "") -> None:
        if aspect not in REVIEW_ASPECTS:
            raise AnnotationError(f"{_where(self.clip_id)}: unknown review aspect {aspect!r} (one of {', '.join(REVIEW_ASPECTS)})", self.clip_id)
        if status not in REVIEW_STATUSES:
            raise AnnotationError(f"{_where(self.clip_id)}: unknown review status {status!r} for {aspect} (one of {', '.join(REVIEW_STATUSES)})", self.clip_id)
        if status == "rejected" and not str(reason).strip():
            raise AnnotationError(f"{_where(self.clip_id)}: rejecting the {aspect} needs a reason", self.clip_id)
        self.review[aspect] = Review(status, str(reason), annotator, at)

    def review_status(self, aspect: str) -> str:
        r = self.review.get(aspect)
        return r.status if r else "pending"

    @property
    def accepted(self) -> bool:
        """Every aspect accepted or fixed."""
        return all(self.review_status(a) in DONE_STATUSES for a in REVIEW_ASPECTS)

    @property
    def rejected(self) -> bool:
        return any(self.review_status(a) == "rejected" for a in REVIEW_ASPECTS)

    # ---- timeline -------------------------------------------------------------------------
    def replace_timeline(self, timeline: Timeline) -> None:
        """Use a new timeline; data of subjects it drops goes with them (the store keeps it in
        the history), subjects it adds start with no masks."""
        self.timeline = timeline.copy()
        ids = set(self.subject_ids)
        self.masks = {sid: self.masks.get(sid) or [None] * self.num_frames for sid in self.subject_ids}
        self.faces = [f for f in self.faces if f.subject_id in ids]
        self.inter_references = {k: v for k, v in self.inter_references.items() if k in ids}
        self.confidence = {k: v for k, v in self.confidence.items() if k in ids}

    # ---- rules ----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with this document; each message names the clip (and subject / frame).
        Normalises the RLEs it checks (counts as str)."""
        p: list[str] = []
        cid = self.clip_id
        if not isinstance(cid, str) or not _CLIP_ID.match(cid):
            return [f"clip id must be 1-128 letters, digits, '_', '.' or '-' (starting with a letter or digit), got {cid!r}"]
        w = _where(cid)
        for key in ("num_frames", "height", "width"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                p.append(f"{w}: {key} must be a positive integer, got {v!r}")
        if p:
            return p
        for key in ("frames", "video"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, str) and v.strip()):
                p.append(f"{w}: {key} must be a path or null, got {v!r}")
        p += [f"{w}: {x.message}" for x in self.timeline.problems()]
        ids = self.subject_ids
        known = ", ".join(repr(s) for s in ids) or "none"
        for sid, rles in self.masks.items():
            if sid not in ids:
                p.append(f"{w}: masks for unknown subject {sid!r} (known: {known})")
                continue
            if len(rles) != self.num_frames:
                p.append(f"{_where(cid, sid)}: {len(rles)} mask frames for a {self.num_frames}-frame clip")
                continue
            for f, r in enumerate(rles):
                if r is None:
                    continue
                try:
                    rles[f] = R.check(r, (self.height, self.width))
                except R.RLEError as exc:
                    p.append(f"{_where(cid, sid, f)}: {exc}")
        for i, face in enumerate(self.faces):
            fw = f"{w}, face {i + 1}"
            if face.subject_id not in ids:
                p.append(f"{fw}: unknown subject {face.subject_id!r} (known: {known})")
                continue
            fw = f"{_where(cid, face.subject_id)}, face {i + 1}"
            if isinstance(face.frame, bool) or not isinstance(face.frame, (int, np.integer)) or not 0 <= face.frame < self.num_frames:
                p.append(f"{fw}: frame {face.frame!r} is outside the clip (0..{self.num_frames - 1})")
            box = face.box
            if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_finite(v) for v in box)) or box[2] < 0 or box[3] < 0:
                p.append(f"{fw}: box must be [x, y, width, height] with finite numbers and width, height >= 0, got {box!r}")
            else:
                face.box = tuple(float(v) for v in box)
            if face.score is not None and not _finite(face.score):
                p.append(f"{fw}: score must be a number or null, got {face.score!r}")
            if face.mask is not None:
                try:
                    face.mask = R.check(face.mask, (self.height, self.width))
                except R.RLEError as exc:
                    p.append(f"{fw}: {exc}")
        for sid, refs in self.inter_references.items():
            if sid not in ids:
                p.append(f"{w}: inter references for unknown subject {sid!r} (known: {known})")
            elif not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
                p.append(f"{_where(cid, sid)}: inter references must be a list of paths")
        for sid, c in self.confidence.items():
            if sid not in ids:
                p.append(f"{w}: confidence for unknown subject {sid!r} (known: {known})")
            elif not _finite(c) or not 0 <= c <= 1:
                p.append(f"{_where(cid, sid)}: confidence must be a number in [0, 1], got {c!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.sources.items()):
            p.append(f"{w}: sources must map what -> backend name (strings)")
        for aspect, r in self.review.items():
            if aspect not in REVIEW_ASPECTS:
                p.append(f"{w}: unknown review aspect {aspect!r} (one of {', '.join(REVIEW_ASPECTS)})")
            elif r.status not in REVIEW_STATUSES:
                p.append(f"{w}: unknown review status {r.status!r} for {aspect} (one of {', '.join(REVIEW_STATUSES)})")
            elif r.status == "rejected" and not r.reason.strip():
                p.append(f"{w}: rejecting the {aspect} needs a reason")
        if not isinstance(self.meta, dict):
            p.append(f"{w}: meta must be a JSON object")
        else:
            try:
                json.dumps(self.meta, allow_nan=False)
            except (TypeError, ValueError) as exc:
                p.append(f"{w}: meta is not JSON-serialisable ({exc})")
        if not isinstance(self.errors, list) or not all(isinstance(e, str) for e in self.errors):
            p.append(f"{w}: errors must be a list of strings")
        return p

    def validate(self) -> "ClipAnnotation":
        problems = self.problems()
        if problems:
            raise AnnotationError(problems, self.clip_id if isinstance(self.clip_id, str) else None)
        for sid in self.subject_ids:
            self.masks.setdefault(sid, [None] * self.num_frames)
        for a in REVIEW_ASPECTS:
            self.review.setdefault(a, Review())
        return self


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


# --------------------------------------------------------------------------------------------
# What changed, in words (audit history, conflict messages)
# --------------------------------------------------------------------------------------------
def _act(a: dict) -> str:
    text = a["text"] if len(a["text"]) <= 40 else a["text"][:37] + "..."
    return f"[{a['start']:.2f}s-{a['end']:.2f}s] {text!r}"


def describe_changes(old: dict | None, new: dict | None) -> list[str]:
    """Differences between two content dicts (`ClipAnnotation.content_dict()`), one line each."""
    if new is None:
        return ["(nothing)"]
    if old is None:
        subs = [s["id"] for s in new["timeline"]["subjects"]]
        return [f"created: {new['num_frames']} frames {new['height']}x{new['width']}, subject(s) {', '.join(subs) or 'none'}"]
    out: list[str] = []
    if old.get("deleted") != new.get("deleted"):
        out.append("deleted the clip" if new.get("deleted") else "restored the clip")
    for key in ("frames", "video", "num_frames", "height", "width"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    to, tn = old["timeline"], new["timeline"]
    for key in ("duration", "fps", "prompt"):
        if to.get(key) != tn.get(key):
            out.append(f"timeline {key}: {to.get(key)!r} -> {tn.get(key)!r}")
    so = {s["id"]: s for s in to["subjects"]}
    sn = {s["id"]: s for s in tn["subjects"]}
    for sid in sn:
        if sid not in so:
            out.append(f"added subject {sid!r} ({sn[sid]['name']})")
    for sid in so:
        if sid not in sn:
            out.append(f"removed subject {sid!r} ({so[sid]['name']})")
    if [s for s in so if s in sn] != [s for s in sn if s in so]:
        out.append(f"subject order: {', '.join(so)} -> {', '.join(sn)}")
    for sid in [s for s in sn if s in so]:
        a, b = so[sid], sn[sid]
        for key in ("name", "kind", "references"):
            if a.get(key) != b.get(key):
                out.append(f"subject {sid!r} {key}: {a.get(key)!r} -> {b.get(key)!r}")
        ao, an = a.get("actions", []), b.get("actions", [])
        for i in range(max(len(ao), len(an))):
            x = ao[i] if i < len(ao) else None
            y = an[i] if i < len(an) else None
            if x == y:
                continue
            if x is None:
                out.append(f"subject {sid!r} action {i + 1} added: {_act(y)}")
            elif y is None:
                out.append(f"subject {sid!r} action {i + 1} removed: {_act(x)}")
            else:
                out.append(f"subject {sid!r} action {i + 1}: {_act(x)} -> {_act(y)}")
    mo, mn = old.get("masks", {}), new.get("masks", {})
    for sid in list(dict.fromkeys([*mn, *mo])):
        if sid not in sn:
            continue
        a = mo.get(sid) or []
        b = mn.get(sid) or []
        changed = [f for f in range(max(len(a), len(b))) if (a[f] if f < len(a) else None) != (b[f] if f < len(b) else None)]
        if changed:
            out.append(f"subject {sid!r} masks: frame(s) {frame_ranges(changed)} changed")
    if old.get("faces") != new.get("faces"):
        def per(faces):
            d: dict[str, int] = {}
            for f in faces:
                d[f["subject_id"]] = d.get(f["subject_id"], 0) + 1
            return d
        po, pn = per(old.get("faces", [])), per(new.get("faces", []))
        parts = [f"{sid!r} {po.get(sid, 0)} -> {pn.get(sid, 0)}" for sid in dict.fromkeys([*po, *pn]) if po.get(sid, 0) != pn.get(sid, 0)]
        out.append("faces changed" + (f" (count per subject: {', '.join(parts)})" if parts else ""))
    for key, label in (("inter_references", "inter references"), ("confidence", "confidence")):
        a, b = old.get(key, {}), new.get(key, {})
        for sid in dict.fromkeys([*a, *b]):
            if a.get(sid) != b.get(sid):
                out.append(f"subject {sid!r} {label}: {a.get(sid)!r} -> {b.get(sid)!r}")
    if old.get("sources") != new.get("sources"):
        out.append(f"sources: {old.get('sources')!r} -> {new.get('sources')!r}")
    ro, rn = old.get("review", {}), new.get("review", {})
    for aspect in dict.fromkeys([*REVIEW_ASPECTS, *ro, *rn]):
        a = ro.get(aspect) or {"status": "pending", "reason": ""}
        b = rn.get(aspect) or {"status": "pending", "reason": ""}
        if (a.get("status"), a.get("reason")) != (b.get("status"), b.get("reason")):
            reason = f" ({b['reason']})" if b.get("reason") else ""
            out.append(f"review of {aspect}: {a.get('status')} -> {b.get('status')}{reason}")
    if old.get("meta") != new.get("meta"):
        keys = sorted({k for k in set(old.get("meta", {})) | set(new.get("meta", {})) if old.get("meta", {}).get(k) != new.get("meta", {}).get(k)})
        out.append(f"meta changed ({', '.join(map(str, keys))})")
    if old.get("errors") != new.get("errors"):
        out.append(f"errors: {len(old.get('errors', []))} -> {len(new.get('errors', []))}")
    return out


__all__ = ["AnnotationError", "ClipAnnotation", "DONE_STATUSES", "Face", "REVIEW_ASPECTS", "REVIEW_STATUSES", "Review", "StoreError",
           "describe_changes", "frame_ranges"]
