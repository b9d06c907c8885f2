"""What the two annotation review tabs share: the database, the queue, the annotator, the messages.

The tabs (studio/mask_review.py, studio/label_review.py) read and write the annotation store
(annotate/store.py) only through its API: every change names the version it was based on, so a
stale page gets the store's ConflictError (shown with both versions, nothing overwritten), and a
locked database gets StoreLockedError (a message; the store keeps the change in its pending
folder). Nothing here stores anything itself.

The database: `--annotation-db PATH` (app.py), else `REACTID_ANNOTATION_DB`, else
`<studio workdir>/annotations/annotations.db`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from annotate.common import NotAvailable
from annotate.document import DONE_STATUSES, REVIEW_STATUSES, AnnotationError, ClipAnnotation, StoreError
from annotate.store import AnnotationStore, ConflictError, StoreLockedError
from model.timeline import KINDS, Timeline

from . import media
from .editor import PALETTE
from .timeline_widget import STUDIO_ASSETS

log = logging.getLogger("reactid.studio.review")
DB_ENV = "REACTID_ANNOTATION_DB"
SAM2_ENV = "REACTID_SAM2_MODEL"
ANY = "any"
STATUS_CHOICES = [("pending (not reviewed)", "pending"), ("accepted", "accepted"), ("fixed", "fixed"), ("rejected", "rejected"), ("any status", ANY)]
KIND_CHOICES = [("any kind", ANY)] + [(k, k) for k in KINDS]
REVIEW_JS = STUDIO_ASSETS / "review.js"
# Cheap events (listing, one frame, a save) run beside each other; none shares the Generate tab's "gpu" id.
FAST = dict(concurrency_limit=None, show_progress="hidden")
# Work that takes seconds (propagation, encoding a clip's video, imports): its own queue slot.
SLOW = dict(concurrency_limit=2, concurrency_id="annotation-review", show_progress="minimal")


class UserError(ValueError):
    """A problem with what the annotator did, shown as it is."""


def default_db_path(workdir: str | Path | None) -> Path:
    from .app import DEFAULT_WORKDIR

    return Path(workdir or DEFAULT_WORKDIR).resolve() / "annotations" / "annotations.db"


def resolve_db_path(flag: str | Path | None, workdir: str | Path | None) -> Path:
    """--annotation-db, else $REACTID_ANNOTATION_DB, else under the studio's work directory."""
    chosen = flag or os.environ.get(DB_ENV) or None
    return Path(chosen).expanduser().resolve() if chosen else default_db_path(workdir)


def import_disabled() -> str | None:
    """Importing reads folders on the server: not on a public deployment."""
    if os.environ.get("SPACE_ID"):
        return "this studio runs on a public Hugging Face Space"
    if os.environ.get("REACTID_DISABLE_ANNOTATION_IMPORT"):
        return "REACTID_DISABLE_ANNOTATION_IMPORT is set"
    return None


