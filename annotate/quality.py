"""Stage 2: quality (paper App. B.1, "Video Quality Filtering").

- **Motion.** Optical flow between frames (OpenCV Farneback by default; `hub.RaftFlow` when its
  weights are there). Foreground and background are separated as the paper asks: the camera's
  motion is the dominant (median) flow of the frame, foreground pixels are those whose flow differs
  from it by more than `fg_flow_px`; the motion score is the foreground's residual flow, so camera
  pans do not count as subject motion. When subject masks are known (after the masks stage) they
  give the foreground instead (`motion_scores(frames, masks=...)`).
- **Text and watermarks.** OCR text detection (rapidocr's PP-OCR detector, onnxruntime) on
  frames sampled through the clip; a region is text when the detector finds it, it has the
  shape of a line, the recogniser reads two or more letters or digits in it with confidence >= 0.7
  (the paper's threshold), and it is found at the same place in two sampled frames. The clip is cropped to the largest axis-aligned rectangle free of text in every
  sampled frame.
- **Hooks** for aesthetic and technical scores: any callable `frames -> float` registered under a
  name. The offline technical score is sharpness (variance of the Laplacian, "sharpness-laplacian");
  no offline aesthetic predictor exists here, so none runs unless one is given.
- Thresholds (`min_motion`, `min_scores`) filter clips; by default scores are only recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .common import NotAvailable, StageError


@dataclass
class QualityConfig:
    flow: str = "farneback"  # or a hub.RaftFlow instance
    flow_stride: int = 2  # frames between flow pairs
    max_flow_pairs: int = 16
    fg_flow_px: float = 0.5  # residual flow above this (px/frame) = foreground
    ocr: str = "rapidocr"  # "rapidocr" | "none"
    ocr_frames: int = 4  # frames sampled through the clip for OCR
    ocr_min_score: float = 0.7
    ocr_min_aspect: float = 1.5  # a text region is a line: long side >= this x short side (see text_boxes)
    ocr_min_chars: int = 2  # letters or digits the recogniser must read in a region, with confidence >= ocr_min_score
    ocr_min_frames: int = 2  # a region must be found at the same place in this many sampled frames (overlays stay put)
    min_keep_fraction: float = 0.4  # a text-free area smaller than this share of the frame fails the clip
    min_crop_side: int = 16
    min_motion: float | None = None  # foreground motion (px/frame) below this fails the clip
    hooks: dict[str, Callable[[np.ndarray], float]] = field(default_factory=dict)
    min_scores: dict[str, float] = field(default_factory=dict)  # hook name -> minimum


# --------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------
def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def motion_scores(frames: np.ndarray, config: QualityConfig | None = None, masks: np.ndarray | None = None) -> dict:
    """Foreground and background motion in px/frame (and as a share of the frame diagonal)."""
    cfg = config or QualityConfig()
    F, H, W, _ = frames.shape
    flow_fn = farneback if cfg.flow == "farneback" else cfg.flow
    stride = max(1, min(cfg.flow_stride, F - 1))
    pairs = list(range(0, F - stride, stride))
    if len(pairs) > cfg.max_flow_pairs:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, cfg.max_flow_pairs).round().astype(int)]
    fg, bg, fg_share = [], [], []
    for f in pairs:
        flow = flow_fn(frames[f], frames[f + stride]) / stride
        cam = np.median(flow.reshape(-1, 2), axis=0)
        resid = np.linalg.norm(flow - cam, axis=-1)
        if masks is not None:
            m = masks[:, f].any(0) if masks.ndim == 4 else masks[f]
        else:
            m = resid > cfg.fg_flow_px
        fg.append(float(resid[m].mean()) if m.any() else 0.0)
        bg.append(float(np.linalg.norm(cam)))
        fg_share.append(float(m.mean()))
    diag = float(np.hypot(H, W))
    fgm = float(np.mean(fg)) if fg else 0.0
    return {"foreground_px": fgm, "background_px": float(np.mean(bg)) if bg else 0.0, "foreground_share": float(np.mean(fg_share)) if fg_share else 0.0,
            "foreground_rel": fgm / diag, "pairs": len(pairs), "separation": "subject masks" if masks is not None else "residual to median flow"}


# --------------------------------------------------------------------------------------------
# Text regions and the largest text-free crop
# --------------------------------------------------------------------------------------------
_OCR = {}


def rapidocr_engine():
    """rapidocr (PP-OCR detection + recognition models ship in its wheel), one per process, one thread."""
    if "engine" not in _OCR:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise NotAvailable(f"rapidocr is not available: {exc}") from None
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        _OCR["engine"] = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": 1, "Global.use_cls": False,
                                          "Global.log_level": "error"})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return _OCR["engine"]


def text_boxes(frame: np.ndarray, min_score: float = 0.7, min_aspect: float = 1.5, min_chars: int = 2) -> list[tuple[np.ndarray, float, str]]:
    """Text regions of one frame: (polygon [4, 2] in pixels, confidence, text). A region counts
    when the detector finds it (score >= min_score), it has the shape of a line of text (long side
    >= min_aspect x short side), and the recogniser reads at least `min_chars` letters or digits in
    it with confidence >= min_score (the paper's "OCR confidence above 0.7"). The shape and reading
    checks are ours: on sprite clips the detector alone fires on striped and checkered sprites
    (scores 0.63-0.81) where the recogniser reads nothing or a symbol."""
    eng = rapidocr_engine()
    img = np.ascontiguousarray(frame[..., ::-1])  # rapidocr reads BGR like OpenCV
    r = eng(img, use_det=True, use_cls=False, use_rec=False)
    if r.boxes is None:
        return []
    scores = list(r.scores) if r.scores is not None else [1.0] * len(r.boxes)
    H, W = frame.shape[:2]
    out = []
    for b, s in zip(r.boxes, scores):
        p = np.asarray(b, dtype=np.float32)
        sides = np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1)
        long, short = max(sides[0], sides[1]), max(1e-3, min(sides[0], sides[1]))
        if float(s) < min_score or long / short < min_aspect:
            continue
        x0, y0 = np.clip(np.floor(p.min(0)).astype(int), 0, [W - 1, H - 1])
        x1, y1 = np.clip(np.ceil(p.max(0)).astype(int) + 1, 1, [W, H])
        rec = eng(np.ascontiguousarray(img[y0:y1, x0:x1]), use_det=False, use_cls=False, use_rec=True)
        txt = "".join(rec.txts or ()) if getattr(rec, "txts", None) else ""
        conf = float(np.mean(rec.scores)) if getattr(rec, "scores", None) else 0.0
        if conf >= min_score and sum(ch.isalnum() for ch in txt) >= min_chars:
            out.append((p, min(float(s), conf), txt))
    return out


def largest_free_rectangle(blocked: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest axis-aligned rectangle of False cells in a bool [H, W] grid
    (the histogram-stack algorithm, O(H*W))."""
    H, W = blocked.shape
    heights = np.zeros(W, dtype=int)
    best = (0, 0, 0, 0)
    best_area = 0
    for y in range(H):
        heights = np.where(blocked[y], 0, heights + 1)
        stack: list[int] = []
        for x in range(W + 1):
            h = heights[x] if x < W else 0
            start = x
            while stack and heights[stack[-1]] >= h:
                top = stack.pop()
                height = heights[top]
                left = stack[-1] + 1 if stack else 0
                area = height * (x - left)
                if area > best_area:
                    best_area, best = area, (left, y - height + 1, x - left, height)
                start = left
            stack.append(x)
    return best


def _poly_mask(poly: np.ndarray, H: int, W: int) -> np.ndarray:
    import cv2

    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def text_crop(frames: np.ndarray, config: QualityConfig | None = None, detector=None) -> dict:
    """Find text in sampled frames and the largest text-free crop. -> {"boxes", "crop": (x, y, w, h)
    or None when the clip has no text, "keep_fraction"}. A region must be found at the same place
    (overlapping) in `ocr_min_frames` sampled frames: overlays, subtitles and watermarks stay put."""
    import cv2

    cfg = config or QualityConfig()
    F, H, W, _ = frames.shape
    det = detector or (lambda f: text_boxes(f, cfg.ocr_min_score, cfg.ocr_min_aspect, cfg.ocr_min_chars))
    idx = np.unique(np.linspace(0, F - 1, min(cfg.ocr_frames, F)).round().astype(int))
    regions = []  # (frame, polygon, score, text, mask)
    for f in idx:
        for poly, score, *txt in det(frames[f]):
            regions.append((int(f), poly, float(score), txt[0] if txt else "", _poly_mask(poly, H, W)))
    need = min(cfg.ocr_min_frames, len(idx))
    blocked = np.zeros((H, W), dtype=bool)
    found = []
    for f, poly, score, txt, m in regions:
        frames_seen = {g for g, *_, m2 in regions if (m & m2).any()}
        if len(frames_seen) >= need:
            blocked |= m
            found.append({"frame": f, "polygon": np.round(poly, 1).tolist(), "score": round(score, 4), "text": txt})
    if not found:
        return {"boxes": [], "crop": None, "keep_fraction": 1.0, "frames_checked": idx.tolist(),
                "unconfirmed": len(regions)}
    blocked = cv2.dilate(blocked.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # a pixel of margin
    x, y, w, h = largest_free_rectangle(blocked)
    w, h = w - (w % 2), h - (h % 2)  # even sides: H.264 previews need them
    return {"boxes": found, "crop": (int(x), int(y), int(w), int(h)), "keep_fraction": float(w * h) / float(H * W),
            "frames_checked": idx.tolist(), "unconfirmed": len(regions) - len(found)}


def sharpness(frames: np.ndarray) -> float:
    """Offline technical score: mean variance of the Laplacian over a few frames (higher = sharper)."""
    import cv2

    idx = np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for i in idx]))


