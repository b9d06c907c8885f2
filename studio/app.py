"""Builds the studio's Gradio Blocks and the settings it must be launched with.

    engine = Engine.default()
    studio = build_studio(engine)
    studio.demo.launch(**studio.launch_kwargs(server_port=7860))
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr

from model.planner import PlannerConfig
from model.timeline import example_timeline

from . import editor, examples, fields
from .engine import Engine
from .generate_tab import GeneratePanel
from .history import HistoryPanel
from .plan_panel import PlanPanel
from .refstore import ReferenceStore
from .subjects import SubjectsPanel
from .timeline_panel import TimelinePanel
from .timeline_widget import static_dirs

MAX_UPLOAD = "20mb"  # references are refused above this before they reach Python (model.references allows 20 MB)
QUEUE_SIZE = 32
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "reactid-studio"

CSS = """
#rt-header p { margin: 0; }
.rt-subject { padding: 6px !important; gap: 6px !important; }
.rt-subject .rt-subject-title p { margin: 0; }
.rt-subject .form { gap: 4px; }
#rt-status { min-height: 1.5em; }
#rt-preview { gap: 8px; }
.rt-ref-gallery .grid-wrap { padding: 4px !important; overflow: hidden; }
.rt-ref-gallery .grid-container { grid-template-columns: repeat(4, 60px) !important; grid-auto-rows: 60px !important; gap: 4px !important; }
.rt-ref-gallery .gallery-item, .rt-ref-gallery .thumbnail-item { width: 60px !important; height: 60px !important; }
.rt-ref-gallery .thumbnail-item img { width: 100%; height: 100%; object-fit: contain; }
.rt-ref-upload .prompt { font-size: 11px; }
.rt-ref-upload .prompt .or, .rt-ref-upload .prompt span:last-child { display: none; }
footer { display: none !important; }
"""


@dataclass
class Studio:
    demo: gr.Blocks
    engine: Engine
    workdir: Path
    panels: dict = field(default_factory=dict)

    def launch_kwargs(self, **overrides) -> dict:
        """What `demo.launch` needs: bounded uploads, only the folders the app serves."""
        kwargs = dict(
            max_file_size=MAX_UPLOAD,
            allowed_paths=[str(self.workdir)],
            show_error=True,
            css=CSS,
            theme=gr.themes.Soft(),
        )
        kwargs.update(overrides)
        return kwargs


def initial_document(engine_fps: int) -> dict:
    scenes = examples.list_scenes()
    doc = examples.load_scene(scenes[0][1]) if scenes else example_timeline().to_dict()
    if int(doc.get("fps", engine_fps)) != engine_fps:
        doc["fps"] = engine_fps
    return doc


def build_studio(
    engine: Engine,
    *,
    workdir: str | Path | None = None,
    planner_config: PlannerConfig | None = None,
    extra_tabs: list[tuple[str, Callable[[], None]]] = (),
    title: str = "ReactID Studio",
) -> Studio:
    """The whole app. `extra_tabs` = [(label, build_fn)] lets other parts of the project add tabs."""
    workdir = Path(workdir or DEFAULT_WORKDIR).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([str(p) for p in static_dirs()] + [str(examples.EXAMPLES_DIR)])
    limits = engine.limits()
    store = ReferenceStore(workdir, engine, extra_roots=[examples.EXAMPLES_DIR])
    doc = initial_document(limits.fps)
    scenes = examples.list_scenes()

    # The Generate tab fits one 1440x900 screen, like a video editor: subjects on the left; on the right the
    # scene and the planner beside the preview player (Generate / Cancel / Re-roll and the progress under
    # it), the timeline below them; settings folded; results and history further down.
    with gr.Blocks(title=title, fill_width=True) as demo:
        gr.Markdown(f"**{title}**: personalised video where every subject follows its own timeline. Model: **{engine.describe()}**", elem_id="rt-header")
        if not engine.available:
            gr.Markdown(f"**Generation is disabled.** {engine.unavailable}", elem_id="rt-status-banner")
        generate = GeneratePanel(engine, limits, store, workdir)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=330, elem_id="rt-subjects-column"):
                        subjects = SubjectsPanel(store, limits, examples.example_references(), doc)
                    with gr.Column(scale=5):
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=3):
                                with gr.Row(equal_height=True):
                                    scene_dd = fields.Dropdown([(t, s) for t, s in scenes], value=scenes[0][1] if scenes else None, label="Example scene", scale=3, elem_id="rt-scene")
                                    scene_btn = gr.Button("Load example", scale=0, min_width=120, elem_id="rt-load-scene")
                                prompt = gr.Textbox(label="Scene prompt (applies to the whole video)", value=doc.get("prompt", ""), lines=1, max_lines=3, elem_id="rt-prompt")
                                planner = PlanPanel(planner_config or PlannerConfig.from_env(), subjects.max_subjects)
                            with gr.Column(scale=2, min_width=320, elem_id="rt-preview"):
                                generate.preview()
                        panel = TimelinePanel(doc, limits, workdir, lambda: store.allowed_roots)
                generate.settings()
                planner.settings()
                generate.results()
                hist = HistoryPanel()
            for label, build in extra_tabs:
                with gr.Tab(label):
                    build()

        # Views that follow the document when it is replaced (undo, import, plan, example, history).
        panel.register_view([prompt], lambda d: [gr.update(value=d.get("prompt", ""))])
        panel.register_view(subjects.view_components(), subjects.view_values)

        panel.wire()
        subjects.wire(panel)
        planner.wire(panel)
        hist.wire()
        generate.wire(panel, hist)

        def set_prompt(text, doc, undo):
            new = editor.set_prompt(doc, text)
            if new == doc:  # also the echo of a prompt Python just showed (undo, example, plan, history)
                return panel.unchanged()
            return panel.commit(doc, new, undo, tag="prompt", push=False)

        # `.change`, not `.input`: Gradio 6.31's Textbox fires `input` on keypress, which deleting
        # (select all + Backspace, Delete, cut) never sends, so the document would keep the old prompt.
        prompt.change(set_prompt, [prompt, panel.doc_state, panel.undo_state], panel.outputs(), trigger_mode="always_last",
                      api_name="set_prompt", concurrency_limit=None, show_progress="hidden")

        def load_scene(slug, doc, undo):
            try:
                new = examples.load_scene(slug)
            except (ValueError, OSError) as exc:
                return panel.full(doc, undo, message=editor.sentence(exc))
            new["fps"] = limits.fps
            title_ = dict((s, t) for t, s in scenes).get(slug, slug)
            return panel.commit(doc, new, undo, full=True, message=f"Loaded the example scene **{title_}**.")

        scene_btn.click(load_scene, [scene_dd, panel.doc_state, panel.undo_state], panel.full_outputs(), api_name="load_example", concurrency_limit=None)

    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return Studio(demo, engine, workdir, {"timeline": panel, "subjects": subjects, "generate": generate, "history": hist, "planner": planner})
