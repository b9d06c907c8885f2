"""Stage 6: masks (paper §3.1, App. B.2: SAM2 from the boxes, refined by morphological operations).

- `GrabCutMasker` (offline default, "grabcut-offline"): OpenCV GrabCut prompted by the detection
  box (expanded by a margin; outside it is background). When the detector also gave pixels (the
  colour detector and the person segmenter do), they seed GrabCut as probable foreground and their
  eroded core as sure foreground; otherwise GrabCut starts from the box alone.
- `hub.Sam2Masker` (hub): SAM2 from the same box.

Every mask is then refined as the paper does: a closing (dilation, then erosion, by `close_px`) and
hole filling; then its boundary is snapped to the luma edge (`luma_snap`: H.264 halves chroma, so
colour bleeds a pixel outward) and small specks are removed. Masks hold visible pixels only, so a pixel two subjects
claim goes to the one whose detector saw it (else to the smaller subject, usually the one in
front). Masks are stored as COCO RLE by the store (annotate/rle.py).
"""

from __future__ import annotations

import numpy as np

from .common import ClipState, StageError, SubjectTrack, fill_holes, keep_large_components


def luma_snap(image: np.ndarray, mask: np.ndarray, min_contrast: float = 12.0, window: int = 5) -> np.ndarray:
    """Trim the mask's boundary ring to the luma edge. H.264's yuv420p keeps luma at full resolution
    but halves chroma, so colour bleeds a pixel outward and GrabCut's colour models take part of
    that ring. A boundary pixel is dropped when its luma is closer to the local outside mean (the
    ring just outside the mask, over `window`) than to every luma inside the mask near it (the
    nearest, not the mean, so a textured subject's darker pattern does not count against its body),
    and the two differ by at least `min_contrast`."""
    import cv2

    m = mask.astype(np.uint8)
    if m.sum() < 4:
        return mask.astype(bool)
    Y = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    inner = cv2.erode(m, k3)
    outer = (cv2.dilate(m, k3, iterations=2) - cv2.dilate(m, k3)).astype(np.float32)  # the ring one pixel outside
    ys, xs = np.nonzero(m - inner)
    if ys.size == 0 or not inner.any():
        return mask.astype(bool)
    num = cv2.boxFilter(Y * outer, -1, (window, window), normalize=False)
    den = cv2.boxFilter(outer, -1, (window, window), normalize=False)
    r = window // 2
    Yp = np.pad(np.where(inner > 0, Y, np.nan), r, constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(Yp, (window, window))[ys, xs]  # [n, window, window] inside lumas near each pixel
    y = Y[ys, xs]
    diff = np.abs(win - y[:, None, None]).reshape(len(y), -1)
    ok = np.isfinite(diff).any(1)  # boundary pixels with some inside pixel near them
    diff = np.where(np.isfinite(diff), diff, np.inf)
    j = diff.argmin(1)
    d_in = np.where(ok, diff[np.arange(len(y)), j], np.nan)
    near_in = np.where(ok, win.reshape(len(y), -1)[np.arange(len(y)), j], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        yout = np.where(den[ys, xs] > 0, num[ys, xs] / np.maximum(den[ys, xs], 1e-6), np.nan)
        drop = ok & (np.abs(y - yout) < d_in) & (np.abs(yout - near_in) >= min_contrast)
    out = mask.astype(bool).copy()
    out[ys[drop], xs[drop]] = False
    return out


def refine(mask: np.ndarray, close_px: int = 1, keep_frac: float = 0.2, image: np.ndarray | None = None) -> np.ndarray:
    """The paper's morphological refinement: a closing (dilation then erosion by `close_px`) and
    hole filling; then, given the frame, the boundary snapped to the luma edge (`luma_snap`); then
    specks (components under `keep_frac` of the largest) removed."""
    import cv2

    m = mask.astype(np.uint8)
    if close_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1, 2 * close_px + 1))
        m = cv2.erode(cv2.dilate(np.pad(m, close_px + 1), k), k)[close_px + 1:-close_px - 1, close_px + 1:-close_px - 1]
    m = fill_holes(m.astype(bool))
    if image is not None:
        m = luma_snap(image, m)
    return keep_large_components(m, keep_frac)


