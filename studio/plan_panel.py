"""'Plan from prompt': a free description -> a per-subject timeline (model/planner.py), shown in the editor."""

from __future__ import annotations

import os

import gradio as gr

from model.planner import PlanError, PlannerConfig, describe_plan, plan

from . import editor
from .timeline_panel import TimelinePanel


def settings_editable() -> bool:
    """The endpoint settings are offered in the UI only where a user may point the server at a URL of
    their choice: not on a Space and not when the operator locked them (REACTID_LOCK_PLANNER_SETTINGS=1)."""
    return not os.environ.get("SPACE_ID") and os.environ.get("REACTID_LOCK_PLANNER_SETTINGS", "") not in ("1", "true", "yes")


class PlanPanel:
    def __init__(self, base_config: PlannerConfig, max_subjects: int):
        self.base_config = base_config
        self.max_subjects = max_subjects
        self.editable = settings_editable()
        with gr.Row(equal_height=True):
            self.text = gr.Textbox(
                label="Describe the action (plan from prompt)", lines=1, max_lines=3, scale=5, elem_id="rt-plan-text",
                placeholder="the circle moves right, then jumps while the square moves up",
            )
            self.button = gr.Button("Plan from prompt", scale=0, min_width=140, elem_id="rt-plan")

    def settings(self) -> None:
        """The planner's endpoint settings (folded; placed apart from the prompt row). `wire()` needs them."""
        base_config = self.base_config
        with gr.Accordion(f"Planner: {base_config.describe()}", open=False, visible=self.editable, elem_id="rt-plan-settings"):
            gr.Markdown(
                "An OpenAI-compatible chat endpoint plans better than the offline rules. Leave empty to use "
                "REACTID_LLM_BASE_URL / REACTID_LLM_MODEL / REACTID_LLM_API_KEY (or the offline planner)."
            )
            with gr.Row():
                self.base_url = gr.Textbox(label="Base URL", value=base_config.base_url or "", placeholder="http://localhost:8000/v1", scale=3)
                self.model = gr.Textbox(label="Model", value=base_config.model or "", scale=2)
                self.api_key = gr.Textbox(label="API key", value="", type="password", placeholder="(from the environment)" if base_config.api_key else "", scale=2)

    def config_for(self, base_url: str, model: str, api_key: str) -> PlannerConfig:
        cfg = PlannerConfig(**vars(self.base_config))
        if self.editable:
            if (base_url or "").strip():
                cfg.base_url = base_url.strip()
            if (model or "").strip():
                cfg.model = model.strip()
            if (api_key or "").strip():
                cfg.api_key = api_key.strip()
        return cfg

    def wire(self, panel: TimelinePanel) -> None:
        def run(text, base_url, model, api_key, doc, undo):
            cfg = self.config_for(base_url, model, api_key)
            try:
                result = plan(
                    text, editor.subjects_of(doc), float(doc["duration"]), int(doc.get("fps", 16)), cfg,
                    max_subjects=self.max_subjects, scene_prompt=doc.get("prompt") or None,
                )
            except PlanError as exc:
                return panel.full(doc, undo, message=f"Could not plan from the prompt: {exc}")
            new = result.timeline.to_dict()
            source = {"llm": "the chat endpoint", "local": "the local language model", "rules": "the offline rule planner"}[result.backend]
            lines = [f"Planned by {source}:", "```", describe_plan(result.timeline), "```"]
            lines += [f"- {m}" for m in result.messages]
            return panel.commit(doc, new, undo, full=True, message="\n".join(lines))

        inputs = [self.text, self.base_url, self.model, self.api_key, panel.doc_state, panel.undo_state]
        for trigger in (self.button.click, self.text.submit):
            trigger(run, inputs, panel.full_outputs(), api_name="plan_from_prompt" if trigger == self.button.click else "plan_from_prompt_submit",
                    concurrency_limit=4, show_progress="minimal")
