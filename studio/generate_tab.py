"""Generation: settings, Generate / Cancel / re-roll a segment, the outputs, and loading a past run.

One GPU job at a time: every event that runs the model shares the queue's concurrency id "gpu" with a
limit of 1. Cancel bypasses the queue and sets the session's cancel event (the pipeline stops at the next
step); the status says "Cancelling…" at once.

The status must end in the run's final state. The run's own reply (its last output) and the Cancel click's
reply travel separately (the queue's event stream and a plain HTTP reply), so the page may receive them in
either order: when "Cancelling…" arrived last, it stayed (issue 11). So Cancel has a second step, chained
after the first (`.then`, so its reply always comes after "Cancelling…"): it waits until the cancelled run
has ended and shows the final status the run recorded, the same text the run's own reply carries. Whichever
of the two arrives last, the status ends as "Cancelled at step k/n: …" (or the run's result, when it had
finished before the cancel reached it).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path

import gradio as gr

from model.references import ReferenceError
from model.timeline import Timeline, TimelineError

from . import editor, fields, history, media
from .engine import MAX_SEED, Engine, EngineUnavailable, GenerationRequest, Limits, load_output, random_seed, resolve_seed, save_output
from .refstore import ReferenceStore
from .timeline_panel import TimelinePanel

log = logging.getLogger("reactid.studio")
REROLL_LABEL = "Re-roll (new seed)"
# (label, value) of the start-layout menu; the values are GenerationRequest.layout's
LAYOUT_CHOICES = [("Automatic (the model's own setting)", "auto"),
                  ("Left to right, each on the path its captions say", "paths"),
                  ("Left to right, in subject order", "columns"), ("Free: the model decides", "none")]
LAYOUT_VALUES = tuple(v for _, v in LAYOUT_CHOICES)


class UserError(ValueError):
    """A problem with the user's input, shown as it is."""


class _Run:
    """One generation of one session: its cancel event, the last step done, and its final status once it ended."""

    def __init__(self, run_id: int):
        self.id = run_id
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.step: tuple[int, int] | None = None  # (done, total) of the last denoising step
        self.status: str | None = None
        self.ended = 0.0


CANCEL_WAIT_SECONDS = 600.0  # how long Cancel's second step waits for the run to stop (one step of a large model on a CPU)
FORGET_RUNS_AFTER_SECONDS = 3600.0


class CancelRegistry:
    """The current (or last) run of each browser session (Gradio's session hash)."""

    def __init__(self):
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._ids = 0

    def start(self, session: str) -> _Run:
        now = time.monotonic()
        with self._lock:
            self._ids += 1
            run = _Run(self._ids)
            for key in [k for k, r in self._runs.items() if r.done.is_set() and now - r.ended > FORGET_RUNS_AFTER_SECONDS]:
                del self._runs[key]
            self._runs[session] = run
        return run

    def cancel(self, session: str) -> _Run | None:
        """Ask the session's running generation to stop; the run, or None when nothing is running."""
        with self._lock:
            run = self._runs.get(session)
        if run is None or run.done.is_set():
            return None
        run.cancel.set()
        return run

    def finish(self, run: _Run, status: str | None) -> None:
        """The run has ended, and `status` is what its own reply shows."""
        run.status = status
        run.ended = time.monotonic()
        run.done.set()

    def final_status(self, session: str, run_id: int, timeout: float = CANCEL_WAIT_SECONDS) -> str | None:
        """Wait until run `run_id` of `session` has ended; its final status (None if it did not end in time)."""
        with self._lock:
            run = self._runs.get(session)
        if run is None or run.id != run_id:
            return None  # a newer run replaced it, so it ended long ago and showed its own status
        if not run.done.wait(timeout):
            return None
        return run.status


RUN_MAX_AGE_HOURS = 24.0  # generated videos older than this are deleted (a shared server must not fill its disk)


def prune_runs(runs_dir: Path, max_age_hours: float = RUN_MAX_AGE_HOURS) -> int:
    """Delete run folders older than `max_age_hours`; returns how many were removed."""
    import shutil

    if not runs_dir.is_dir():
        return 0
    cutoff = time.time() - max_age_hours * 3600
    removed = 0
    for d in runs_dir.iterdir():
        try:
            if d.is_dir() and d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        except OSError:
            pass
    return removed


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