class GrabCutMasker:
    name = "grabcut-offline"

    def __init__(self, iterations: int = 3, margin: float = 0.15, min_margin: int = 3):
        self.iterations = iterations
        self.margin = margin
        self.min_margin = min_margin

    def __call__(self, image: np.ndarray, box, hint: np.ndarray | None = None) -> np.ndarray:
        import cv2

        H, W = image.shape[:2]
        x, y, w, h = box
        mx, my = max(self.min_margin, self.margin * w), max(self.min_margin, self.margin * h)
        x0, y0 = int(max(0, np.floor(x - mx))), int(max(0, np.floor(y - my)))
        x1, y1 = int(min(W, np.ceil(x + w + mx))), int(min(H, np.ceil(y + h + my)))
        # GrabCut needs background samples: work on a window around the box with a ring outside it
        pad = max(self.min_margin, int(0.5 * max(w, h)))
        wx0, wy0, wx1, wy1 = max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)
        img = np.ascontiguousarray(image[wy0:wy1, wx0:wx1, ::-1])
        gc = np.full(img.shape[:2], cv2.GC_BGD, np.uint8)
        gc[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = cv2.GC_PR_BGD
        if hint is not None and hint.any():
            hw = hint[wy0:wy1, wx0:wx1]
            gc[hw] = cv2.GC_PR_FGD
            core = cv2.erode(hw.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            gc[core] = cv2.GC_FGD
        else:
            ix0, iy0 = int(round(x - wx0)), int(round(y - wy0))
            gc[max(0, iy0):iy0 + int(round(h)), max(0, ix0):ix0 + int(round(w))] = cv2.GC_PR_FGD
        if (gc == cv2.GC_BGD).sum() < 8 or ((gc == cv2.GC_PR_FGD) | (gc == cv2.GC_FGD)).sum() < 2:
            out = np.zeros((H, W), bool)
            out[y0:y1, x0:x1] = True if hint is None else hint[y0:y1, x0:x1]
            return out
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(img, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # a window with one colour only: keep the prompt
            pass
        fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        out = np.zeros((H, W), bool)
        out[wy0:wy1, wx0:wx1] = fg
        return out


class MaskStage:
    def __init__(self, masker=None, close_px: int = 1):
        self.masker = masker or GrabCutMasker()
        self.close_px = close_px

    def __call__(self, clip: ClipState) -> None:
        F, H, W = clip.shape
        for t in clip.tracks:
            m = np.zeros((F, H, W), dtype=bool)
            for f, b in enumerate(t.boxes):
                if b is None:
                    continue
                hint = t.hint[f] if t.hint is not None else None
                raw = self.masker(clip.frames[f], b, hint)
                m[f] = refine(raw, self.close_px, image=clip.frames[f])
            t.masks = m
        resolve_overlaps(clip.tracks)
        if not any(t.masks.any() for t in clip.tracks):
            raise StageError("masks", "every mask came out empty", clip.clip_id)
        clip.sources["masks"] = getattr(self.masker, "name", type(self.masker).__name__) + f"+close{self.close_px}+fill+luma-snap"


def resolve_overlaps(tracks: list[SubjectTrack]) -> None:
    """Visible pixels only: a pixel claimed by several subjects goes to the one whose detector saw
    it, else to the subject with the smaller mask in that frame."""
    if len(tracks) < 2:
        return
    F = tracks[0].masks.shape[0]
    for f in range(F):
        ms = np.stack([t.masks[f] for t in tracks])
        clash = ms.sum(0) > 1
        if not clash.any():
            continue
        hints = np.stack([t.hint[f] if t.hint is not None else np.zeros_like(ms[0]) for t in tracks])
        area = ms.reshape(len(tracks), -1).sum(1).astype(float)
        score = ms * (1e6 * hints + (1e5 - area)[:, None, None])
        owner = score.argmax(0)
        for k, t in enumerate(tracks):
            t.masks[f] = np.where(clash, owner == k, t.masks[f]) & ms[k]


__all__ = ["GrabCutMasker", "MaskStage", "luma_snap", "refine", "resolve_overlaps"]
