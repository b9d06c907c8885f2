"""The timeline document: the one data contract that crosses every layer (DESIGN.md §3).

A timeline says, per subject, which sub-action happens when. The studio edits it, the pipeline
consumes it, annotators correct it and the trainer reads it. Everything about its shape and rules
lives here, so every layer reports the same problems with the same words.

Times are seconds. Wan generates 4k+1 frames and its causal VAE compresses time x4
(latent frame 0 = video frame 0, latent frame f = video frames 4f-3..4f), so the smallest span an
action may have is one latent frame: 4 video frames.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
MAX_SUBJECTS = 6
KINDS = ("human", "animal", "object")
TIME_COMPRESSION = 4  # Wan VAE: 4 video frames per latent frame (after the first)
DEFAULT_FPS = 16
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Errors that name what and where
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a timeline, with where it is (a JSON-pointer-like path)."""

    path: str
    message: str
    subject_id: str | None = None
    action_index: int | None = None
    fixable: bool = False  # True where `fix_overlaps` can repair it

    def __str__(self) -> str:
        return self.message


class TimelineError(ValueError):
    """A timeline that breaks the rules; `.problems` lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [p.message for p in self.problems]
        super().__init__("invalid timeline: " + "; ".join(lines) if lines else "invalid timeline")


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------
@dataclass
class Action:
    start: float
    end: float
    text: str

    def to_dict(self) -> dict:
        return {"start": float(self.start), "end": float(self.end), "text": self.text}


@dataclass
class Subject:
    id: str
    name: str
    kind: str = "object"
    references: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "references": list(self.references),
            "actions": [a.to_dict() for a in self.actions],
        }

    def sorted_actions(self) -> list[Action]:
        return sorted(self.actions, key=lambda a: (a.start, a.end))


@dataclass
class Timeline:
    duration: float
    subjects: list[Subject]
    prompt: str = ""
    fps: int = DEFAULT_FPS
    version: int = SCHEMA_VERSION

    # ---- conversion ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "duration": float(self.duration),
            "fps": int(self.fps),
            "prompt": self.prompt,
            "subjects": [s.to_dict() for s in self.subjects],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, obj: Any, *, validate: bool = True) -> "Timeline":
        """Parse a document. Shape errors (unknown keys, wrong types) always raise; with
        `validate=True` (default) the timing rules are checked too."""
        problems = _shape_problems(obj)
        if problems:
            raise TimelineError(problems)
        subjects = [
            Subject(
                id=s["id"],
                name=s["name"],
                kind=s.get("kind", "object"),
                references=list(s.get("references", [])),
                actions=[Action(float(a["start"]), float(a["end"]), a["text"]) for a in s.get("actions", [])],
            )
            for s in obj["subjects"]
        ]
        tl = cls(
            duration=float(obj["duration"]),
            subjects=subjects,
            prompt=obj.get("prompt", ""),
            fps=int(obj.get("fps", DEFAULT_FPS)),
            version=int(obj.get("version", SCHEMA_VERSION)),
        )
        if validate:
            tl.validate()
        return tl

    @classmethod
    def from_json(cls, text: str | bytes, *, validate: bool = True) -> "Timeline":
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise TimelineError([Problem("", f"the timeline is not valid JSON{where}: {exc.msg if hasattr(exc, 'msg') else exc}")]) from None
        return cls.from_dict(obj, validate=validate)

    @classmethod
    def load(cls, path: str | Path, *, validate: bool = True) -> "Timeline":
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise TimelineError([Problem("", f"cannot read timeline file {path}: {exc.strerror}")]) from None
        try:
            return cls.from_json(text, validate=validate)
        except TimelineError as exc:
            raise TimelineError([Problem(p.path, f"{path.name}: {p.message}", p.subject_id, p.action_index, p.fixable) for p in exc.problems]) from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def copy(self) -> "Timeline":
        return copy.deepcopy(self)

    # ---- rules ----------------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        return _rule_problems(self)

    def validate(self) -> "Timeline":
        problems = self.problems()
        if problems:
            raise TimelineError(problems)
        return self

    def subject(self, subject_id: str) -> Subject:
        for s in self.subjects:
            if s.id == subject_id:
                return s
        known = ", ".join(repr(s.id) for s in self.subjects) or "none"
        raise TimelineError([Problem("/subjects", f"unknown subject {subject_id!r} (known: {known})")])

    def subject_index(self, subject_id: str) -> int:
        return self.subjects.index(self.subject(subject_id))

    # ---- frames ---------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return num_video_frames(self.duration, self.fps)

    @property
    def num_latent_frames(self) -> int:
        return num_latent_frames(self.num_frames)

    @property
    def min_span(self) -> float:
        return min_action_seconds(self.fps)


# --------------------------------------------------------------------------------------------
# Frame arithmetic (Wan: 4k+1 frames, causal x4 time compression)
# --------------------------------------------------------------------------------------------
def min_action_seconds(fps: int) -> float:
    """Shortest allowed action: one latent frame = 4 video frames."""
    return TIME_COMPRESSION / fps


def num_video_frames(duration: float, fps: int) -> int:
    """Frames Wan generates for `duration` seconds: the nearest 4k+1 with k >= 1."""
    k = max(1, int(round(duration * fps / TIME_COMPRESSION)))
    return TIME_COMPRESSION * k + 1


def num_latent_frames(num_frames: int) -> int:
    if num_frames < 1 or (num_frames - 1) % TIME_COMPRESSION:
        raise ValueError(f"num_frames must be 4k+1 (got {num_frames}); try {num_video_frames(num_frames / 16, 16)}")
    return (num_frames - 1) // TIME_COMPRESSION + 1


def seconds_to_frame(t: float, fps: int) -> float:
    return t * fps


def seconds_to_latent(t: float, fps: int) -> float:
    """Continuous latent-frame coordinate of time t (latent frame f sits at video frame 4f)."""
    return t * fps / TIME_COMPRESSION


def latent_frame_times(n_latent: int, fps: int) -> list[float]:
    """Time in seconds of each latent frame (latent frame f <-> video frame 4f)."""
    return [f * TIME_COMPRESSION / fps for f in range(n_latent)]


def video_frame_times(n_frames: int, fps: int) -> list[float]:
    return [i / fps for i in range(n_frames)]


def snap_to_grid(t: float, fps: int) -> float:
    """Snap a time to the model's latent-frame grid (multiples of 4 frames)."""
    step = TIME_COMPRESSION / fps
    return round(round(t / step) * step, 6)


