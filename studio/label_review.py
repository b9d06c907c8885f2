"""The Label review tab: the clip's video beside the Generate tab's timeline widget, with the
pipeline's sub-actions as blocks (one row per subject). Drag boundaries, edit captions, add and
remove actions, then approve (or reject with a reason). Clicking a block seeks the player to its
start.

The widget is studio/timeline_widget.py (vis-timeline), the same component and script as the
Generate tab; edits come back through studio.editor.apply_widget_value (times snapped to the clip's
latent-frame grid, names, kinds and references kept as stored) and are checked by the timeline
document's rules before anything is saved. The edited timeline lives in the page until Approve /
Save; each save names the version the page loaded, so a stale page gets the store's conflict with
both timelines shown and nothing overwritten.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import gradio as gr

from annotate.document import ClipAnnotation
from model.timeline import Problem, Timeline

from . import editor
from .review_common import (
    build_queue_header,
    FAST,
    SLOW,
    DatabasePanel,
    ReviewContext,
    UserError,
    check_annotator,
    clip_header,
    counts_markdown,
    empty_store_markdown,
    explain,
    legend_html,
    next_in_queue,
    pending_markdown,
    queue,
    queue_label,
    shortcuts_script,
    timeline_text,
)
from .timeline_widget import timeline_widget

ASPECT = "timeline"
PREFIX = "rt-label"
SHORTCUTS = ("**Keys** (outside text boxes and the caption editor): **←** / **→** one frame back / forward in the video · "
             "**A** approve · **R** reject (type the reason first) · **N** next clip · click a block to play from its start. "
             "In the timeline: drag a block or its edges, double-click empty space to add, a block to edit its caption, Delete removes.")
_HINT = re.compile(r" \(Fix problems: [^)]*\)$")
EMPTY_DOC = {"version": 1, "duration": 1.0, "fps": 16, "prompt": "", "subjects": []}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def labels_of(doc: ClipAnnotation) -> dict:
    return doc.timeline.to_dict()


def actions_only(d: dict) -> list:
    """What the reviewer can change: per subject, its actions (a comparison key)."""
    return [(s["id"], [(float(a["start"]), float(a["end"]), a["text"]) for a in s.get("actions", [])]) for s in d.get("subjects", [])]


class LabelReviewTab:
    def __init__(self, ctx: ReviewContext):
        self.ctx = ctx

    # ---- layout -------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Column(elem_id=f"{PREFIX}-review"):
            build_queue_header(self, PREFIX)
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=280):
                    self.video = gr.Video(label="Clip", interactive=False, loop=True, height=300, elem_id=f"{PREFIX}-video")
                    self.legend = gr.HTML("", elem_id=f"{PREFIX}-subjects-legend")
                with gr.Column(scale=5):
                    self.widget = timeline_widget(EMPTY_DOC, [], elem_id=f"{PREFIX}-timeline")
                    self.problems = gr.Markdown("", elem_id=f"{PREFIX}-problems")
                    with gr.Row(equal_height=True):
                        self.approve_btn = gr.Button("Approve (A)", variant="primary", elem_id=f"{PREFIX}-approve")
                        self.save_btn = gr.Button("Save labels", elem_id=f"{PREFIX}-save")
                        self.discard_btn = gr.Button("Discard edits", elem_id=f"{PREFIX}-discard")
                        self.reject_btn = gr.Button("Reject (R)", variant="stop", elem_id=f"{PREFIX}-reject")
                    self.reason = gr.Textbox(label="Reason (required to reject)", max_lines=1, elem_id=f"{PREFIX}-reason")
            self.message = gr.Markdown("", elem_id=f"{PREFIX}-msg")
            with gr.Row(visible=False, elem_id=f"{PREFIX}-conflict") as self.conflict:
                self.theirs = gr.Textbox(label="Stored version", lines=4, interactive=False, elem_id=f"{PREFIX}-theirs")
                self.mine = gr.Textbox(label="Yours (not saved)", lines=4, interactive=False, elem_id=f"{PREFIX}-mine")
            gr.Markdown(SHORTCUTS, elem_id=f"{PREFIX}-shortcuts")
            self.db = DatabasePanel(self.ctx, PREFIX)
            # The edited labels as plain text, hidden: for scripts and the browser tests to read.
            self.doc_json = gr.Textbox("", visible="hidden", elem_id=f"{PREFIX}-doc-json", label="labels")
            self.keys = shortcuts_script(f"{PREFIX}-review")
            self.state = gr.State({})
        self.wire()

    def shown(self) -> list:
        return [self.state, self.queue_dd, self.counts, self.empty, self.header, self.video, self.legend, self.widget, self.problems,
                self.message, self.conflict, self.theirs, self.mine, self.doc_json, self.keys, self.db.message]

    # ---- views ----------------------------------------------------------------------------------
    def _queue_update(self, store, status, kind, conf, current: str | None):
        items = queue(store, ASPECT, status, kind, conf)
        choices = [(queue_label(s, ASPECT), s.clip_id) for s in items]
        if current and current not in [c for _, c in choices]:
            try:
                doc = store.get(current)
                choices.insert(0, (f"{current} · {doc.review_status(ASPECT)} (not in this queue)", current))
            except Exception:  # noqa: BLE001
                pass
        return gr.update(choices=choices, value=current)

    @staticmethod
    def _problems(d: dict) -> tuple[list, str]:
        """The timeline rules' problems, without the Generate tab's "Fix problems" hints (no such button here)."""
        found = [Problem(p.path, _HINT.sub("", p.message), p.subject_id, p.action_index, p.fixable) for p in editor.problems_of(d)]
        if not found:
            return [], "**Labels OK**: every action is valid."
        text = f"**{len(found)} problem{'s' if len(found) != 1 else ''} in the labels** (fix them before approving)\n" + "\n".join(f"- {p.message}" for p in found)
        return editor.problem_marks(found), text

    def show(self, clip_id: str | None, status, kind, conf, message: str = "") -> dict:
        store = self.ctx.store()
        out = {self.queue_dd: self._queue_update(store, status, kind, conf, clip_id), self.counts: counts_markdown(store, ASPECT),
               self.message: message, self.conflict: gr.update(visible=False)}
        pending = pending_markdown(store)
        if pending:
            out[self.db.message] = pending
        total = sum(store.counts(ASPECT).values())
        out[self.empty] = gr.update(value=empty_store_markdown(self.ctx.db_path), visible=total == 0)
        if clip_id is None:
            out.update({self.state: {}, self.header: "The queue is empty for these filters." if total else "", self.video: None, self.legend: "",
                        self.widget: gr.update(value=editor.widget_value(EMPTY_DOC), problems=[]), self.problems: "", self.doc_json: ""})
            return out
        doc = store.get(clip_id)
        labels = labels_of(doc)
        marks, text = self._problems(labels)
        out.update({
            self.state: {"clip": doc.clip_id, "version": doc.version, "stored": labels, "edited": labels},
            self.header: clip_header(doc, ASPECT),
            self.video: str(self.ctx.video(doc)),
            self.legend: legend_html(doc),
            self.widget: gr.update(value=editor.widget_value(labels), problems=marks),
            self.problems: text,
            self.doc_json: json.dumps(labels),
            self.keys: json.dumps({"fps": int(doc.timeline.fps)}),
        })
        return out

    def _guard(self, fn, *args) -> dict:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is a message, never a traceback
            return {self.message: explain(exc)}

    # ---- handlers -------------------------------------------------------------------------------
    def on_load(self, state, status, kind, conf) -> dict:
        def run():
            store = self.ctx.store()
            current = (state or {}).get("clip")
            ids = [s.clip_id for s in queue(store, ASPECT, status, kind, conf)]
            if current not in ids:  # the clip on screen stays if it is in the filtered queue (its edits too)
                return self.show(ids[0] if ids else None, status, kind, conf)
            return {self.queue_dd: self._queue_update(store, status, kind, conf, current), self.counts: counts_markdown(store, ASPECT)}
        return self._guard(run)

    def on_pick(self, clip_id, status, kind, conf) -> dict:
        return self._guard(lambda: self.show(clip_id or None, status, kind, conf))

    def on_next_clip(self, state, status, kind, conf) -> dict:
        def run():
            items = queue(self.ctx.store(), ASPECT, status, kind, conf)
            nxt = next_in_queue(items, (state or {}).get("clip"))
            return self.show(nxt, status, kind, conf, message="" if nxt else "Nothing left in this queue: change the filters, or every clip is done.")
        return self._guard(run)

    def on_reload(self, state, status, kind, conf) -> dict:
        return self._guard(lambda: self.show((state or {}).get("clip"), status, kind, conf))

    def on_widget_input(self, value, state) -> dict:
        if not (state or {}).get("clip"):
            return {self.message: "Open a clip from the queue first."}
        try:
            new = editor.apply_widget_value(state["edited"], value)
        except editor.EditError as exc:
            return {self.message: editor.sentence(exc)}
        marks, text = self._problems(new)
        state = dict(state, edited=new)
        changed = actions_only(new) != actions_only(state["stored"])
        return {self.state: state, self.widget: gr.update(problems=marks), self.problems: text, self.doc_json: json.dumps(new),
                self.message: "Edited (not saved yet): **Approve** or **Save labels** stores it." if changed else ""}

    def _commit(self, state, annotator, review: tuple[str, str] | None, status, kind, conf) -> dict:
        """Save the edited labels (if they differ from the stored ones) and/or a review, as one version."""
        name = check_annotator(annotator)
        if not (state or {}).get("clip"):
            raise UserError("Open a clip from the queue first.")
        edited, stored = state["edited"], state["stored"]
        changed = actions_only(edited) != actions_only(stored)
        if changed and (review is None or review[0] != "rejected"):
            found = editor.problems_of(edited)
            if found:
                raise UserError("Not saved: the timeline has problems (each is listed under it); move or shorten the blocks named there first.")
        if not changed and review is None:
            raise UserError("Nothing to save: the labels are as stored.")
        tl = Timeline.from_dict(edited, validate=False)

        def change(d: ClipAnnotation) -> None:
            if changed:
                d.replace_timeline(tl)
            if review is not None:
                st = "fixed" if (review[0] == "accepted" and changed) else review[0]
                d.set_review(ASPECT, st, review[1], name, _now())
        try:
            saved = self.ctx.store().update(state["clip"], change, expected_version=int(state["version"]), annotator=name,
                                            operation="review-timeline" if review else "timeline")
        except Exception as exc:  # noqa: BLE001
            out = {self.message: explain(exc)}
            theirs = getattr(exc, "theirs", None)
            if theirs is not None:
                mine = Timeline.from_dict(edited, validate=False)
                mine_text = timeline_text(mine)
                if review is not None:
                    mine_text += f"\nreview: {review[0]}" + (f" ({review[1]})" if review[1] else "")
                r = theirs.review.get(ASPECT)
                their_text = timeline_text(theirs.timeline) + (f"\nreview: {r.status}" + (f" ({r.reason})" if r and r.reason else "") if r else "")
                out.update({self.conflict: gr.update(visible=True), self.theirs: f"version {theirs.version} by {theirs.updated_by}\n{their_text}",
                            self.mine: f"based on version {state['version']}\n{mine_text}"})
            return out
        if review is None:
            msg = f"Labels saved (version {saved.version}); not approved yet."
        else:
            st = saved.review_status(ASPECT)
            msg = f"Labels **{st}** (version {saved.version})" + (f": {review[1]}" if review[1] else "") + "."
        return self.show(saved.clip_id, status, kind, conf, message=msg)

    def on_approve(self, state, annotator, status, kind, conf) -> dict:
        return self._guard(lambda: self._commit(state, annotator, ("accepted", ""), status, kind, conf))

    def on_save(self, state, annotator, status, kind, conf) -> dict:
        return self._guard(lambda: self._commit(state, annotator, None, status, kind, conf))

    def on_reject(self, state, annotator, reason, status, kind, conf) -> dict:
        def run():
            if not str(reason or "").strip():
                raise UserError("Rejecting needs a reason: type it in **Reason**, then press Reject.")
            return self._commit(state, annotator, ("rejected", str(reason).strip()), status, kind, conf)
        return self._guard(run)

    # ---- wiring ---------------------------------------------------------------------------------
    def wire(self) -> None:
        filters = [self.status_f, self.kind_f, self.conf_f]
        shown = self.shown()
        for f in filters:
            f.input(self.on_load, [self.state, *filters], shown, **SLOW)
        self.queue_dd.input(self.on_pick, [self.queue_dd, *filters], shown, api_name="label_review_open", **SLOW)
        self.next_btn.click(self.on_next_clip, [self.state, *filters], shown, api_name="label_review_next", **SLOW)
        self.reload_btn.click(self.on_reload, [self.state, *filters], shown, **SLOW)
        self.discard_btn.click(self.on_reload, [self.state, *filters], shown, **SLOW)
        self.widget.input(self.on_widget_input, [self.widget, self.state], [self.state, self.widget, self.problems, self.doc_json, self.message],
                          trigger_mode="always_last", api_name="label_review_edit", **FAST)
        self.approve_btn.click(self.on_approve, [self.state, self.annotator, *filters], shown, api_name="label_review_approve", **SLOW)
        self.save_btn.click(self.on_save, [self.state, self.annotator, *filters], shown, api_name="label_review_save", **SLOW)
        self.reject_btn.click(self.on_reject, [self.state, self.annotator, self.reason, *filters], shown, api_name="label_review_reject", **SLOW)
        self.db.import_btn.click(lambda p, a: self.db.do_import(p, a), [self.db.folder, self.annotator], [self.db.message], **SLOW).then(
            self.on_load, [self.state, *filters], shown, **SLOW)
        self.db.retry_btn.click(self.db.do_retry, None, [self.db.message], **FAST)
        from gradio.context import Context

        root = Context.root_block
        if root is not None:
            root.load(self.on_load, [self.state, *filters], shown, **SLOW)


def label_review_tab(ctx: ReviewContext) -> tuple[str, Any]:
    """(label, build function) for build_studio(extra_tabs=...)."""
    return "Label review", LabelReviewTab(ctx).build


__all__ = ["LabelReviewTab", "actions_only", "label_review_tab"]
