"""What a training config will train on, before it runs: the dataset's size and a few samples, and the
curriculum over its difficulty scores. Used by the studio's training tab; no Gradio here.

A sprite config generates its clips from seeds (data.seed + i), so its samples are rendered on the spot. A
dataset directory is read with train.dataset.ReactIDDataset (corrupt samples are skipped and counted). The
curriculum preview scores at most `max_clips` clips (the run itself scores all of them in its cache); the
result says how many it used. A run directory's own curriculum.json, written by the trainer, is the exact one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TrainConfig


class DatasetError(ValueError):
    """The config's dataset cannot be read; the message names the key or the folder."""


@dataclass
class DatasetSummary:
    source: str  # 'sprites' | 'dir'
    description: str
    num_clips: int
    size_mb: float | None = None
    skipped: list[str] = field(default_factory=list)
    samples: list = field(default_factory=list)  # sprites.SpriteClip / dataset.DatasetClip


def find_datasets(roots: list[str | Path], depth: int = 2) -> list[Path]:
    """Dataset directories (with a manifest.jsonl) under `roots`, up to `depth` levels down."""
    from model.dataset_format import MANIFEST

    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            level = len(Path(dirpath).relative_to(root).parts)
            if MANIFEST in filenames:
                found.append(Path(dirpath))
                dirnames[:] = []
            elif level >= depth:
                dirnames[:] = []
            else:
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("samples", "__pycache__", "node_modules")]
    return sorted(set(found))


def _dir_size_mb(path: Path) -> float:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for f in filenames:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return round(total / 2**20, 1)


def dataset_summary(cfg: TrainConfig, n_samples: int = 4) -> DatasetSummary:
    d = cfg.data
    if d.source == "sprites":
        from .sprites import WorldConfig, generate_clip

        world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **d.world)
        samples = [generate_clip(d.seed + i, world) for i in range(min(n_samples, d.num_clips))]
        return DatasetSummary("sprites", f"sprite world, generated from seeds {d.seed}…{d.seed + d.num_clips - 1} "
                              f"({cfg.width}×{cfg.height}, {world.duration:g} s at {world.fps} fps)", d.num_clips, None, [], samples)
    from model.dataset_format import MANIFEST

    from .dataset import ReactIDDataset

    path = Path(d.path or "")
    if not d.path or not path.is_dir():
        raise DatasetError(f"data.path: dataset directory not found: {d.path!r}")
    if not (path / MANIFEST).is_file():
        raise DatasetError(f"data.path: {path} has no {MANIFEST}, so it is not a dataset (docs/DATASET.md)")
    try:
        ds = ReactIDDataset(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"data.path: {path}: {exc}") from None
    samples, unreadable = [], []
    for i in range(min(n_samples, len(ds))):
        try:
            samples.append(ds.clip(i))
        except (OSError, ValueError) as exc:
            unreadable.append(f"sample {i}: {exc}")
    return DatasetSummary("dir", f"dataset directory {path}", len(ds), _dir_size_mb(path), list(ds.skipped_ids) + unreadable, samples)


def frame_strip(frames: np.ndarray, n: int = 4, scale: int = 2) -> np.ndarray:
    """n frames spread over a clip, side by side, enlarged (nearest) for small clips: uint8 [h, n*w, 3]."""
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    strip = np.concatenate([frames[i] for i in idx], axis=1)
    if scale > 1:
        strip = strip.repeat(scale, 0).repeat(scale, 1)
    return strip


def timeline_lines(timeline) -> list[str]:
    out = []
    for s in timeline.subjects:
        acts = "; ".join(f"{a.start:.2f}–{a.end:.2f} s {a.text}" for a in s.actions) or "no actions"
        out.append(f"{s.id} {s.name} ({s.kind}): {acts}")
    return out


def curriculum_description(cfg: TrainConfig, run_dir: str | Path | None = None, max_clips: int = 48) -> tuple[dict, str]:
    """(schedule_description, where it came from). The run's curriculum.json when it exists, else difficulty
    scores of the dataset's first `max_clips` clips (a dataset's manifest scores when it has them)."""
    from .curriculum import Curriculum, CurriculumConfig

    if run_dir is not None and (Path(run_dir) / "curriculum.json").is_file():
        try:
            return json.loads((Path(run_dir) / "curriculum.json").read_text()), f"the run's own schedule ({Path(run_dir) / 'curriculum.json'})"
        except ValueError:
            pass
    c = cfg.curriculum
    lam = tuple(c.lambdas)
    intra, inter = [], []
    source = ""
    if cfg.data.source == "dir":
        from model.dataset_format import MANIFEST

        path = Path(cfg.data.path or "")
        if not (path / MANIFEST).is_file():
            raise DatasetError(f"data.path: dataset directory not found or without {MANIFEST}: {cfg.data.path!r}")
        records = [json.loads(line) for line in (path / MANIFEST).read_text().splitlines() if line.strip()]
        scored = [r for r in records if (r.get("difficulty") or {}).get("overall_intra") is not None]
        if scored:
            for r in scored:
                intra.append(float(r["difficulty"]["overall_intra"]))
                oi = r["difficulty"].get("overall_inter")
                inter.append(float(oi) if oi is not None else intra[-1] + lam[2])
            source = f"difficulty scores of all {len(scored)} scored samples in the manifest"
    if not intra:
        from .difficulty import clip_difficulty

        summary_clips = _first_clips(cfg, max_clips)
        for clip in summary_clips:
            diff = clip_difficulty(clip, weights=lam, stride=4)
            intra.append(diff.overall_intra)
            inter.append(diff.overall_inter if diff.overall_inter is not None else diff.overall_intra + lam[2])
        total = cfg.data.num_clips if cfg.data.source == "sprites" else None
        source = f"a preview over the first {len(intra)}" + (f" of {total}" if total else "") + " clips (the run scores every clip)"
    cc = CurriculumConfig(total_steps=cfg.optim.steps, phase_ratios=tuple(c.phase_ratios), inter_ratios=tuple(c.inter_ratios), mode=c.mode,
                          flat_inter_ratio=c.flat_inter_ratio, batch_size=cfg.optim.batch_size, seed=cfg.seed)
    return Curriculum(intra, inter, cc).schedule_description(), source


def _first_clips(cfg: TrainConfig, n: int) -> list:
    if cfg.data.source == "sprites":
        from .sprites import WorldConfig, generate_clip

        world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **cfg.data.world)
        return [generate_clip(cfg.data.seed + i, world) for i in range(min(n, cfg.data.num_clips))]
    from .dataset import ReactIDDataset

    ds = ReactIDDataset(cfg.data.path)
    clips = []
    for i in range(min(n, len(ds))):
        try:
            clips.append(ds.clip(i))
        except (OSError, ValueError):
            continue
    if not clips:
        raise DatasetError(f"data.path: no readable sample in {cfg.data.path}")
    return clips


def observed_inter_share(records: list[dict]) -> dict[int, float]:
    """Phase (1-based) -> mean share of inter-clip references over the logged steps of that phase."""
    by: dict[int, list[float]] = {}
    for r in records:
        if "phase" in r and "inter_frac" in r:
            by.setdefault(int(r["phase"]), []).append(float(r["inter_frac"]))
    return {p: float(np.mean(v)) for p, v in sorted(by.items())}


__all__ = ["DatasetError", "DatasetSummary", "curriculum_description", "dataset_summary", "find_datasets", "frame_strip",
           "observed_inter_share", "timeline_lines"]
