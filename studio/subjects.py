"""The Subjects column: up to six slots (name, kind, 1-4 reference images) and Add/Remove.

Slots are fixed components shown or hidden by the number of subjects in the document, so the layout
never re-renders under the user. A reference is validated (model.references rules) and stored when it
arrives; the slot's gallery shows the crop the model will see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from model.references import ReferenceError
from model.timeline import KINDS, MAX_SUBJECTS

from . import editor, fields
from .engine import Limits
from .refstore import ReferenceStore
from .timeline_panel import TimelinePanel


PICK_EXAMPLE = "…or pick an example"


class SubjectSlot:
    """One compact card: title line; name and kind; the crops as thumbnails beside the upload box; the
    example picker, Clear and Remove. A Column, not a Group: Gradio 6.31 writes a Group's elem_id on two
    nested elements, and ids must be unique."""

    def __init__(self, index: int, example_refs: list[tuple[str, str]], initial: dict | None = None):
        self.index = index
        init = initial or {"visible": False, "title": f"**Subject {index + 1}**", "name": "", "kind": "object", "gallery": []}
        with gr.Column(visible=init["visible"], elem_id=f"rt-subject-{index}", elem_classes=["rt-subject"], variant="panel") as self.group:
            self.title = gr.Markdown(init["title"], elem_id=f"rt-subject-title-{index}", elem_classes=["rt-subject-title"])
            with gr.Row(equal_height=True):
                self.name = gr.Textbox(init["name"], label="Name", max_lines=1, scale=3, elem_id=f"rt-subject-name-{index}", placeholder="the man in red")
                self.kind = fields.Dropdown(list(KINDS), label="Kind", value=init["kind"], scale=2, min_width=110, elem_id=f"rt-subject-kind-{index}")
            with gr.Row(equal_height=True):
                self.gallery = gr.Gallery(
                    value=init["gallery"] or None, show_label=False,
                    label="What the model sees", columns=4, rows=1, height=72, allow_preview=False, fit_columns=False, scale=3,
                    interactive=False, elem_id=f"rt-subject-refs-{index}", elem_classes=["rt-ref-gallery"], object_fit="contain",
                    buttons=[],
                )
                # The upload event runs with preprocess=False: the handler gets the uploaded file untouched
                # (no PIL decoding by Gradio), so corrupt/animated files reach model.references' checks.
                self.upload = gr.Image(
                    label="Add (upload or paste)", sources=["upload", "clipboard"], type="filepath", scale=2, min_width=110,
                    height=72, elem_id=f"rt-subject-upload-{index}", elem_classes=["rt-ref-upload"], show_label=False, buttons=[],
                )
            with gr.Row(equal_height=True):
                # The first choice stands in for a placeholder (Gradio's Dropdown has none).
                self.example = fields.Dropdown(choices=[(PICK_EXAMPLE, "")] + list(example_refs), value="", label="Example reference", show_label=False,
                                               scale=3, min_width=120, elem_id=f"rt-subject-example-{index}", container=False)
                self.clear = gr.Button("Clear refs", size="sm", scale=1, min_width=70, elem_id=f"rt-subject-clear-{index}")
                self.remove = gr.Button("Remove", size="sm", variant="stop", scale=1, min_width=70, elem_id=f"rt-subject-remove-{index}")

    def components(self) -> list:
        return [self.group, self.title, self.name, self.kind, self.gallery]


class SubjectsPanel:
    def __init__(self, store: ReferenceStore, limits: Limits, example_refs: list[tuple[str, str]], doc: dict | None = None):
        self.store = store
        self.limits = limits
        self.max_subjects = min(MAX_SUBJECTS, limits.max_subjects)
        self.max_refs = min(4, limits.max_references)
        gr.Markdown(f"**Subjects**: up to {self.max_subjects}, each with 1–{self.max_refs} reference images, shown as the model sees them.")
        subjects = (doc or {}).get("subjects", [])
        self.slots = [SubjectSlot(i, example_refs, self.slot_values(doc, i) if i < len(subjects) else None) for i in range(MAX_SUBJECTS)]
        self.add_btn = gr.Button("+ Add subject", elem_id="rt-add-subject", interactive=len(subjects) < self.max_subjects)

    # ---- views ----------------------------------------------------------------------------------
    def view_components(self) -> list:
        out = []
        for slot in self.slots:
            out += slot.components()
        return out + [self.add_btn]

    def slot_values(self, doc: dict, i: int) -> dict:
        """What slot i shows for subject i of `doc` (plain values)."""
        s = doc["subjects"][i]
        refs = s.get("references", [])
        gallery = []
        for r in refs:
            try:
                gallery.append(self.store.crop_of(r))
            except (OSError, ValueError):
                pass
        n = len(refs)
        note = "no reference image yet: add one" if n == 0 else f"{n}/{self.max_refs} reference{'s' if n != 1 else ''}"
        title = (
            f"<span style='display:inline-block;width:12px;height:12px;border-radius:3px;background:{editor.color_of(i)}'></span> "
            f"**Subject {i + 1}** · id `{s['id']}` · {note}"
        )
        return {"visible": True, "title": title, "name": s.get("name", ""), "kind": s.get("kind", "object"), "gallery": gallery}

    def view_values(self, doc: dict) -> list:
        subjects = doc.get("subjects", [])
        out = []
        for i in range(len(self.slots)):
            if i < len(subjects):
                v = self.slot_values(doc, i)
                out += [gr.update(visible=True), v["title"], gr.update(value=v["name"]), gr.update(value=v["kind"]), gr.update(value=v["gallery"])]
            else:
                out += [gr.update(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        out.append(gr.update(interactive=len(subjects) < self.max_subjects))
        return out

    @staticmethod
    def upload_dir() -> str:
        return get_upload_folder()

    # ---- handlers ---------------------------------------------------------------------------------
    def wire(self, panel: TimelinePanel) -> None:
        state = [panel.doc_state, panel.undo_state]
        common = dict(concurrency_limit=None, show_progress="hidden")

        def add(doc, undo):
            try:
                new = editor.add_subject(doc, self.max_subjects)
            except editor.EditError as exc:
                return panel.full(doc, undo, message=editor.sentence(exc))
            return panel.commit(doc, new, undo, full=True, message=f"Added {new['subjects'][-1]['name']}: give it a name and a reference image.")

        self.add_btn.click(add, state, panel.full_outputs(), api_name="add_subject", **common)

        for slot in self.slots:
            i = slot.index

            def remove(doc, undo, i=i):
                if i >= len(doc["subjects"]):
                    return panel.full(doc, undo)
                name = doc["subjects"][i]["name"]
                new = editor.remove_subject(doc, i)
                msg = f"Removed {name} (undo brings it back)."
                if not new["subjects"]:
                    msg += " There are no subjects left: add one to generate."
                return panel.commit(doc, new, undo, full=True, message=msg)

            def rename(name, doc, undo, i=i):
                if i >= len(doc["subjects"]):
                    return panel.unchanged()
                new = editor.rename_subject(doc, i, name)
                if new == doc:  # also the echo of a name Python just showed (undo, load, remove)
                    return panel.unchanged()
                return panel.commit(doc, new, undo, tag=f"name:{doc['subjects'][i]['id']}")

            def kind(value, doc, undo, i=i):
                if i >= len(doc["subjects"]) or value not in KINDS or doc["subjects"][i].get("kind") == value:
                    return panel.unchanged()
                return panel.commit(doc, editor.set_kind(doc, i, value), undo)

            def add_ref(src: Any, doc, undo, i=i, label: str | None = None):
                if not src or i >= len(doc["subjects"]):
                    return [*panel.full(doc, undo), gr.skip(), gr.skip()]
                s = doc["subjects"][i]
                refs = list(s.get("references", []))
                if len(refs) >= self.max_refs:
                    return [*panel.full(doc, undo, message=f"{s['name']} already has {self.max_refs} reference images (the most this model takes); clear them first."), None, ""]
                try:
                    path = self.store.ingest(src, label=label)
                except ReferenceError as exc:
                    text = str(exc).replace(f"'{src}'", repr(label or "the file")).replace(str(src), label or "the file")
                    gr.Warning(text)
                    return [*panel.full(doc, undo, message=f"Refused for {s['name']}: {text}"), None, ""]
                if path in refs:
                    return [*panel.full(doc, undo, message=f"{s['name']} already has this reference."), None, ""]
                new = editor.set_references(doc, i, refs + [path], self.max_refs)
                return [*panel.commit(doc, new, undo, full=True, message=f"Added a reference to {s['name']}."), None, ""]

            def add_upload(payload, doc, undo, i=i):
                path = payload.get("path") if isinstance(payload, dict) else payload
                name = (payload.get("orig_name") if isinstance(payload, dict) else None) or (Path(path).name if path else None)
                if path and not Path(path).resolve().is_relative_to(Path(self.upload_dir()).resolve()):
                    return [*panel.full(doc, undo, message="That file was not uploaded through the studio."), None, ""]
                return add_ref(path, doc, undo, i=i, label=name)

            def add_example(path, doc, undo, i=i):
                if path and not self.store.is_allowed(path):
                    return [*panel.full(doc, undo, message="That example is not available."), None, ""]
                return add_ref(path, doc, undo, i=i)

            def clear(doc, undo, i=i):
                if i >= len(doc["subjects"]):
                    return panel.full(doc, undo)
                new = editor.set_references(doc, i, [])
                return panel.commit(doc, new, undo, full=True, message=f"Cleared the references of {doc['subjects'][i]['name']}.")

            slot.remove.click(remove, state, panel.full_outputs(), api_name=f"remove_subject_{i}", **common)
            slot.clear.click(clear, state, panel.full_outputs(), api_name=f"clear_references_{i}", **common)
            # `.change`, not `.input`: Gradio 6.31's Textbox fires `input` on keypress, which deleting
            # (Backspace, Delete, cut) never sends, so a shortened name would not reach the document.
            # `change` also fires when Python sets the box; `rename` skips those echoes.
            slot.name.change(rename, [slot.name, *state], panel.outputs(), trigger_mode="always_last", api_name=f"rename_subject_{i}", **common)
            slot.kind.change(kind, [slot.kind, *state], panel.outputs(), api_name=f"set_kind_{i}", **common)
            ref_outputs = panel.full_outputs() + [slot.upload, slot.example]
            slot.upload.upload(add_upload, [slot.upload, *state], ref_outputs, api_name=f"add_reference_{i}", preprocess=False, **common)
            slot.example.input(add_example, [slot.example, *state], ref_outputs, api_name=f"add_example_reference_{i}", **common)
