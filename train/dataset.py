"""The on-disk training-data format, the sprite-world writer and the reader (docs/DATASET.md).

A dataset is a directory:

    info.json                    format name/version and how it was made (optional for readers)
    manifest.jsonl               one JSON record per sample (below)
    samples/<id>/frames.npz      "frames": uint8 [F, H, W, 3], lossless (a tiny model learns from exact pixels)
    samples/<id>/masks.npz       "masks": bool [S, F, H, W], subject order = timeline subject order
    samples/<id>/refs/<sid>_<intra|inter>_<k>.png
    samples/<id>/preview.mp4     optional H.264 preview (lossy; read only when "frames" is absent)

A record: {"id", "frames", "video", "masks", "timeline", "references", "fps", "num_frames", "height",
"width", "difficulty", "meta"}; paths are relative to the dataset directory; "timeline" is the
timeline document itself or a path to its JSON file; "references" maps subject id ->
{"intra": [png paths], "inter": [png paths]}; "difficulty" is train.difficulty's cues or null.

Real annotated data uses the same format (write_sample), so training never knows whether it reads
sprites or footage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from model.timeline import Timeline, TimelineError

FORMAT_NAME = "reactid-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.jsonl"
INFO = "info.json"
REQUIRED_KEYS = ("id", "masks", "timeline", "references")

log = logging.getLogger("reactid.dataset")


# --------------------------------------------------------------------------------------------
# Video files (preview / real footage)
# --------------------------------------------------------------------------------------------
def write_mp4(frames: np.ndarray, path: str | Path, fps: int, crf: int = 18) -> Path:
    """uint8 [F, H, W, 3] -> H.264 yuv420p MP4 (the project's one writer, model/video.py)."""
    from model.video import export_mp4

    return export_mp4(frames, path, fps, crf=crf)


def read_video_frames(path: str | Path) -> np.ndarray:
    from model.video import read_video

    return read_video(path)[0]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def write_sample(root: str | Path, sample_id: str, frames: np.ndarray, masks: np.ndarray, timeline: Timeline,
                 references: dict[str, dict[str, list[np.ndarray]]], difficulty: dict | None = None, meta: dict | None = None,
                 preview: bool = False) -> dict:
    """Write one sample's files under root/samples/<id>/ and return its manifest record (the caller
    appends it to manifest.jsonl). references: subject id -> {"intra": [uint8 images], "inter": [...]}."""
    root = Path(root)
    frames = np.asarray(frames)
    masks = np.asarray(masks)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"sample {sample_id!r}: frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    if masks.dtype != bool or masks.ndim != 4 or masks.shape[1:] != frames.shape[:3]:
        raise ValueError(f"sample {sample_id!r}: masks must be bool [S, F, H, W] matching frames {frames.shape[:3]}, got {masks.dtype} {masks.shape}")
    if masks.shape[0] != len(timeline.subjects):
        raise ValueError(f"sample {sample_id!r}: {masks.shape[0]} masks for {len(timeline.subjects)} timeline subjects")
    d = root / "samples" / sample_id
    (d / "refs").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / "frames.npz", frames=frames)
    np.savez_compressed(d / "masks.npz", masks=masks)
    refs_out: dict[str, dict[str, list[str]]] = {}
    tl = timeline.copy()
    for subj in tl.subjects:
        entry = references.get(subj.id, {})
        refs_out[subj.id] = {}
        for kind in ("intra", "inter"):
            paths = []
            for k, img in enumerate(entry.get(kind, [])):
                p = d / "refs" / f"{subj.id}_{kind}_{k}.png"
                Image.fromarray(np.asarray(img, dtype=np.uint8)).save(p)
                paths.append(_rel(p, root))
            refs_out[subj.id][kind] = paths
        subj.references = refs_out[subj.id]["intra"][:4]  # the document's own field: the easy references
    video = None
    if preview:
        video = _rel(write_mp4(frames, d / "preview.mp4", timeline.fps), root)
    return {
        "id": sample_id,
        "frames": _rel(d / "frames.npz", root),
        "video": video,
        "masks": _rel(d / "masks.npz", root),
        "timeline": tl.to_dict(),
        "references": refs_out,
        "fps": int(timeline.fps),
        "num_frames": int(frames.shape[0]),
        "height": int(frames.shape[1]),
        "width": int(frames.shape[2]),
        "difficulty": difficulty,
        "meta": meta or {},
    }


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
    root = Path(out_dir)
    manifest = root / MANIFEST
    if manifest.exists() and not overwrite:
        raise FileExistsError(f"{manifest} exists (pass overwrite=True / --overwrite to replace it)")
    world = WorldConfig.from_kwargs(**world_kwargs)
    root.mkdir(parents=True, exist_ok=True)
    ex = get_extractor(extractor) if difficulty else None
    w = DifficultyWeights.coerce(weights)
    info = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "generator": "train.sprites", "seed": int(seed), "n": int(n),
            "world": world.to_dict(),
            "difficulty": {"extractor": ex.name, "lambda_sub": w.sub, "lambda_app": w.app, "lambda_sam": w.sam} if ex else None}
    (root / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    it = range(n)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"sprites -> {root}", unit="clip")
        except ImportError:  # pragma: no cover - tqdm is a dependency, but progress must not need it
            bar = None
    tmp = manifest.with_suffix(".jsonl.partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in it:
            s = sample_seed(seed, i)
            clip = generate_clip(s, world)
            diff = clip_difficulty(clip, ex, w).to_dict() if ex else None
            refs = {sub.id: {"intra": clip.references_intra[k], "inter": clip.references_inter[k]} for k, sub in enumerate(clip.timeline.subjects)}
            meta = {"source": "sprites", "seed": s,
                    "identities": {sub.id: clip.identities[k].to_dict() for k, sub in enumerate(clip.timeline.subjects)},
                    "actions": {sub.id: clip.actions[k] for k, sub in enumerate(clip.timeline.subjects)},
                    "background": clip.background_name}
            rec = write_sample(root, f"sprite-{i:06d}", clip.frames, clip.masks, clip.timeline, refs, diff, meta, preview)
            fh.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.update(1)
            elif progress and (i + 1) % max(1, n // 10) == 0:
                print(f"{i + 1}/{n} clips", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    os.replace(tmp, manifest)  # a half-written dataset never looks complete
    return manifest


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _load_npz(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if key not in z.files:
                raise ValueError(f"{path.name} has no array {key!r} (has {', '.join(z.files) or 'none'})")
            return z[key]
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        if isinstance(exc, ValueError) and "has no array" in str(exc):
            raise
        raise ValueError(f"{path.name} is not a readable .npz ({type(exc).__name__})") from None


def _load_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"{path.name} is not a readable image: {exc}") from None


class ReactIDDataset(Dataset):
    """A torch-style Dataset over any directory in the format above.

    Samples that are broken are skipped, never fatal: a warning names the sample id and why, and
    `skipped` lists (id, reason). Cheap problems (bad JSON line, missing keys or files, invalid
    timeline) are found when the dataset opens; unreadable arrays when a sample is first loaded
    (then the next good sample is returned in its place). `deep_check=True` loads every sample at
    open time instead, so indices never get redirected.

    dataset[i] uses the intra-clip references (or `reference=` given at construction);
    dataset[(i, use_inter)] picks per item, which is what Curriculum.batch_sampler yields.
    Items: {"id", "video": float32 [3, F, H, W] in [-1, 1], "masks": bool [S, F, H, W],
    "references": float32 [S, 3, r, r] in [-1, 1] (each subject's first reference of the kind used),
    "reference_kind", "d_sam", "timeline": Timeline, "difficulty": dict | None, "num_subjects"}."""

    def __init__(self, root: str | Path, reference: str = "intra", ref_size: int | None = None, deep_check: bool = False, max_frames: int | None = None):
        if reference not in ("intra", "inter"):
            raise ValueError(f"reference must be 'intra' or 'inter', got {reference!r}")
        self.root = Path(root)
        self.reference = reference
        self.ref_size = ref_size
        self.max_frames = max_frames
        self.skipped: list[tuple[str, str]] = []
        self.records: list[dict] = []
        self.timelines: list[Timeline] = []
        self._bad: set[int] = set()
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: no manifest (is {self.root} a dataset directory?)")
        self.info = {}
        if (self.root / INFO).is_file():
            try:
                self.info = json.loads((self.root / INFO).read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                log.warning("%s is not valid JSON; ignoring it", self.root / INFO)
        with open(manifest, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    self._skip(f"line {lineno}", f"not valid JSON ({exc.msg})")
                    continue
                sid = str(rec.get("id", f"line {lineno}")) if isinstance(rec, dict) else f"line {lineno}"
                problem, tl = self._check_record(rec)
                if problem:
                    self._skip(sid, problem)
                    continue
                self.records.append(rec)
                self.timelines.append(tl)
        if deep_check:
            keep_r, keep_t = [], []
            for rec, tl in zip(self.records, self.timelines):
                try:
                    self._load(rec, tl, "intra")
                except ValueError as exc:
                    self._skip(rec["id"], str(exc))
                    continue
                keep_r.append(rec)
                keep_t.append(tl)
            self.records, self.timelines = keep_r, keep_t

    # ---- problems -------------------------------------------------------------------------
    def _skip(self, sample_id: str, reason: str) -> None:
        self.skipped.append((sample_id, reason))
        log.warning("dataset %s: skipping sample %s: %s", self.root, sample_id, reason)

    @property
    def skipped_ids(self) -> list[str]:
        return [s for s, _ in self.skipped]

    def _path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.root / q

    def _check_record(self, rec: Any) -> tuple[str | None, Timeline | None]:
        if not isinstance(rec, dict):
            return "record is not a JSON object", None
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if not rec.get("frames") and not rec.get("video"):
            missing.append("frames or video")
        if missing:
            return f"missing key(s) {', '.join(missing)}", None
        for key in ("frames", "video", "masks"):
            if rec.get(key) and not self._path(rec[key]).is_file():
                if key == "video" and rec.get("frames"):
                    continue  # the preview is optional when lossless frames exist
                return f"{key} file {rec[key]} not found", None
        try:
            t = rec["timeline"]
            tl = Timeline.load(self._path(t)) if isinstance(t, str) else Timeline.from_dict(t)
        except TimelineError as exc:
            return str(exc), None  # "invalid timeline: <every problem>"
        refs = rec["references"]
        if not isinstance(refs, dict):
            return "references must map subject id -> {intra, inter}", None
        for subj in tl.subjects:
            entry = refs.get(subj.id)
            if not isinstance(entry, dict) or not entry.get("intra"):
                return f"subject {subj.id!r} has no intra reference", None
            for kind in ("intra", "inter"):
                for p in entry.get(kind, []) or []:
                    if not self._path(p).is_file():
                        return f"subject {subj.id!r} {kind} reference {p} not found", None
        return None, tl

    # ---- loading --------------------------------------------------------------------------
    def _load(self, rec: dict, tl: Timeline, kind: str) -> dict:
        if rec.get("frames"):
            frames = _load_npz(self._path(rec["frames"]), "frames")
        else:
            try:
                frames = read_video_frames(self._path(rec["video"]))
            except Exception as exc:  # av raises its own error types
                raise ValueError(f"video {rec['video']} cannot be decoded: {exc}") from None
        masks = _load_npz(self._path(rec["masks"]), "masks")
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
        if masks.ndim != 4 or masks.shape[1:] != frames.shape[:3] or masks.shape[0] != len(tl.subjects):
            raise ValueError(f"masks {masks.shape} do not match frames {frames.shape} and {len(tl.subjects)} subjects")
        masks = masks.astype(bool)
        if self.max_frames:
            frames, masks = frames[: self.max_frames], masks[:, : self.max_frames]
        refs, used = [], kind
        if kind == "inter" and not all(rec["references"][s.id].get("inter") for s in tl.subjects):
            used = "intra"  # no inter-clip reference for some subject: fall back, and say so via d_sam
        for s in tl.subjects:
            img = _load_png(self._path(rec["references"][s.id][used][0]))
            if self.ref_size and img.shape[:2] != (self.ref_size, self.ref_size):
                img = np.asarray(Image.fromarray(img).resize((self.ref_size, self.ref_size), Image.BILINEAR))
            refs.append(img)
        if len({r.shape for r in refs}) > 1:
            raise ValueError(f"reference images differ in size ({sorted({r.shape for r in refs})}); pass ref_size=")
        return {"frames": frames, "masks": masks, "refs": np.stack(refs), "kind": used}

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def load_arrays(self, index: int, kind: str | None = None) -> dict:
        """Raw numpy arrays of one sample (uint8 frames [F, H, W, 3], bool masks, uint8 refs [S, r, r, 3])."""
        return self._load(self.records[index], self.timelines[index], kind or self.reference)

    def __getitem__(self, index):
        kind = self.reference
        if isinstance(index, tuple):
            index, use_inter = index
            kind = "inter" if use_inter else "intra"
        n = len(self.records)
        if n == 0:
            raise IndexError("the dataset has no usable sample")
        index = int(index) % n if index >= 0 else int(index) + n
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self._bad:
                continue
            rec = self.records[i]
            try:
                a = self._load(rec, self.timelines[i], kind)
            except ValueError as exc:
                self._bad.add(i)
                self._skip(rec["id"], str(exc))
                continue
            video = torch.from_numpy(a["frames"]).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
            refs = torch.from_numpy(a["refs"]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            return {
                "id": rec["id"],
                "index": i,
                "video": video,
                "masks": torch.from_numpy(a["masks"]),
                "references": refs,
                "reference_kind": a["kind"],
                "d_sam": 1.0 if a["kind"] == "inter" else 0.0,
                "timeline": self.timelines[i],
                "difficulty": rec.get("difficulty"),
                "num_subjects": len(self.timelines[i].subjects),
            }
        raise RuntimeError(f"dataset {self.root}: every sample failed to load (see skipped)")


    # ---- whole clips (for cache building and evaluation) ----------------------------------
    def clip(self, index: int) -> "DatasetClip":
        """Sample `index` with every reference image, shaped like sprites.SpriteClip. Raises
        ValueError for an unreadable sample (clips() skips those)."""
        rec, tl = self.records[index], self.timelines[index]
        a = self._load(rec, tl, "intra")
        refs = {kind: [[_load_png(self._path(p)) for p in (rec["references"][s.id].get(kind) or [])] for s in tl.subjects] for kind in ("intra", "inter")}
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


def collate(batch: list[dict]) -> dict:
    """Stack what has one shape across the batch (tensors of equal shape); keep lists otherwise
    (timelines, ids, and masks/references when subject counts differ)."""
    out = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        if isinstance(vals[0], torch.Tensor) and len({tuple(v.shape) for v in vals}) == 1:
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out


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
