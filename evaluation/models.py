"""Loaders for the models behind the paper's scores, and the offline substitutes this machine can run.

Every loader returns a `Scorer`: either ready (`available=True`, with a `score(sample)` function) or not
available, with a sentence saying why (no weights given, weights folder missing, a package not installed, or a
pipeline this project does not implement). Nothing is downloaded: the paper's models are large and no hub can be
reached here, so they load only from local folders given on the command line (`--weights DIR` with one
sub-folder per model, or one flag per model).

| column   | the paper's model (OpenS2V-Eval)                  | loader here                                      |
|----------|---------------------------------------------------|--------------------------------------------------|
| Aes.     | LAION aesthetic predictor on CLIP ViT-L/14        | `load_aesthetic`: transformers CLIP + MLP head   |
| M. Smo.  | VBench motion smoothness with AMT-S interpolation | `load_amt`: not implemented (AMT code not on PyPI); offline "M. Smo.-flow" |
| FaceSim  | face-identity embedding cosine (ArcFace-style)    | `load_facesim`: ArcFace-style ONNX via onnxruntime; offline "FaceSim-dlib" |
| Gme.     | GME-Qwen2-VL text-frame similarity                | `load_gme`: transformers, GME's remote code      |
| Nexus.   | NexusScore (detector + retrieval pipeline)        | `load_nexus`: reports not available              |
| Natural. | NaturalScore (a VLM rates naturalness 1-5)        | `load_natural`: reports not available            |
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .sample import Sample


@dataclass
class Scorer:
    """One metric's model, ready or not. `column` is the paper column it belongs to; `label` is what the
    results call it (the paper's label only when it is the paper's metric); `paper` says whether it is."""

    column: str
    label: str
    paper: bool
    available: bool
    detail: str
    # score(sample) -> a raw value, None (does not apply), or {"value": ..., "notes": [...], ...}
    score: Callable[[Sample], "float | dict | None"] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"column": self.column, "label": self.label, "paper_metric": self.paper, "available": self.available, "detail": self.detail}


def unavailable(column: str, label: str, reason: str, paper: bool = True) -> Scorer:
    return Scorer(column, label, paper, False, reason)


def _folder(path, column: str, label: str, what: str) -> tuple[Path | None, Scorer | None]:
    if path is None:
        return None, unavailable(column, label, f"not available: no weights given ({what})")
    p = Path(path)
    if not p.exists():
        return None, unavailable(column, label, f"not available: weights folder {p} does not exist ({what})")
    return p, None


def _missing_package(*names: str) -> str | None:
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    return ", ".join(missing) if missing else None


def sample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """n frames spread evenly over the clip (all of them when there are fewer)."""
    F = len(frames)
    if F <= n:
        return frames
    return frames[np.linspace(0, F - 1, n).round().astype(int)]


# --------------------------------------------------------------------------------------------
# Aesthetics: LAION aesthetic predictor (CLIP ViT-L/14 image embedding -> MLP -> 1..10)
# --------------------------------------------------------------------------------------------
AES_WHAT = "a folder with clip/ (CLIP ViT-L/14 in transformers format) and the LAION aesthetic head as head.safetensors or *.pth"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _aesthetic_head(state: dict):
    """The LAION heads: the 'improved' MLP (768-1024-128-64-16-1, keys layers.{0,2,4,6,7}) or the v1 linear
    head (one Linear, any key prefix)."""
    import torch.nn as nn

    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "layers.0.weight" in state:
        dims = [state[f"layers.{i}.weight"].shape for i in (0, 2, 4, 6, 7)]
        head = nn.Sequential(
            nn.Linear(dims[0][1], dims[0][0]), nn.Dropout(0.2), nn.Linear(dims[1][1], dims[1][0]), nn.Dropout(0.2),
            nn.Linear(dims[2][1], dims[2][0]), nn.Dropout(0.1), nn.Linear(dims[3][1], dims[3][0]), nn.Linear(dims[4][1], dims[4][0]),
        )
        head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
        return head
    weights = [k for k in state if k.endswith("weight")]
    if len(weights) != 1:
        raise ValueError(f"unrecognised aesthetic head: keys {sorted(state)[:6]}")
    w = state[weights[0]]
    head = nn.Linear(w.shape[1], w.shape[0])
    head.load_state_dict({"weight": w, "bias": state[weights[0][: -len("weight")] + "bias"]})
    return head


def load_aesthetic(path, frames_per_video: int = 8) -> Scorer:
    col, label = "aesthetics", "Aes."
    p, bad = _folder(path, col, label, AES_WHAT)
    if bad:
        return bad
    heads = [p / "head.safetensors"] + sorted(p.glob("*.pth")) + sorted(p.glob("*.pt"))
    head_file = next((h for h in heads if h.is_file()), None)
    if not (p / "clip" / "config.json").is_file() or head_file is None:
        return unavailable(col, label, f"not available: {p} lacks clip/config.json or a head file ({AES_WHAT})")
    try:
        import torch
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained(str(p / "clip")).eval()
        if head_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(head_file))
        else:
            state = torch.load(str(head_file), map_location="cpu", weights_only=True)
        head = _aesthetic_head(state).eval()
    except Exception as exc:  # a broken folder is reported, not raised
        return unavailable(col, label, f"not available: could not load {p}: {exc.__class__.__name__}: {exc}")
    size = clip.config.vision_config.image_size

    def score(sample: Sample) -> float | None:
        import torch
        from PIL import Image

        batch = []
        for f in sample_frames(sample.frames, frames_per_video):
            img = Image.fromarray(f)
            s = size / min(img.size)
            img = img.resize((max(size, round(img.width * s)), max(size, round(img.height * s))), Image.BICUBIC)
            l, t = (img.width - size) // 2, (img.height - size) // 2
            x = (np.asarray(img.crop((l, t, l + size, t + size)), np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
            batch.append(x.transpose(2, 0, 1))
        with torch.no_grad():
            emb = clip.get_image_features(pixel_values=torch.from_numpy(np.stack(batch)).float())
            emb = getattr(emb, "pooler_output", emb)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            return float(head(emb).mean())

    return Scorer(col, label, True, True, f"LAION aesthetic predictor from {p} ({head_file.name})", score)


# --------------------------------------------------------------------------------------------
# GmeScore: GME-Qwen2-VL embeddings, cosine of the prompt with each frame
# --------------------------------------------------------------------------------------------
def load_gme(path, frames_per_video: int = 8) -> Scorer:
    col, label = "gme", "Gme."
    what = "a local copy of GME-Qwen2-VL (its config.json and remote code)"
    p, bad = _folder(path, col, label, what)
    if bad:
        return bad
    if not (p / "config.json").is_file():
        return unavailable(col, label, f"not available: {p} has no config.json ({what})")
    try:
        from transformers import AutoModel

        # GME ships its own modelling code (get_text_embeddings / get_image_embeddings) beside its weights.
        gme = AutoModel.from_pretrained(str(p), trust_remote_code=True).eval()
    except Exception as exc:
        return unavailable(col, label, f"not available: could not load {p}: {exc.__class__.__name__}: {exc}")

    def score(sample: Sample) -> float | None:
        import torch
        from PIL import Image

        if not sample.timeline.prompt:
            return None
        with torch.no_grad():
            t = gme.get_text_embeddings(texts=[sample.timeline.prompt])
            i = gme.get_image_embeddings(images=[Image.fromarray(f) for f in sample_frames(sample.frames, frames_per_video)])
        t = t / t.norm(dim=-1, keepdim=True)
        i = i / i.norm(dim=-1, keepdim=True)
        return float((i @ t.T).mean())

    return Scorer(col, label, True, True, f"GME from {p} (not run on this machine: no GME weights here)", score)


# --------------------------------------------------------------------------------------------
# NexusScore and NaturalScore: loaders that say what they would need
# --------------------------------------------------------------------------------------------
def _code_missing(path, column: str, label: str, what: str, missing: str) -> Scorer:
    """A scorer whose weights may be here but whose code is not part of this project: says which is missing."""
    p, bad = _folder(path, column, label, what)
    if bad:
        return bad
    return unavailable(column, label, f"not available: weights found at {p}, but {missing}")


def load_nexus(path) -> Scorer:
    return _code_missing(path, "nexus", "Nexus.", "OpenS2V-Eval's NexusScore models (an open-vocabulary detector and a retrieval embedder)",
                         "NexusScore's detect-then-retrieve pipeline is not implemented in this project")


def load_natural(path) -> Scorer:
    return _code_missing(path, "natural", "Natural.", "the VLM that rates naturalness 1-5 and OpenS2V-Eval's rating prompt",
                         "OpenS2V-Eval's NaturalScore prompt and answer parsing are not implemented in this project")


def load_amt(path) -> Scorer:
    return _code_missing(path, "motion_smoothness", "M. Smo.", "VBench's AMT-S frame-interpolation checkpoint and the AMT code",
                         "the AMT network code (not on PyPI) is not part of this project; M. Smo.-flow is reported instead")


# --------------------------------------------------------------------------------------------
# FaceSim: ArcFace-style embedding model (ONNX), faces found and aligned with dlib
# --------------------------------------------------------------------------------------------
# Five-point template of ArcFace's 112x112 crops (eyes, nose, mouth corners).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def load_facesim(path, frames_per_video: int = 16) -> Scorer:
    col, label = "facesim", "FaceSim"
    what = "an ArcFace-style face-recognition model as one .onnx file (112x112 aligned RGB in, embedding out)"
    p, bad = _folder(path, col, label, what)
    if bad:
        return bad
    onnx = p if p.is_file() else next(iter(sorted(p.glob("*.onnx"))), None)
    if onnx is None:
        return unavailable(col, label, f"not available: no .onnx file in {p} ({what})")
    missing = _missing_package("onnxruntime", "dlib", "face_recognition_models", "cv2")
    if missing:
        return unavailable(col, label, f"not available: package(s) {missing} not installed (pip install onnxruntime; the others are in requirements-dev.txt)")
    try:
        import onnxruntime as ort

        from .facesim import DlibFaces

        sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        faces = DlibFaces()
    except Exception as exc:
        return unavailable(col, label, f"not available: could not load {onnx}: {exc.__class__.__name__}: {exc}")
    inp = sess.get_inputs()[0].name

    def embed(rgb: np.ndarray) -> list[np.ndarray]:
        import cv2

        out = []
        for pts in faces.five_points(rgb):
            m, _ = cv2.estimateAffinePartial2D(pts.astype(np.float32), ARCFACE_TEMPLATE)
            crop = cv2.warpAffine(rgb, m, (112, 112)).astype(np.float32)
            x = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None]
            out.append(np.asarray(sess.run(None, {inp: x})[0][0], np.float64))
        return out

    from .facesim import face_similarity

    def score(sample: Sample) -> dict:
        return face_similarity(sample, embed, frames_per_video)

    return Scorer(col, label, True, True, f"ArcFace-style ONNX {onnx.name}, faces found and aligned by dlib's 5-point landmarks", score)


def load_paper_models(weights: dict[str, str | None]) -> dict[str, Scorer]:
    """Every paper model, keyed by column. `weights` maps a column to a path (or None)."""
    return {
        "aesthetics": load_aesthetic(weights.get("aesthetics")),
        "motion_smoothness": load_amt(weights.get("motion_smoothness")),
        "facesim": load_facesim(weights.get("facesim")),
        "gme": load_gme(weights.get("gme")),
        "nexus": load_nexus(weights.get("nexus")),
        "natural": load_natural(weights.get("natural")),
    }


# Sub-folder of --weights DIR for each column.
WEIGHT_FOLDERS = {"aesthetics": "aesthetic", "motion_smoothness": "amt", "facesim": "facesim", "gme": "gme", "nexus": "nexus", "natural": "natural"}


def weight_paths(weights_dir=None, **overrides) -> dict[str, str | None]:
    """Column -> path: an explicit override, else <weights_dir>/<folder> when it exists, else None."""
    out = {}
    for col, folder in WEIGHT_FOLDERS.items():
        val = overrides.get(col)
        if val is None and weights_dir is not None and (Path(weights_dir) / folder).exists():
            val = str(Path(weights_dir) / folder)
        out[col] = val
    return out


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


__all__ = [
    "ARCFACE_TEMPLATE", "Scorer", "WEIGHT_FOLDERS", "load_aesthetic", "load_amt", "load_facesim", "load_gme", "load_natural",
    "load_nexus", "load_paper_models", "sample_frames", "unavailable", "weight_paths",
]
