"""The Mask review tab: walk the queue, look at every subject's mask over each frame, accept, fix
with a brush (and carry the fix to the neighbouring frames), or reject with a reason.

- The frame view tints each subject's mask in its own colour (studio.media.mask_overlay, the
  colours of the Generate tab), with a legend.
- The fix editor (`gr.ImageEditor`) shows the frame with the chosen subject's mask tinted in its
  colour. Strokes in the add colour (yellow) add to the mask, strokes in the remove colour
  (magenta) cut it; the eraser takes strokes back. The result is brought back to the clip's size
  (small clips are shown enlarged by a whole factor). An image or layer of another size (a mask
  image of the wrong size, an API caller) is refused with a message.
- Propagation (annotate/propagate.py): OpenCV optical flow offline, SAM2 when a model directory is
  given; it stops before frames fixed by hand earlier (kept in the clip's meta).
- Every save names the version the page showed: a stale page gets the store's conflict (both
  versions shown, nothing overwritten); a locked database gets a message.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from annotate import rle as R
from annotate.document import ClipAnnotation
from annotate.propagate import FLOW_BACKEND, propagate

from . import media
from .review_common import (
    build_queue_header,
    FAST,
    SLOW,
    DatabasePanel,
    ReviewContext,
    UserError,
    check_annotator,
    clip_header,
    colors_for,
    counts_markdown,
    empty_store_markdown,
    explain,
    legend_html,
    next_in_queue,
    pending_markdown,
    queue,
    queue_label,
    shortcuts_script,
)

ASPECT = "masks"
PREFIX = "rt-mask"
ADD_COLOR = "#ffe119"  # brush strokes in this colour add to the mask
REMOVE_COLOR = "#f032e6"  # and in this one remove from it; the eraser takes strokes back
TINT_ALPHA = 0.5
BRUSH_SIZE = 6  # radius in shown pixels; "auto" is sized for an 800 px canvas, too coarse for an enlarged sprite
MAX_RADIUS = 16
BACKENDS = [("OpenCV optical flow (offline)", "flow"), ("SAM2 (needs --sam2-model)", "sam2")]
SHORTCUTS = ("**Keys** (outside text boxes): **←** / **→** previous / next frame · **A** accept · **F** fix & accept · "
             "**R** reject (type the reason first) · **N** next clip")


_STEP_JS = (f"(f) => {{ const r = document.querySelector('#{PREFIX}-frame input[type=range]');"
            " const max = r ? Number(r.max) : 1e9; return Math.max(0, Math.min(max, Number(f) + (STEP))); }")


class MaskSizeError(UserError):
    """A mask whose size is not the clip's (nor its enlarged display size)."""


# --------------------------------------------------------------------------------------------
# Pixels (no Gradio): the frame view, the editor's value and back
# --------------------------------------------------------------------------------------------
def display_scale(height: int, width: int) -> int:
    return media.display_scale(height, width)


def enlarge(img: np.ndarray, k: int) -> np.ndarray:
    return img if k == 1 else img.repeat(k, axis=0).repeat(k, axis=1)


def overlay(frame: np.ndarray, masks: np.ndarray, colors: list[str], k: int = 1) -> np.ndarray:
    """frame uint8 [H, W, 3] and masks bool [S, H, W] -> the frame tinted with each subject's colour, enlarged k times."""
    tinted = media.mask_overlay(frame[None], masks[:, None].astype(np.float32), colors, alpha=0.55)[0]
    return enlarge(tinted, k)


def _rgb(color: str) -> tuple[int, int, int]:
    h = color.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def editor_value(frame: np.ndarray, mask: np.ndarray | None, color: str, k: int = 1) -> dict:
    """The ImageEditor's value: the frame with the subject's mask tinted in its colour as the
    background, and no layer: the annotator's strokes (add / remove colours) make the layer.
    (Gradio 6.31's editor does not draw layers sent from Python, so the mask cannot be the layer.)"""
    m = np.zeros(frame.shape[:2], bool) if mask is None else mask
    tinted = media.mask_overlay(frame[None], m[None, None].astype(np.float32), [color], alpha=TINT_ALPHA)[0]
    return {"background": enlarge(tinted, k), "layers": [], "composite": None}


def _shrink(painted: np.ndarray, k: int) -> np.ndarray:
    """bool [H*k, W*k] -> bool [H, W]: a pixel is in the mask when at least half of its block is painted."""
    if k == 1:
        return painted
    H, W = painted.shape[0] // k, painted.shape[1] // k
    return painted.reshape(H, k, W, k).mean(axis=(1, 3)) >= 0.5


