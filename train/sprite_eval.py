"""Measuring generated sprite clips against their timelines (the sprite benchmark).

Given frames uint8 [F, H, W, 3], the timeline they were generated from and each subject's
reference (an image or a sprites.Identity), we track every subject, then score:

- action accuracy: fraction of commanded sub-actions whose measured motion over their span is
  classified as the commanded action;
- timing error: mean |detected - commanded| boundary, in frames, over the boundaries between two
  different motions (a boundary the video does not show counts as the full search window);
- binding accuracy (scenes with >= 2 subjects): fraction of non-'stay' actions performed by their
  subject and not by another subject that was not told to do it in that span;
- identity fidelity: fraction of (subject, frame) pairs where the subject is found with its
  reference's colour and a shape that matches the reference's.

Tracking is by colour: the sprite world gives every subject of a scene its own saturated hue over a
low-saturation background, so a subject is the set of pixels near its reference's hue (the darker
texture shade has the same hue), cleaned by connected components. Thresholds are fractions of the
frame size so the same evaluator works at any resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from model.colour import hue_dist, rgb_to_hsv
from model.timeline import Timeline

from .sprites import Identity, caption_to_action, render_identity

SAT_MIN = 0.35  # backgrounds stay below ~0.3, subjects (and their shades) are ~0.8
VAL_MIN = 0.15
HUE_TOL = 12.0  # degrees; catalogue hues are >= 29 degrees apart
SHADE_SPLIT = 0.775  # value below this fraction of the body's bright value = texture shade

MOVE_FRAC = 0.07  # net displacement >= 7% of the frame side = a move
BOUNCE_FRAC = 0.06  # upward excursion above the straight start-end line >= 6% of the height = a jump
AREA_LOG = math.log(1.35)  # area ratio beyond 1.35x = grow/shrink
SPIN_MIN = 0.12  # median change of the subject's own pixels (aligned) over SPIN_STRIDE frames = a spin
# A spin is measured over one latent frame (4 video frames), not from one frame to the next: a video decoded
# from a x4-in-time latent (Wan's layout) shows a sprite's pose once per latent frame, so its frame-to-frame
# change inside a latent frame is ~0 even when it turns, while the small flicker every 4th frame makes a still
# textured sprite look like it turns (docs/BENCHMARKS.md, "The VAE sets a ceiling").
SPIN_STRIDE = 4
SHAPE_IOU_MIN = 0.7  # best rotated soft IoU with the reference silhouette (same shape >= ~0.73 even at ~20 px)
CANVAS = 24
TIMING_WINDOW = 8  # frames searched on each side of a commanded boundary


# --------------------------------------------------------------------------------------------
# Connected components (no scipy here): min-label propagation with pointer jumping, per frame
# --------------------------------------------------------------------------------------------
def connected_components(mask: np.ndarray) -> np.ndarray:
    """8-connected labels of a bool [..., H, W] stack (components never cross the leading axes).
    Returns int64 labels, -1 outside the mask; each component is labelled by its smallest flat index."""
    shape = mask.shape
    m = mask.reshape(-1, shape[-2], shape[-1])
    n = m.size
    big = n + 1
    lab = np.where(m, np.arange(n).reshape(m.shape), big)
    while True:
        p = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        H, W = m.shape[1], m.shape[2]
        new = lab.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.minimum(new, p[:, dy:dy + H, dx:dx + W], out=new)
        new = np.where(m, new, big)
        flat = new.reshape(-1)
        inside = flat < big
        for _ in range(4):  # pointer jumping: follow labels to their own labels
            flat[inside] = flat[flat[inside]]
        if np.array_equal(new, lab):
            break
        lab = new
    return np.where(m, lab, -1).reshape(shape)


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
def _shape_canvases(mask: np.ndarray, cy: float, cx: float, area: float, angles_deg) -> np.ndarray:
    """Silhouette resampled (bilinear, so soft) to a CANVAS x CANVAS grid, centred on its centroid
    and scaled to a fixed area, at each angle: the rotation- and scale-free view identity checks
    compare with a soft IoU."""
    k = math.sqrt(0.25 * CANVAS * CANVAS / max(area, 1.0))
    c = (CANVAS - 1) / 2.0
    q, p = np.meshgrid(np.arange(CANVAS) - c, np.arange(CANVAS) - c)
    H, W = mask.shape
    m = np.pad(mask.astype(np.float32), 1)
    out = np.zeros((len(angles_deg), CANVAS, CANVAS), dtype=np.float32)
    for i, a in enumerate(angles_deg):
        t = math.radians(a)
        sx = np.clip(cx + (math.cos(t) * q - math.sin(t) * p) / k + 1, 0, W)
        sy = np.clip(cy + (math.sin(t) * q + math.cos(t) * p) / k + 1, 0, H)
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        fx, fy = sx - x0, sy - y0
        out[i] = (m[y0, x0] * (1 - fx) * (1 - fy) + m[y0, x0 + 1] * fx * (1 - fy)
                  + m[y0 + 1, x0] * (1 - fx) * fy + m[y0 + 1, x0 + 1] * fx * fy)
    return out


def soft_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum(min) / sum(max) over the last two axes (broadcasting)."""
    return np.minimum(a, b).sum((-2, -1)) / np.maximum(np.maximum(a, b).sum((-2, -1)), 1e-6)


