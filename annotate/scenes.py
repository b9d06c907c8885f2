"""Stage 1: scene cuts (paper App. B.1, "Video Scene Cut").

Two passes, as the paper does: PySceneDetect's content detector finds cuts from colour and
brightness changes, then cuts are added where the cosine similarity of adjacent frames' features
drops below a threshold (the paper uses DINOv2 features; the offline default is `HsvHogFeatures`,
an HSV histogram plus gradient orientations, named as such in the record). Scenes shorter than
`min_seconds` are dropped, longer ones are split into pieces of at most `max_seconds`, and every
piece is trimmed to Wan's 4k+1 frames (model.timeline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.timeline import TIME_COMPRESSION

from .common import StageError


@dataclass
class SceneConfig:
    detector_threshold: float = 27.0  # PySceneDetect ContentDetector's default
    similarity_threshold: float = 0.75  # adjacent-frame cosine similarity below this = a cut (offline feature)
    min_seconds: float = 2.0  # the paper keeps clips above 5 s; sprite clips are 2-4 s
    max_seconds: float | None = 10.0
    use_pyscenedetect: bool = True


class HsvHogFeatures:
    """Offline frame feature (not DINOv2): a 12-hue x 3-value histogram of saturated pixels, 4 grey
    levels, and 9 gradient orientations over a 2x2 grid; each part L2-normalised."""

    name = "hsv-hog-offline"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        out = []
        for f in frames:
            hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)  # h in [0, 180)
            h, s, v = hsv[..., 0].astype(int), hsv[..., 1], hsv[..., 2].astype(int)
            sat = s > 60
            colour = np.bincount((h[sat] * 12 // 180) * 3 + np.minimum(v[sat] * 3 // 256, 2), minlength=36).astype(np.float32)
            grey = np.bincount(np.minimum(v[~sat] * 4 // 256, 3), minlength=4).astype(np.float32)
            hist = np.sqrt(np.concatenate([colour, grey]))
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
            gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
            mag, ang = np.hypot(gx, gy), (np.arctan2(gy, gx) % np.pi)
            b = np.minimum((ang / np.pi * 9).astype(int), 8)
            H, W = g.shape
            cells = []
            for ys in (slice(0, H // 2), slice(H // 2, H)):
                for xs in (slice(0, W // 2), slice(W // 2, W)):
                    cells.append(np.bincount(b[ys, xs].ravel(), weights=mag[ys, xs].ravel(), minlength=9))
            hog = np.sqrt(np.concatenate(cells)).astype(np.float32)
            out.append(np.concatenate([hist / max(np.linalg.norm(hist), 1e-6), hog / max(np.linalg.norm(hog), 1e-6)]))
        return np.stack(out)


def pyscenedetect_cuts(frames: np.ndarray, fps: float, threshold: float) -> list[int]:
    """Frame indices where PySceneDetect's ContentDetector starts a new scene."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector

    det = ContentDetector(threshold=threshold, min_scene_len=max(2, int(round(fps / 4))))
    cuts: list[int] = []
    for i, f in enumerate(frames):
        cuts += [c.frame_num for c in det.process_frame(FrameTimecode(i, fps=float(fps)), np.ascontiguousarray(f[..., ::-1]))]
    return sorted(set(int(c) for c in cuts if 0 < c < len(frames)))


def similarity_cuts(frames: np.ndarray, feature, threshold: float) -> tuple[list[int], np.ndarray]:
    """Cuts where the cosine similarity of adjacent frames' features drops below `threshold`."""
    if len(frames) < 2:
        return [], np.ones(0)
    z = np.asarray(feature(frames), dtype=np.float32)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)
    sim = (z[1:] * z[:-1]).sum(1)
    return [int(i + 1) for i in np.flatnonzero(sim < threshold)], sim


def wan_length(n: int) -> int:
    """The longest 4k+1 frame count <= n (0 when n < 5)."""
    return 0 if n < TIME_COMPRESSION + 1 else TIME_COMPRESSION * ((n - 1) // TIME_COMPRESSION) + 1


def detect_scenes(frames: np.ndarray, fps: float, config: SceneConfig | None = None, feature=None) -> dict:
    """-> {"clips": [(start, end_exclusive), ...], "cuts": [...], "dropped": [(start, end, why)], "backend": name}."""
    cfg = config or SceneConfig()
    F = len(frames)
    feature = feature or HsvHogFeatures()
    cuts_a = pyscenedetect_cuts(frames, fps, cfg.detector_threshold) if cfg.use_pyscenedetect else []
    cuts_b, sim = similarity_cuts(frames, feature, cfg.similarity_threshold)
    cuts = sorted(set(cuts_a) | set(cuts_b))
    bounds = [0, *cuts, F]
    clips, dropped = [], []
    min_len = max(TIME_COMPRESSION + 1, int(np.ceil(cfg.min_seconds * fps - 1e-6)))
    max_len = wan_length(int(cfg.max_seconds * fps) + 1) if cfg.max_seconds else None
    for a, b in zip(bounds, bounds[1:]):
        n = b - a
        if n < min_len:
            dropped.append((a, b, f"shorter than the minimum {cfg.min_seconds:g}s ({n} frames at {fps:g} fps)"))
            continue
        start = a
        while b - start >= min_len:
            take = wan_length(min(b - start, max_len) if max_len else b - start)
            clips.append((start, start + take))
            start += take if max_len and b - start > max_len else b - start
        if b - start > 0 and start > a and b - start < min_len:
            dropped.append((start, b, f"remainder shorter than the minimum {cfg.min_seconds:g}s"))
    name = ("pyscenedetect-content+" if cfg.use_pyscenedetect else "") + f"{getattr(feature, 'name', type(feature).__name__)}-similarity"
    return {"clips": clips, "cuts": cuts, "pyscenedetect_cuts": cuts_a, "similarity_cuts": cuts_b, "dropped": dropped, "backend": name,
            "min_similarity": float(sim.min()) if sim.size else 1.0}


def split_video(frames: np.ndarray, fps: float, config: SceneConfig | None = None, feature=None, video_id: str = "video") -> tuple[list[tuple[int, int]], dict]:
    """detect_scenes, raising StageError when nothing is left."""
    res = detect_scenes(frames, fps, config, feature)
    if not res["clips"]:
        why = "; ".join(f"frames {a}-{b - 1}: {w}" for a, b, w in res["dropped"]) or "no frames"
        raise StageError("scenes", f"no clip long enough in {video_id} ({why})")
    return res["clips"], res


__all__ = ["HsvHogFeatures", "SceneConfig", "detect_scenes", "pyscenedetect_cuts", "similarity_cuts", "split_video", "wan_length"]
