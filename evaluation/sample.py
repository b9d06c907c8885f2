"""One generated video with what it was generated from: the record every metric reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.timeline import Timeline


@dataclass
class Sample:
    method: str  # the table row it belongs to (a model, a checkpoint)
    name: str  # the clip's file stem
    frames: np.ndarray  # uint8 [F, H, W, 3]
    fps: float
    timeline: Timeline
    references: list[list[np.ndarray]]  # per subject (timeline order), uint8 [h, w, 3] images; may be empty
    video_path: Path | None = None
    timeline_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def human_subjects(self) -> list[int]:
        return [i for i, s in enumerate(self.timeline.subjects) if s.kind == "human"]
