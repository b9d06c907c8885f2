"""The embedded default model: a small ReactID trained by this project on the sprite world (the learnability
ladder's level 2k; its chain of commands is in docs/TRAINING.md). Same classes and pipeline as the Wan-scale
model; it runs on a laptop CPU in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .pipeline import ReactIDPipeline

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"


def load_default_pipeline(device: str | torch.device = "cpu", directory: str | Path | None = None) -> ReactIDPipeline:
    directory = Path(directory) if directory else DEFAULT_MODEL_DIR
    if not (directory / "reactid_pipeline.json").is_file():
        raise FileNotFoundError(f"the embedded default model is missing at {directory}; restore it with "
                                "`git checkout -- assets/default_model` or rebuild it (docs/TRAINING.md, the ladder's level 2k)")
    return ReactIDPipeline.from_pretrained(directory, device=device)


def sprite_world(directory: str | Path | None = None) -> dict | None:
    """The sprite world an exported model was trained on (`sprite_world.json`, written by `python -m train --export`:
    height, width and the world's keys for train.sprites.WorldConfig), or None for exports made before it existed."""
    path = (Path(directory) if directory else DEFAULT_MODEL_DIR) / "sprite_world.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
