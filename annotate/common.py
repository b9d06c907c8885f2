"""Types and helpers shared by the pipeline's stages (docs/ANNOTATION.md, "The pipeline").

Every stage is a function over one clip with a pluggable backend. A stage that cannot do its job
for a clip raises `StageError`, whose message names the clip and the stage; the run records it and
goes on with the next clip. Problems that do not stop a clip (one entity that no offline detector
can find, say) are collected in `ClipState.warnings` and end up in the clip's `errors`.

Backends are named honestly: every record says which backend produced what ("grabcut-offline",
not "SAM2"), through `ClipState.sources`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("read", "scenes", "quality", "captions", "entities", "detection", "masks", "faces", "timeline", "store")


class StageError(Exception):
    """A stage could not do its job for one clip (or one video). The message says what and why."""

    def __init__(self, stage: str, message: str, clip_id: str | None = None):
        self.stage = stage
        self.clip_id = clip_id
        self.message = message
        where = f"clip {clip_id!r}, " if clip_id else ""
        super().__init__(f"{where}{stage}: {message}")

    def to_dict(self) -> dict:
        return {"clip_id": self.clip_id, "stage": self.stage, "message": self.message, "error": str(self)}


class NotAvailable(RuntimeError):
    """A backend whose package or weights are not on this machine. The message says which and how to
    get it; nothing is ever downloaded."""


@dataclass
class Entity:
    """A subject named by the caption: "the red striped circle" (object), "the woman" (human)."""

    label: str  # what the timeline calls it ("the red striped circle")
    noun: str  # the taxonomy term it matched ("circle")
    kind: str  # human | animal | object
    living: bool
    colour: str | None = None  # a colour word of the taxonomy in its phrase, if any
    span: str = ""  # the caption text it came from

    def to_dict(self) -> dict:
        return {"label": self.label, "noun": self.noun, "kind": self.kind, "living": self.living, "colour": self.colour, "span": self.span}


@dataclass
class SubjectTrack:
    """One entity grounded in the clip: a box per frame (None where it was not found) and, after the
    masks stage, a mask per frame."""

    entity: Entity
    boxes: list[tuple[float, float, float, float] | None]  # (x, y, w, h) per frame
    scores: np.ndarray  # [F] detection score (0 where not found)
    hint: np.ndarray | None = None  # bool [F, H, W] the detector's own pixels, when it has them (a prompt for the masks)
    masks: np.ndarray | None = None  # bool [F, H, W]
    verified: float = 1.0  # verification score in [0, 1]
    detector: str = ""

    @property
    def found(self) -> np.ndarray:
        return np.array([b is not None for b in self.boxes])

    @property
    def confidence(self) -> float:
        return float(np.clip(self.found.mean() * self.verified, 0.0, 1.0))


@dataclass
class ClipState:
    """One clip flowing through the stages."""

    clip_id: str
    frames: np.ndarray  # uint8 [F, H, W, 3]
    fps: int
    source: dict = field(default_factory=dict)  # video path, frame range in it, crop
    caption: str | None = None
    quality: dict = field(default_factory=dict)
    entities: list[Entity] = field(default_factory=list)
    tracks: list[SubjectTrack] = field(default_factory=list)
    faces: list[dict] = field(default_factory=list)
    timeline: Any = None  # model.timeline.Timeline
    timeline_candidates: list[dict] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        F, H, W, _ = self.frames.shape
        return F, H, W

    def warn(self, stage: str, message: str) -> None:
        self.warnings.append(f"{stage}: {message}")


# --------------------------------------------------------------------------------------------
# Connected components (OpenCV); the colour helpers are in model/colour.py
# --------------------------------------------------------------------------------------------
def keep_large_components(mask: np.ndarray, keep_frac: float = 0.25, min_px: int = 1) -> np.ndarray:
    """bool [H, W]: keep 8-connected components at least keep_frac of the largest (and >= min_px)."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero((areas >= keep_frac * areas.max()) & (areas >= min_px)) + 1
    return np.isin(lab, keep)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] with every hole (background not connected to the border) filled."""
    import cv2

    m = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    flood = m.copy()
    ff = np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 1)
    holes = flood == 0
    return (m.astype(bool) | holes)[1:-1, 1:-1]


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) of a bool [H, W] mask's pixels; None when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


def box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def limit_threads(n: int = 1) -> None:
    """One worker = one core: keep torch, OpenCV and BLAS from starting a thread per core each
    (DESIGN.md: torch's default collapses when another process holds a core)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


__all__ = ["ClipState", "Entity", "NotAvailable", "STAGES", "StageError", "SubjectTrack", "box_iou", "box_of", "fill_holes",
           "keep_large_components", "limit_threads"]