class ReviewContext:
    """The store and the clip media, shared by both tabs (one store per process, as the store asks)."""

    def __init__(self, db_path: str | Path, workdir: str | Path | None = None, *, sam2_model: str | None = None,
                 timeout: float = 5.0, frame_cache: int = 4):
        from .app import DEFAULT_WORKDIR

        self.db_path = Path(db_path)
        self.workdir = Path(workdir or DEFAULT_WORKDIR).resolve()
        self.sam2_model = sam2_model if sam2_model is not None else (os.environ.get(SAM2_ENV) or None)
        self.timeout = float(timeout)
        self._store: AnnotationStore | None = None
        self._lock = threading.Lock()
        self._frames: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._frame_cache = frame_cache
        self._refiners: dict[str, Any] = {}
        self.annotator_boxes: list[gr.Textbox] = []

    # ---- the store --------------------------------------------------------------------------
    def store(self) -> AnnotationStore:
        """The open store; StoreError (with the path) when it cannot be opened."""
        with self._lock:
            if self._store is None:
                if self.db_path == default_db_path(self.workdir):
                    self.db_path.parent.mkdir(parents=True, exist_ok=True)
                self._store = AnnotationStore(self.db_path, timeout=self.timeout)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # ---- media ------------------------------------------------------------------------------
    def frames(self, doc: ClipAnnotation) -> np.ndarray:
        """uint8 [F, H, W, 3] of a clip (a few recent clips are kept in memory)."""
        from annotate.exchange import load_frames

        store = self.store()
        key = (doc.clip_id, doc.frames, doc.video, doc.num_frames, doc.height, doc.width)
        with self._lock:
            if key in self._frames:
                self._frames.move_to_end(key)
                return self._frames[key]
        frames = load_frames(store, doc)
        with self._lock:
            self._frames[key] = frames
            while len(self._frames) > self._frame_cache:
                self._frames.popitem(last=False)
        return frames

    def video(self, doc: ClipAnnotation) -> Path:
        """A browser-playable MP4 of the clip under the studio's work directory (served there), made
        from its frames once; the clip's own video may sit outside the folders the studio serves."""
        src = doc.frames or doc.video or ""
        path = self.store().resolve(src)
        stamp = path.stat().st_mtime_ns if path is not None and path.exists() else 0
        key = hashlib.sha1(f"{self.db_path}|{doc.clip_id}|{src}|{stamp}".encode()).hexdigest()[:12]
        out = self.workdir / "review" / "videos" / f"{doc.clip_id}-{key}.mp4"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".partial.mp4")
            media.write_video(self.frames(doc), tmp, int(doc.timeline.fps))
            os.replace(tmp, out)
        return out

    def refiner(self, backend: str):
        """(refine, name) for mask propagation; NotAvailable says why SAM2 cannot be used."""
        from annotate.propagate import load_refiner

        if backend != "sam2":
            return None, None
        if "sam2" not in self._refiners:
            if not self.sam2_model:
                raise NotAvailable(f"SAM2 is not available: no model directory given (start the studio with --sam2-model DIR or set {SAM2_ENV}; "
                                   f"nothing is downloaded here). The OpenCV optical flow works offline.")
            self._refiners["sam2"] = load_refiner("sam2", self.sam2_model)
        return self._refiners["sam2"]

    # ---- import -----------------------------------------------------------------------------
    def import_folder(self, folder: str, annotator: str) -> str:
        """Bring a dataset or a pipeline output folder (`python -m annotate run ... --out DIR`) into the store."""
        from annotate.exchange import import_dataset
        from model.dataset_format import MANIFEST

        why = import_disabled()
        if why:
            raise UserError(f"Importing is off: {why}. Start the studio with --annotation-db pointing at the pipeline's annotations.db instead.")
        if not str(folder or "").strip():
            raise UserError("Type the path of a dataset folder (one with manifest.jsonl, as `python -m annotate run ... --out DIR` writes) first.")
        root = Path(str(folder).strip()).expanduser()
        if not root.is_dir():
            raise UserError(f"{root} is not a folder on the server.")
        if not (root / MANIFEST).is_file():
            db = root / "annotations.db"
            hint = (f" It has an annotations.db: start the studio with `--annotation-db {db}` to review it in place." if db.is_file() else "")
            raise UserError(f"{root} has no {MANIFEST}: it is not a dataset folder (the pipeline writes one with --out; --no-export skips it).{hint}")
        report = import_dataset(self.store(), root, annotator=annotator)
        lines = [f"Imported **{root}**: {len(report.created)} clip(s) created, {len(report.updated)} updated, "
                 f"{len(report.unchanged)} unchanged, {len(report.conflicts)} conflict(s), {len(report.errors)} error(s)."]
        lines += [f"- conflict, {cid}: {msg.splitlines()[0]}" for cid, msg in report.conflicts[:10]]
        lines += [f"- error, {cid}: {msg}" for cid, msg in report.errors[:10]]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------