def reference_silhouette(image: np.ndarray) -> tuple[float, np.ndarray]:
    """A reference image's subject as the shape test sees it: (its hue in degrees, bool [h, w] silhouette), the
    saturated pixels of the dominant hue, specks dropped."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"a reference image must be [h, w, 3], got {img.shape}")
    h, s, v = rgb_to_hsv(img)
    fg = (s > SAT_MIN) & (v > VAL_MIN)
    if not fg.any():
        raise ValueError("the reference image has no saturated (subject) pixels")
    hist = np.bincount((h[fg] // 5).astype(int) % 72, minlength=72)
    peak = (np.argmax(hist) + 0.5) * 5.0
    near = fg & (hue_dist(h, peak) < HUE_TOL * 1.5)
    ang = np.deg2rad(h[near])
    hue = float(np.rad2deg(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360.0)
    return hue, _largest_components((fg & (hue_dist(h, hue) < HUE_TOL))[None])[0]


@dataclass
class ReferenceModel:
    """What the evaluator needs from a reference: its hue and its silhouette at many rotations."""

    hue: float
    canvases: np.ndarray  # float [R, CANVAS, CANVAS] soft silhouettes
    area_frac: float  # silhouette area / reference image area (diagnostic)

    @classmethod
    def from_image(cls, image: np.ndarray) -> "ReferenceModel":
        hue, sil = reference_silhouette(image)
        ys, xs = np.nonzero(sil)
        area = float(sil.sum())
        canv = _shape_canvases(sil, ys.mean(), xs.mean(), area, np.arange(0, 360, 10))
        return cls(hue, canv, area / sil.size)

    @classmethod
    def from_identity(cls, identity: Identity, size: int = 48) -> "ReferenceModel":
        return cls.from_image(render_identity(identity, size, scale=0.42))

    @classmethod
    def coerce(cls, ref) -> "ReferenceModel":
        if isinstance(ref, ReferenceModel):
            return ref
        if isinstance(ref, Identity):
            return cls.from_identity(ref)
        if isinstance(ref, (list, tuple)):
            return cls.coerce(ref[0])
        return cls.from_image(ref)


def _largest_components(cand: np.ndarray, keep_frac: float = 0.25) -> np.ndarray:
    """Per frame, keep components at least keep_frac of that frame's largest one (a subject split
    by an occluder stays whole; stray specks go)."""
    lab = connected_components(cand)
    F = cand.shape[0]
    flat = lab.reshape(F, -1)
    out = np.zeros_like(cand)
    for f in range(F):
        ids = flat[f][flat[f] >= 0]
        if ids.size == 0:
            continue
        u, cnt = np.unique(ids, return_counts=True)
        keep = u[cnt >= keep_frac * cnt.max()]
        out[f] = np.isin(lab[f], keep)
    return out


# --------------------------------------------------------------------------------------------
# Tracking
# --------------------------------------------------------------------------------------------
@dataclass
class Track:
    found: np.ndarray  # bool [F]
    x: np.ndarray  # centroid column [F] (nan where not found)
    y: np.ndarray  # centroid row [F]
    area: np.ndarray  # pixels [F]
    change: np.ndarray  # [F-1] fraction of the subject's pixels that change between frames (aligned)
    shape_iou: np.ndarray  # [F] best rotated IoU with the reference silhouette (0 where not found)
    mask: np.ndarray  # bool [F, H, W]
    turn: np.ndarray | None = None  # [F-SPIN_STRIDE] the same change between frames f and f+SPIN_STRIDE (the spin cue)

    @property
    def identity_ok(self) -> np.ndarray:
        return self.found & (self.shape_iou >= SHAPE_IOU_MIN)


def _hsv_video(frames: np.ndarray):
    return rgb_to_hsv(frames)


def track_subject(frames: np.ndarray, reference, hsv=None) -> Track:
    """Find one subject in every frame by its reference's hue."""
    ref = ReferenceModel.coerce(reference)
    frames = np.asarray(frames)
    F, H, W, _ = frames.shape
    h, s, v = hsv if hsv is not None else _hsv_video(frames)
    cand = (s > SAT_MIN) & (v > VAL_MIN) & (hue_dist(h, ref.hue) < HUE_TOL)
    mask = _largest_components(cand)
    area = mask.reshape(F, -1).sum(1).astype(np.float64)
    min_px = max(6.0, 0.0015 * H * W)
    found = area >= min_px
    ys, xs = np.mgrid[0:H, 0:W]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask * xs).reshape(F, -1).sum(1) / area
        cy = (mask * ys).reshape(F, -1).sum(1) / area
    cx[~found], cy[~found] = np.nan, np.nan

    # body (1) vs texture shade (2), so a turning striped circle changes even though its outline doesn't
    labels = np.zeros((F, H, W), dtype=np.int8)
    for f in np.flatnonzero(found):
        vf = v[f][mask[f]]
        bright = np.percentile(vf, 90)
        labels[f][mask[f]] = np.where(vf < SHADE_SPLIT * bright, 2, 1)
    def pixel_change(stride: int) -> np.ndarray:
        out = np.zeros(max(F - stride, 0))
        for f in range(F - stride):
            g = f + stride
            if not (found[f] and found[g]):
                out[f] = np.nan
                continue
            sy, sx = int(round(cy[g] - cy[f])), int(round(cx[g] - cx[f]))
            nxt = np.roll(labels[g], (-sy, -sx), axis=(0, 1))
            union = (labels[f] > 0) | (nxt > 0)
            out[f] = float((labels[f] != nxt)[union].mean())
        return out

    change = pixel_change(1)
    turn = pixel_change(SPIN_STRIDE)

    iou = np.zeros(F)
    for f in np.flatnonzero(found):
        c = _shape_canvases(mask[f], cy[f], cx[f], area[f], [0.0])[0]
        iou[f] = float(soft_iou(ref.canvases, c).max())
    return Track(found, cx, cy, area, change, iou, mask, turn)


