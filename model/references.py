"""Reference images: load, check and crop them the way the model sees them.

Every check runs before any model work and names the file, so a corrupt upload, a 50 MB photo or an
animated GIF is refused with a sentence rather than a traceback.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_REFERENCE_BYTES = 20 * 1024 * 1024  # 20 MB
MAX_REFERENCE_PIXELS = 40_000_000  # 40 MP; larger is a decompression bomb for our purposes
MIN_REFERENCE_SIDE = 8


class ReferenceError(ValueError):
    """A reference image that cannot be used; the message names the image."""


def _name(src, label: str | None) -> str:
    if label:
        return label
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    return "the reference image"


def load_reference_image(src, label: str | None = None, max_bytes: int = MAX_REFERENCE_BYTES, max_pixels: int = MAX_REFERENCE_PIXELS) -> Image.Image:
    """Path / bytes / PIL image / array -> RGB PIL image, or ReferenceError saying what is wrong."""
    name = _name(src, label)
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ReferenceError(f"{name}: an image array must be HxWx3 or HxWx4, got shape {tuple(src.shape)}")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.min() >= 0 and arr.max() <= 1.0:
                arr = (arr * 255).round()
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        if isinstance(src, (bytes, bytearray)):
            data, size = bytes(src), len(src)
        else:
            path = Path(src)
            if not path.is_file():
                raise ReferenceError(f"{name}: file not found")
            size = path.stat().st_size
            data = None
        if size > max_bytes:
            raise ReferenceError(f"{name}: the file is {size / 1e6:.1f} MB; reference images may be at most {max_bytes / 1e6:.0f} MB")
        if size == 0:
            raise ReferenceError(f"{name}: the file is empty")
        try:
            with Image.open(io.BytesIO(data) if data is not None else src) as probe:
                probe.verify()  # catches truncated / corrupt files before decoding
            img = Image.open(io.BytesIO(data) if data is not None else src)
            if img.width * img.height > max_pixels:
                raise ReferenceError(f"{name}: {img.width}x{img.height} pixels is too large (at most {max_pixels / 1e6:.0f} megapixels)")
            if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
                raise ReferenceError(f"{name}: animated images ({img.n_frames} frames) are not supported; upload a still image")
            img.load()
        except ReferenceError:
            raise
        except Image.DecompressionBombError:
            raise ReferenceError(f"{name}: the image is too large to decode safely") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ReferenceError(f"{name}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    if img.width * img.height > max_pixels:
        raise ReferenceError(f"{name}: {img.width}x{img.height} pixels is too large (at most {max_pixels / 1e6:.0f} megapixels)")
    if min(img.width, img.height) < MIN_REFERENCE_SIDE:
        raise ReferenceError(f"{name}: {img.width}x{img.height} is too small (at least {MIN_REFERENCE_SIDE} pixels a side)")
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def border_colour(arr: np.ndarray) -> np.ndarray:
    """The median colour of an [h, w, C] image's outermost pixels: the background of a reference crop."""
    return np.median(np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]), axis=0)


def crop_reference(image: Image.Image, size: int) -> Image.Image:
    """What the model sees: the whole image padded to a square with its own border colour (so the
    subject is never cut), then resized to `size` x `size`."""
    arr = np.asarray(image.convert("RGB"))
    fill = tuple(int(v) for v in border_colour(arr))
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image.convert("RGB"), ((side - w) // 2, (side - h) // 2))
    return canvas.resize((size, size), Image.BICUBIC)


def crop_subject(frame: np.ndarray, mask: np.ndarray, size: int = 32, pad_frac: float = 0.15) -> np.ndarray | None:
    """Square crop around the mask's bounding box with a margin (edge-padded where it leaves the
    frame), resized to size x size. None when the mask is empty."""
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(math.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * pad_frac))) + 2
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    top, left = int(round(cy - side / 2.0)), int(round(cx - side / 2.0))
    padded = np.pad(frame, ((side, side), (side, side), (0, 0)), mode="edge")
    crop = padded[top + side:top + 2 * side, left + side:left + 2 * side]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR))


def reference_to_array(image: Image.Image, size: int) -> np.ndarray:
    """Cropped reference as float32 [3, size, size] in [-1, 1] (the VAE's input range)."""
    arr = np.asarray(crop_reference(image, size), dtype=np.float32) / 127.5 - 1.0
    return arr.transpose(2, 0, 1)


# -- where each reference token lies on its subject (model.reactid.reference_offset_bias) ------------------------
REFERENCE_FG_THRESHOLD = 0.45  # summed |colour - border colour| over RGB in [-1, 1] units (about 57 of 255) that counts as subject


def reference_foreground(array: np.ndarray) -> np.ndarray:
    """bool [s, s]: the pixels of a reference array ([3, s, s] in [-1, 1]) that differ from its border's median colour,
    kept to the connected part whose centroid is nearest the centre (a crop may catch the edge of a neighbour). References are crops
    around one subject, so what differs from the border is the subject."""
    import cv2

    img = np.asarray(array, dtype=np.float32).transpose(1, 2, 0)  # [s, s, 3]
    fg = np.abs(img - border_colour(img)).sum(-1) > REFERENCE_FG_THRESHOLD
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n > 2:  # label 0 is the background
        centre = np.array([(fg.shape[1] - 1) / 2, (fg.shape[0] - 1) / 2])
        dist = np.hypot(*(centroids[1:] - centre).T)
        keep = 1 + int(np.argmin(dist - 1e-3 * stats[1:, cv2.CC_STAT_AREA]))  # the part nearest the centre
        fg = labels == keep
    return fg


def reference_token_offsets(array: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """float32 [gh * gw, 2]: each reference token's centre (row, column), relative to the subject's centroid in units
    of its size: the distance from the centroid within which 95% of its pixels lie (for a star, about its tips' radius;
    for a disc, its radius). The video side measures a subject by the radius of a disc of its mask's area, the same
    number for the discs a start layout binds, which is where outlines are decided (docs/MODEL.md). A reference with no
    subject found is read as a subject filling the middle half of the image."""
    fg = reference_foreground(array)
    s_h, s_w = fg.shape
    gh, gw = grid
    if fg.sum() >= 4:
        ys, xs = np.nonzero(fg)
        cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
        r = max(float(np.percentile(np.hypot(ys + 0.5 - cy, xs + 0.5 - cx), 95)), 0.5)
    else:
        cy, cx, r = s_h / 2, s_w / 2, min(s_h, s_w) / 4
    ty = (np.arange(gh, dtype=np.float32) + 0.5) * s_h / gh
    tx = (np.arange(gw, dtype=np.float32) + 0.5) * s_w / gw
    yy, xx = np.meshgrid((ty - cy) / r, (tx - cx) / r, indexing="ij")
    return np.stack([yy, xx], -1).reshape(-1, 2).astype(np.float32)