def active_action(subject: Subject, t: float) -> int:
    """Index (into subject.actions) of the action active at time t, or -1."""
    for i, a in enumerate(subject.actions):
        if a.start - _EPS <= t < a.end - _EPS or (abs(t - a.end) < _EPS and a.end == max(x.end for x in subject.actions)):
            return i
    return -1


# --------------------------------------------------------------------------------------------
# Repairs the editor offers (never applied silently)
# --------------------------------------------------------------------------------------------
def fix_overlaps(tl: Timeline) -> Timeline:
    """Return a copy where each subject's actions are sorted and an action that overlaps the
    previous one starts where the previous ends (an action squeezed below one latent frame is
    dropped). The caller decides whether to apply it."""
    out = tl.copy()
    min_span = out.min_span
    for s in out.subjects:
        fixed: list[Action] = []
        for a in s.sorted_actions():
            # round before the length test, so a kept action passes the validator's own test (rounding the
            # start up after the test could leave it a hair shorter than one latent frame)
            start = round(a.start if not fixed else max(a.start, fixed[-1].end), 6)
            if a.end - start >= min_span - _EPS:
                fixed.append(Action(start, a.end, a.text))
        s.actions = fixed
    return out


# --------------------------------------------------------------------------------------------
# Long videos: split into segments
# --------------------------------------------------------------------------------------------
def split_segments(tl: Timeline, segment_seconds: float, overlap_seconds: float = 0.0) -> list[tuple[float, Timeline]]:
    """Cut a timeline into consecutive windows of `segment_seconds` (the last may be shorter),
    consecutive windows sharing `overlap_seconds` (the conditioning context). Returns
    (offset, sub-timeline) pairs; actions are clipped to each window and re-timed from 0; a clipped
    piece shorter than one latent frame is dropped from that window."""
    if segment_seconds <= overlap_seconds:
        raise ValueError("segment_seconds must be longer than overlap_seconds")
    min_span = tl.min_span
    windows: list[tuple[float, Timeline]] = []
    offset = 0.0
    stride = segment_seconds - overlap_seconds
    while True:
        end = min(tl.duration, offset + segment_seconds)
        subs = []
        for s in tl.subjects:
            acts = []
            for a in s.sorted_actions():
                lo, hi = max(a.start, offset), min(a.end, end)
                if hi - lo >= min_span - _EPS:
                    acts.append(Action(round(lo - offset, 6), round(hi - offset, 6), a.text))
            subs.append(Subject(s.id, s.name, s.kind, list(s.references), acts))
        windows.append((offset, Timeline(round(end - offset, 6), subs, tl.prompt, tl.fps, tl.version)))
        if end >= tl.duration - _EPS:
            break
        offset += stride
    return windows


