"""ReactID weights saved apart from the base Wan weights: `reactid.safetensors` + `reactid_config.json`.

A ReactID checkpoint holds only the modules ReactID adds (reference branch, injections, mask heads,
timeline projections), so it is small and is applied on top of any copy of the base weights. Loading
checks that the checkpoint was made for the same base shape and ReactID options, and says what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .transformer import REACTID_CONFIG_KEYS, ReactIDTransformer

WEIGHTS_NAME = "reactid.safetensors"
CONFIG_NAME = "reactid_config.json"
_SHAPE_KEYS = ("num_attention_heads", "attention_head_dim", "num_layers", "in_channels", "out_channels", "text_dim", "ffn_dim", "patch_size", "freq_dim")


class CheckpointMismatch(ValueError):
    """A checkpoint made for another model configuration; the message lists what differs."""


def save_reactid_weights(model: ReactIDTransformer, directory: str | Path, include_base: bool = False) -> Path:
    """Write ReactID's own weights (and, with include_base, the whole transformer) to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if include_base else model.reactid_state_dict()
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / WEIGHTS_NAME))
    meta = {"reactid": model.reactid_config(), "base": {k: _jsonable(model.config[k]) for k in _SHAPE_KEYS}, "includes_base": include_base}
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_reactid_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_NAME} (not a ReactID checkpoint)")
    return json.loads(path.read_text())


def load_reactid_weights(model: ReactIDTransformer, directory: str | Path) -> ReactIDTransformer:
    """Load a checkpoint written by `save_reactid_weights` into `model`, refusing a mismatched one."""
    directory = Path(directory)
    meta = read_reactid_config(directory)
    diffs = []
    for k in _SHAPE_KEYS:
        want, have = meta["base"].get(k), _jsonable(model.config[k])
        if want != have:
            diffs.append(f"{k}: checkpoint {want}, model {have}")
    for k in REACTID_CONFIG_KEYS:
        if k in meta["reactid"] and meta["reactid"][k] != model.config[k]:
            diffs.append(f"{k}: checkpoint {meta['reactid'][k]!r}, model {model.config[k]!r}")
    if diffs:
        raise CheckpointMismatch(f"{directory}: checkpoint does not match the model config — " + "; ".join(diffs))
    state = load_file(str(directory / WEIGHTS_NAME))
    own = model.state_dict()
    shape_diffs = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    unknown = [k for k in state if k not in own]
    if shape_diffs or unknown:
        raise CheckpointMismatch(f"{directory}: " + "; ".join(shape_diffs[:5] + [f"unknown key {k}" for k in unknown[:5]]))
    missing = [k for k in own if model.is_reactid_param(k) and k not in state]
    if missing:
        raise CheckpointMismatch(f"{directory}: checkpoint lacks ReactID weights {missing[:5]}")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
    return model


def build_reactid_from_checkpoint(base, directory: str | Path) -> ReactIDTransformer:
    """Base Wan transformer (module or path) + ReactID checkpoint -> ReactIDTransformer with the
    checkpoint's options."""
    meta = read_reactid_config(directory)
    model = ReactIDTransformer.from_wan(base, **meta["reactid"])
    return load_reactid_weights(model, directory)


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v
