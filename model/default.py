"""The embedded default model: a small ReactID trained by this project on the sprite world
(`python -m train --config sprite --export assets/default_model`, docs/TRAINING.md). Same classes and
pipeline as the Wan-scale model; it runs on a laptop CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import torch

from .pipeline import ReactIDPipeline

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"


def load_default_pipeline(device: str | torch.device = "cpu", directory: str | Path | None = None) -> ReactIDPipeline:
    directory = Path(directory) if directory else DEFAULT_MODEL_DIR
    if not (directory / "reactid_pipeline.json").is_file():
        raise FileNotFoundError(f"the embedded default model is missing at {directory}; rebuild it with "
                                "`python -m train --config sprite --export assets/default_model`")
    return ReactIDPipeline.from_pretrained(directory, device=device)
