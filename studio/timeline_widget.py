"""The drag-to-edit timeline: vis-timeline inside `gr.HTML` (no build step).

The library (assets/vis-timeline, unmodified, with its licence) and our script and style
(assets/studio) are served as static files and loaded by `head=`; `js_on_load` is
assets/studio/timeline_widget.js. Data flow:

- value (a JSON string `{"timeline": doc, "colors": [...]}`): Python -> JS replaces the items;
  JS -> Python after every edit, followed by the `input` event.
- `problems` (a custom prop, a list of {subject_id, action_index, message}): Python -> JS only, so
  validating an edit never rewrites the value the user is still editing.
- custom events `undo` / `redo` (Ctrl+Z / Ctrl+Shift+Z inside the widget).
- a DOM event `rt-item-select` (bubbling, detail {subject, start, end, text}) when a block is
  clicked: the label review tab seeks its player with it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .editor import widget_value

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIS_DIR = ASSETS / "vis-timeline"
STUDIO_ASSETS = ASSETS / "studio"
VIS_JS = VIS_DIR / "vis-timeline-graph2d.min.js"
VIS_CSS = VIS_DIR / "vis-timeline-graph2d.min.css"
WIDGET_JS = STUDIO_ASSETS / "timeline_widget.js"
WIDGET_CSS = STUDIO_ASSETS / "studio.css"


def static_dirs() -> list[Path]:
    """Folders served with gr.set_static_paths (only shipped, read-only files)."""
    return [VIS_DIR, STUDIO_ASSETS]


def asset_url(path: Path) -> str:
    """URL of a static file, relative to the page (works behind a path prefix), cache-busted by mtime."""
    return f"gradio_api/file={path.resolve()}?v={int(path.stat().st_mtime)}"


def head_html() -> str:
    return (
        f'<link rel="stylesheet" href="{asset_url(VIS_CSS)}">'
        f'<link rel="stylesheet" href="{asset_url(WIDGET_CSS)}">'
        f'<script src="{asset_url(VIS_JS)}"></script>'
    )


def timeline_widget(doc: dict, problems: list[dict] | None = None, elem_id: str = "rt-timeline", **kwargs) -> gr.HTML:
    return gr.HTML(
        value=widget_value(doc),
        html_template='<div class="rt-root" data-ready="0"></div>',
        js_on_load=WIDGET_JS.read_text(encoding="utf-8"),
        head=head_html(),
        apply_default_css=False,
        elem_id=elem_id,
        problems=problems or [],
        **kwargs,
    )