# --------------------------------------------------------------------------------------------
# Validation internals
# --------------------------------------------------------------------------------------------
_TOP_KEYS = {"version", "duration", "fps", "prompt", "subjects"}
_SUBJECT_KEYS = {"id", "name", "kind", "references", "actions"}
_ACTION_KEYS = {"start", "end", "text"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _unknown(obj: dict, allowed: set, path: str, where: str) -> list[Problem]:
    extra = sorted(set(obj) - allowed)
    if not extra:
        return []
    return [Problem(path, f"{where}: unknown key(s) {', '.join(map(repr, extra))} (allowed: {', '.join(sorted(allowed))})")]


def _subject_label(s: Any, i: int) -> str:
    if isinstance(s, dict) and isinstance(s.get("id"), str):
        name = s.get("name")
        return f"subject {s['id']!r}" + (f" ({name})" if isinstance(name, str) and name else "")
    return f"subject #{i + 1}"


def _shape_problems(obj: Any) -> list[Problem]:
    p: list[Problem] = []
    if not isinstance(obj, dict):
        return [Problem("", f"the timeline must be a JSON object, got {type(obj).__name__}")]
    p += _unknown(obj, _TOP_KEYS, "", "timeline")
    for key in ("duration", "subjects"):
        if key not in obj:
            p.append(Problem(f"/{key}", f"timeline: missing required key {key!r}"))
    if "version" in obj and obj["version"] != SCHEMA_VERSION:
        p.append(Problem("/version", f"timeline: version {obj['version']!r} is not supported (this build reads version {SCHEMA_VERSION})"))
    if "duration" in obj and not (_is_number(obj["duration"]) and obj["duration"] > 0):
        p.append(Problem("/duration", f"timeline: duration must be a positive number of seconds, got {obj['duration']!r}"))
    if "fps" in obj and not (isinstance(obj["fps"], int) and not isinstance(obj["fps"], bool) and 1 <= obj["fps"] <= 120):
        p.append(Problem("/fps", f"timeline: fps must be an integer between 1 and 120, got {obj['fps']!r}"))
    if "prompt" in obj and not isinstance(obj["prompt"], str):
        p.append(Problem("/prompt", "timeline: prompt must be a string"))
    subjects = obj.get("subjects")
    if "subjects" in obj and not isinstance(subjects, list):
        p.append(Problem("/subjects", "timeline: subjects must be a list"))
        subjects = None
    for i, s in enumerate(subjects or []):
        sp = f"/subjects/{i}"
        label = _subject_label(s, i)
        if not isinstance(s, dict):
            p.append(Problem(sp, f"{label}: must be an object"))
            continue
        sid = s.get("id") if isinstance(s.get("id"), str) else None
        p += [Problem(x.path, x.message, sid) for x in _unknown(s, _SUBJECT_KEYS, sp, label)]
        if not isinstance(s.get("id"), str) or not _ID_PATTERN.match(s.get("id", "")):
            p.append(Problem(f"{sp}/id", f"{label}: id must be 1-32 letters, digits, '_' or '-', got {s.get('id')!r}", sid))
        if not isinstance(s.get("name"), str) or not s.get("name", "").strip():
            p.append(Problem(f"{sp}/name", f"{label}: name must be a non-empty string", sid))
        if "kind" in s and s["kind"] not in KINDS:
            p.append(Problem(f"{sp}/kind", f"{label}: kind must be one of {', '.join(KINDS)}, got {s['kind']!r}", sid))
        refs = s.get("references", [])
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            p.append(Problem(f"{sp}/references", f"{label}: references must be a list of strings", sid))
        actions = s.get("actions", [])
        if not isinstance(actions, list):
            p.append(Problem(f"{sp}/actions", f"{label}: actions must be a list", sid))
            continue
        for j, a in enumerate(actions):
            ap = f"{sp}/actions/{j}"
            alabel = f"{label}, action {j + 1}"
            if not isinstance(a, dict):
                p.append(Problem(ap, f"{alabel}: must be an object", sid, j))
                continue
            p += [Problem(x.path, x.message, sid, j) for x in _unknown(a, _ACTION_KEYS, ap, alabel)]
            for key in ("start", "end"):
                if not _is_number(a.get(key)):
                    p.append(Problem(f"{ap}/{key}", f"{alabel}: {key} must be a number of seconds, got {a.get(key)!r}", sid, j))
            if not isinstance(a.get("text"), str):
                p.append(Problem(f"{ap}/text", f"{alabel}: text must be a string", sid, j))
    return p


def _fmt(a: Action) -> str:
    text = a.text if len(a.text) <= 40 else a.text[:37] + "..."
    return f"{text!r} [{a.start:.2f}s-{a.end:.2f}s]"


def _rule_problems(tl: Timeline) -> list[Problem]:
    p: list[Problem] = []
    if not tl.subjects:
        p.append(Problem("/subjects", "timeline: add at least one subject"))
    if len(tl.subjects) > MAX_SUBJECTS:
        p.append(Problem("/subjects", f"timeline: at most {MAX_SUBJECTS} subjects are supported, got {len(tl.subjects)}"))
    if tl.duration < min_action_seconds(tl.fps) - _EPS:
        p.append(Problem("/duration", f"timeline: duration {tl.duration:.2f}s is shorter than one latent frame ({min_action_seconds(tl.fps):.2f}s at {tl.fps} fps)"))
    seen: dict[str, int] = {}
    min_span = min_action_seconds(tl.fps)
    for i, s in enumerate(tl.subjects):
        sp = f"/subjects/{i}"
        label = f"subject {s.id!r} ({s.name})" if s.name else f"subject {s.id!r}"
        if s.id in seen:
            p.append(Problem(f"{sp}/id", f"{label}: id is used twice (also subject #{seen[s.id] + 1})", s.id))
        seen.setdefault(s.id, i)
        for j, a in enumerate(s.actions):
            ap = f"{sp}/actions/{j}"
            alabel = f"{label}, action {j + 1} {_fmt(a)}"
            if not a.text.strip():
                p.append(Problem(f"{ap}/text", f"{label}, action {j + 1} [{a.start:.2f}s-{a.end:.2f}s]: the caption is empty", s.id, j))
            if a.start < -_EPS:
                p.append(Problem(f"{ap}/start", f"{alabel}: starts before 0s", s.id, j))
            if a.end > tl.duration + _EPS:
                p.append(Problem(f"{ap}/end", f"{alabel}: ends after the video's duration ({tl.duration:.2f}s)", s.id, j))
            if a.end <= a.start:
                p.append(Problem(f"{ap}/end", f"{alabel}: end must be after start", s.id, j))
            elif a.end - a.start < min_span - _EPS:
                p.append(Problem(f"{ap}", f"{alabel}: lasts {a.end - a.start:.2f}s, shorter than one latent frame ({min_span:.2f}s = {TIME_COMPRESSION} frames at {tl.fps} fps)", s.id, j))
        order = sorted(range(len(s.actions)), key=lambda j: (s.actions[j].start, s.actions[j].end))
        for prev, cur in zip(order, order[1:]):
            a, b = s.actions[prev], s.actions[cur]
            if b.start < a.end - _EPS:
                # a hint that can be followed: fix_overlaps() starts the later action where the earlier one ends,
                # which only helps when enough of it is left before the end of both it and the video
                start_ok = a.end + min_span <= min(b.end, tl.duration) + _EPS
                hint = (f"move it, or let fix_overlaps() start it at {a.end:.2f}s" if start_ok
                        else f"move or shorten action {prev + 1}: starting action {cur + 1} after it would leave less than {min_span:.2f}s")
                p.append(
                    Problem(
                        f"{sp}/actions/{cur}",
                        f"{label}: action {cur + 1} {_fmt(b)} overlaps action {prev + 1} {_fmt(a)} by {a.end - b.start:.2f}s (fix: {hint})",
                        s.id,
                        cur,
                        fixable=True,
                    )
                )
    return p


# --------------------------------------------------------------------------------------------
# JSON schema (for other tools); `model/timeline.schema.json` is generated from this
# --------------------------------------------------------------------------------------------
def json_schema() -> dict:
    action = {
        "type": "object",
        "additionalProperties": False,
        "required": ["start", "end", "text"],
        "properties": {
            "start": {"type": "number", "minimum": 0, "description": "seconds"},
            "end": {"type": "number", "exclusiveMinimum": 0, "description": "seconds, > start, <= duration"},
            "text": {"type": "string", "minLength": 1, "description": "the sub-action caption"},
        },
    }
    subject = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string", "pattern": _ID_PATTERN.pattern},
            "name": {"type": "string", "minLength": 1},
            "kind": {"enum": list(KINDS), "default": "object"},
            "references": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            "actions": {"type": "array", "items": action},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "reactid-timeline-v1",
        "title": "ReactID timeline document",
        "description": "Per-subject sub-action timelines. Rules beyond this schema (no overlaps within a subject, "
        "spans of at least one latent frame, end <= duration) are checked by model.timeline.",
        "type": "object",
        "additionalProperties": False,
        "required": ["duration", "subjects"],
        "properties": {
            "version": {"const": SCHEMA_VERSION},
            "duration": {"type": "number", "exclusiveMinimum": 0},
            "fps": {"type": "integer", "minimum": 1, "maximum": 120, "default": DEFAULT_FPS},
            "prompt": {"type": "string", "default": ""},
            "subjects": {"type": "array", "items": subject, "minItems": 1, "maxItems": MAX_SUBJECTS},
        },
    }


