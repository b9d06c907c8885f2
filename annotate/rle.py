"""Masks as compact COCO RLE (the format pycocotools, COCO, YouTube-VIS and SAM all use).

An RLE is `{"size": [height, width], "counts": "<compressed string>"}`: runs of 0s and 1s in
column-major order, delta- and LEB128-like-coded into printable ASCII. A 64x64 sprite mask is about
20 bytes, a 480p person mask a few hundred, where the boolean array would be 4 KB and 300 KB.

pycocotools does the encoding and decoding (C code). Its decoder does not check that the runs add up
to height x width, and writes past its buffer when they add up to more, so every RLE that comes from
outside (an import, an API caller) goes through `check` first, which parses the string here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as _coco

BACKEND = "pycocotools"


class RLEError(ValueError):
    """An RLE that is not valid COCO compressed RLE, or not the size it should be."""


def encode(mask: np.ndarray) -> dict:
    """bool/uint8 [H, W] -> {"size": [H, W], "counts": str}."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise RLEError(f"a mask must be 2-D [height, width], got shape {m.shape}")
    r = _coco.encode(np.asfortranarray(m.astype(np.uint8, copy=False)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def encode_frames(masks: np.ndarray) -> list[dict]:
    """bool [F, H, W] -> one RLE per frame (one C call for the whole stack)."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise RLEError(f"masks must be 3-D [frames, height, width], got shape {m.shape}")
    if m.shape[0] == 0:
        return []
    rs = _coco.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8, copy=False)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rs]


def _coco_obj(rle: dict) -> dict:
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]}


def decode(rle: dict) -> np.ndarray:
    """RLE -> bool [H, W]. Pass RLEs from outside through `check` first."""
    return _coco.decode(_coco_obj(rle)).astype(bool)


def decode_frames(rles: list[dict]) -> np.ndarray:
    """RLEs of one size -> bool [F, H, W]."""
    if not rles:
        raise RLEError("no masks to decode")
    out = _coco.decode([_coco_obj(r) for r in rles])
    return np.ascontiguousarray(out.transpose(2, 0, 1)).astype(bool)


def area(rle: dict) -> int:
    return int(_coco.area(_coco_obj(rle)))


def bbox(rle: dict) -> list[float]:
    """[x, y, width, height] of the mask's pixels (all 0 for an empty mask), as COCO writes it."""
    return [float(v) for v in _coco.toBbox(_coco_obj(rle))]


def _counts_from_string(s: str) -> list[int]:
    """Parse COCO's compressed counts string (the inverse of pycocotools' rleToString)."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise RLEError("counts string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise RLEError(f"counts string has a character outside COCO's alphabet: {s[p]!r} at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def check(rle: Any, size: tuple[int, int] | None = None) -> dict:
    """Validate an RLE that came from outside and return it normalised ({"size": [h, w],
    "counts": str}). Raises RLEError saying what is wrong. Uncompressed RLE (counts as a list of
    ints, as COCO's iscrowd annotations sometimes carry) is accepted and compressed."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise RLEError(f"a mask must be a COCO RLE {{'size': [h, w], 'counts': ...}}, got {type(rle).__name__}"
                       + (f" with keys {sorted(rle)}" if isinstance(rle, dict) else ""))
    sz = rle["size"]
    if not (isinstance(sz, (list, tuple)) and len(sz) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in sz)):
        raise RLEError(f"RLE size must be [height, width] with positive integers, got {sz!r}")
    h, w = int(sz[0]), int(sz[1])
    if size is not None and (h, w) != (int(size[0]), int(size[1])):
        raise RLEError(f"mask is {h}x{w} (height x width) but the clip's frames are {int(size[0])}x{int(size[1])}")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise RLEError("uncompressed RLE counts must be non-negative integers")
        if sum(int(c) for c in counts) != h * w:
            raise RLEError(f"RLE runs cover {sum(int(c) for c in counts)} pixels, not {h}x{w} = {h * w}")
        r = _coco.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
        return {"size": [h, w], "counts": r["counts"].decode("ascii")}
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise RLEError("RLE counts are not ASCII") from None
    if not isinstance(counts, str):
        raise RLEError(f"RLE counts must be a string (compressed) or a list of integers, got {type(counts).__name__}")
    runs = _counts_from_string(counts)
    if any(c < 0 for c in runs):
        raise RLEError("RLE counts contain a negative run")
    if sum(runs) != h * w:
        raise RLEError(f"RLE runs cover {sum(runs)} pixels, not {h}x{w} = {h * w}")
    return {"size": [h, w], "counts": counts}


def empty(height: int, width: int) -> dict:
    return encode(np.zeros((height, width), dtype=bool))


__all__ = ["BACKEND", "RLEError", "area", "bbox", "check", "decode", "decode_frames", "empty", "encode", "encode_frames"]
