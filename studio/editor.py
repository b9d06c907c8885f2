"""The operations behind every editor control, on the timeline document as a plain dict, with undo/redo.

No Gradio here: each function takes a document (the JSON shape of `model.timeline.Timeline`) and
returns a new one; the UI modules only wire them to components. Validation always goes through
`Timeline.problems()`, so the editor reports exactly what the pipeline would refuse.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from model.timeline import (
    KINDS,
    MAX_SUBJECTS,
    Action,
    Problem,
    Subject,
    Timeline,
    TimelineError,
    fix_overlaps,
    min_action_seconds,
    snap_to_grid,
)

# Subject colours: the widget, the mask overlays and the caption burn-in use the same order.
PALETTE = ("#e6194b", "#1f9e4a", "#4363d8", "#f58231", "#911eb4", "#0fa3b1")
UNDO_LIMIT = 100
NEW_ACTION_TEXT = "stays still"


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


# --------------------------------------------------------------------------------------------
# Document <-> Timeline
# --------------------------------------------------------------------------------------------
def doc_of(tl: Timeline) -> dict:
    return tl.to_dict()


def timeline_of(doc: dict, *, validate: bool = False) -> Timeline:
    """Raises TimelineError for shape errors (always) and rule errors (validate=True)."""
    return Timeline.from_dict(doc, validate=validate)


def problems_of(doc: dict, max_subjects: int | None = None) -> list[Problem]:
    try:
        tl = timeline_of(doc)
    except TimelineError as exc:
        return list(exc.problems)
    found = tl.problems()
    if max_subjects is not None and len(tl.subjects) > max_subjects:
        found.append(Problem("/subjects", f"this model takes at most {max_subjects} subjects; the timeline has {len(tl.subjects)} (remove one)"))
    return found


def problems_markdown(problems: Sequence[Problem]) -> str:
    if not problems:
        return "✅ **Timeline OK** — every action is valid."
    lines = [f"⚠️ **{len(problems)} problem{'s' if len(problems) != 1 else ''} in the timeline**"]
    lines += [f"- {p.message}" for p in problems]
    if any(p.fixable for p in problems):
        lines.append("\n*Overlaps can be repaired with **Fix problems**.*")
    return "\n".join(lines)


def problem_marks(problems: Iterable[Problem]) -> list[dict]:
    """What the widget needs to outline the blocks a problem is about."""
    return [
        {"subject_id": p.subject_id, "action_index": p.action_index, "message": p.message}
        for p in problems
        if p.subject_id is not None and p.action_index is not None
    ]


def summary(doc: dict) -> str:
    subjects = doc.get("subjects") or []
    n_actions = sum(len(s.get("actions") or []) for s in subjects)
    return f"{len(subjects)} subject{'s' if len(subjects) != 1 else ''}, {n_actions} action{'s' if n_actions != 1 else ''}, {float(doc.get('duration', 0)):g}s"


# --------------------------------------------------------------------------------------------
# The widget's value: {"timeline": doc, "colors": [...]}, a JSON string
# --------------------------------------------------------------------------------------------
def widget_value(doc: dict) -> str:
    return json.dumps({"timeline": doc, "colors": list(PALETTE)}, ensure_ascii=False)


class EditError(ValueError):
    """An edit that cannot be applied; the message is for the user."""


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise EditError(f"{what} must be a number of seconds, got {x!r}")
    return float(x)


def apply_widget_value(doc: dict, value: str | dict | None) -> dict:
    """The document after a drag/resize/move/add/delete/caption edit in the widget.

    Only the actions are taken from the widget (which subject, start, end, caption); names, kinds and
    references stay as Python has them. Times are snapped to the model's latent-frame grid. Actions of
    a subject the document does not have are refused."""
    if value is None or value == "":
        return doc
    try:
        obj = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise EditError(f"the timeline editor sent unreadable data ({exc.msg})") from None
    sent = obj.get("timeline") if isinstance(obj, dict) else None
    if not isinstance(sent, dict) or not isinstance(sent.get("subjects"), list):
        raise EditError("the timeline editor sent data without a timeline")
    fps = int(doc.get("fps", 16))
    by_id = {}
    for s in sent["subjects"]:
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not isinstance(s.get("actions", []), list):
            raise EditError("the timeline editor sent a malformed subject")
        by_id[s["id"]] = s
    known = {s["id"] for s in doc["subjects"]}
    unknown = sorted(set(by_id) - known)
    if unknown:
        raise EditError(f"the timeline editor sent actions for unknown subject(s) {', '.join(map(repr, unknown))}")
    new = copy.deepcopy(doc)
    for s in new["subjects"]:
        if s["id"] not in by_id:
            continue
        actions = []
        for j, a in enumerate(by_id[s["id"]].get("actions", [])):
            if not isinstance(a, dict):
                raise EditError(f"subject {s['id']!r}: action {j + 1} is malformed")
            label = f"subject {s['id']!r} ({s['name']}), action {j + 1}"
            start = snap_to_grid(_number(a.get("start"), f"{label}: start"), fps)
            end = snap_to_grid(_number(a.get("end"), f"{label}: end"), fps)
            text = a.get("text")
            if not isinstance(text, str):
                raise EditError(f"{label}: the caption must be text")
            actions.append({"start": start, "end": end, "text": " ".join(text.split())[:200]})
        actions.sort(key=lambda a: (a["start"], a["end"]))
        s["actions"] = actions
    return new


# --------------------------------------------------------------------------------------------
# Edits from the other controls
# --------------------------------------------------------------------------------------------
def new_subject_id(doc: dict) -> str:
    taken = {s["id"] for s in doc["subjects"]}
    n = len(taken) + 1
    while f"s{n}" in taken:
        n += 1
    return f"s{n}"


def add_subject(doc: dict, max_subjects: int = MAX_SUBJECTS, name: str | None = None, kind: str = "object") -> dict:
    if len(doc["subjects"]) >= max_subjects:
        raise EditError(f"at most {max_subjects} subjects (this model's limit)")
    new = copy.deepcopy(doc)
    sid = new_subject_id(new)
    duration = float(new["duration"])
    new["subjects"].append(
        {
            "id": sid,
            "name": name or f"subject {len(new['subjects']) + 1}",
            "kind": kind if kind in KINDS else "object",
            "references": [],
            "actions": [{"start": 0.0, "end": duration, "text": NEW_ACTION_TEXT}],
        }
    )
    return new


def remove_subject(doc: dict, index: int) -> dict:
    if not 0 <= index < len(doc["subjects"]):
        raise EditError(f"there is no subject #{index + 1}")
    new = copy.deepcopy(doc)
    del new["subjects"][index]
    return new


def rename_subject(doc: dict, index: int, name: str) -> dict:
    new = copy.deepcopy(doc)
    new["subjects"][index]["name"] = " ".join(str(name or "").split())[:80]
    return new


def set_kind(doc: dict, index: int, kind: str) -> dict:
    if kind not in KINDS:
        raise EditError(f"kind must be one of {', '.join(KINDS)}")
    new = copy.deepcopy(doc)
    new["subjects"][index]["kind"] = kind
    return new


def set_references(doc: dict, index: int, references: Sequence[str], max_references: int = 4) -> dict:
    if len(references) > max_references:
        raise EditError(f"at most {max_references} reference images per subject")
    new = copy.deepcopy(doc)
    new["subjects"][index]["references"] = [str(r) for r in references]
    return new


def set_prompt(doc: dict, prompt: str) -> dict:
    new = copy.deepcopy(doc)
    new["prompt"] = str(prompt or "")
    return new


def set_duration(doc: dict, duration: float, max_duration: float | None = None) -> dict:
    """Change the video length; actions are kept as they are (ones past the end become problems to fix)."""
    fps = int(doc.get("fps", 16))
    duration = _number(duration, "the duration")
    lo = min_action_seconds(fps)
    if duration < lo:
        raise EditError(f"the duration must be at least {lo:g}s")
    if max_duration is not None and duration > max_duration + 1e-6:
        raise EditError(f"this model makes videos of at most {max_duration:g}s")
    new = copy.deepcopy(doc)
    new["duration"] = round(snap_to_grid(duration, fps), 6) or lo
    return new


def fix_problems(doc: dict) -> dict:
    """Clip actions to [0, duration], then `fix_overlaps` (sort; an overlapping action starts where the
    previous ends; an action squeezed below one latent frame is dropped). Captions are never invented."""
    tl = timeline_of(doc)
    for s in tl.subjects:
        clipped = []
        for a in s.actions:
            start, end = max(0.0, a.start), min(tl.duration, a.end)
            if end - start >= tl.min_span - 1e-6:
                clipped.append(Action(round(start, 6), round(end, 6), a.text))
        s.actions = clipped
    return fix_overlaps(tl).to_dict()


# --------------------------------------------------------------------------------------------
# Import / export
# --------------------------------------------------------------------------------------------
def export_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def import_json(text: str | bytes, allowed_reference_roots: Sequence[str | Path] = (), base_dir: str | Path | None = None) -> tuple[dict, list[str]]:
    """Parse an uploaded timeline. Shape errors raise TimelineError (with every problem listed);
    rule problems (overlaps, out of range) are kept and shown, as in the editor. Reference paths are
    kept only when they lie inside `allowed_reference_roots` (so an uploaded file cannot make the
    server read arbitrary files); relative ones are resolved against `base_dir`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TimelineError([Problem("", "the timeline file is not UTF-8 text (is it a JSON file?)")]) from None
    tl = Timeline.from_json(text, validate=False)
    messages: list[str] = []
    roots = [Path(r).resolve() for r in allowed_reference_roots]
    for s in tl.subjects:
        kept = []
        for ref in s.references:
            p = Path(ref)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            try:
                p = p.resolve()
            except OSError:
                p = None
            if p is not None and p.is_file() and any(p == r or r in p.parents for r in roots):
                kept.append(str(p))
            else:
                messages.append(f"subject {s.id!r} ({s.name}): reference {ref!r} is not available on this server; upload it again")
        s.references = kept
    return tl.to_dict(), messages


