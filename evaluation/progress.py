"""Progress of an evaluation run: events written by `python -m evaluation eval --progress jsonl`, and their summary.

With `--progress jsonl` every line the run writes on stderr is one JSON object (stdout keeps the tables):

    {"event": "plan", "generate": G, "evaluate": E}     work known before it starts (E is null until the folder is read)
    {"event": "generated", "method": m, "clip": c, "done": k, "of": G}
    {"event": "found", "clips": E, "problems": [...]}    the folder was read: E clips to evaluate
    {"event": "clip", "method": m, "clip": c, "done": k - 1, "of": E}             clip k starts
    {"event": "metric", "method": m, "clip": c, "metric": label, "done": j, "of": J}   metric j of clip k starts
    {"event": "evaluated", "method": m, "clip": c, "ok": bool, "done": k, "of": E}
    {"event": "log", "message": "..."}                   what the text mode prints (a skipped file, a note)
    {"event": "error", "message": "..."}                 why the run failed
    {"event": "done", "exit": code, "evaluated": n, "clips": E, "files": {...}}

A reader (the studio) turns these lines into a fraction done and a sentence (`summarize`). Lines that are not
JSON (a Python traceback) are kept: the last one says what went wrong when no error event came.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TextIO


class Reporter:
    """Writes events. jsonl: every event as a JSON line; text: only the human lines (log, error), as before."""

    def __init__(self, mode: str = "text", stream: TextIO | None = None):
        if mode not in ("text", "jsonl"):
            raise ValueError(f"progress mode must be 'text' or 'jsonl', got {mode!r}")
        self.mode = mode
        self.stream = stream

    def __call__(self, event: str, **fields) -> None:
        out = self.stream or sys.stderr
        if self.mode == "jsonl":
            out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        elif event in ("log", "error"):
            out.write(("error: " if event == "error" else "") + str(fields.get("message", "")) + "\n")
        else:
            return
        out.flush()

    def log(self, message: str) -> None:
        self("log", message=message)

    def event(self, record: dict) -> None:
        """A progress record from evaluate_dir / write_sprite_samples ({"event": ..., ...})."""
        rec = dict(record)
        self(rec.pop("event"), **rec)


@dataclass
class Progress:
    fraction: float = 0.0
    text: str = "starting"
    messages: list[str] = field(default_factory=list)  # log lines, in order
    error: str | None = None  # the error event's message
    last_line: str | None = None  # the last line that is not JSON (a traceback's last line when the run crashed)
    done: dict | None = None  # the done event


def summarize(lines: list[str]) -> Progress:
    p = Progress()
    gen_total = gen_done = 0
    ev_total: int | None = None
    ev_done = 0.0
    stray: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            stray.append(line)
            continue
        if not isinstance(rec, dict):
            continue
        ev = rec.get("event")
        if ev == "plan":
            gen_total = int(rec.get("generate") or 0)
            ev_total = rec.get("evaluate")
            p.text = f"generating {gen_total} clip(s)" if gen_total else "reading the folder"
        elif ev == "generated":
            gen_done = int(rec.get("done", gen_done))
            p.text = f"generated {gen_done} of {rec.get('of', gen_total)} clip(s) (last: {rec.get('method')}/{rec.get('clip')})"
        elif ev == "found":
            ev_total = int(rec.get("clips") or 0)
            p.text = f"found {ev_total} clip(s) to evaluate"
        elif ev == "clip":
            ev_done = float(rec.get("done", 0))
            ev_total = int(rec.get("of", ev_total or 0))
            p.text = f"evaluating clip {int(ev_done) + 1} of {ev_total}: {rec.get('method')}/{rec.get('clip')}"
        elif ev == "metric":
            j, J = int(rec.get("done", 0)), max(1, int(rec.get("of", 1)))
            ev_done = int(ev_done) + j / J
            p.text = f"evaluating clip {int(ev_done) + 1} of {ev_total}: {rec.get('method')}/{rec.get('clip')} — {rec.get('metric')} ({j + 1}/{J})"
        elif ev == "evaluated":
            ev_done = float(rec.get("done", ev_done))
            p.text = f"evaluated {int(ev_done)} of {rec.get('of', ev_total)} clip(s)"
        elif ev == "log":
            p.messages.append(str(rec.get("message", "")))
        elif ev == "error":
            p.error = str(rec.get("message", ""))
        elif ev == "done":
            p.done = rec
    if ev_total is None:
        ev_total = gen_total  # not read yet: evaluating counts about as much as generating
    units = gen_total + (ev_total or 0)
    p.fraction = 1.0 if p.done is not None else (0.0 if units == 0 else min(1.0, (gen_done + ev_done) / units))
    if p.done is not None:
        p.text = f"done: {p.done.get('evaluated', 0)} of {p.done.get('clips', 0)} clip(s) evaluated"
    p.last_line = stray[-1] if stray else None
    return p


__all__ = ["Progress", "Reporter", "summarize"]
