"""Carry a mask fixed by hand on one frame to its neighbouring frames (the review tab's "propagate").

Offline: OpenCV optical flow. For each step from frame a to its neighbour b, the dense Farneback
flow is computed from b back to a, so every pixel of b looks up where it came from in a
(`cv2.remap`); a forward warp would leave holes where the subject grows. Dense flow is only
trustworthy where the image has texture: inside a flat-coloured subject it decays towards zero and
the warped mask falls behind. So the subject's own motion is also fitted (corners inside the mask
tracked with pyramidal Lucas-Kanade, checked forwards and backwards, a rotation + scale +
translation fitted with RANSAC), and where the gradient is weak the flow is blended towards that
fitted motion. The warped mask is thresholded at one half and the next step starts from it, so an
error grows with the distance: keep the radius small and review the propagated frames.

With SAM2 loaded (`annotate.hub.Sam2Masker`, a local model directory) each warped mask is refined
by SAM2 from the warped mask's box; without it `load_refiner` raises `NotAvailable` with the
reason, and nothing is propagated silently with another backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .common import NotAvailable

FLOW_BACKEND = "opencv-farneback+klt-similarity"
MIN_FLOW_SIDE = 128  # tiny frames are enlarged before the flow: Farneback's windows need some pixels
TEXTURE_GRADIENT = 40.0  # Sobel magnitude above which the dense flow is trusted fully


@dataclass
class Propagation:
    masks: dict[int, np.ndarray]  # frame -> bool [H, W], the fixed frame excluded
    backend: str


def _gray(frame: np.ndarray, k: int) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (g.shape[1] * k, g.shape[0] * k), interpolation=cv2.INTER_LINEAR) if k > 1 else g


def backward_flow(frame_to: np.ndarray, frame_from: np.ndarray) -> np.ndarray:
    """float32 [H, W, 2]: for each pixel of `frame_to`, the offset (dx, dy) to where it was in `frame_from`."""
    import cv2

    h, w = frame_to.shape[:2]
    k = _scale(h, w)
    a, b = _gray(frame_to, k), _gray(frame_from, k)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=5, poly_n=7,
                                        poly_sigma=1.5, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN)
    if k > 1:  # back to the frame's pixels: average each k x k block, divide the offsets by k
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / k
    return flow.astype(np.float32)


def _scale(h: int, w: int) -> int:
    return max(1, int(np.ceil(MIN_FLOW_SIDE / max(1, min(h, w)))))


def fitted_motion(frame_from: np.ndarray, frame_to: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """2x3 similarity (rotation, scale, translation) taking the masked subject of `frame_from` to
    `frame_to`, from corners tracked both ways with Lucas-Kanade; None when too few agree."""
    import cv2

    h, w = mask.shape
    k = _scale(h, w)
    a, b = _gray(frame_from, k), _gray(frame_to, k)
    region = cv2.resize(mask.astype(np.uint8), (w * k, h * k), interpolation=cv2.INTER_NEAREST)
    region = cv2.dilate(region, np.ones((5, 5), np.uint8))  # corners on the outline count
    pts = cv2.goodFeaturesToTrack(a, 200, 0.01, 2, mask=region)
    if pts is None or len(pts) < 4:
        return None
    lk = dict(winSize=(15, 15), maxLevel=3)
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, fwd, None, **lk)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < 1.0)
    if ok.sum() < 4:
        return None
    T, inliers = cv2.estimateAffinePartial2D(pts[ok] / k, fwd[ok] / k, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if T is None or inliers is None or inliers.sum() < 4:
        return None
    return T


def step_flow(frame_from: np.ndarray, frame_to: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The backward flow (frame_to -> frame_from) used to move `mask` one frame: dense where the
    image has texture, the subject's fitted motion where it is flat."""
    import cv2

    flow = backward_flow(frame_to, frame_from)
    T = fitted_motion(frame_from, frame_to, mask)
    if T is None:
        return flow
    h, w = mask.shape
    Ti = cv2.invertAffineTransform(T)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    fitted = np.stack([Ti[0, 0] * xs + Ti[0, 1] * ys + Ti[0, 2] - xs, Ti[1, 0] * xs + Ti[1, 1] * ys + Ti[1, 2] - ys], -1)
    g = cv2.cvtColor(np.ascontiguousarray(frame_to), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = cv2.GaussianBlur(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)), (0, 0), 1.0)
    trust = np.clip(grad / TEXTURE_GRADIENT, 0, 1)[..., None]
    return (trust * flow + (1 - trust) * fitted).astype(np.float32)


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The mask moved along a backward flow (see `backward_flow`), thresholded at 0.5."""
    import cv2

    h, w = mask.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    moved = cv2.remap(mask.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved >= 0.5


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)


def propagate(frames: np.ndarray, frame: int, mask: np.ndarray, radius: int, *,
              refine: Callable[[np.ndarray, tuple, np.ndarray], np.ndarray] | None = None, refine_name: str | None = None) -> Propagation:
    """Masks for the frames within `radius` of `frame` (inside the clip), each warped from its
    neighbour nearer `frame`. frames uint8 [F, H, W, 3]; mask bool [H, W]. `refine(image, box, hint)`
    (SAM2) redraws each warped mask from its box."""
    F, H, W = frames.shape[:3]
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (H, W):
        raise ValueError(f"the mask is {mask.shape[0]}x{mask.shape[1]} but the frames are {H}x{W}")
    if not 0 <= frame < F:
        raise ValueError(f"frame {frame} is outside the clip (0..{F - 1})")
    out: dict[int, np.ndarray] = {}
    for step in (1, -1):
        cur = mask
        for f in range(frame + step, frame + step * (int(radius) + 1), step):
            if not 0 <= f < F:
                break
            cur = warp_mask(cur, step_flow(frames[f - step], frames[f], cur))
            if refine is not None:
                box = box_of(cur)
                if box is not None:
                    cur = np.asarray(refine(frames[f], box, cur), dtype=bool)
            out[f] = cur
    name = FLOW_BACKEND + (f"+{refine_name}" if refine is not None else "")
    return Propagation(out, name)


def load_refiner(backend: str, model_dir: str | None = None, device: str | None = None):
    """(refine function, name) for `propagate`: (None, None) for the flow alone, SAM2 from a local
    directory, or NotAvailable saying why not."""
    if backend in ("", None, "flow", FLOW_BACKEND):
        return None, None
    if backend == "sam2":
        from .hub import Sam2Masker

        masker = Sam2Masker(model_dir, device=device)  # NotAvailable without a local model
        return masker, masker.name
    raise NotAvailable(f"unknown propagation backend {backend!r} (flow or sam2)")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


__all__ = ["FLOW_BACKEND", "Propagation", "backward_flow", "box_of", "fitted_motion", "iou", "load_refiner", "propagate", "step_flow", "warp_mask"]
