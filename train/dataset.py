"""Training data in the dataset format: the sprite-world writer, the reader with whole-clip views, and
`python -m train.dataset make|check` (docs/DATASET.md).

The format itself (its constants, its one writer `write_sample` / `DatasetWriter` and its one reader)
lives in model/dataset_format.py, so that `annotate/` writes and reads it without importing `train/`
(DESIGN.md §2). Real annotated data uses the same format, so training never knows whether it reads
sprites or footage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from model.dataset_format import DatasetReader, DatasetWriter, read_png
from model.timeline import Timeline


def sample_seed(seed: int, index: int) -> int:
    """Per-sample seed: independent streams, and sample i is the same whatever n is."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_sprite_dataset(out_dir: str | Path, n: int, seed: int = 0, *, difficulty: bool = True, extractor=None, weights=None,
                         preview: bool = False, progress: bool = True, overwrite: bool = False, **world_kwargs) -> Path:
    """Generate n sprite clips into out_dir in the dataset format; returns the manifest path.
    world_kwargs go to sprites.WorldConfig (height, width, duration, fps, max_subjects, ...)."""
    from .difficulty import DifficultyWeights, clip_difficulty, get_extractor
    from .sprites import WorldConfig, generate_clip

    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    writer = DatasetWriter(out_dir, overwrite=overwrite, hint="pass overwrite=True / --overwrite to replace it")
    root = writer.root
    world = WorldConfig.from_kwargs(**world_kwargs)
    root.mkdir(parents=True, exist_ok=True)
    ex = get_extractor(extractor) if difficulty else None
    w = DifficultyWeights.coerce(weights)
    writer.write_info("train.sprites", seed=int(seed), n=int(n), world=world.to_dict(),
                      difficulty={"extractor": ex.name, "lambda_sub": w.sub, "lambda_app": w.app, "lambda_sam": w.sam} if ex else None)
    it = range(n)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"sprites -> {root}", unit="clip")
        except ImportError:  # pragma: no cover - tqdm is a dependency, but progress must not need it
            bar = None
    with writer:  # a half-written dataset never looks complete
        for i in it:
            s = sample_seed(seed, i)
            clip = generate_clip(s, world)
            diff = clip_difficulty(clip, ex, w).to_dict() if ex else None
            refs = {sub.id: {"intra": clip.references_intra[k], "inter": clip.references_inter[k]} for k, sub in enumerate(clip.timeline.subjects)}
            meta = {"source": "sprites", "seed": s,
                    "identities": {sub.id: clip.identities[k].to_dict() for k, sub in enumerate(clip.timeline.subjects)},
                    "actions": {sub.id: clip.actions[k] for k, sub in enumerate(clip.timeline.subjects)},
                    "background": clip.background_name}
            writer.add(f"sprite-{i:06d}", clip.frames, clip.masks, clip.timeline, refs, diff, meta, preview)
            if bar is not None:
                bar.update(1)
            elif progress and (i + 1) % max(1, n // 10) == 0:
                print(f"{i + 1}/{n} clips", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    return writer.manifest


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
class ReactIDDataset(DatasetReader, Dataset):
    """The format's reader (model.dataset_format.DatasetReader: items, broken samples skipped by id) plus
    whole clips with the field names of sprites.SpriteClip."""

    # ---- whole clips (for cache building and evaluation) ----------------------------------
    def clip(self, index: int) -> "DatasetClip":
        """Sample `index` with every reference image, shaped like sprites.SpriteClip. Raises
        ValueError for an unreadable sample (clips() skips those)."""
        rec, tl = self.records[index], self.timelines[index]
        a = self._load(rec, tl, "intra")
        refs = {kind: [[read_png(self._path(p)) for p in (rec["references"][s.id].get(kind) or [])] for s in tl.subjects] for kind in ("intra", "inter")}
        meta = rec.get("meta") or {}
        from .sprites import Identity, caption_to_action

        idents = meta.get("identities")
        identities = [Identity.from_dict(idents[s.id]) for s in tl.subjects] if isinstance(idents, dict) and all(s.id in idents for s in tl.subjects) else None
        acts = meta.get("actions")
        if not (isinstance(acts, dict) and all(s.id in acts for s in tl.subjects)):
            acts = {s.id: [caption_to_action(x.text) for x in s.actions] for s in tl.subjects}
        return DatasetClip(rec["id"], a["frames"], a["masks"], tl, refs["intra"], refs["inter"], [acts[s.id] for s in tl.subjects],
                           identities, meta.get("seed"), rec.get("difficulty"))

    def clips(self) -> list["DatasetClip"]:
        """Every readable sample as a DatasetClip; unreadable ones are reported and skipped."""
        out = []
        for i in range(len(self.records)):
            if i in self._bad:
                continue
            try:
                out.append(self.clip(i))
            except ValueError as exc:
                self._bad.add(i)
                self._skip(self.records[i]["id"], str(exc))
        return out


@dataclass
class DatasetClip:
    """One sample in memory, with the field names of sprites.SpriteClip so the same code (difficulty,
    evaluation, cache building) takes either. references_inter[s] may be empty for real data."""

    id: str
    frames: np.ndarray
    masks: np.ndarray
    timeline: Timeline
    references_intra: list[list[np.ndarray]]
    references_inter: list[list[np.ndarray]]
    actions: list[list[str | None]]
    identities: list | None = None
    seed: int | None = None
    difficulty: dict | None = field(default=None)

    @property
    def fps(self) -> int:
        return self.timeline.fps

    @property
    def num_subjects(self) -> int:
        return len(self.timeline.subjects)


SpriteDataset = ReactIDDataset  # the sprite world writes the same format


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.dataset", description="Make or check a ReactID dataset directory.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="generate a sprite-world dataset")
    mk.add_argument("--out", required=True, help="output directory")
    mk.add_argument("--n", type=int, required=True, help="number of clips")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--height", type=int, default=64)
    mk.add_argument("--width", type=int, default=64)
    mk.add_argument("--duration", type=float, default=4.0, help="seconds (frames = nearest 4k+1 at --fps)")
    mk.add_argument("--fps", type=int, default=16)
    mk.add_argument("--max-subjects", type=int, default=3)
    mk.add_argument("--preview", action="store_true", help="also write an H.264 preview.mp4 per sample")
    mk.add_argument("--no-difficulty", action="store_true", help="skip the difficulty cues")
    mk.add_argument("--extractor", default=None, help="appearance feature for D_app: 'colorhog' (default) or a local DINOv2 directory")
    mk.add_argument("--overwrite", action="store_true")
    ck = sub.add_parser("check", help="open a dataset, load every sample, report skipped ones")
    ck.add_argument("root")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.cmd == "make":
        path = write_sprite_dataset(args.out, args.n, args.seed, difficulty=not args.no_difficulty, extractor=args.extractor,
                                    preview=args.preview, overwrite=args.overwrite, height=args.height, width=args.width,
                                    duration=args.duration, fps=args.fps, max_subjects=args.max_subjects)
        print(f"wrote {args.n} samples: {path}")
        return 0
    ds = ReactIDDataset(args.root, deep_check=True)
    print(json.dumps({"root": str(ds.root), "usable": len(ds), "skipped": [{"id": i, "reason": r} for i, r in ds.skipped]}, indent=2))
    return 0 if not ds.skipped else 1


if __name__ == "__main__":
    raise SystemExit(main())
