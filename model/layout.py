"""Start layouts: where each subject stands when the clip begins, as binding masks for the first denoising steps.

The layout of a clip (who stands where) is decided in the first few denoising steps, before the mask head has
anything to predict from. A small model gets it wrong often: on the sprite benchmark L2k put subjects in the wrong
left-to-right order in 5 of 17 multi-subject scenes and pushed neighbours onto the same tokens. A start layout
replaces the predicted binding masks for the first `steps` denoising steps (the paper's subject-aware
cross-attention and reference binding, fed from a plan instead of the mask head); after that the predicted masks
take over, so the subjects are free to move as their timelines say.

Layouts (`LAYOUTS`):
- "columns": subject i of S stands in the middle of the i-th of S equal columns at mid-height, a disc of radius
  `radius` (a fraction of the frame's shorter side). It is the order people read a subject list in, and the
  sprite world's canonical placement (train/sprites.py) puts subjects there too.
- "boxes": one (x0, y0, x1, y1) box per subject in fractions of the frame, e.g. drawn by a person.

The masks are made per video token (each token's share of the disc or box), the same in every latent frame.
"""

from __future__ import annotations

import numpy as np
import torch

LAYOUTS = ("columns", "boxes")
DEFAULT_RADIUS = 0.14  # the shipped sprite model's subject size: a sprite's radius is 0.14 of the frame side
DEFAULT_STEPS = 10  # of 20 (sigma 1 down to about 0.75 with the schedule's shift 3); 3, 6, 10, 14 measured in BENCHMARKS.md


class LayoutError(ValueError):
    """A start layout that cannot be used: the message says which subject or value is wrong."""


def column_boxes(num_subjects: int, height: int, width: int, radius: float = DEFAULT_RADIUS) -> list[tuple[float, float, float, float]]:
    """The 'columns' layout as boxes in fractions of the frame (the disc's bounding box)."""
    if num_subjects < 1:
        raise LayoutError("a layout needs at least one subject")
    if not 0 < radius <= 0.5:
        raise LayoutError(f"layout radius must be in (0, 0.5] of the frame's shorter side, got {radius}")
    r = radius * min(height, width)
    boxes = []
    for i in range(num_subjects):
        cx, cy = width * (i + 0.5) / num_subjects, height / 2
        boxes.append(((cx - r) / width, (cy - r) / height, (cx + r) / width, (cy + r) / height))
    return boxes


def check_boxes(boxes, num_subjects: int) -> list[tuple[float, float, float, float]]:
    if len(boxes) != num_subjects:
        raise LayoutError(f"layout boxes: got {len(boxes)} for {num_subjects} subjects (one box per subject, in timeline order)")
    out = []
    for i, b in enumerate(boxes):
        try:
            x0, y0, x1, y1 = (float(v) for v in b)
        except (TypeError, ValueError):
            raise LayoutError(f"layout box of subject {i + 1}: expected four numbers (x0, y0, x1, y1), got {b!r}") from None
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise LayoutError(f"layout box of subject {i + 1}: {b!r} is not a box inside the frame "
                              "(fractions with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1)")
        out.append((x0, y0, x1, y1))
    return out


def layout_pixel_masks(kind: str, num_subjects: int, height: int, width: int, radius: float = DEFAULT_RADIUS,
                       boxes=None) -> np.ndarray:
    """float [S, H, W] in {0, 1}: each subject's start region in pixels."""
    if kind not in LAYOUTS:
        raise LayoutError(f"layout must be one of {', '.join(LAYOUTS)}, got {kind!r}")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    masks = np.zeros((num_subjects, height, width), dtype=np.float32)
    if kind == "columns":
        for i, (x0, y0, x1, y1) in enumerate(column_boxes(num_subjects, height, width, radius)):
            cx, cy, r = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height, (x1 - x0) / 2 * width
            masks[i] = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)
    else:
        for i, (x0, y0, x1, y1) in enumerate(check_boxes(boxes if boxes is not None else [], num_subjects)):
            masks[i] = (xx >= x0 * width) & (xx < x1 * width) & (yy >= y0 * height) & (yy < y1 * height)
    return masks


def layout_token_masks(pixel_masks: np.ndarray, num_latent_frames: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """[S, H, W] pixel masks -> [S, F' * H' * W']: each subject's share of each video token, the same in every
    latent frame (the transformer's token order: frame, row, column)."""
    m = torch.from_numpy(np.asarray(pixel_masks, dtype=np.float32))
    m = torch.nn.functional.adaptive_avg_pool2d(m, grid_hw)  # [S, H', W']
    return m.reshape(m.shape[0], 1, -1).expand(-1, num_latent_frames, -1).reshape(m.shape[0], -1).contiguous()
