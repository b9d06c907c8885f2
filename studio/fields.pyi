"""Bounded inputs (Slider, Number, Dropdown) that refuse bad values without a traceback in the log.

Gradio checks a value against `minimum`/`maximum` or the choices in `preprocess` and refuses it with
`gr.Error`, which also prints a full traceback on the server: for a caller who sent steps=0 or an
unknown size through the API, that is noise in the log, not a fault of the server. These subclasses
refuse the same values with the same answer, prefixed by the field's label, and print nothing.
`is_template` makes Gradio render them with the parent component's frontend.

Gradio writes typing stubs for every component class it sees next to its module (`fields.pyi`); the
stubs are committed, so defining these classes leaves the working tree clean.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr


def _refuse_quietly(label: str | None, preprocess: Callable[[Any], Any], payload: Any) -> Any:
    try:
        return preprocess(payload)
    except gr.Error as exc:
        raise gr.Error(f"{label}: {exc.message}" if label else str(exc.message), print_exception=False) from None

from gradio.events import Dependency

class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _refuse_quietly(self.label, super().preprocess, payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _refuse_quietly(self.label, super().preprocess, payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class Dropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _refuse_quietly(self.label, super().preprocess, payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component