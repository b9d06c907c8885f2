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
- "paths": the columns layout set in motion. Each subject's disc follows the path its own timeline commands: a
  caption that names a move (model/actions.py keywords) shifts the disc by PATH_AMOUNTS' distance over the
  action's span, a jump lifts it and sets it down, grow and shrink scale it; captions that name no motion, spins
  and gaps leave it where it is. The path is centred on the subject's column, as the sprite world's canonical
  placement centres it, and kept inside the frame. Without it the layout holds every subject still for the
  first steps, where the coarse motion is decided, and moves come out short (BENCHMARKS.md "Path layouts").

The masks are made per video token (each token's share of the disc or box); "columns" and "boxes" are the same
in every latent frame, "paths" has one mask per latent frame (the mean of the video frames it covers).
"""

from __future__ import annotations

import numpy as np
import torch

from .actions import keyword_action
from .timeline import TIME_COMPRESSION, Timeline, num_latent_frames

LAYOUTS = ("columns", "boxes", "paths")
# How far a path layout's disc goes per commanded action: the middle of the sprite world's ranges
# (train/sprites.py WorldConfig: moves 0.15-0.30 of the frame side, jumps 0.15-0.25 of its height, grow x1.45-1.75,
# shrink x0.55-0.68).
PATH_AMOUNTS = {"move": 0.225, "jump": 0.20, "grow": 1.6, "shrink": 0.615}
DEFAULT_RADIUS = 0.14  # the shipped sprite model's subject size: a sprite's radius is 0.14 of the frame side
DEFAULT_STEPS = 10  # of 20 (sigma 1 down to about 0.75 with the schedule's shift 3); 3, 6, 10, 14 measured in BENCHMARKS.md
# A path layout already moves each subject as its timeline says, so it may bind longer: 16 of 20 (sigma down to about
# 0.4); 10, 16 and 20 measured in BENCHMARKS.md "Path layouts"
STEPS_BY_LAYOUT = {"columns": DEFAULT_STEPS, "boxes": DEFAULT_STEPS, "paths": 16}


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


def subject_path(subject, fps: int, num_frames: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Offsets from the start per video frame (x, y in pixels) and a scale factor, as the subject's captions
    command (see the module docstring); [F] each."""
    x, y, s = np.zeros(num_frames), np.zeros(num_frames), np.ones(num_frames)
    side = {"move_left": (-1, 0, width), "move_right": (1, 0, width), "move_up": (0, -1, height), "move_down": (0, 1, height)}
    for a in subject.sorted_actions():
        f0 = int(np.clip(round(a.start * fps), 0, num_frames - 1))
        f1 = int(np.clip(round(a.end * fps), f0, num_frames - 1))
        if f1 <= f0:
            continue
        f = np.arange(f0, f1 + 1)
        u = (f - f0) / (f1 - f0)
        x0, y0, s0 = x[f0], y[f0], s[f0]
        kind = keyword_action(a.text)
        if kind in side:
            ux, uy, extent = side[kind]
            d = PATH_AMOUNTS["move"] * extent * u
            x[f], y[f] = x0 + ux * d, y0 + uy * d
        elif kind == "jump":
            y[f] = y0 - PATH_AMOUNTS["jump"] * height * np.sin(np.pi * u)
            y[f1] = y0
        elif kind in ("grow", "shrink"):
            s[f] = s0 * (1 + (PATH_AMOUNTS[kind] - 1) * u)
        else:
            continue
        x[f1:], y[f1:], s[f1:] = x[f1], y[f1], s[f1]
    return {"x": x, "y": y, "scale": s}


def path_pixel_masks(timeline: Timeline, height: int, width: int, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """float [S, F', H, W] in [0, 1]: the 'paths' layout per latent frame (each the mean of its video frames' discs)."""
    S, F = len(timeline.subjects), timeline.num_frames
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    r0 = radius * min(height, width)
    n_lat = num_latent_frames(F)
    out = np.zeros((S, n_lat, height, width), dtype=np.float32)
    for i, subj in enumerate(timeline.subjects):
        p = subject_path(subj, timeline.fps, F, height, width)
        r = r0 * p["scale"]
        # centre the path's extent on the subject's column at mid-height, then keep the disc inside the frame
        cx = width * (i + 0.5) / S - 0.5 * (p["x"].min() + p["x"].max()) + p["x"]
        cy = height / 2 - 0.5 * (p["y"].min() + p["y"].max()) + p["y"]
        cx += max(0.0, float(np.max(r - cx))) - max(0.0, float(np.max(cx + r - width)))
        cy += max(0.0, float(np.max(r - cy))) - max(0.0, float(np.max(cy + r - height)))
        for k in range(n_lat):
            frames = [0] if k == 0 else range(TIME_COMPRESSION * (k - 1) + 1, TIME_COMPRESSION * k + 1)
            for f in frames:
                out[i, k] += (xx - cx[f]) ** 2 + (yy - cy[f]) ** 2 <= r[f] ** 2
            out[i, k] /= len(frames)
    return out


def layout_pixel_masks(kind: str, num_subjects: int, height: int, width: int, radius: float = DEFAULT_RADIUS,
                       boxes=None, timeline: Timeline | None = None) -> np.ndarray:
    """Each subject's region in pixels: float [S, H, W] in {0, 1} for 'columns' and 'boxes' (the start), [S, F', H, W]
    for 'paths' (one per latent frame; needs the timeline)."""
    if kind not in LAYOUTS:
        raise LayoutError(f"layout must be one of {', '.join(LAYOUTS)}, got {kind!r}")
    if kind == "paths":
        if timeline is None:
            raise LayoutError("the paths layout follows the timeline: give timeline=")
        column_boxes(num_subjects, height, width, radius)  # the same refusals as columns
        return path_pixel_masks(timeline, height, width, radius)
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
    """[S, H, W] pixel masks (the same in every latent frame) or [S, F', H, W] (one per latent frame) ->
    [S, F' * H' * W']: each subject's share of each video token (the transformer's token order: frame, row, column)."""
    m = torch.from_numpy(np.asarray(pixel_masks, dtype=np.float32))
    if m.ndim == 4:
        if m.shape[1] != num_latent_frames:
            raise LayoutError(f"layout masks have {m.shape[1]} latent frames, the video {num_latent_frames}")
        m = torch.nn.functional.adaptive_avg_pool2d(m, grid_hw)  # [S, F', H', W']
        return m.reshape(m.shape[0], -1).contiguous()
    m = torch.nn.functional.adaptive_avg_pool2d(m, grid_hw)  # [S, H', W']
    return m.reshape(m.shape[0], 1, -1).expand(-1, num_latent_frames, -1).reshape(m.shape[0], -1).contiguous()