SCHEMA_PATH = Path(__file__).with_name("timeline.schema.json")


def write_schema(path: str | Path = SCHEMA_PATH) -> None:
    Path(path).write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")


def example_timeline() -> Timeline:
    """A small valid document, used in docs and as the editor's starting point."""
    return Timeline(
        duration=4.0,
        prompt="two toys on a table",
        subjects=[
            Subject("s1", "the red circle", "object", [], [Action(0.0, 2.0, "moves to the right"), Action(2.0, 4.0, "jumps")]),
            Subject("s2", "the blue square", "object", [], [Action(0.0, 1.5, "stays still"), Action(1.5, 4.0, "moves up")]),
        ],
    )


def flatten_to_prompt(tl: Timeline) -> str:
    """The whole timeline as one prose prompt (the paper's 'timeline as enhanced prompt' baseline):
    "<prompt>. <name> <action 1> from 0.0s to 2.0s, then <action 2> ...; <name> ..."."""
    parts = []
    for s in tl.subjects:
        acts = [f"{a.text} from {a.start:.1f}s to {a.end:.1f}s" for a in s.sorted_actions()]
        if acts:
            parts.append(f"{s.name} " + ", then ".join(acts))
    body = "; ".join(parts)
    return f"{tl.prompt}. {body}" if tl.prompt else body


def iter_problems_text(problems: Iterable[Problem]) -> str:
    return "\n".join(f"- {p.message}" for p in problems)


if __name__ == "__main__":  # python -m model.timeline  -> regenerate the schema file
    write_schema()
    print(f"wrote {SCHEMA_PATH}")