def queue_filters(status: str | None, kind: str | None, max_confidence: Any) -> dict:
    """The store's list_clips filters from the tab's controls ("any" and an empty box filter nothing)."""
    out: dict[str, Any] = {}
    if status and status != ANY:
        if status not in REVIEW_STATUSES:
            raise UserError(f"Unknown status {status!r}.")
        out["status"] = status
    if kind and kind != ANY:
        if kind not in KINDS:
            raise UserError(f"Unknown subject kind {kind!r}.")
        out["kind"] = kind
    if max_confidence not in (None, ""):
        try:
            c = float(max_confidence)
        except (TypeError, ValueError):
            raise UserError(f"Confidence must be a number between 0 and 1, got {max_confidence!r}.") from None
        if not 0 <= c <= 1:
            raise UserError(f"Confidence must be between 0 and 1, got {c:g}.")
        if c < 1:  # 1 keeps everything, including clips without a confidence
            out["max_confidence"] = c
    return out


def queue(store: AnnotationStore, aspect: str, status: str | None, kind: str | None, max_confidence: Any) -> list:
    return store.list_clips(aspect=aspect, **queue_filters(status, kind, max_confidence))


def queue_label(summary, aspect: str) -> str:
    conf = "" if summary.min_confidence is None else f" · confidence {summary.min_confidence:.2f}"
    kinds = ", ".join(sorted(set(summary.kinds))) or "no subjects"
    return f"{summary.clip_id} · {summary.review.get(aspect, 'pending')} · {kinds}{conf}"


def next_in_queue(items: list, current: str | None, step: int = 1) -> str | None:
    """The clip after (or before) `current` in the filtered queue, wrapping around."""
    ids = [s.clip_id for s in items]
    if not ids:
        return None
    if current not in ids:
        after = [c for c in ids if current is None or (c > current if step > 0 else c < current)]
        return (after[0] if step > 0 else after[-1]) if after else ids[0 if step > 0 else -1]
    return ids[(ids.index(current) + step) % len(ids)]


def counts_markdown(store: AnnotationStore, aspect: str) -> str:
    c = store.counts(aspect)
    done = sum(c[s] for s in DONE_STATUSES)
    total = sum(c.values())
    what = "masks" if aspect == "masks" else "timeline labels"
    return (f"**{done} done** ({c['accepted']} accepted, {c['fixed']} fixed) · **{c['rejected']} rejected** · "
            f"**{c['pending']} left** · {total} clip(s) in the store ({what})")


def empty_store_markdown(db_path: Path) -> str:
    return (f"**The annotation database `{db_path}` has no clips yet.** Fill it with the pipeline:\n\n"
            f"```\npython -m annotate run VIDEOS_OR_FOLDERS --out DATASET\npython app.py --annotation-db DATASET/annotations.db\n```\n"
            f"or import a dataset folder (the pipeline's `--out` folder, or any dataset in the training format) in "
            f"*Database* below. docs/ANNOTATION.md describes both.")


# --------------------------------------------------------------------------------------------
# Annotator, messages
# --------------------------------------------------------------------------------------------
def check_annotator(name: Any) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise UserError("Type your name in **Annotator** first: every change records who made it.")
    if len(name) > 64:
        raise UserError("The annotator name is at most 64 characters.")
    return name


def explain(exc: BaseException) -> str:
    """Any error of a review action as a message (never a traceback)."""
    if isinstance(exc, ConflictError):
        return conflict_markdown(exc)
    if isinstance(exc, StoreLockedError):
        kept = (f" Your change is kept in `{exc.pending_file}`; **Save waiting changes** (in *Database*) saves it later, with the same check "
                f"against newer versions." if exc.pending_file else " Your change could not be kept either: make it again later.")
        return f"**Not saved: the annotation database is locked** by another program (it waited and gave up).{kept}\n\n{exc}"
    if isinstance(exc, AnnotationError):
        return "**Not saved:** " + "; ".join(exc.problems)
    if isinstance(exc, StoreError):
        return f"**Annotation store:** {exc}"
    if isinstance(exc, (UserError, NotAvailable)):
        return str(exc)
    log.exception("review action failed", exc_info=exc)
    return f"**Something went wrong** ({type(exc).__name__}: {exc}); nothing was saved. The server log has the details."