def assess(frames: np.ndarray, config: QualityConfig | None = None, clip_id: str | None = None) -> tuple[np.ndarray, dict]:
    """Run the quality stage on one clip: -> (frames, cropped if text was found; the record).
    Raises StageError when a threshold fails the clip."""
    cfg = config or QualityConfig()
    rec: dict = {"motion": motion_scores(frames, cfg), "flow": cfg.flow if isinstance(cfg.flow, str) else getattr(cfg.flow, "name", "custom")}
    backends = {"motion": f"opencv-{rec['flow']}" if isinstance(cfg.flow, str) else rec["flow"]}
    if cfg.ocr == "rapidocr":
        try:
            t = text_crop(frames, cfg)
        except NotAvailable as exc:
            t = {"boxes": [], "crop": None, "keep_fraction": 1.0, "skipped": str(exc)}
        rec["text"] = t
        backends["text"] = "rapidocr-ppocr(det+rec)" if "skipped" not in t else "none (rapidocr not available)"
        if t["crop"] is not None:
            x, y, w, h = t["crop"]
            if t["keep_fraction"] < cfg.min_keep_fraction or min(w, h) < cfg.min_crop_side:
                raise StageError("quality", f"text covers the frame: the largest text-free area is {w}x{h} px "
                                            f"({t['keep_fraction']:.0%} of the frame, minimum {cfg.min_keep_fraction:.0%})", clip_id)
            frames = np.ascontiguousarray(frames[:, y:y + h, x:x + w])
    else:
        rec["text"] = {"boxes": [], "crop": None, "keep_fraction": 1.0, "skipped": "OCR turned off"}
        backends["text"] = "none (turned off)"
    scores = {"technical:sharpness-laplacian": sharpness(frames)}
    for name, fn in cfg.hooks.items():
        scores[name] = float(fn(frames))
    rec["scores"] = scores
    rec["backends"] = backends
    if cfg.min_motion is not None and rec["motion"]["foreground_px"] < cfg.min_motion:
        raise StageError("quality", f"too little subject motion: {rec['motion']['foreground_px']:.2f} px/frame (minimum {cfg.min_motion:g})", clip_id)
    for name, lo in cfg.min_scores.items():
        if name in scores and scores[name] < lo:
            raise StageError("quality", f"score {name} = {scores[name]:.3g} is below the minimum {lo:g}", clip_id)
    return frames, rec


__all__ = ["QualityConfig", "assess", "farneback", "largest_free_rectangle", "motion_scores", "rapidocr_engine", "sharpness", "text_boxes", "text_crop"]
