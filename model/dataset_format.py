"""The on-disk training-data format: its constants, its one writer and its one reader (docs/DATASET.md).

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

The format is a data contract between `train/` (the sprite-world writer, the trainer) and `annotate/`
(the export from the annotation store, the import back). DESIGN.md §2 lets both import `model/` and
neither import the other, so the format lives here, next to the timeline document it embeds:
`write_sample` / `DatasetWriter` are its one writer, `DatasetReader` its one reader
(`train.dataset.ReactIDDataset` adds whole-clip views in the sprite world's terms).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .timeline import Timeline, TimelineError

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
    from .video import export_mp4

    return export_mp4(frames, path, fps, crf=crf)


def read_video_frames(path: str | Path) -> np.ndarray:
    from .video import read_video

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


class DatasetWriter:
    """A dataset directory being written: samples (`write_sample`), `manifest.jsonl` and `info.json`.

    The constructor refuses to replace an existing manifest unless `overwrite`. Inside `with writer:`
    the manifest goes to `manifest.jsonl.partial` and is renamed only when the block ends without an
    error, so a set whose writing was interrupted never looks complete."""

    def __init__(self, root: str | Path, *, overwrite: bool = False, hint: str = "pass overwrite=True to replace it"):
        self.root = Path(root)
        self.manifest = self.root / MANIFEST
        if self.manifest.exists() and not overwrite:
            raise FileExistsError(f"{self.manifest} exists ({hint})")
        self._fh = None

    def write_info(self, generator: str, **fields: Any) -> dict:
        """info.json: the format's name and version, who wrote the set, and `fields` (in that order)."""
        info = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "generator": generator, **fields}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return info

    def __enter__(self) -> "DatasetWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.manifest.with_suffix(".jsonl.partial"), "w", encoding="utf-8")
        return self

    def add(self, sample_id: str, frames: np.ndarray, masks: np.ndarray, timeline: Timeline,
            references: dict[str, dict[str, list[np.ndarray]]], difficulty: dict | None = None, meta: dict | None = None,
            preview: bool = False) -> dict:
        """Write one sample (see `write_sample`) and its manifest line; returns the record."""
        if self._fh is None:
            raise RuntimeError("DatasetWriter.add outside `with writer:`")
        rec = write_sample(self.root, sample_id, frames, masks, timeline, references, difficulty, meta, preview)
        self._fh.write(json.dumps(rec) + "\n")
        return rec

    def __exit__(self, exc_type, exc, tb) -> None:
        self._fh.close()
        self._fh = None
        if exc_type is None:
            os.replace(self.manifest.with_suffix(".jsonl.partial"), self.manifest)


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


def read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"{path.name} is not a readable image: {exc}") from None


class DatasetReader:
    """A torch-style (map-style) dataset over any directory in the format above. torch is imported only
    when an item is built, so `annotate/` reads the format without it; train.dataset.ReactIDDataset is
    also a torch.utils.data.Dataset.

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
            img = read_png(self._path(rec["references"][s.id][used][0]))
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
            import torch

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


def collate(batch: list[dict]) -> dict:
    """Stack what has one shape across the batch (tensors of equal shape); keep lists otherwise
    (timelines, ids, and masks/references when subject counts differ)."""
    import torch

    out = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        if isinstance(vals[0], torch.Tensor) and len({tuple(v.shape) for v in vals}) == 1:
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out