def conflict_markdown(exc: ConflictError) -> str:
    theirs = exc.theirs
    lines = [f"**Not saved: this clip changed while you were reviewing it.** Nothing was overwritten (neither yours nor theirs)."]
    if theirs is not None:
        lines.append(f"- **Stored version {theirs.version}** (by {theirs.updated_by}, {theirs.updated_at}): "
                     + ("; ".join(exc.their_changes) or "no visible change"))
    lines.append(f"- **Your version** (based on version {exc.expected_version}, not saved): "
                 + ("; ".join(exc.my_changes) if exc.mine is not None else "could not be rebuilt"))
    lines.append("\nPress **Reload clip** to see the stored version, then make your change again.")
    return "\n".join(lines)


def timeline_text(tl: Timeline | None) -> str:
    """A timeline's actions, one line each (the two sides of a conflict)."""
    if tl is None:
        return "(none)"
    out = []
    for s in tl.subjects:
        acts = ", ".join(f"[{a.start:.2f}-{a.end:.2f}s] {a.text}" for a in s.sorted_actions()) or "no actions"
        out.append(f"{s.id} ({s.name}): {acts}")
    return "\n".join(out)


def colors_for(doc: ClipAnnotation) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(len(doc.timeline.subjects))]


def legend_html(doc: ClipAnnotation) -> str:
    parts = []
    for i, s in enumerate(doc.timeline.subjects):
        conf = doc.confidence.get(s.id)
        extra = f" ({s.kind}" + (f", confidence {conf:.2f}" if conf is not None else "") + ")"
        parts.append(f"<span class='rt-legend-item'><span class='rt-swatch' style='background:{PALETTE[i % len(PALETTE)]}'></span>"
                     f"{media._escape(s.id)}: {media._escape(s.name)}{media._escape(extra)}</span>")
    return "<div class='rt-legend'>" + " &nbsp; ".join(parts) + "</div>"


def clip_header(doc: ClipAnnotation, aspect: str) -> str:
    r = doc.review.get(aspect)
    status = r.status if r else "pending"
    who = f" by {r.annotator}" if r and r.annotator else ""
    reason = f" ({r.reason})" if r and r.reason else ""
    src = doc.sources.get("masks" if aspect == "masks" else "timeline")
    lines = [f"**{doc.clip_id}** · version {doc.version} (saved by {doc.updated_by}) · {aspect}: **{status}**{who}{reason} · "
             f"{doc.num_frames} frames {doc.width}x{doc.height} @ {doc.timeline.fps} fps" + (f" · source: {src}" if src else "")]
    if doc.errors:
        lines.append("Pipeline notes: " + "; ".join(doc.errors[:3]) + (" ..." if len(doc.errors) > 3 else ""))
    return "\n\n".join(lines)


def pending_markdown(store: AnnotationStore) -> str:
    n = len(store.pending())
    if not n:
        return ""
    return (f"**{n} change(s) wait in `{store.pending_dir}`**: they were made while the database was locked. "
            f"**Save waiting changes** saves them (a change that conflicts with a newer version stays there and is named).")