# --------------------------------------------------------------------------------------------
# Classifying a span
# --------------------------------------------------------------------------------------------
def track_subjects(frames: np.ndarray, references: list) -> list[Track]:
    """track_subject for each reference, the video's HSV computed once."""
    frames = np.asarray(frames)
    hsv = _hsv_video(frames)
    return [track_subject(frames, r, hsv) for r in references]


def _nearest_found(track: Track, f0: int, f1: int, from_start: bool) -> int | None:
    rng = range(f0, f1 + 1) if from_start else range(f1, f0 - 1, -1)
    for f in rng:
        if track.found[f]:
            return f
    return None


def motion_features(track: Track, f0: int, f1: int, height: int, width: int) -> dict | None:
    """Net displacement, upward bounce, log area ratio and spin level over frames [f0, f1];
    None when the subject is missing at the span's ends."""
    a, b = _nearest_found(track, f0, f1, True), _nearest_found(track, f0, f1, False)
    if a is None or b is None or b <= a:
        return None
    fr = np.arange(a, b + 1)
    ok = track.found[fr]
    u = (fr - a) / (b - a)
    base = track.y[a] + (track.y[b] - track.y[a]) * u
    bounce = float(np.nanmax(np.where(ok, base - track.y[fr], -np.inf)))
    turn = track.turn if track.turn is not None else track.change
    stride = SPIN_STRIDE if track.turn is not None else 1
    ch = turn[a : max(a + 1, b - stride + 1)]
    spin = float(np.nanmedian(ch)) if ch.size and not np.all(np.isnan(ch)) else 0.0
    return {
        "dx": float(track.x[b] - track.x[a]),
        "dy": float(track.y[b] - track.y[a]),
        "log_area": float(math.log(track.area[b] / track.area[a])),
        "bounce": bounce,
        "spin": spin,
        "coverage": float(ok.mean()),
    }


