"""Session history: every finished generation with its timeline and settings, shown as a gallery; a run
can be loaded back into the editor."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import gradio as gr

HISTORY_LIMIT = 24


@dataclass
class Run:
    id: int
    created: float
    timeline: dict  # the document that was generated
    settings: dict  # negative_prompt, steps, guidance, seed, size, segment_seconds, burn_captions, layout
    video: str
    thumb: str
    masks: str | None = None
    captioned: str | None = None
    seconds: float = 0.0  # wall time of the generation
    note: str = ""  # e.g. "re-rolled segment 2 of run #1"
    segments: list = field(default_factory=list)  # [start_frame, end_frame] per segment
    seeds: list = field(default_factory=list)  # the seed of each segment
    raw: str | None = None  # frames and masks kept for re-rolling one segment (multi-segment runs)

    def caption(self) -> str:
        s = self.settings
        extra = f" · {self.note}" if self.note else ""
        return f"#{self.id} · seed {s.get('seed')} · {s.get('steps')} steps · {self.seconds:.1f}s{extra}"

    def describe(self) -> str:
        s = self.settings
        subjects = ", ".join(x["name"] for x in self.timeline.get("subjects", []))
        return (
            f"**Run #{self.id}** ({time.strftime('%H:%M:%S', time.localtime(self.created))}) — {subjects}  \n"
            f"prompt: *{self.timeline.get('prompt', '')}*  \n"
            f"seed {s.get('seed')}, {s.get('steps')} steps, guidance {s.get('guidance')}, size {s.get('size')}, "
            f"{self.timeline.get('duration')}s{', segments of %ss' % s['segment_seconds'] if s.get('segment_seconds') else ''}"
            f"{', start layout ' + s['layout'] if s.get('layout', 'auto') != 'auto' else ''}"
        )


def add_run(history: list[dict] | None, run: Run) -> list[dict]:
    items = list(history or [])
    items.append(asdict(run))
    return items[-HISTORY_LIMIT:]


def next_id(history: list[dict] | None) -> int:
    return (max((r["id"] for r in history), default=0) + 1) if history else 1


def gallery_items(history: list[dict] | None) -> list[tuple[str, str]]:
    return [(r["thumb"], Run(**r).caption()) for r in reversed(history or [])]


def find(history: list[dict] | None, run_id: int | None) -> Run | None:
    """The run with this id, if the history still holds it."""
    for r in history or []:
        if r["id"] == run_id:
            return Run(**copy.deepcopy(r))
    return None


def run_at(history: list[dict] | None, gallery_index: int) -> Run:
    """The run shown at `gallery_index` (the gallery lists the newest first)."""
    items = history or []
    if not 0 <= gallery_index < len(items):
        raise IndexError("no such run")
    return Run(**copy.deepcopy(items[len(items) - 1 - gallery_index]))


class HistoryPanel:
    """The gallery, the selected run's details and 'Load into editor'."""

    def __init__(self):
        self.state = gr.State([])
        self.selected = gr.State(None)  # the id of the clicked run (a gallery index would shift with each new run)
        with gr.Accordion("Session history", open=True):
            self.gallery = gr.Gallery(
                label="Past runs (click one, then 'Load into editor')", columns=8, height=200, allow_preview=False,
                interactive=False, elem_id="rt-history", fit_columns=False, object_fit="contain",
            )
            with gr.Row():
                self.details = gr.Markdown("No runs yet.", elem_id="rt-history-details")
                self.load_btn = gr.Button("Load into editor", interactive=False, scale=0, elem_id="rt-history-load")

    def wire(self) -> None:
        def select(history, evt: gr.SelectData):
            try:
                run = run_at(history, evt.index)
            except IndexError:
                return None, "No such run.", gr.update(interactive=False)
            return run.id, run.describe(), gr.update(interactive=True)

        self.gallery.select(select, inputs=[self.state], outputs=[self.selected, self.details, self.load_btn], queue=False)