def _size_error(what: str, got: tuple[int, int], height: int, width: int, k: int) -> MaskSizeError:
    shown = f" or {width * k}x{height * k} as the editor shows it" if k > 1 else ""
    return MaskSizeError(f"{what} is {got[1]}x{got[0]} pixels (width x height), but this clip's frames are {width}x{height}{shown}. "
                         f"Nothing was saved.")


def strokes(value: Any, height: int, width: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(added, removed), bool [H*k, W*k]: the editor's painted pixels, by the colour they were painted in."""
    if not isinstance(value, dict):
        raise UserError("The editor is empty: pick a subject and a frame first.")
    want = (height * k, width * k)
    bg = value.get("background")
    if bg is not None and np.asarray(bg).shape[:2] != want:
        raise _size_error("The image in the editor", np.asarray(bg).shape[:2], height, width, k)
    added = np.zeros(want, bool)
    removed = np.zeros(want, bool)
    palette = np.array([_rgb(ADD_COLOR), _rgb(REMOVE_COLOR)], np.float32)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] != 4:
            raise UserError(f"The editor sent a layer without transparency (shape {arr.shape}); nothing was saved.")
        if arr.shape[:2] != want:
            raise _size_error("The edited mask", arr.shape[:2], height, width, k)
        painted = arr[..., 3] > 0
        if not painted.any():
            continue
        dist = ((arr[..., None, :3].astype(np.float32) - palette) ** 2).sum(-1)  # [h, w, 2]
        nearer_add = dist[..., 0] <= dist[..., 1]
        added |= painted & nearer_add
        removed |= painted & ~nearer_add
    return added, removed


def mask_from_editor(value: Any, base: np.ndarray | None, height: int, width: int, k: int = 1) -> np.ndarray:
    """The mask after the annotator's strokes: (base + added) - removed, at the clip's size."""
    added, removed = strokes(value, height, width, k)
    start = enlarge(np.zeros((height, width), bool) if base is None else np.asarray(base, bool), k)
    return _shrink((start | added) & ~removed, k)