def classify_features(feat: dict | None, height: int, width: int) -> str:
    """Decision list over the features: size change, then net move, then bounce, then spin."""
    if feat is None:
        return "missing"
    if feat["log_area"] >= AREA_LOG:
        return "grow"
    if feat["log_area"] <= -AREA_LOG:
        return "shrink"
    ax, ay = abs(feat["dx"]) / (MOVE_FRAC * width), abs(feat["dy"]) / (MOVE_FRAC * height)
    if max(ax, ay) >= 1.0:
        if ax >= ay:
            return "move_left" if feat["dx"] < 0 else "move_right"
        return "move_up" if feat["dy"] < 0 else "move_down"
    if feat["bounce"] >= BOUNCE_FRAC * height:
        return "jump"
    if feat["spin"] >= SPIN_MIN:
        return "spin"
    return "stay"


def classify_span(track: Track, f0: int, f1: int, height: int, width: int) -> str:
    return classify_features(motion_features(track, f0, f1, height, width), height, width)


# --------------------------------------------------------------------------------------------
# Boundary timing: fit each side with its commanded motion model, search the cut
# --------------------------------------------------------------------------------------------
def _bases(action: str, u: np.ndarray) -> dict[str, list[np.ndarray]]:
    one = np.ones_like(u)
    b = {"x": [one], "y": [one], "la": [one]}
    if action in ("move_left", "move_right"):
        b["x"] = [one, u]
    elif action in ("move_up", "move_down"):
        b["y"] = [one, u]
    elif action == "jump":
        b["y"] = [one, u, np.sin(np.pi * u)]
    elif action in ("grow", "shrink"):
        b["la"] = [one, u, u * u]
    return b


def _segment_cost(track: Track, action: str, a: int, b: int, norms: dict) -> float:
    fr = np.arange(a, b + 1)
    fr = fr[track.found[fr]]
    cost = 0.0
    if len(fr) >= 2:
        u = (fr - a) / max(1, b - a)
        sig = {"x": track.x[fr], "y": track.y[fr], "la": np.log(track.area[fr])}
        for key, basis in _bases(action, u).items():
            A = np.stack(basis, 1)
            z = sig[key] / norms[key]
            if len(fr) > A.shape[1]:
                coef, *_ = np.linalg.lstsq(A, z, rcond=None)
                cost += float(((A @ coef - z) ** 2).sum())
    ch = track.change[a:b]
    ch = ch[~np.isnan(ch)] / norms["spin"]
    if ch.size:
        cost += float(((ch - ch.mean()) ** 2).sum()) if action == "spin" else float((ch**2).sum())
    return cost


def detect_boundary(track: Track, left: str, right: str, a: int, b: int, e: int, height: int, width: int, window: int = TIMING_WINDOW) -> int | None:
    """Best cut between a `left` motion over [a, b] and a `right` motion over [b, e], searched
    within `window` frames of b; None when no cut explains the video better than another."""
    norms = {"x": MOVE_FRAC * width / 2, "y": MOVE_FRAC * height / 2, "la": AREA_LOG / 2, "spin": SPIN_MIN / 2}
    cands = range(max(a + 2, b - window), min(e - 2, b + window) + 1)
    if not cands or track.found[a:e + 1].mean() < 0.5:
        return None
    costs = np.array([_segment_cost(track, left, a, c, norms) + _segment_cost(track, right, c, e, norms) for c in cands])
    if costs.max() - costs.min() < 1.0:  # flat: the video shows no change here
        return None
    return int(cands[int(np.argmin(costs))])


# --------------------------------------------------------------------------------------------
# Scoring a clip
# --------------------------------------------------------------------------------------------
@dataclass
class SpriteScore:
    action_accuracy: float
    timing_error: float | None  # frames; None when the timeline has no boundary to time
    binding_accuracy: float | None  # None for single-subject scenes
    identity_fidelity: float
    n_actions: int
    n_boundaries: int
    n_bindings: int
    actions: list[dict] = field(default_factory=list)
    boundaries: list[dict] = field(default_factory=list)
    identity_per_subject: list[float] = field(default_factory=list)
    area_wobble_per_subject: list[float | None] = field(default_factory=list)  # area_wobble of each subject's track

    def to_dict(self) -> dict:
        return asdict(self)