class GeneratePanel:
    """Built in three places of the page: `preview()` (the player, Generate / Cancel / Re-roll and the
    status, where the progress shows), `settings()` (folded) and `results()` (the captioned copy and the
    masks). `wire()` needs all three."""

    def __init__(self, engine: Engine, limits: Limits, store: ReferenceStore, workdir: Path):
        self.engine = engine
        self.limits = limits
        self.store = store
        self.workdir = Path(workdir)
        self.cancels = CancelRegistry()
        self.current_run = gr.State(None)  # id of the run the players show; Re-roll re-rolls it

    def preview(self, player_height: int = 220) -> None:
        self.video = gr.Video(label="Generated video", interactive=False, autoplay=True, loop=True, height=player_height, elem_id="rt-video")
        with gr.Row(equal_height=True):
            self.generate_btn = gr.Button("Generate", variant="primary", scale=3, elem_id="rt-generate", interactive=self.engine.available)
            self.cancel_btn = gr.Button("Cancel", variant="stop", scale=1, min_width=90, elem_id="rt-cancel")
        self.status = gr.Markdown("Ready." if self.engine.available else self.engine.unavailable, elem_id="rt-status")
        with gr.Row(equal_height=True):
            self.reroll_btn = gr.Button(REROLL_LABEL, scale=3, size="sm", elem_id="rt-reroll", interactive=False)
            self.reroll_segment = fields.Number(value=1, precision=0, minimum=1, label="Segment (1 = first)", scale=1, min_width=90,
                                                elem_id="rt-reroll-segment", interactive=False, visible=False)

    def settings(self) -> None:
        limits = self.limits
        with gr.Accordion("Generation settings: steps, guidance, seed, size, segments", open=False, elem_id="rt-settings"):
            with gr.Row():
                self.negative = gr.Textbox(label="Negative prompt", value="", lines=1, scale=3, elem_id="rt-negative", placeholder="blurry, distorted")
                self.size = fields.Dropdown(limits.size_choices(), value=limits.size_choices()[0], label="Size (width x height)", scale=1, elem_id="rt-size")
            with gr.Row():
                self.steps = fields.Slider(1, limits.max_steps, value=limits.default_steps, step=1, label="Steps", elem_id="rt-steps")
                self.guidance = fields.Slider(0.0, 15.0, value=limits.default_guidance, step=0.5, label="Guidance (CFG)", elem_id="rt-guidance")
                self.seed = fields.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="rt-seed")
                self.randomize = gr.Checkbox(value=True, label="Random seed", elem_id="rt-randomize")
            with gr.Row():
                self.segment = fields.Number(
                    value=0, minimum=0, maximum=limits.single_pass_seconds, step=0.25,
                    label=f"Segment length (s; 0 = automatic: one pass up to {limits.single_pass_seconds:g}s)", elem_id="rt-segment",
                )
                self.burn = gr.Checkbox(value=True, label="Also make a copy with each subject's current action as captions", elem_id="rt-burn")
            # who stands where, and for paths where each goes (model/layout.py): binds the first steps
            self.layout = fields.Dropdown(LAYOUT_CHOICES, value="auto", label="Start layout", elem_id="rt-layout",
                                          info="Left to right: the subjects start in the order they are listed; on a path each is "
                                               "also led the way its captions say for the first steps. Automatic: the model's own setting.")

    def results(self) -> None:
        with gr.Row(equal_height=True):
            self.captioned = gr.Video(label="With captions", interactive=False, autoplay=True, loop=True, visible=False, height=240, elem_id="rt-captioned")
            self.masks = gr.Video(label="Predicted subject masks", interactive=False, autoplay=True, loop=True, height=240, elem_id="rt-masks")
        self.legend = gr.Markdown("", elem_id="rt-mask-legend")

    def settings_components(self) -> list:
        return [self.negative, self.steps, self.guidance, self.seed, self.randomize, self.size, self.segment, self.burn, self.layout]

    # ---- checks ----------------------------------------------------------------------------------
    def _check_doc(self, doc: dict):
        if not self.engine.available:
            raise UserError(self.engine.unavailable)
        problems = editor.problems_of(doc, self.limits.max_subjects)
        if problems:
            raise UserError(f"the timeline has {len(problems)} problem{'s' if len(problems) > 1 else ''}; fix {'them' if len(problems) > 1 else 'it'} first:\n" + "\n".join(f"- {p.message}" for p in problems[:8]))
        tl = editor.timeline_of(doc, validate=True)
        for s in tl.subjects:
            if not s.references:
                raise UserError(f"subject {s.id!r} ({s.name}) has no reference image: upload one, paste one or pick an example.")
            for r in s.references:
                if not self.store.is_allowed(r):
                    raise UserError(f"subject {s.id!r} ({s.name}): reference {Path(r).name} is not available any more; add it again.")
        return tl  # a subject without actions is allowed: it is in the scene without a sub-action

    def _request(self, doc, negative, steps, guidance, seed, randomize, size, segment, layout="auto") -> tuple[GenerationRequest, dict]:
        tl = self._check_doc(doc)
        try:
            steps = int(steps)
            guidance = float(guidance)
        except (TypeError, ValueError):
            raise UserError("steps and guidance must be numbers") from None
        if not 1 <= steps <= self.limits.max_steps:
            raise UserError(f"steps must be between 1 and {self.limits.max_steps}")
        if not 0 <= guidance <= 30:
            raise UserError("guidance must be between 0 and 30")
        try:
            seed = resolve_seed(seed, bool(randomize))
            h, w = self.limits.parse_size(size)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        seg = float(segment or 0)
        min_seg = 2 * 4 / tl.fps
        if seg and not min_seg <= seg <= self.limits.single_pass_seconds:
            raise UserError(f"the segment length must be 0 (automatic) or between {min_seg:g}s and {self.limits.single_pass_seconds:g}s")
        layout = layout or "auto"
        if layout not in LAYOUT_VALUES:
            raise UserError(f"the start layout must be one of {', '.join(LAYOUT_VALUES)}, got {layout!r}")
        settings = {"negative_prompt": negative or "", "steps": steps, "guidance": guidance, "seed": seed, "size": self.limits.size_label(h, w),
                    "segment_seconds": seg or None, "layout": layout}
        return GenerationRequest(tl, negative or "", steps, guidance, seed, h, w, seg or None, layout=layout), settings

    # ---- running ------------------------------------------------------------------------------------
    def _fail(self, message: str) -> list:
        gr.Warning(message.split("\n")[0])
        return [gr.skip()] * 4 + [message] + [gr.skip()] * 9

    def _show(self, run: history.Run) -> list:
        """What the players and the re-roll controls show for `run`: [video, captioned, masks, legend,
        current run, segment to re-roll, re-roll button]."""
        def kept(path):
            return path if path and Path(path).is_file() else None

        segs = max(1, len(run.segments))
        captioned = kept(run.captioned)
        label = f"Re-roll a segment of run #{run.id} (new seed, the others kept)" if segs > 1 else f"Re-roll run #{run.id} (new seed)"
        return [
            kept(run.video),
            gr.update(value=captioned, visible=True) if captioned else gr.update(value=None, visible=False),
            kept(run.masks),
            media.mask_legend(Timeline.from_dict(run.timeline, validate=False), list(editor.PALETTE)),
            run.id,
            gr.update(interactive=segs > 1, visible=segs > 1, maximum=segs, value=segs),
            gr.update(interactive=True, value=label),
        ]

    def _execute(self, req: GenerationRequest, settings: dict, burn: bool, hist: list, request, progress, note: str = "") -> list:
        session = _session(request)
        run = self.cancels.start(session)
        outputs = None
        try:
            outputs = self._generate(run, session, req, settings, burn, hist, progress, note)
            return outputs
        finally:  # before the reply leaves: Cancel's second step shows this same final status
            ended = outputs[4] if outputs is not None and isinstance(outputs[4], str) else "The run stopped with an error (see the message)."
            self.cancels.finish(run, ended)

    @staticmethod
    def _cancelled_message(run: _Run) -> str:
        if run.step is None or run.step[0] == 0:
            return "Cancelled before the first denoising step: no video was made."
        done, total = run.step
        return f"Cancelled at step {done}/{total}: no video was made."

    def _generate(self, run: _Run, session: str, req: GenerationRequest, settings: dict, burn: bool, hist: list, progress, note: str) -> list:
        t0 = time.perf_counter()
        progress(0.0, desc="Preparing the references and the timeline…")

        def on_step(done, total, segment, n_segments):
            run.step = (done, total)
            desc = f"Denoising step {done}/{total}" + (f" (segment {segment + 1}/{n_segments})" if n_segments > 1 else "")
            progress((done, total), desc=desc, unit="steps")

        try:
            out = self.engine.generate(req, cancel_event=run.cancel, on_step=on_step)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the server keeps serving
            from model.pipeline import GenerationCancelled

            if isinstance(exc, GenerationCancelled) or run.cancel.is_set():
                return self._fail(self._cancelled_message(run))
            if isinstance(exc, (TimelineError, ReferenceError, ValueError, EngineUnavailable)):
                return self._fail(f"Not generated: {exc}")
            log.error("generation failed:\n%s", traceback.format_exc())
            return self._fail(f"Generation failed ({type(exc).__name__}: {exc}). The studio is still running; try again or change the settings.")
        seconds = time.perf_counter() - t0
        progress(1.0, desc="Writing the videos…")
        run_id = history.next_id(hist)
        prune_runs(self.workdir / "runs")
        run_dir = self.workdir / "runs" / f"{session[:12]}-{int(time.time())}-{run_id}"
        colors = list(editor.PALETTE)
        video = media.write_video(out.frames, run_dir / "video.mp4", out.fps)
        masks = media.write_mask_video(out.frames, out.masks, run_dir / "masks.mp4", out.fps, colors)
        captioned = media.write_captioned_video(out.frames, out.timeline, run_dir / "captioned.mp4", out.fps, colors) if burn else None
        thumb = media.thumbnail(out.frames, run_dir / "thumb.png")
        (run_dir / "timeline.json").write_text(out.timeline.to_json() + "\n", encoding="utf-8")
        raw = save_output(out, run_dir / "output.npz") if len(out.segments) > 1 else None
        run = history.Run(
            id=run_id, created=time.time(), timeline=out.timeline.to_dict(), settings={**settings, "burn_captions": bool(burn)},
            video=str(video), thumb=str(thumb), masks=str(masks), captioned=str(captioned) if captioned else None,
            seconds=seconds, note=note, segments=[list(s) for s in out.segments], seeds=list(out.seeds), raw=str(raw) if raw else None,
        )
        hist = history.add_run(hist, run)
        F, H, W, _ = out.frames.shape
        segs = len(out.segments)
        threads = self.engine.last_threads if str(self.engine.device).startswith("cpu") else None
        status = (
            f"Run #{run_id}: {F} frames ({(F - 1) / out.fps:g}s at {out.fps} fps, {W}x{H})"
            f"{f' in {segs} segments' if segs > 1 else ''} in {seconds:.1f}s"
            f"{f' on {threads} CPU thread' + ('s' if threads != 1 else '') if threads else ''} · seed {settings['seed']}"
            + (f" · {note}" if note else "")
        )
        video_, captioned_, masks_, legend, current, segment_no, reroll = self._show(run)
        return [
            video_, captioned_, masks_, legend, status, settings["seed"], history.gallery_items(hist), hist,
            current, segment_no, reroll, f"{len(hist)} run{'s' if len(hist) != 1 else ''} in this session: click one to see its settings.",
            None, gr.update(interactive=False),  # the new run shifts the gallery: nothing is selected
        ]

    def run(self, doc, negative, steps, guidance, seed, randomize, size, segment, burn, layout, hist, request: gr.Request = None, progress=gr.Progress()):
        try:
            req, settings = self._request(doc, negative, steps, guidance, seed, randomize, size, segment, layout)
        except (UserError, TimelineError) as exc:
            return self._fail(f"Not generated: {exc}")
        return self._execute(req, settings, bool(burn), hist, request, progress)

    def reroll(self, current, segment_no, seed, randomize, hist, request: gr.Request = None, progress=gr.Progress()):
        """Make the current run (the last one generated, or the one loaded from the history) again with a
        new seed; with several segments, only the chosen one, the others kept."""
        run = history.find(hist, current)
        if run is None:
            return self._fail("Generate a video first (or load a run from the history); then it can be re-rolled.")
        n = max(1, len(run.segments))
        try:
            k = int(segment_no) - 1 if n > 1 else 0
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k < n:
            return self._fail(f"Run #{run.id} has {n} segments; choose a segment between 1 and {n}.")
        try:
            new_seed = resolve_seed(seed, bool(randomize))
        except ValueError as exc:
            return self._fail(f"Not re-rolled: {exc}")
        used = set(run.seeds or [run.settings.get("seed")])
        while new_seed in used:  # the seed box still holds the run's own seed (e.g. after loading it): draw a new one
            new_seed = random_seed()
        settings = {k_: v for k_, v in run.settings.items() if k_ != "burn_captions"}
        settings["seed"] = new_seed
        h, w = self.limits.parse_size(settings["size"])
        tl = Timeline.from_dict(run.timeline)
        req = GenerationRequest(tl, settings["negative_prompt"], settings["steps"], settings["guidance"], new_seed, h, w,
                                settings.get("segment_seconds"), layout=settings.get("layout", "auto"))
        if n > 1:
            if not run.raw or not Path(run.raw).is_file():
                return self._fail(f"Run #{run.id}'s frames were deleted from the server (runs are kept for a day); load it and generate it again.")
            req.reroll_segment, req.previous = k, load_output(run.raw, tl)
            note = f"re-rolled segment {k + 1} of run #{run.id}"
        else:
            note = f"re-roll of run #{run.id}"
        return self._execute(req, settings, run.settings.get("burn_captions", True), hist, request, progress, note=note)

    def cancel(self, request: gr.Request = None):
        """Cancel's first step: stop the session's run at its next step. Returns the status and the run's id
        (for the second step; None when nothing was running)."""
        run = self.cancels.cancel(_session(request))
        if run is None:
            return "Nothing is running.", None
        return "Cancelling… the model stops at the next step.", run.id

    def cancel_outcome(self, run_id, request: gr.Request = None):
        """Cancel's second step, chained after the first: once the cancelled run has ended, its final status."""
        if run_id is None:
            return gr.skip()
        status = self.cancels.final_status(_session(request), int(run_id))
        return gr.skip() if status is None else status

    # ---- wiring ------------------------------------------------------------------------------------
    def outputs(self, hist: history.HistoryPanel) -> list:
        return [self.video, self.captioned, self.masks, self.legend, self.status, self.seed, hist.gallery, hist.state, self.current_run,
                self.reroll_segment, self.reroll_btn, hist.details, hist.selected, hist.load_btn]

    def wire(self, panel: TimelinePanel, hist: history.HistoryPanel) -> None:
        gpu = dict(concurrency_limit=1, concurrency_id="gpu", show_progress="full", show_progress_on=[self.video, self.status])
        self.generate_btn.click(
            self.run, [panel.doc_state, *self.settings_components(), hist.state], self.outputs(hist), api_name="generate", **gpu
        )
        self.reroll_btn.click(
            self.reroll, [self.current_run, self.reroll_segment, self.seed, self.randomize, hist.state], self.outputs(hist), api_name="reroll_segment", **gpu
        )
        cancelled_run = gr.State(None)
        self.cancel_btn.click(self.cancel, None, [self.status, cancelled_run], queue=False, api_name="cancel", show_progress="hidden").then(
            self.cancel_outcome, [cancelled_run], [self.status], queue=False, show_progress="hidden", api_visibility="private"
        )

        players = [self.video, self.captioned, self.masks, self.legend, self.current_run, self.reroll_segment, self.reroll_btn, self.status]

        def load_run(selected, hist_items, doc, undo):
            unchanged = [gr.skip()] * (len(self.settings_components()) + len(players) - 1)
            if selected is None:
                return [*panel.full(doc, undo, message="Click a run in the history first."), *unchanged, gr.skip()]
            run = history.find(hist_items, selected)
            if run is None:
                return [*panel.full(doc, undo, message="That run is no longer in the history."), *unchanged, gr.skip()]
            s = run.settings
            values = [s.get("negative_prompt", ""), s.get("steps"), s.get("guidance"), s.get("seed"), False, s.get("size"),
                      s.get("segment_seconds") or 0, s.get("burn_captions", True), s.get("layout", "auto")]
            msg = f"Loaded run #{run.id} into the editor (timeline and settings; seed {s.get('seed')} fixed)."
            shown = (f"Showing run #{run.id}: Re-roll makes it again with a new seed." if Path(run.video).is_file()
                     else f"Run #{run.id}'s videos were deleted from the server (runs are kept for a day); its timeline and settings are loaded.")
            return [*panel.commit(doc, run.timeline, undo, full=True, message=msg), *values, *self._show(run), shown]

        hist.load_btn.click(
            load_run, [hist.selected, hist.state, panel.doc_state, panel.undo_state],
            panel.full_outputs() + self.settings_components() + players, api_name="load_run", concurrency_limit=None,
        )
