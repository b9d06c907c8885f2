"""The timeline section of the Generate tab: the widget, duration, undo/redo, fix, problems, import/export.

It owns the session's document (`doc_state`) and undo history (`undo_state`). Other panels change the
document through `commit(...)`, which records undo, validates, and returns the values for
`outputs()` (the light set: what every edit refreshes) or `full_outputs()` (plus every registered
view, e.g. the subject slots and the prompt box, for edits that replace the whole document).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from model.timeline import TimelineError, snap_to_grid

from . import editor, fields
from .engine import Limits
from .timeline_widget import timeline_widget

MAX_IMPORT_BYTES = 1_000_000


class TimelinePanel:
    def __init__(self, doc: dict, limits: Limits, workdir: Path, allowed_reference_roots: Callable[[], Sequence[Path]]):
        self.limits = limits
        self.workdir = Path(workdir)
        self.allowed_reference_roots = allowed_reference_roots
        self._views: list[tuple[list, Callable[[dict], list]]] = []
        fps = int(doc.get("fps", limits.fps))
        grid = 4 / fps

        self.doc_state = gr.State(copy.deepcopy(doc))
        self.undo_state = gr.State(editor.undo_init())
        with gr.Row(equal_height=True):
            self.duration = fields.Slider(
                minimum=grid, maximum=limits.max_duration, step=grid, value=float(doc["duration"]),
                label=f"Duration (s; over {limits.single_pass_seconds:g}s: made segment by segment)",
                elem_id="rt-duration", scale=3,
            )
            self.undo_btn = gr.Button("↶ Undo", interactive=False, scale=0, min_width=80, size="sm", elem_id="rt-undo")
            self.redo_btn = gr.Button("↷ Redo", interactive=False, scale=0, min_width=80, size="sm", elem_id="rt-redo")
            self.fix_btn = gr.Button("Fix problems", interactive=False, scale=0, min_width=110, size="sm", elem_id="rt-fix")
        problems = editor.problems_of(doc, limits.max_subjects)
        self.widget = timeline_widget(doc, editor.problem_marks(problems))
        self.problems_md = gr.Markdown(editor.problems_markdown(problems), elem_id="rt-problems")
        self.message_md = gr.Markdown("", elem_id="rt-editor-msg")
        with gr.Accordion("Timeline document (JSON): import / export", open=False, elem_id="rt-json-accordion"):
            with gr.Row():
                self.import_file = gr.File(label="Import a timeline (.json)", file_types=[".json"], type="filepath", elem_id="rt-import", scale=1)
                with gr.Column(scale=1):
                    self.export_btn = gr.Button("Export JSON", elem_id="rt-export")
                    self.export_file = gr.File(label="Exported timeline", visible=False, interactive=False, elem_id="rt-export-file")
            self.json_code = gr.Code(editor.export_json(doc), language="json", interactive=False, label="The validated document (what Python holds)", elem_id="rt-json")
        # The same document as plain text, hidden from view: for scripts and the browser tests to read.
        self.doc_json = gr.Textbox(json.dumps(doc), visible="hidden", elem_id="rt-doc-json", label="document")

    # ---- outputs ----------------------------------------------------------------------------
    def outputs(self) -> list:
        return [self.doc_state, self.undo_state, self.widget, self.problems_md, self.message_md, self.json_code, self.doc_json,
                self.undo_btn, self.redo_btn, self.fix_btn]

    def unchanged(self) -> list:
        """The answer to an event that changes nothing: every output skipped, so a late echo cannot
        overwrite a newer document."""
        return [gr.skip()] * len(self.outputs())

    def register_view(self, components: list, values: Callable[[dict], list]) -> None:
        """Components that show part of the document and must follow when it is replaced."""
        self._views.append((components, values))

    def full_outputs(self) -> list:
        out = self.outputs() + [self.duration]
        for comps, _ in self._views:
            out += comps
        return out

    def light(self, doc: dict, undo: dict, *, push: bool = True, message: str = "") -> list:
        problems = editor.problems_of(doc, self.limits.max_subjects)
        marks = editor.problem_marks(problems)
        widget = gr.update(value=editor.widget_value(doc), problems=marks) if push else gr.update(problems=marks)
        try:
            fixable = editor.fix_problems(doc) != doc
        except TimelineError:
            fixable = False
        return [
            doc,
            undo,
            widget,
            editor.problems_markdown(problems),
            message,
            editor.export_json(doc),
            json.dumps(doc),
            gr.update(interactive=bool(undo and undo["past"])),
            gr.update(interactive=bool(undo and undo["future"])),
            gr.update(interactive=fixable),
        ]

    def full(self, doc: dict, undo: dict, *, message: str = "") -> list:
        out = self.light(doc, undo, push=True, message=message) + [gr.update(value=float(doc["duration"]))]
        for _, values in self._views:
            out += values(doc)
        return out

    def commit(self, before: dict, after: dict, undo: dict, *, tag: str | None = None, push: bool = True, full: bool = False, message: str = "") -> list:
        if after != before:
            undo = editor.record(undo, before, tag)
        if full:
            return self.full(after, undo, message=message)
        return self.light(after, undo, push=push, message=message)

    # ---- handlers -------------------------------------------------------------------------------
    def on_widget_input(self, value: Any, doc: dict, undo: dict) -> list:
        try:
            new = editor.apply_widget_value(doc, value)
        except editor.EditError as exc:
            return self.light(doc, undo, push=True, message=editor.sentence(exc))
        if new == doc:
            return self.light(doc, undo, push=False)
        # Python snaps exactly like the widget; if they ever disagree, show Python's version.
        try:
            sent = json.loads(value)["timeline"]["subjects"] if isinstance(value, str) else value["timeline"]["subjects"]
            same = {s["id"]: s.get("actions") for s in sent} == {s["id"]: s["actions"] for s in new["subjects"]}
        except (KeyError, TypeError, ValueError):
            same = False
        return self.commit(doc, new, undo, push=not same)

    def on_undo(self, doc: dict, undo: dict) -> list:
        try:
            new, undo = editor.undo(undo, doc)
        except editor.EditError as exc:
            return self.full(doc, undo, message=editor.sentence(exc))
        return self.full(new, undo)

    def on_redo(self, doc: dict, undo: dict) -> list:
        try:
            new, undo = editor.redo(undo, doc)
        except editor.EditError as exc:
            return self.full(doc, undo, message=editor.sentence(exc))
        return self.full(new, undo)

    def on_fix(self, doc: dict, undo: dict) -> list:
        try:
            new, notes, _ = editor.fix_report(doc)
        except TimelineError as exc:
            return self.light(doc, undo, push=False, message=editor.sentence(exc))
        if not notes:
            return self.light(doc, undo, push=False, message="Nothing to fix: Fix problems repairs overlaps, blocks past the ends and reversed blocks.")
        message = f"Fixed the timeline ({len(notes)} change{'s' if len(notes) != 1 else ''}; Undo takes them back):\n" + "\n".join(f"- {n}" for n in notes)
        return self.commit(doc, new, undo, message=message)

    def on_duration(self, duration: float, doc: dict, undo: dict) -> list:
        try:
            new = editor.set_duration(doc, duration, self.limits.max_duration)
        except editor.EditError as exc:
            return self.light(doc, undo, push=False, message=editor.sentence(exc))
        return self.commit(doc, new, undo, tag="duration")

    def on_import(self, path: str | None, doc: dict, undo: dict) -> list:
        if not path:
            return self.full(doc, undo)
        name = Path(path).name
        try:
            size = Path(path).stat().st_size
            if size > MAX_IMPORT_BYTES:
                raise TimelineError([])
            data = Path(path).read_bytes()
            new, notes = editor.import_json(data, self.allowed_reference_roots())
        except TimelineError as exc:
            if not exc.problems:
                msg = f"Could not import {name}: the file is {size / 1e6:.1f} MB; a timeline is at most {MAX_IMPORT_BYTES / 1e6:.0f} MB."
            else:
                msg = f"Could not import **{name}**:\n" + "\n".join(f"- {p.message}" for p in exc.problems[:12])
            return self.full(doc, undo, message=msg)
        except OSError as exc:
            return self.full(doc, undo, message=f"Could not read {name}: {exc.strerror}")
        if int(new.get("fps", self.limits.fps)) != self.limits.fps:
            notes.append(f"the timeline was written for {new['fps']} fps; it was converted to this model's {self.limits.fps} fps")
            new["fps"] = self.limits.fps
            for s in new["subjects"]:
                for a in s["actions"]:
                    a["start"], a["end"] = snap_to_grid(a["start"], new["fps"]), snap_to_grid(a["end"], new["fps"])
        if new["duration"] > self.limits.max_duration:
            notes.append(f"the timeline lasts {new['duration']:g}s; this model makes at most {self.limits.max_duration:g}s")
        msg = f"Imported **{name}** ({editor.summary(new)})." + ("".join(f"\n- {n}" for n in notes) if notes else "")
        return self.commit(doc, new, undo, full=True, message=msg)

    def on_export(self, doc: dict):
        out = self.workdir / "exports" / f"timeline-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(editor.export_json(doc), encoding="utf-8")
        return gr.update(value=str(out), visible=True)

    def wire(self) -> None:
        common = dict(concurrency_limit=None, show_progress="hidden")
        self.widget.input(self.on_widget_input, [self.widget, self.doc_state, self.undo_state], self.outputs(), trigger_mode="always_last", api_name="timeline_edit", **common)
        state = [self.doc_state, self.undo_state]
        self.undo_btn.click(self.on_undo, state, self.full_outputs(), api_name="undo", **common)
        self.redo_btn.click(self.on_redo, state, self.full_outputs(), api_name="redo", **common)
        # Ctrl+Z / Ctrl+Shift+Z inside the widget (custom events fired by its script)
        self.widget.undo(self.on_undo, state, self.full_outputs(), api_visibility="private", **common)
        self.widget.redo(self.on_redo, state, self.full_outputs(), api_visibility="private", **common)
        self.fix_btn.click(self.on_fix, [self.doc_state, self.undo_state], self.outputs(), api_name="fix_problems", **common)
        self.duration.input(self.on_duration, [self.duration, self.doc_state, self.undo_state], self.outputs(), trigger_mode="always_last", api_name="set_duration", **common)
        self.import_file.upload(self.on_import, [self.import_file, self.doc_state, self.undo_state], self.full_outputs(), api_name="import_timeline", **common)
        self.export_btn.click(self.on_export, [self.doc_state], [self.export_file], api_name="export_timeline", **common)