def _commanded_segments(subject, fps: int, F: int, actions: list[str] | None) -> list[dict]:
    """The subject's timeline as frame segments covering [0, F-1]; gaps become implicit stays."""
    out, t = [], 0
    acts = subject.sorted_actions()
    for j, a in enumerate(acts):
        f0, f1 = min(F - 1, int(round(a.start * fps))), min(F - 1, int(round(a.end * fps)))
        if f1 <= f0:
            continue
        name = actions[j] if actions is not None else caption_to_action(a.text)
        if f0 > t:
            out.append({"action": "stay", "f0": t, "f1": f0, "index": None, "text": None})
        out.append({"action": name, "f0": f0, "f1": f1, "index": j, "text": a.text})
        t = f1
    if t < F - 1:
        out.append({"action": "stay", "f0": t, "f1": F - 1, "index": None, "text": None})
    return out


_DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


def _moved_along(feat: dict | None, action: str | None) -> float | None:
    """Pixels the subject moved in a translation's commanded direction (negative: the wrong way); None for other
    actions or a missing subject. The motion amplitude behind action accuracy (a move counts from MOVE_FRAC)."""
    if feat is None or action not in _DIRECTIONS:
        return None
    ux, uy = _DIRECTIONS[action]
    return float(feat["dx"] * ux + feat["dy"] * uy)


