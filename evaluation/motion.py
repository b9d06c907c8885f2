"""Motion Amplitude (OpenS2V-Eval's definition) and Motion Smoothness (VBench's protocol).

Motion Amplitude, as OpenS2V-Eval computes it (checked against its eval/get_motionscore.py): every frame is
read in RGB and turned to grey with OpenCV's BGR-to-grey weights (the reference does this, so red and blue weigh
as each other's weight; kept for exact scores), OpenCV's Farneback flow (pyr_scale 0.5, 3 levels, window 15,
3 iterations, poly_n 5, poly_sigma 1.2) is computed at full resolution between consecutive frames, every flow map
is then resized to 16 pixels wide (height in proportion, INTER_AREA; the flow values stay in full-resolution
pixels), the maps are averaged over time, and the score is the absolute value of the mean of that average map
over both components (x and y) and every cell. So a clip panning right (or left) by d px per frame scores about
d / 2, twice the resolution with the same relative motion scores twice as much, and a still clip scores 0.
`signed_motion_amplitude` is the same number before the absolute value (the issue's "signed mean"); the
reported metric is the reference's absolute value.

Motion Smoothness, VBench's protocol (which OpenS2V-Eval uses): keep the even frames, interpolate a frame
between each pair of neighbours, compare each interpolated frame with the real odd frame,
score = (255 - mean absolute difference) / 255. VBench interpolates with the AMT-S network; its weights are not
on this machine, so the offline interpolator here warps both neighbours half-way along Farneback flow and
averages them. Its scores are named "M. Smo.-flow", never "M. Smo.": the protocol is VBench's, the
interpolator is not, and a weaker interpolator scores real motion as less smooth.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

try:  # imported lazily by callers' error paths; a clear message if OpenCV is missing
    import cv2
except ImportError:  # pragma: no cover - cv2 is in requirements.txt
    cv2 = None

AMPLITUDE_WIDTH = 16
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _need_cv2():
    if cv2 is None:
        raise RuntimeError("OpenCV is not installed: pip install -r requirements.txt (opencv-python-headless)")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames


def farneback(prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    """Dense flow [H, W, 2] (x, y) from prev to next with the parameters above."""
    _need_cv2()
    return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)


def signed_motion_amplitude(frames: np.ndarray, width: int = AMPLITUDE_WIDTH) -> float:
    """OpenS2V-Eval's Motion Amplitude before its absolute value, of RGB frames uint8 [F, H, W, 3]
    (0 for fewer than 2 frames)."""
    _need_cv2()
    frames = _check_frames(frames)
    F, H, W, _ = frames.shape
    if F < 2:
        return 0.0
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]  # the reference's channel order, on RGB input
    h = int(H * (width / W))  # the reference's rounding (truncation)
    maps = [cv2.resize(farneback(a, b), (width, max(1, h)), interpolation=cv2.INTER_AREA) for a, b in zip(grey, grey[1:])]
    return float(np.mean(np.mean(np.stack(maps), axis=0)))


def motion_amplitude(frames: np.ndarray, width: int = AMPLITUDE_WIDTH) -> float:
    """OpenS2V-Eval's Motion Amplitude ("motion_fb") of RGB frames uint8 [F, H, W, 3]: |signed amplitude|."""
    return abs(signed_motion_amplitude(frames, width))


# --------------------------------------------------------------------------------------------
# Motion smoothness
# --------------------------------------------------------------------------------------------
Interpolator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def flow_midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The frame half-way between RGB frames a and b: each is warped half-way along Farneback flow
    (backward warping with the flow at the target pixel, the usual approximation) and the two are averaged."""
    _need_cv2()
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    f_ab, f_ba = farneback(ga, gb), farneback(gb, ga)
    H, W = ga.shape
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)

    def warp(img, flow):
        return cv2.remap(img, gx - 0.5 * flow[..., 0], gy - 0.5 * flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    mid = 0.5 * warp(a, f_ab).astype(np.float32) + 0.5 * warp(b, f_ba).astype(np.float32)
    return np.clip(np.round(mid), 0, 255).astype(np.uint8)


def motion_smoothness(frames: np.ndarray, interpolate: Interpolator = flow_midpoint) -> float | None:
    """VBench's Motion Smoothness of RGB frames [F, H, W, 3] with the given interpolator (default: the
    Farneback substitute for AMT-S). None for fewer than 3 frames (no odd frame between two even ones)."""
    frames = _check_frames(frames)
    evens = frames[0::2]
    odds = frames[1::2]
    n = min(len(evens) - 1, len(odds))
    if n < 1:
        return None
    diffs = []
    for i in range(n):
        pred = np.asarray(interpolate(evens[i], evens[i + 1]))
        diffs.append(float(np.mean(np.abs(pred.astype(np.int16) - odds[i].astype(np.int16)))))
    return float((255.0 - np.mean(diffs)) / 255.0)


__all__ = ["AMPLITUDE_WIDTH", "FARNEBACK", "farneback", "flow_midpoint", "motion_amplitude", "motion_smoothness", "signed_motion_amplitude"]
