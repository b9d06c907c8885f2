"""The evaluation directory: which files make a sample, and loading them with per-item messages.

```
<dir>/                       one method (row) named after <dir> when clips sit directly in it, or
  <method>/                  one folder per method (model, checkpoint, setting): one table row each
    <clip>.mp4               the generated video (also .webm .mov .mkv .avi)
    <clip>.json              the timeline document it was generated from (model/timeline.py)
    refs/<anything>.png      reference images, named by the timeline: each subject's "references" entries are
                             paths relative to the timeline file (absolute paths work too)
```
A timeline without its video, an unreadable video, a video without a timeline or a missing reference image
is reported with a sentence naming the file; the run goes on with the other clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.references import ReferenceError, load_reference_image
from model.timeline import Timeline, TimelineError
from model.video import read_video

from .sample import Sample

VIDEO_EXTS = (".mp4", ".webm", ".mov", ".mkv", ".avi")


@dataclass
class Entry:
    method: str
    name: str
    timeline_path: Path
    video_path: Path | None  # None: no video file with the timeline's name


class LoadError(Exception):
    """A clip that cannot be evaluated at all; the message names the file and says why."""


def _clips_in(folder: Path) -> tuple[list[Entry], list[str]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    timelines = {p.stem: p for p in files if p.suffix.lower() == ".json"}
    videos: dict[str, Path] = {}
    for p in files:
        if p.suffix.lower() in VIDEO_EXTS:
            videos.setdefault(p.stem, p)
    entries = [Entry(folder.name, stem, tl, videos.get(stem)) for stem, tl in sorted(timelines.items())]
    problems = [f"{folder.name}/{v.name}: no timeline {v.stem}.json next to it; skipped" for s, v in sorted(videos.items()) if s not in timelines]
    return entries, problems


def discover(root: str | Path, exclude: list[str | Path] = ()) -> tuple[list[Entry], list[str]]:
    """All clips under `root` (its own files, then each sub-folder as one method). `exclude`: folders to skip
    (the output folder when it lies inside root). Raises LoadError when root is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise LoadError(f"{root}: not a folder" + ("" if root.exists() else " (it does not exist)"))
    skip = {Path(e).resolve() for e in exclude}
    entries, problems = _clips_in(root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.resolve() not in skip):
        e, pr = _clips_in(sub)
        entries += e
        problems += pr
    return entries, problems


def _load_timeline(path: Path, notes: list[str]) -> Timeline:
    try:
        return Timeline.load(path)
    except TimelineError as exc:
        try:  # the timing rules are for editing; a generated clip's timeline is measured as it is
            tl = Timeline.load(path, validate=False)
        except (TimelineError, ValueError, OSError) as exc2:
            raise LoadError(f"{path.name}: not a valid timeline document: {exc2}") from None
        notes.append(f"{path.name}: the timeline breaks the editing rules ({exc}); measured as it is")
        return tl
    except json.JSONDecodeError as exc:
        raise LoadError(f"{path.name}: not JSON ({exc})") from None
    except (ValueError, OSError) as exc:
        raise LoadError(f"{path.name}: could not read the timeline ({exc.__class__.__name__}: {exc})") from None


def load_sample(entry: Entry) -> Sample:
    """Read a clip's timeline, video and references. LoadError when the clip cannot be measured at all;
    smaller problems (a missing reference, a frame-rate mismatch) become the sample's notes."""
    notes: list[str] = []
    tl = _load_timeline(entry.timeline_path, notes)
    if entry.video_path is None:
        raise LoadError(f"{entry.method}/{entry.name}: video missing (expected {entry.name}.mp4 beside {entry.timeline_path.name})")
    try:
        frames, fps = read_video(entry.video_path)
    except Exception as exc:  # PyAV raises many types for broken files
        raise LoadError(f"{entry.method}/{entry.video_path.name}: video unreadable ({exc.__class__.__name__}: {exc})") from None
    if fps and abs(fps - tl.fps) > 0.01:
        notes.append(f"{entry.video_path.name}: the video is {fps:g} fps but its timeline says {tl.fps}; timeline times are read at the timeline's rate")
    refs: list[list[np.ndarray]] = []
    for s in tl.subjects:
        mine = []
        for r in s.references:
            p = Path(r)
            p = p if p.is_absolute() else entry.timeline_path.parent / p
            try:
                mine.append(np.asarray(load_reference_image(p, label=f"subject {s.id!r} reference {r}").convert("RGB")))
            except ReferenceError as exc:
                notes.append(str(exc))
        if not s.references:
            notes.append(f"subject {s.id!r}: the timeline lists no reference image")
        refs.append(mine)
    return Sample(entry.method, entry.name, frames, float(fps), tl, refs, entry.video_path, entry.timeline_path, notes)


__all__ = ["Entry", "LoadError", "VIDEO_EXTS", "discover", "load_sample"]