def retry_pending_markdown(store: AnnotationStore) -> str:
    results = store.retry_pending()
    if not results:
        return "No changes were waiting."
    lines = []
    for path, res in results:
        if isinstance(res, ClipAnnotation):
            lines.append(f"- saved {res.clip_id} as version {res.version} ({path.name})")
        else:
            lines.append(f"- not saved, {path.name}: {str(res).splitlines()[0]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Pieces of UI both tabs build
# --------------------------------------------------------------------------------------------
def shortcuts_script(prefix: str) -> gr.HTML:
    """The tab's keyboard shortcuts (assets/studio/review.js): keys click the tab's buttons."""
    return gr.HTML(value="", html_template=f'<div class="rt-review-keys" data-prefix="{prefix}"></div>',
                   js_on_load=REVIEW_JS.read_text(encoding="utf-8"), apply_default_css=False, elem_id=f"{prefix}-keys", padding=False)


def annotator_box(ctx: ReviewContext, elem_id: str) -> gr.Textbox:
    """The annotator's name, kept in the browser (localStorage) and the same in both tabs."""
    box = gr.Textbox(label="Annotator (recorded on every change)", placeholder="your name", max_lines=1, elem_id=elem_id, scale=1)
    saved = gr.BrowserState("", storage_key="reactid-annotator")
    box.change(lambda v: v, [box], [saved], **FAST)
    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(lambda v: v or gr.skip(), [saved], [box], **FAST)
    # Leaving the field fills the other tab's box. On blur, not on change: a change would echo back into
    # the box being typed in and could overwrite the keys typed meanwhile.
    for other in ctx.annotator_boxes:
        box.blur(lambda v: v, [box], [other], **FAST)
        other.blur(lambda v: v, [other], [box], **FAST)
    ctx.annotator_boxes.append(box)
    return box

def build_queue_header(tab, prefix: str) -> None:
    """The controls both review tabs open with: annotator, filters, queue, next/reload, counts and clip header. Built
    inside the caller's layout; each component becomes an attribute of `tab` (which has `ctx`)."""
    with gr.Row(equal_height=True):
        tab.annotator = annotator_box(tab.ctx, f"{prefix}-annotator")
        tab.status_f = gr.Dropdown(STATUS_CHOICES, value="pending", label="Status", scale=1, elem_id=f"{prefix}-status-filter")
        tab.kind_f = gr.Dropdown(KIND_CHOICES, value=ANY, label="Subject kind", scale=1, elem_id=f"{prefix}-kind-filter")
        tab.conf_f = gr.Slider(0, 1, value=1, step=0.05, label="Confidence at most", scale=1, elem_id=f"{prefix}-conf-filter")
    with gr.Row(equal_height=True):
        tab.queue_dd = gr.Dropdown([], value=None, label="Queue (clip · status · kinds · lowest confidence)", scale=4,
                                   elem_id=f"{prefix}-queue")
        tab.next_btn = gr.Button("Next clip (N)", scale=1, elem_id=f"{prefix}-next-clip")
        tab.reload_btn = gr.Button("Reload clip", scale=1, size="sm", elem_id=f"{prefix}-reload")
    tab.counts = gr.Markdown("", elem_id=f"{prefix}-counts")
    tab.empty = gr.Markdown("", visible=False, elem_id=f"{prefix}-empty")
    tab.header = gr.Markdown("", elem_id=f"{prefix}-header")



class DatabasePanel:
    """The folded *Database* section: where the store is, import a folder, save waiting changes."""

    def __init__(self, ctx: ReviewContext, prefix: str):
        self.ctx = ctx
        with gr.Accordion("Database", open=False, elem_id=f"{prefix}-db"):
            gr.Markdown(f"Annotation database: `{ctx.db_path}` (set with `python app.py --annotation-db PATH` or `{DB_ENV}`).")
            with gr.Row(equal_height=True):
                self.folder = gr.Textbox(label="Import a dataset folder (the pipeline's --out folder)", placeholder="/path/to/DATASET",
                                         scale=4, elem_id=f"{prefix}-import-path", interactive=import_disabled() is None)
                self.import_btn = gr.Button("Import", scale=1, elem_id=f"{prefix}-import", interactive=import_disabled() is None)
            self.retry_btn = gr.Button("Save waiting changes", size="sm", elem_id=f"{prefix}-retry")
            self.message = gr.Markdown("", elem_id=f"{prefix}-db-msg")

    def do_import(self, folder: str, annotator: str) -> str:
        try:
            return self.ctx.import_folder(folder, check_annotator(annotator))
        except Exception as exc:  # noqa: BLE001 - every failure is a message
            return explain(exc)

    def do_retry(self) -> str:
        try:
            return retry_pending_markdown(self.ctx.store())
        except Exception as exc:  # noqa: BLE001
            return explain(exc)


__all__ = ["ANY", "DatabasePanel", "FAST", "KIND_CHOICES", "ReviewContext", "SLOW", "STATUS_CHOICES", "UserError", "annotator_box",
           "check_annotator", "clip_header", "colors_for", "conflict_markdown", "counts_markdown", "default_db_path", "empty_store_markdown",
           "explain", "legend_html", "next_in_queue", "pending_markdown", "queue", "queue_filters", "queue_label", "resolve_db_path",
           "retry_pending_markdown", "shortcuts_script", "timeline_text"]