def area_steps(track: Track, skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """|log(area[f+1] / area[f])| for f = skip .. F-2, and whether the subject is found in both frames. Frames
    before `skip` are left out (the lone first latent frame is drawn apart from the rest)."""
    steps = np.abs(np.diff(np.log(np.maximum(track.area[skip:], 1.0))))
    return steps, track.found[skip:][1:] & track.found[skip:][:-1]


def area_wobble(track: Track, skip: int = 1) -> float | None:
    """Mean area_steps where the subject is found: how much its drawn size flickers from frame to frame (a rendered
    sprite that only moves or jumps: ~0). None when no two such frames exist."""
    steps, ok = area_steps(track, skip)
    return float(steps[ok].mean()) if ok.any() else None


def evaluate_clip(frames: np.ndarray, timeline: Timeline, references: list, actions: list[list[str]] | None = None,
                  window: int = TIMING_WINDOW, tracks: list[Track] | None = None) -> SpriteScore:
    """Score one generated clip. `references`: per subject an image (uint8 [h, w, 3]), a list of
    images (the first is used) or a sprites.Identity. `actions`: per subject canonical names that
    override reading the captions (captions that name no action are left out and listed)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.shape}")
    if len(references) != len(timeline.subjects):
        raise ValueError(f"references: got {len(references)} for {len(timeline.subjects)} subjects")
    F, H, W, _ = frames.shape
    fps = timeline.fps
    tracks = tracks if tracks is not None else track_subjects(frames, references)
    segs = [_commanded_segments(s, fps, F, actions[i] if actions else None) for i, s in enumerate(timeline.subjects)]

    per_action, boundaries = [], []
    for i, (subj, tr, sg) in enumerate(zip(timeline.subjects, tracks, segs)):
        for seg in sg:
            if seg["index"] is None:
                continue
            feat = motion_features(tr, seg["f0"], seg["f1"], H, W)
            observed = classify_features(feat, H, W)
            rec = {"subject": subj.id, "index": seg["index"], "text": seg["text"], "commanded": seg["action"],
                   "observed": observed, "f0": seg["f0"], "f1": seg["f1"], "scored": seg["action"] is not None,
                   "moved_px": _moved_along(feat, seg["action"]),
                   "log_area": None if feat is None else feat["log_area"]}
            rec["correct"] = bool(rec["scored"] and observed == seg["action"])
            per_action.append(rec)
        for left, right in zip(sg, sg[1:]):
            if left["action"] is None or right["action"] is None or left["action"] == right["action"]:
                continue  # the same motion on both sides leaves no visible boundary
            det = detect_boundary(tr, left["action"], right["action"], left["f0"], left["f1"], right["f1"], H, W, window)
            err = float(window) if det is None else float(abs(det - left["f1"]))
            boundaries.append({"subject": subj.id, "commanded": left["f1"], "detected": det, "error": err})

    # binding: a non-stay action must show on its subject and not on another subject that was not
    # told to do the same thing during that span.
    bindings = []
    if len(tracks) >= 2:
        for rec in per_action:
            if not rec["scored"] or rec["commanded"] == "stay":
                continue
            i = [s.id for s in timeline.subjects].index(rec["subject"])
            leaked = False
            for o, (tr_o, sg_o) in enumerate(zip(tracks, segs)):
                if o == i:
                    continue
                told = any(g["action"] == rec["commanded"] and g["f0"] < rec["f1"] and g["f1"] > rec["f0"] for g in sg_o)
                if not told and classify_span(tr_o, rec["f0"], rec["f1"], H, W) == rec["commanded"]:
                    leaked = True
            rec["bound"] = bool(rec["correct"] and not leaked)
            bindings.append(rec["bound"])

    scored = [r for r in per_action if r["scored"]]
    ident = [float(t.identity_ok.mean()) for t in tracks]
    return SpriteScore(
        action_accuracy=float(np.mean([r["correct"] for r in scored])) if scored else float("nan"),
        timing_error=float(np.mean([b["error"] for b in boundaries])) if boundaries else None,
        binding_accuracy=float(np.mean(bindings)) if bindings else None,
        identity_fidelity=float(np.mean(ident)),
        n_actions=len(scored),
        n_boundaries=len(boundaries),
        n_bindings=len(bindings),
        actions=per_action,
        boundaries=boundaries,
        identity_per_subject=ident,
        area_wobble_per_subject=[area_wobble(t) for t in tracks],
    )


def evaluate_sprite_clip(clip, frames: np.ndarray | None = None, reference: str = "intra") -> SpriteScore:
    """Score `frames` (default: the clip's own ground-truth frames) against a SpriteClip's timeline
    using its intra- or inter-clip references."""
    refs = clip.references_intra if reference == "intra" else clip.references_inter
    return evaluate_clip(clip.frames if frames is None else frames, clip.timeline, [r[0] for r in refs], actions=clip.actions)


def start_positions(frames: np.ndarray | list[Track], truth: np.ndarray | list[Track], references: list | None = None,
                    span: tuple[int, int] = (4, 13)) -> dict:
    """Where each subject is drawn early in the clip against where the truth has it: per subject the distance in
    pixels between mean tracked centroids over frames [span), the same against every *other* subject's true
    position (a chance control: a model that places subjects without knowing which is which scores alike), and
    whether the subjects' left-to-right order matches (None with one subject or one not found). The first frames
    are left out: the lone first latent frame is drawn apart from the rest. `frames` and `truth` may be the
    subjects' tracks already made (evaluate_clip's), then `references` is not needed."""
    sl = slice(*span)

    def centre(tr):
        with np.errstate(all="ignore"):
            xy = np.array([np.nanmean(tr.x[sl]), np.nanmean(tr.y[sl])]) if tr.found[sl].any() else np.array([np.nan, np.nan])
        return xy

    def tracks(video):
        return video if isinstance(video, list) else track_subjects(video, references)

    gen = [centre(t) for t in tracks(frames)]
    true = [centre(t) for t in tracks(truth)]
    own = [float(np.linalg.norm(g - t)) for g, t in zip(gen, true) if not (np.isnan(g).any() or np.isnan(t).any())]
    other = [float(np.linalg.norm(g - t)) for k, g in enumerate(gen) for j, t in enumerate(true)
             if j != k and not (np.isnan(g).any() or np.isnan(t).any())]
    order_ok = None
    if len(gen) > 1 and not any(np.isnan(v).any() for v in gen + true):
        order_ok = list(np.argsort([g[0] for g in gen], kind="stable")) == list(np.argsort([t[0] for t in true], kind="stable"))
    return {"own_px": own, "other_px": other, "order_ok": order_ok}


def summarize(scores: list[SpriteScore]) -> dict:
    """Benchmark totals: each metric pooled over its own items (actions, boundaries, bindings,
    subjects), so clips with more actions weigh more."""
    def pooled(vals, weights):
        pairs = [(v, w) for v, w in zip(vals, weights) if v is not None and w and not (isinstance(v, float) and math.isnan(v))]
        tot = sum(w for _, w in pairs)
        return float(sum(v * w for v, w in pairs) / tot) if tot else None

    return {
        "clips": len(scores),
        "action_accuracy": pooled([s.action_accuracy for s in scores], [s.n_actions for s in scores]),
        "timing_error_frames": pooled([s.timing_error for s in scores], [s.n_boundaries for s in scores]),
        "binding_accuracy": pooled([s.binding_accuracy for s in scores], [s.n_bindings for s in scores]),
        "identity_fidelity": pooled([s.identity_fidelity for s in scores], [len(s.identity_per_subject) for s in scores]),
    }


__all__ = [
    "ReferenceModel", "area_steps", "area_wobble", "SpriteScore", "Track", "classify_features", "classify_span", "connected_components", "detect_boundary",
    "evaluate_clip", "evaluate_sprite_clip", "motion_features", "start_positions", "summarize", "track_subject",
    "track_subjects",
]