# --------------------------------------------------------------------------------------------
# Undo / redo: {"past": [doc, ...], "future": [doc, ...], "tag": last edit's tag}
# --------------------------------------------------------------------------------------------
def undo_init() -> dict:
    return {"past": [], "future": [], "tag": None}


def record(history: dict | None, before: dict, tag: str | None = None) -> dict:
    """Remember `before` so that the edit made from it can be undone. Consecutive edits with the same
    tag (typing in one name box) are one undo step."""
    history = history or undo_init()
    if tag is not None and tag == history.get("tag") and history["past"]:
        return {"past": history["past"], "future": [], "tag": tag}
    past = (history["past"] + [copy.deepcopy(before)])[-UNDO_LIMIT:]
    return {"past": past, "future": [], "tag": tag}


def undo(history: dict, current: dict) -> tuple[dict, dict]:
    if not history or not history["past"]:
        raise EditError("nothing to undo")
    doc = history["past"][-1]
    return doc, {"past": history["past"][:-1], "future": history["future"] + [copy.deepcopy(current)], "tag": None}


def redo(history: dict, current: dict) -> tuple[dict, dict]:
    if not history or not history["future"]:
        raise EditError("nothing to redo")
    doc = history["future"][-1]
    return doc, {"past": history["past"] + [copy.deepcopy(current)], "future": history["future"][:-1], "tag": None}


def subjects_of(doc: dict) -> list[Subject]:
    return [Subject(s["id"], s["name"], s.get("kind", "object"), list(s.get("references", [])), []) for s in doc["subjects"]]
