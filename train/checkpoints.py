"""The checkpoints of a run directory: list them, check them, turn one into something that generates.

A run keeps `checkpoint.pt` (the latest, rewritten every optim.checkpoint_every steps and on stop) and
`checkpoints/step-NNNNNNN.pt` (one per "save now", train/distributed.py keep_checkpoint). A corrupt file is
reported with its name and left where it is: nothing here deletes or rewrites a checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and says why."""


def read_checkpoint(path: str | Path, full: bool = False) -> dict:
    """The checkpoint's contents (full=True) or only its step and model config (memory-mapped, cheap even for
    Wan-size files). Raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=not full)
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, pickle garbage...
        raise CheckpointError(f"{path.name} is not a readable checkpoint ({exc.__class__.__name__}: {str(exc)[:200]}). "
                              "It was left as it is; use another checkpoint of the run.") from None
    if not isinstance(state, dict) or not {"step", "model", "model_config"} <= set(state):
        raise CheckpointError(f"{path.name} is not a training checkpoint of this project (expected step, model and model_config)")
    if full:
        return state
    return {"step": int(state["step"]), "model_config": dict(state["model_config"]), "has_optimizer": "optimizer" in state}


def list_checkpoints(run_dir: str | Path) -> list[dict]:
    """Every checkpoint of a run, newest step first: name, path, step (None when unreadable), size, time, error."""
    run_dir = Path(run_dir)
    files = [run_dir / "checkpoint.pt"] + sorted((run_dir / "checkpoints").glob("step-*.pt"))
    out = []
    for p in files:
        if not p.is_file():
            continue
        st = p.stat()
        row = {"name": "checkpoint.pt (latest)" if p.name == "checkpoint.pt" else f"checkpoints/{p.name}", "path": str(p),
               "size_mb": round(st.st_size / 2**20, 2), "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
               "step": None, "error": None}
        try:
            row["step"] = read_checkpoint(p)["step"]
        except CheckpointError as exc:
            row["error"] = str(exc)
        out.append(row)
    out.sort(key=lambda r: (r["step"] is not None, r["step"] or 0, r["name"] != "checkpoint.pt (latest)"), reverse=True)
    return out


def run_config(run_dir: str | Path):
    """The validated TrainConfig a run ran with (its config.json), with the stage outputs it wrote itself."""
    from .config import ConfigError, load_config

    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no config.json (not a run directory written by python -m train)")
    try:
        cfg = load_config(json.loads(path.read_text()))
    except (ConfigError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if not cfg.text.checkpoint and cfg.text.pretrain_steps and (run_dir / "text_encoder" / "config.json").is_file():
        cfg.text.checkpoint = str(run_dir / "text_encoder")  # the run pretrained its own encoder (train/__main__.py)
    return cfg


def load_model(checkpoint: str | Path):
    """The transformer of a checkpoint (eval mode, float32)."""
    from model.transformer import ReactIDTransformer

    state = read_checkpoint(checkpoint, full=True)
    config = {k: v for k, v in state["model_config"].items() if not k.startswith("_")}
    try:
        model = ReactIDTransformer.from_config(config)
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(checkpoint).name}: its weights do not build a model ({str(exc)[:300]})") from None
    return model.float().eval(), int(state["step"])


def export_checkpoint(run_dir: str | Path, checkpoint: str | Path, out_dir: str | Path) -> dict:
    """Make a checkpoint usable for generation. A run trained from scratch (the sprite model) becomes a
    self-contained pipeline directory (`python app.py --model DIR --device cpu`, ReactIDPipeline.from_pretrained);
    a run on Wan weights (model.base) becomes a ReactID weights folder for `--reactid-checkpoint`.
    Returns {"path", "kind", "step", "use"}."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = run_config(run_dir)
    model, step = load_model(checkpoint)
    if cfg.model.base:
        from model.weights import save_reactid_weights

        save_reactid_weights(model, out_dir)
        return {"path": str(out_dir), "kind": "reactid_checkpoint", "step": step,
                "use": f"python app.py --model {cfg.model.base} --reactid-checkpoint {out_dir}"}
    from model.framevae import load_vae

    vae_dir = Path(cfg.vae.checkpoint) if cfg.vae.checkpoint else run_dir / "vae"
    if not (vae_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: the run's VAE ({vae_dir}) is missing, so its checkpoints cannot be decoded to video")
    from .__main__ import export_pipeline

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    export_pipeline(cfg, model, load_vae(vae_dir), tmp, text_len=cfg.text.max_length)
    (tmp / "checkpoint_source.json").write_text(json.dumps({"run_dir": str(run_dir), "checkpoint": str(checkpoint), "step": step}, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # a half-written export is never left under the final name
    return {"path": str(out_dir), "kind": "pipeline", "step": step, "use": f"python app.py --model {out_dir} --device cpu"}


__all__ = ["CheckpointError", "export_checkpoint", "list_checkpoints", "load_model", "read_checkpoint", "run_config"]
