"""The operations behind every editor control, on the timeline document as a plain dict, with undo/redo.

No Gradio here: each function takes a document (the JSON shape of `model.timeline.Timeline`) and
returns a new one; the UI modules only wire them to components. Validation always goes through
`Timeline.problems()`, so the editor reports exactly what the pipeline would refuse.
"""

from __future__ import annotations

import copy
import json
import math
import re
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
    """`Timeline.problems()`, each action's problem followed by what **Fix problems** would do to it
    (worked out by `fix_report`, so the hint is one the button follows)."""
    try:
        tl = timeline_of(doc)
    except TimelineError as exc:
        return list(exc.problems)
    found = [_with_hint(p, None) for p in tl.problems()]
    if found:
        _, _, fates = fix_report(doc)
        hinted: set = set()
        for k, p in enumerate(found):
            key = (p.subject_id, p.action_index)
            if p.action_index is not None and key in fates and key not in hinted:
                hinted.add(key)
                found[k] = _with_hint(p, fates[key])
    if max_subjects is not None and len(tl.subjects) > max_subjects:
        found.append(Problem("/subjects", f"this model takes at most {max_subjects} subjects; the timeline has {len(tl.subjects)} (remove one)"))
    return found


# `Timeline.problems()` ends an overlap with its own repair hint, "(fix: ...)", written for API users
# (fix_overlaps()); the studio's hint (from `fix_report`) names what its Fix problems button will do instead.
_MODEL_HINT = re.compile(r" \(fix: [^)]*\)$")


def _with_hint(p: Problem, fate: str | None) -> Problem:
    message = _MODEL_HINT.sub("", p.message)
    if fate:
        message += f" (Fix problems: {fate})"
    return Problem(p.path, message, p.subject_id, p.action_index, p.fixable)


def problems_markdown(problems: Sequence[Problem]) -> str:
    if not problems:
        return "**Timeline OK**: every action is valid."
    lines = [f"**{len(problems)} problem{'s' if len(problems) != 1 else ''} in the timeline**"]
    lines += [f"- {p.message}" for p in problems]
    if any("(Fix problems:" in p.message for p in problems):
        lines.append("\n*The **Fix problems** button makes the repairs named above (Undo takes them back).*")
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


def sentence(text: Any) -> str:
    """An error's text as a sentence for a status line: capital first letter, final full stop."""
    text = str(text).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ":")) else text + "."


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
    """The document after **Fix problems** (see `fix_report`)."""
    return fix_report(doc)[0]


def fix_report(doc: dict) -> tuple[dict, list[str], dict[tuple[str, int], str]]:
    """What **Fix problems** does: an action whose end comes before its start gets its ends swapped;
    actions are clipped to [0, duration]; then, as `model.timeline.fix_overlaps`, each subject's actions
    are sorted and an overlapping one starts where the previous ends. An action left shorter than one
    latent frame is removed. Captions are never invented.

    Returns (the fixed document, one sentence per change for the user, and for each changed action
    (subject id, index in the document) what happens to it, for the hints in the problem list)."""
    tl = timeline_of(doc)
    min_span, dur = tl.min_span, tl.duration
    notes: list[str] = []
    fates: dict[tuple[str, int], str] = {}
    for s in tl.subjects:
        label = f"subject {s.id!r} ({s.name})"
        staged: list[tuple[int, Action, str, list[str]]] = []  # (index, action after swap and clip, original, changes)
        for j, a in enumerate(s.actions):
            what = f"{a.text!r} [{a.start:.2f}s-{a.end:.2f}s]"
            start, end, changes = a.start, a.end, []
            if end < start:
                start, end = end, start
                changes.append(f"its start and end are swapped, to {start:.2f}s-{end:.2f}s")
            if start < 0 or end > dur:
                start, end = max(0.0, start), min(dur, end)
                if end - start >= min_span - 1e-6:
                    changes.append(f"it is cut to {start:.2f}s-{end:.2f}s to fit the {dur:.2f}s video")
            if end - start < min_span - 1e-6:
                why = (f"it lies outside the {dur:.2f}s video" if end <= 0 or start >= dur
                       else f"it lasts {max(0.0, end - start):.2f}s, less than one latent frame of {min_span:.2f}s")
                fates[(s.id, j)] = f"it is removed: {why}"
                notes.append(f"{label}: removed {what}: {why}")
                continue
            staged.append((j, Action(round(start, 6), round(end, 6), a.text), what, changes))
        staged.sort(key=lambda t: (t[1].start, t[1].end))
        kept: list[Action] = []
        for j, a, what, changes in staged:
            start = a.start if not kept else max(a.start, kept[-1].end)
            if a.end - start < min_span - 1e-6:
                prev = kept[-1]
                why = f"{prev.text!r} runs until {prev.end:.2f}s, which leaves it less than one latent frame"
                fates[(s.id, j)] = f"it is removed: {why}"
                notes.append(f"{label}: removed {what}: {why}")
                continue
            if start > a.start:
                changes.append(f"it starts at {start:.2f}s, where {kept[-1].text!r} ends")
            kept.append(Action(round(start, 6), a.end, a.text))
            if changes:
                fates[(s.id, j)] = "; ".join(changes)
                notes.append(f"{label}: {what}: " + "; ".join(changes))
        s.actions = kept
    return tl.to_dict(), notes, fates


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