def mask_from_image(img: np.ndarray, height: int, width: int, k: int = 1) -> np.ndarray:
    """A mask image (white or opaque pixels = the subject) at the clip's size or its display size."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 4 and (arr[..., 3] < 255).any():
        painted = arr[..., 3] > 127
    else:
        gray = arr if arr.ndim == 2 else arr[..., :3].mean(axis=2)
        painted = gray > 127
    if painted.shape == (height, width):
        return painted.astype(bool)
    if k > 1 and painted.shape == (height * k, width * k):
        return _shrink(painted, k)
    raise _size_error("The mask image", painted.shape[:2], height, width, k)


def subject_masks(doc: ClipAnnotation, frame: int) -> np.ndarray:
    """bool [S, H, W] of one frame (a frame never annotated shows no mask)."""
    out = np.zeros((len(doc.subject_ids), doc.height, doc.width), bool)
    for i, sid in enumerate(doc.subject_ids):
        m = doc.mask(sid, frame)
        if m is not None:
            out[i] = m
    return out


def hand_fixed(doc: ClipAnnotation, subject_id: str) -> list[int]:
    return list(((doc.meta.get("mask_review") or {}).get("hand_fixed") or {}).get(subject_id, []))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _ranges(frames) -> str:
    from annotate.document import frame_ranges

    return frame_ranges(frames) or "none"


# --------------------------------------------------------------------------------------------
# The tab
# --------------------------------------------------------------------------------------------
class MaskReviewTab:
    def __init__(self, ctx: ReviewContext):
        self.ctx = ctx

    # ---- layout -------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Column(elem_id=f"{PREFIX}-review"):
            build_queue_header(self, PREFIX)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1):
                    self.view = gr.Image(label="Frame with every subject's mask", type="numpy", interactive=False, height=300,
                                         elem_id=f"{PREFIX}-view", buttons=["fullscreen"])
                    self.legend = gr.HTML("", elem_id=f"{PREFIX}-subjects-legend")
                    with gr.Row(equal_height=True):
                        self.prev_frame = gr.Button("◀ Frame", size="sm", scale=0, min_width=80, elem_id=f"{PREFIX}-prev")
                        self.frame = gr.Slider(0, 1, value=0, step=1, label="Frame", scale=4, elem_id=f"{PREFIX}-frame")
                        self.next_frame = gr.Button("Frame ▶", size="sm", scale=0, min_width=80, elem_id=f"{PREFIX}-next")
                    with gr.Row(equal_height=True):
                        self.accept_btn = gr.Button("Accept (A)", variant="primary", elem_id=f"{PREFIX}-accept")
                        self.reject_btn = gr.Button("Reject (R)", variant="stop", elem_id=f"{PREFIX}-reject")
                    self.reason = gr.Textbox(label="Reason (required to reject)", max_lines=1, elem_id=f"{PREFIX}-reason")
                with gr.Column(scale=1):
                    self.subject = gr.Dropdown([], value=None, label="Subject to fix", elem_id=f"{PREFIX}-subject")
                    self.editor = gr.ImageEditor(
                        type="numpy", image_mode="RGBA", sources=[], transforms=[], format="png", height=360,
                        label="Fix: paint yellow to add to the mask, magenta to remove; the eraser takes strokes back",
                        elem_id=f"{PREFIX}-editor", interactive=True,
                        brush=gr.Brush(colors=[ADD_COLOR, REMOVE_COLOR], default_color=ADD_COLOR, color_mode="fixed", default_size=BRUSH_SIZE),
                        eraser=gr.Eraser(default_size=BRUSH_SIZE),
                        layers=gr.LayerOptions(allow_additional_layers=False, layers=["strokes"]), buttons=["fullscreen"],
                    )
                    with gr.Row(equal_height=True):
                        self.radius = gr.Slider(0, MAX_RADIUS, value=4, step=1, label="Propagate to ± frames", scale=2, elem_id=f"{PREFIX}-radius")
                        self.backend = gr.Dropdown(BACKENDS, value="flow", label="Propagate with", scale=2, elem_id=f"{PREFIX}-backend")
                    with gr.Row(equal_height=True):
                        self.save_btn = gr.Button("Save fix", elem_id=f"{PREFIX}-save-fix")
                        self.fix_btn = gr.Button("Fix & accept (F)", variant="primary", elem_id=f"{PREFIX}-fix")
                    self.upload = gr.File(label="Or load a mask image for this frame into the editor (PNG, the clip's size)", file_types=[".png"],
                                          type="filepath", height=90, elem_id=f"{PREFIX}-upload")
            self.message = gr.Markdown("", elem_id=f"{PREFIX}-msg")
            self.conflict = gr.Gallery(label="Conflict: the stored version and yours (this frame)", visible=False, columns=2, height=260,
                                       elem_id=f"{PREFIX}-conflict")
            gr.Markdown(SHORTCUTS, elem_id=f"{PREFIX}-shortcuts")
            self.db = DatabasePanel(self.ctx, PREFIX)
            self.keys = shortcuts_script(f"{PREFIX}-review")
            self.state = gr.State({})
            self.base = gr.State({})  # a mask image loaded into the editor (else the stored mask is the base)
        self.wire()

    def shown(self) -> list:
        """Everything a clip change refreshes (handlers return a dict over these)."""
        return [self.state, self.queue_dd, self.counts, self.empty, self.header, self.view, self.legend, self.frame, self.subject, self.editor,
                self.base, self.message, self.conflict, self.db.message]

    # ---- views ----------------------------------------------------------------------------------
    def _queue_update(self, store, status, kind, conf, current: str | None) -> tuple[list, dict]:
        items = queue(store, ASPECT, status, kind, conf)
        choices = [(queue_label(s, ASPECT), s.clip_id) for s in items]
        if current and current not in [c for _, c in choices]:
            try:  # the clip on screen stays selectable even when it left the filtered queue
                doc = store.get(current)
                choices.insert(0, (f"{current} · {doc.review_status(ASPECT)} (not in this queue)", current))
            except Exception:  # noqa: BLE001 - a deleted clip simply is not listed
                pass
        return items, gr.update(choices=choices, value=current)

    def _frame_views(self, doc: ClipAnnotation, frame: int, subject: str | None) -> dict:
        frames = self.ctx.frames(doc)
        k = display_scale(doc.height, doc.width)
        colors = colors_for(doc)
        out = {self.view: overlay(frames[frame], subject_masks(doc, frame), colors, k), self.base: {}}
        if subject in doc.subject_ids:
            i = doc.subject_ids.index(subject)
            out[self.editor] = editor_value(frames[frame], doc.mask(subject, frame), colors[i], k)
        else:
            out[self.editor] = None
        return out

    def show(self, clip_id: str | None, status, kind, conf, frame: int = 0, subject: str | None = None, message: str = "",
             keep_frame: bool = False) -> dict:
        """Everything about a clip. `keep_frame`: the clip is already on screen; leave the frame, the
        subject and the pictures as the page has them (a filter change must not undo a frame step
        made while it ran: Gradio's dropdown also fires `input` when it loses focus)."""
        store = self.ctx.store()
        _, qd = self._queue_update(store, status, kind, conf, clip_id)
        pending = pending_markdown(store)
        out = {self.queue_dd: qd, self.counts: counts_markdown(store, ASPECT), self.message: message, self.conflict: gr.update(visible=False, value=None)}
        if pending:
            out[self.db.message] = pending
        total = sum(store.counts(ASPECT).values())
        out[self.empty] = gr.update(value=empty_store_markdown(self.ctx.db_path), visible=total == 0)
        if clip_id is None:
            out.update({self.state: {}, self.header: "The queue is empty for these filters." if total else "", self.view: None, self.legend: "",
                        self.editor: None, self.subject: gr.update(choices=[], value=None), self.frame: gr.update(maximum=1, value=0)})
            return out
        doc = store.get(clip_id)
        frame = int(min(max(0, frame or 0), doc.num_frames - 1))
        if subject not in doc.subject_ids:
            subject = doc.subject_ids[0] if doc.subject_ids else None
        if keep_frame:  # also keep the page's version: a save must still be checked against what it shows
            return out
        out.update({
            self.state: {"clip": doc.clip_id, "version": doc.version, "frames": doc.num_frames},
            self.header: clip_header(doc, ASPECT),
            self.legend: legend_html(doc),
            self.frame: gr.update(maximum=max(1, doc.num_frames - 1), value=frame, label=f"Frame (0-{doc.num_frames - 1}, {doc.timeline.fps} fps)"),
            self.subject: gr.update(choices=[(f"{s.id}: {s.name}", s.id) for s in doc.timeline.subjects], value=subject),
        })
        out.update(self._frame_views(doc, frame, subject))
        return out

    def _guard(self, fn, *args) -> dict:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is a message, never a traceback
            return {self.message: explain(exc)}

    # ---- handlers -------------------------------------------------------------------------------
    def on_load(self, state, status, kind, conf) -> dict:
        """Page load and filter changes: the clip on screen stays if it is in the filtered queue, else the queue's first."""
        def run():
            store = self.ctx.store()
            current = (state or {}).get("clip")
            ids = [s.clip_id for s in queue(store, ASPECT, status, kind, conf)]
            if current in ids:
                return self.show(current, status, kind, conf, keep_frame=True)
            return self.show(ids[0] if ids else None, status, kind, conf)
        return self._guard(run)

    def on_pick(self, clip_id, status, kind, conf) -> dict:
        return self._guard(lambda: self.show(clip_id or None, status, kind, conf))

    def on_next_clip(self, state, status, kind, conf) -> dict:
        def run():
            store = self.ctx.store()
            items = queue(store, ASPECT, status, kind, conf)
            nxt = next_in_queue(items, (state or {}).get("clip"))
            msg = "" if nxt else "Nothing left in this queue: change the filters, or every clip is done."
            return self.show(nxt, status, kind, conf, message=msg)
        return self._guard(run)

    def on_reload(self, state, status, kind, conf, frame, subject) -> dict:
        return self._guard(lambda: self.show((state or {}).get("clip"), status, kind, conf, frame, subject))

    def on_frame(self, state, frame, subject) -> dict:
        def run():
            if not (state or {}).get("clip"):
                return {}
            doc = self.ctx.store().get(state["clip"], version=int(state["version"]))  # the version the page's saves are based on
            return self._frame_views(doc, int(min(max(0, frame or 0), doc.num_frames - 1)), subject)
        return self._guard(run)

    def on_upload(self, path, state, frame, subject) -> dict:
        def run():
            if not path:
                return {}
            if not (state or {}).get("clip") or not subject:
                raise UserError("Open a clip and pick a subject first.")
            doc = self.ctx.store().get(state["clip"])
            k = display_scale(doc.height, doc.width)
            try:
                with Image.open(path) as im:
                    img = np.asarray(im.convert("RGBA"))
            except OSError as exc:
                raise UserError(f"{Path(path).name} is not an image ({exc}).") from None
            mask = mask_from_image(img, doc.height, doc.width, k)
            frames = self.ctx.frames(doc)
            i = doc.subject_ids.index(subject)
            return {self.editor: editor_value(frames[int(frame)], mask, colors_for(doc)[i], k),
                    self.base: {"clip": doc.clip_id, "frame": int(frame), "subject": subject, "rle": R.encode(mask)},
                    self.message: f"Loaded {Path(path).name} into the editor for {subject}, frame {int(frame)}: press **Save fix** or **Fix & accept** to store it."}
        return self._guard(run)

    def _save(self, state, annotator, change, operation: str, status, kind, conf, frame, subject, message) -> dict:
        """Apply `change(doc, annotator)` to the version the page showed; `message(saved doc)` says what happened."""
        name = check_annotator(annotator)
        if not (state or {}).get("clip"):
            raise UserError("Open a clip from the queue first.")
        saved = self.ctx.store().update(state["clip"], lambda d: change(d, name), expected_version=int(state["version"]), annotator=name,
                                        operation=operation)
        return self.show(saved.clip_id, status, kind, conf, frame, subject, message=message(saved))

    def on_accept(self, state, annotator, status, kind, conf, frame, subject) -> dict:
        def change(d, name):
            d.set_review(ASPECT, "accepted", "", name, _now())
        return self._guard(lambda: self._save(state, annotator, change, "review-masks", status, kind, conf, frame, subject,
                                              lambda d: f"Masks **accepted** (version {d.version})."))

    def on_reject(self, state, annotator, reason, status, kind, conf, frame, subject) -> dict:
        def run():
            if not str(reason or "").strip():
                raise UserError("Rejecting needs a reason: type it in **Reason**, then press Reject.")

            def change(d, name):
                d.set_review(ASPECT, "rejected", str(reason).strip(), name, _now())
            return self._save(state, annotator, change, "review-masks", status, kind, conf, frame, subject,
                              lambda d: f"Masks **rejected** (version {d.version}): {str(reason).strip()}")
        return self._guard(run)

    def on_fix(self, state, annotator, frame, subject, value, base_mask, radius, backend, status, kind, conf, accept: bool = True) -> dict:
        def run():
            name = check_annotator(annotator)
            if not (state or {}).get("clip"):
                raise UserError("Open a clip from the queue first.")
            store = self.ctx.store()
            doc = store.get(state["clip"])
            if subject not in doc.subject_ids:
                raise UserError("Pick the subject to fix first.")
            f = int(frame)
            k = display_scale(doc.height, doc.width)
            base = store.get_version(doc.clip_id, int(state["version"])) if doc.version != int(state["version"]) else doc
            stored = base.mask(subject, f)
            b = base_mask or {}
            loaded = b.get("clip") == doc.clip_id and b.get("frame") == f and b.get("subject") == subject and b.get("rle")
            start = R.decode(R.check(b["rle"], (doc.height, doc.width))) if loaded else stored
            mask = mask_from_editor(value, start, doc.height, doc.width, k)
            changed = not np.array_equal(mask, stored if stored is not None else np.zeros_like(mask))
            updates: dict[int, np.ndarray] = {}
            note = ""
            if changed:
                updates[f] = mask
                r = int(radius or 0)
                if r > 0:
                    refine, refine_name = self.ctx.refiner(backend)
                    frames = self.ctx.frames(doc)
                    keep = set(hand_fixed(base, subject)) - {f}
                    prop = propagate(frames, f, mask, r, refine=refine, refine_name=refine_name)
                    stops = []
                    for step in (1, -1):  # stop before a frame fixed by hand: that one is right already
                        g = f + step
                        while g in prop.masks:
                            if g in keep:
                                stops.append(g)
                                break
                            updates[g] = prop.masks[g]
                            g += step
                    others = sorted(set(updates) - {f})
                    note = f"; propagated to frame(s) {_ranges(others)} with {prop.backend}" if others else ""
                    if stops:
                        note += f" (stopped before frame(s) {_ranges(stops)}, fixed by hand earlier)"

            def change(d, who):
                if updates:
                    d.set_masks(subject, updates)
                    meta = dict(d.meta.get("mask_review") or {})
                    fixed = dict(meta.get("hand_fixed") or {})
                    fixed[subject] = sorted(set(fixed.get(subject, [])) | {f})
                    meta["hand_fixed"] = fixed
                    d.meta["mask_review"] = meta
                    used = FLOW_BACKEND if backend != "sam2" else f"{FLOW_BACKEND}+sam2"
                    d.sources["mask_fixes"] = f"brush (gr.ImageEditor); propagation: {used}"
                if accept:
                    d.set_review(ASPECT, "fixed", "", who, _now())
            if not updates and not accept:
                raise UserError("Nothing to save: the mask in the editor is the stored one. Paint or erase first.")
            what = f"frame {f} of {subject}{note}" if updates else "no mask change (the editor holds the stored mask)"
            def msg(d):
                return (f"Masks **fixed** and accepted (version {d.version}): " if accept else f"Saved (version {d.version}): ") + what + "."
            try:
                return self._save(state, annotator, change, "mask-fix", status, kind, conf, f, subject, msg)
            except Exception as exc:  # noqa: BLE001
                out = {self.message: explain(exc)}
                conflict = getattr(exc, "theirs", None)
                if conflict is not None and updates:
                    frames = self.ctx.frames(doc)
                    colors = colors_for(doc)
                    theirs = overlay(frames[f], subject_masks(conflict, f), colors, k)
                    mine_doc = base.copy()
                    mine_doc.set_masks(subject, {f: mask})
                    mine = overlay(frames[f], subject_masks(mine_doc, f), colors, k)
                    out[self.conflict] = gr.update(visible=True, value=[(theirs, f"stored version {conflict.version} (by {conflict.updated_by})"),
                                                                      (mine, "yours (not saved)")])
                return out
        return self._guard(run)

    # ---- wiring ---------------------------------------------------------------------------------
    def wire(self) -> None:
        filters = [self.status_f, self.kind_f, self.conf_f]
        shown = self.shown()
        for f in filters:
            f.input(self.on_load, [self.state, *filters], shown, **FAST)
        self.queue_dd.input(self.on_pick, [self.queue_dd, *filters], shown, api_name="mask_review_open", **FAST)
        self.next_btn.click(self.on_next_clip, [self.state, *filters], shown, api_name="mask_review_next", **FAST)
        self.reload_btn.click(self.on_reload, [self.state, *filters, self.frame, self.subject], shown, **FAST)
        frame_out = [self.view, self.editor, self.base, self.message]
        self.frame.change(self.on_frame, [self.state, self.frame, self.subject], frame_out, trigger_mode="always_last", **FAST)
        self.subject.input(self.on_frame, [self.state, self.frame, self.subject], frame_out, **FAST)
        # Stepping happens in the browser: held or fast keys must not lose steps to the round trip.
        self.prev_frame.click(None, [self.frame], [self.frame], js=_STEP_JS.replace("STEP", "-1"))
        self.next_frame.click(None, [self.frame], [self.frame], js=_STEP_JS.replace("STEP", "1"))
        self.accept_btn.click(self.on_accept, [self.state, self.annotator, *filters, self.frame, self.subject], shown, api_name="mask_review_accept", **FAST)
        self.reject_btn.click(self.on_reject, [self.state, self.annotator, self.reason, *filters, self.frame, self.subject], shown,
                              api_name="mask_review_reject", **FAST)
        fix_in = [self.state, self.annotator, self.frame, self.subject, self.editor, self.base, self.radius, self.backend, *filters]
        self.fix_btn.click(lambda *a: self.on_fix(*a, accept=True), fix_in, shown, api_name="mask_review_fix", **SLOW)
        self.save_btn.click(lambda *a: self.on_fix(*a, accept=False), fix_in, shown, api_name="mask_review_save_fix", **SLOW)
        self.upload.upload(self.on_upload, [self.upload, self.state, self.frame, self.subject], [self.editor, self.base, self.message], **FAST)
        self.db.import_btn.click(lambda p, a: self.db.do_import(p, a), [self.db.folder, self.annotator], [self.db.message], **SLOW).then(
            self.on_load, [self.state, *filters], shown, **FAST)
        self.db.retry_btn.click(self.db.do_retry, None, [self.db.message], **FAST)
        from gradio.context import Context

        root = Context.root_block
        if root is not None:
            root.load(self.on_load, [self.state, *filters], shown, **FAST)


def mask_review_tab(ctx: ReviewContext) -> tuple[str, Any]:
    """(label, build function) for build_studio(extra_tabs=...)."""
    return "Mask review", MaskReviewTab(ctx).build


__all__ = ["MaskReviewTab", "MaskSizeError", "editor_value", "mask_from_editor", "mask_from_image", "mask_review_tab", "overlay",
           "subject_masks"]
