"""Sample difficulty: the three cues of the paper's curriculum (§3.2, eqs. 1-2).

- D_sub (eq. 1): 1 - (N H W)^-1 * sum of the subject's mask over the clip. Small subjects are hard.
- D_app (eq. 2): 1 - mean over the N frames where the subject is visible of
  cos(F(I_ref), F(P_i)), P_i the subject-region crop of frame i. Unlike-looking references are hard.
- D_sam: 0 for an intra-clip reference (cut from this clip), 1 for an inter-clip one.
- D_overall = l_sub * D_sub + l_app * D_app + l_sam * D_sam, (l_sub, l_app, l_sam) = (0.5, 1, 1)
  by default (the paper's values).

F is pluggable. The paper uses DINOv2; no DINOv2 weights can be downloaded here, so the default is
"ColorHOG", a hand-crafted feature (an HSV colour histogram plus a small histogram of gradient
orientations) that is honest about what it is. `DinoV2Extractor.from_pretrained(path)` loads real
DINOv2 weights from a local directory when one is given.

Multi-subject samples: each subject gets its own D_sub and D_app (from its own mask, reference and
crops); a sample's cue is the mean over its subjects, so D_overall is also the mean of the
per-subject overall scores. A subject never visible gets D_app = 1 (nothing looks like it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from model.references import crop_subject

FEATURE_SIZE = 32


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DifficultyWeights:
    sub: float = 0.5
    app: float = 1.0
    sam: float = 1.0

    def validate(self) -> "DifficultyWeights":
        for key in ("sub", "app", "sam"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"lambda_{key}: must be a finite number >= 0, got {v!r}")
        return self

    @classmethod
    def coerce(cls, w) -> "DifficultyWeights":
        if w is None:
            return cls()
        if isinstance(w, cls):
            return w.validate()
        if isinstance(w, dict):
            return cls(**{k.removeprefix("lambda_"): v for k, v in w.items()}).validate()
        sub, app, sam = w
        return cls(sub, app, sam).validate()

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.sub, self.app, self.sam)


# --------------------------------------------------------------------------------------------
# The cues
# --------------------------------------------------------------------------------------------
def d_sub(masks: np.ndarray) -> float | np.ndarray:
    """Eq. 1. masks bool [N, H, W] -> float; [S, N, H, W] -> per-subject array [S]."""
    m = np.asarray(masks)
    if m.ndim == 3:
        return float(1.0 - m.astype(np.float64).mean())
    if m.ndim == 4:
        return 1.0 - m.reshape(m.shape[0], -1).astype(np.float64).mean(1)
    raise ValueError(f"masks must be [N, H, W] or [S, N, H, W], got shape {m.shape}")


def d_sam(kind: str) -> float:
    """Intra-clip reference: 0 (easy); inter-clip reference: 1 (hard)."""
    if kind == "intra":
        return 0.0
    if kind == "inter":
        return 1.0
    raise ValueError(f"sampling kind must be 'intra' or 'inter', got {kind!r}")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of a [D] or [N, D] against b [M, D] -> [M] (or [N, M])."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return an @ bn.T


def d_app_from_features(ref_feature: np.ndarray, crop_features: np.ndarray) -> float:
    """Eq. 2 given features: 1 - mean_i cos(F(I_ref), F(P_i)); 1 when there is no crop."""
    crop_features = np.asarray(crop_features)
    if crop_features.size == 0:
        return 1.0
    sim = cosine_similarity(np.asarray(ref_feature).reshape(-1), crop_features.reshape(len(crop_features), -1)).mean()
    return float(max(0.0, 1.0 - sim))  # clamp float round-off below 0


def d_overall(d_sub_: float, d_app_: float, d_sam_: float, weights=None) -> float:
    w = DifficultyWeights.coerce(weights)
    return float(w.sub * d_sub_ + w.app * d_app_ + w.sam * d_sam_)


# --------------------------------------------------------------------------------------------
# Subject-region crops P_i (crop_subject, in model/references.py, is also how the sprite world and the
# annotation export cut intra-clip references)
# --------------------------------------------------------------------------------------------
def subject_crops(frames: np.ndarray, masks: np.ndarray, size: int = FEATURE_SIZE, stride: int = 1) -> np.ndarray:
    """Crops of one subject from every `stride`-th frame where it is visible: uint8 [N, size, size, 3]."""
    out = [crop_subject(frames[f], masks[f], size) for f in range(0, len(frames), stride) if masks[f].any()]
    return np.stack(out) if out else np.zeros((0, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Feature extractors F
# --------------------------------------------------------------------------------------------
def _as_batch(images) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    return [np.asarray(im) for im in images]


class ColorHOG:
    """Hand-crafted appearance feature standing in for DINOv2 offline.

    Colour: a histogram over HSV (12 hues x 2 brightness levels for saturated pixels, 4 grey levels
    for the rest), square-rooted so cosine behaves like the Hellinger affinity. Shape/texture: 9
    unsigned gradient orientations in a 2 x 2 grid of cells, magnitude-weighted. The two halves are
    L2-normalised and weighted equally. Images are resized to 32 x 32 first."""

    name = "ColorHOG"

    def __init__(self, size: int = FEATURE_SIZE, hue_bins: int = 12, orient_bins: int = 9, cells: int = 2):
        self.size, self.hue_bins, self.orient_bins, self.cells = size, hue_bins, orient_bins, cells

    @property
    def dim(self) -> int:
        return self.hue_bins * 2 + 4 + self.orient_bins * self.cells * self.cells

    def _one(self, img: np.ndarray) -> np.ndarray:
        from model.colour import rgb_to_hsv  # one HSV convention across the project

        if img.shape[0] != self.size or img.shape[1] != self.size:
            img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((self.size, self.size), Image.BILINEAR))
        h, s, v = rgb_to_hsv(img)
        sat = s >= 0.25
        hb = np.minimum((h / 360.0 * self.hue_bins).astype(int), self.hue_bins - 1)
        vb2 = (v >= 0.5).astype(int)
        colour = np.bincount((hb * 2 + vb2)[sat], minlength=self.hue_bins * 2).astype(np.float64)
        grey = np.bincount(np.minimum((v[~sat] * 4).astype(int), 3), minlength=4).astype(np.float64)
        col = np.sqrt(np.concatenate([colour, grey]) / max(1, h.size))

        g = img.astype(np.float64).mean(-1)
        gy, gx = np.gradient(g)
        mag = np.hypot(gx, gy)
        ori = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * self.orient_bins).astype(int), self.orient_bins - 1)
        c = self.size // self.cells
        hog = []
        for i in range(self.cells):
            for j in range(self.cells):
                sl = (slice(i * c, (i + 1) * c), slice(j * c, (j + 1) * c))
                hog.append(np.bincount(ori[sl].ravel(), weights=mag[sl].ravel(), minlength=self.orient_bins))
        hog = np.concatenate(hog)
        col /= max(np.linalg.norm(col), 1e-12)
        hog /= max(np.linalg.norm(hog), 1e-12)
        return np.concatenate([col, hog]) / math.sqrt(2.0)

    def __call__(self, images) -> np.ndarray:
        batch = _as_batch(images)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(im) for im in batch]).astype(np.float32)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DinoV2Extractor:
    """DINOv2 features (the paper's F) from a transformers model: the pooled CLS embedding.

    Weights only ever come from a local directory (`from_pretrained(path)`); tests build a tiny
    random `Dinov2Config` model in code."""

    def __init__(self, model, image_size: int | None = None, name: str = "DINOv2", batch_size: int = 32, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.device = device
        cfg = getattr(model, "config", None)
        self.image_size = int(image_size or getattr(cfg, "image_size", 224))
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", **kwargs) -> "DinoV2Extractor":
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"DINOv2 weights: {path} is not a local directory (nothing is downloaded)")
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        return cls(model, name=f"DINOv2:{path.name}", device=device, **kwargs)

    def _pixels(self, batch: list[np.ndarray]):
        import torch

        arr = np.stack([np.asarray(Image.fromarray(im.astype(np.uint8)).resize((self.image_size, self.image_size), Image.BICUBIC)) for im in batch])
        x = torch.from_numpy(arr).float().div(255.0).permute(0, 3, 1, 2)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def __call__(self, images) -> np.ndarray:
        import torch

        batch = _as_batch(images)
        feats = []
        with torch.no_grad():
            for i in range(0, len(batch), self.batch_size):
                out = self.model(pixel_values=self._pixels(batch[i:i + self.batch_size]))
                pooled = getattr(out, "pooler_output", None)
                if pooled is None:
                    pooled = out.last_hidden_state[:, 0]
                feats.append(pooled.float().cpu().numpy())
        hidden = getattr(getattr(self.model, "config", None), "hidden_size", 0)
        return np.concatenate(feats) if feats else np.zeros((0, hidden), dtype=np.float32)


class _CallableExtractor:
    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name

    def __call__(self, images) -> np.ndarray:
        return np.asarray(self.fn(_as_batch(images)))


def get_extractor(spec=None):
    """None / "colorhog" -> ColorHOG; a local directory -> DINOv2 from it; an extractor object or a
    callable(list of uint8 images) -> [N, D] is used as is."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "colorhog"):
        return ColorHOG()
    if isinstance(spec, (str, Path)):
        return DinoV2Extractor.from_pretrained(spec)
    if hasattr(spec, "name") and callable(spec):
        return spec
    if callable(spec):
        return _CallableExtractor(spec, getattr(spec, "__name__", "custom"))
    raise TypeError(f"extractor: expected None, 'colorhog', a local DINOv2 directory or a callable, got {type(spec).__name__}")


# --------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------
def d_app(reference: np.ndarray, crops: np.ndarray, extractor=None) -> float:
    """Eq. 2 for one reference image against the subject-region crops P_1..P_N."""
    ex = get_extractor(extractor)
    if len(crops) == 0:
        return 1.0
    feats = ex([np.asarray(reference)] + list(crops))
    return d_app_from_features(feats[0], feats[1:])


@dataclass
class SampleDifficulty:
    d_sub: float
    d_app_intra: float
    d_app_inter: float | None
    overall_intra: float
    overall_inter: float | None
    per_subject: list[dict]
    extractor: str
    weights: dict

    def overall(self, kind: str) -> float | None:
        return self.overall_intra if kind == "intra" else self.overall_inter

    def to_dict(self) -> dict:
        return asdict(self)


def sample_difficulty(frames: np.ndarray, masks: np.ndarray, references_intra: Sequence, references_inter: Sequence | None = None,
                      extractor=None, weights=None, stride: int = 1) -> SampleDifficulty:
    """All cues of one sample. masks bool [S, F, H, W]; references_*: per subject an image or a list
    of images (D_app is averaged over a subject's references). The sample's cue is the mean over its
    subjects. `stride` uses every k-th frame for D_app (N counts the frames used)."""
    w = DifficultyWeights.coerce(weights)
    ex = get_extractor(extractor)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 4:
        raise ValueError(f"masks must be [S, F, H, W], got {masks.shape}")
    S = masks.shape[0]
    if len(references_intra) != S or (references_inter is not None and len(references_inter) != S):
        raise ValueError(f"references: need one entry per subject ({S})")
    subs = d_sub(masks)
    per = []
    for s in range(S):
        crops = subject_crops(frames, masks[s], stride=stride)
        crop_feats = ex(list(crops)) if len(crops) else np.zeros((0, 1))

        def app(refs):
            refs = [refs] if isinstance(refs, np.ndarray) and refs.ndim == 3 else list(refs)
            if not refs:
                return None
            rf = ex(refs)
            return float(np.mean([d_app_from_features(r, crop_feats) for r in rf]))

        a_in = app(references_intra[s])
        a_out = app(references_inter[s]) if references_inter is not None else None
        per.append({
            "d_sub": float(subs[s]),
            "d_app_intra": a_in,
            "d_app_inter": a_out,
            "overall_intra": d_overall(subs[s], a_in, 0.0, w) if a_in is not None else None,
            "overall_inter": d_overall(subs[s], a_out, 1.0, w) if a_out is not None else None,
        })

    def mean(key):
        vals = [p[key] for p in per]
        return None if any(v is None for v in vals) else float(np.mean(vals))

    return SampleDifficulty(
        d_sub=mean("d_sub"), d_app_intra=mean("d_app_intra"), d_app_inter=mean("d_app_inter"),
        overall_intra=mean("overall_intra"), overall_inter=mean("overall_inter"), per_subject=per,
        extractor=getattr(ex, "name", "custom"), weights={"lambda_sub": w.sub, "lambda_app": w.app, "lambda_sam": w.sam},
    )


def clip_difficulty(clip, extractor=None, weights=None, stride: int = 1) -> SampleDifficulty:
    """sample_difficulty for a sprites.SpriteClip."""
    return sample_difficulty(clip.frames, clip.masks, clip.references_intra, clip.references_inter, extractor, weights, stride)


__all__ = [
    "ColorHOG", "DifficultyWeights", "DinoV2Extractor", "SampleDifficulty", "clip_difficulty", "cosine_similarity", "crop_subject",
    "d_app", "d_app_from_features", "d_overall", "d_sam", "d_sub", "get_extractor", "sample_difficulty", "subject_crops",
]
