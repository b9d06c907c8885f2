"""Stage 8: timeline labels (paper §3.3.1 and App. B.2 "Timeline Prompt Captioning").

The paper's ensemble: a VLM proposes each subject's sub-actions (caption + span); temporal
grounding models re-localise each caption, giving more candidate spans; a video-text scorer
rates every candidate, and the best one is kept per sub-action. Here:

- **generators** propose `Candidate`s per subject. Offline: `MotionTrackGenerator` ("motion-track"),
  which reads the subject's tracked masks: centroid x, y, log area, and a turn cue (how much the
  subject's own pixels change, aligned on the centroid, over one latent frame). A dynamic
  programme cuts the clip on the latent grid (every 4 video frames) into segments, each explained
  by one motion model (still; linear move in x or y; jump = sin-shaped rise and fall; grow/shrink =
  quadratic log-area), with a cost per parameter and per segment; still segments are then split
  into spin and stay by the turn cue. Still spans shorter than `min_action_slots` latent frames
  are pauses, left unlabelled. Hub: `VlmTimelineGenerator` (Qwen2.5-VL, `hub.QwenVL.timeline`).
- **grounders** re-localise a caption: `relocalize(clip, track, text, start, end) -> (start, end)`.
  UniMD and TFVTG have no offline weights here; `MotionGrounder` ("motion-grounder") moves the
  two boundaries within +-`window` latent frames to where the caption's own motion model fits best.
- the **scorer** rates (span, caption): `MotionFitScorer` ("motion-fit") measures how much better
  the caption's motion model explains the subject's track over the span than standing still
  (InternVideo2 in the paper; `hub.SiglipScorer` can stand in for image-text alignment).

Every boundary is on the latent grid, every span at least one latent frame: what the timeline
document (model/timeline.py) requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model.actions import keyword_action
from model.timeline import TIME_COMPRESSION, Action, snap_to_grid

from .common import ClipState, SubjectTrack

@dataclass
class Candidate:
    subject_id: str
    start_frame: int
    end_frame: int
    text: str
    source: str
    action: str | None = None
    score: float | None = None
    group: int = -1

    def to_dict(self) -> dict:
        return {"subject_id": self.subject_id, "start_frame": self.start_frame, "end_frame": self.end_frame, "text": self.text,
                "source": self.source, "action": self.action, "score": None if self.score is None else round(float(self.score), 4),
                "group": self.group}


# --------------------------------------------------------------------------------------------
# Signals from a track
# --------------------------------------------------------------------------------------------
@dataclass
class Signals:
    found: np.ndarray  # bool [F]
    x: np.ndarray
    y: np.ndarray
    la: np.ndarray  # log area
    turn: np.ndarray  # [F - 4] change of the subject's own pixels over one latent frame (nan where unknown)
    sigma: dict = field(default_factory=dict)


def track_signals(frames: np.ndarray, masks: np.ndarray, min_px: int = 4) -> Signals:
    F, H, W = masks.shape
    area = masks.reshape(F, -1).sum(1).astype(np.float64)
    found = area >= min_px
    ys, xs = np.mgrid[0:H, 0:W]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (masks * xs).reshape(F, -1).sum(1) / area
        y = (masks * ys).reshape(F, -1).sum(1) / area
        la = np.log(np.maximum(area, 1.0))
    x[~found], y[~found], la[~found] = np.nan, np.nan, np.nan
    # body (1) vs darker texture (2) inside the mask, so a turning striped circle changes too
    v = frames.max(-1).astype(np.float32)
    labels = np.zeros((F, H, W), dtype=np.int8)
    for f in np.flatnonzero(found):
        vf = v[f][masks[f]]
        bright = np.percentile(vf, 90)
        labels[f][masks[f]] = np.where(vf < 0.775 * bright, 2, 1)
    turn = np.full(max(F - TIME_COMPRESSION, 0), np.nan)
    for f in range(F - TIME_COMPRESSION):
        g = f + TIME_COMPRESSION
        if found[f] and found[g]:
            sy, sx = int(round(y[g] - y[f])), int(round(x[g] - x[f]))
            nxt = np.roll(labels[g], (-sy, -sx), axis=(0, 1))
            union = (labels[f] > 0) | (nxt > 0)
            turn[f] = float((labels[f] != nxt)[union].mean())
    sig = {}
    for k, arr, floor in (("x", x, 0.5), ("y", y, 0.5), ("la", la, 0.04)):
        a = arr[found]
        d2 = np.abs(a[2:] - 2 * a[1:-1] + a[:-2]) if a.size >= 3 else np.zeros(1)
        sig[k] = max(floor, float(np.median(d2)) / 0.6745 / math.sqrt(6) if d2.size else floor)
    return Signals(found, x, y, la, turn, sig)


# --------------------------------------------------------------------------------------------
# Motion models over one span
# --------------------------------------------------------------------------------------------
@dataclass
class MotionConfig:
    move_min: float = 0.05  # net move >= this share of the frame side
    jump_min: float = 0.04  # rise >= this share of the height
    size_min: float = math.log(1.25)  # |log area change| >= this
    spin_min: float = 0.15  # turn cue over one latent frame
    param_cost: float = 6.0  # per model parameter, in units of noise variance
    segment_cost: float = 30.0
    min_action_slots: int = 2  # still spans shorter than this (latent frames) are pauses
    min_coverage: float = 0.5  # share of a span's frames where the subject must be found


_PARAMS = {"stay": 3, "move_left": 4, "move_right": 4, "move_up": 4, "move_down": 4, "jump": 5, "grow": 5, "shrink": 5}


def _fit(z: np.ndarray, basis: np.ndarray) -> tuple[float, np.ndarray]:
    coef, *_ = np.linalg.lstsq(basis, z, rcond=None)
    r = basis @ coef - z
    return float(r @ r), coef


def model_cost(sig: Signals, f0: int, f1: int, action: str, H: int, W: int, cfg: MotionConfig) -> float:
    """Normalised residual of `action`'s motion model over frames [f0, f1] (inf when the model does
    not apply: wrong direction, too small an effect, subject not seen)."""
    fr = np.arange(f0, f1 + 1)
    fr = fr[sig.found[fr]]
    n = len(fr)
    if n < max(2, cfg.min_coverage * (f1 - f0 + 1)):
        return math.inf if action != "stay" else 0.0
    u = (fr - f0) / max(1, f1 - f0)
    one = np.ones(n)
    lin = np.stack([one, u], 1)
    x, y, la = sig.x[fr] / sig.sigma["x"], sig.y[fr] / sig.sigma["y"], sig.la[fr] / sig.sigma["la"]
    const = one[:, None]
    cost = 0.0
    if action in ("move_left", "move_right"):
        c, coef = _fit(x, lin)
        dx = coef[1] * sig.sigma["x"]
        if (dx < 0) != (action == "move_left") or abs(dx) < cfg.move_min * W:
            return math.inf
        cost += c + _fit(y, const)[0] + _fit(la, const)[0]
    elif action in ("move_up", "move_down"):
        c, coef = _fit(y, lin)
        dy = coef[1] * sig.sigma["y"]
        if (dy < 0) != (action == "move_up") or abs(dy) < cfg.move_min * H:
            return math.inf
        cost += c + _fit(x, const)[0] + _fit(la, const)[0]
    elif action == "jump":
        c, coef = _fit(y, np.stack([one, u, np.sin(np.pi * u)], 1))
        rise = -coef[2] * sig.sigma["y"]
        if rise < cfg.jump_min * H or abs(coef[1] * sig.sigma["y"]) > 0.5 * rise:
            return math.inf
        cost += c + _fit(x, const)[0] + _fit(la, const)[0]
    elif action in ("grow", "shrink"):
        c, coef = _fit(la, np.stack([one, u, u * u], 1))
        d = (coef[1] + coef[2]) * sig.sigma["la"]
        if (d > 0) != (action == "grow") or abs(d) < cfg.size_min:
            return math.inf
        cost += c + _fit(x, const)[0] + _fit(y, const)[0]
    else:  # stay / spin: still in position and size
        cost += _fit(x, const)[0] + _fit(y, const)[0] + _fit(la, const)[0]
    return cost


def best_model(sig: Signals, f0: int, f1: int, H: int, W: int, cfg: MotionConfig) -> tuple[str, float]:
    best, best_cost = "stay", math.inf
    for a, p in _PARAMS.items():
        c = model_cost(sig, f0, f1, a, H, W, cfg)
        if c + cfg.param_cost * p < best_cost:
            best, best_cost = a, c + cfg.param_cost * p
    return best, best_cost


def segment_track(sig: Signals, num_frames: int, H: int, W: int, cfg: MotionConfig) -> list[tuple[int, int, str]]:
    """Latent-grid segmentation -> [(f0, f1, action)] covering the clip (stays included)."""
    K = (num_frames - 1) // TIME_COMPRESSION
    if K < 1:
        return []
    best = np.full(K + 1, math.inf)
    best[0] = 0.0
    back: list[tuple[int, str]] = [(0, "stay")] * (K + 1)
    for b in range(1, K + 1):
        for a in range(b):
            label, c = best_model(sig, a * TIME_COMPRESSION, b * TIME_COMPRESSION, H, W, cfg)
            tot = best[a] + cfg.segment_cost + c
            if tot < best[b]:
                best[b], back[b] = tot, (a, label)
    segs, b = [], K
    while b > 0:
        a, label = back[b]
        segs.append((a, b, label))
        b = a
    segs.reverse()
    out: list[tuple[int, int, str]] = []
    for a, b, label in segs:  # still segments: spin or stay, per latent frame, by the turn cue
        if label != "stay":
            out.append((a, b, label))
            continue
        kinds = []
        for k in range(a, b):
            idx = [f for f in (4 * k - 1, 4 * k, 4 * k + 1) if 4 * a <= f <= 4 * b - TIME_COMPRESSION and f < len(sig.turn)]
            vals = sig.turn[idx] if idx else np.array([np.nan])
            vals = vals[~np.isnan(vals)]
            kinds.append("spin" if vals.size and float(np.median(vals)) >= cfg.spin_min else "stay")
        runs = []
        for k, kind in zip(range(a, b), kinds):
            if runs and runs[-1][2] == kind:
                runs[-1][1] = k + 1
            else:
                runs.append([k, k + 1, kind])
        for r in runs:  # a spin shorter than the minimum is noise
            if r[2] == "spin" and r[1] - r[0] < cfg.min_action_slots:
                r[2] = "stay"
        for r in runs:
            if out and out[-1][2] == r[2] and out[-1][1] == r[0]:
                out[-1] = (out[-1][0], r[1], r[2])
            else:
                out.append((r[0], r[1], r[2]))
    merged: list[tuple[int, int, str]] = []
    for a, b, label in out:
        if merged and merged[-1][2] == label and merged[-1][1] == a:  # one motion cut in two by the programme
            merged[-1] = (merged[-1][0], b, label)
        else:
            merged.append((a, b, label))
    return [(a * TIME_COMPRESSION, b * TIME_COMPRESSION, label) for a, b, label in merged]


# --------------------------------------------------------------------------------------------
# Generators, grounders, scorer
# --------------------------------------------------------------------------------------------
class MotionTrackGenerator:
    name = "motion-track"

    def __init__(self, captions: dict[str, str], config: MotionConfig | None = None):
        self.captions = captions
        self.cfg = config or MotionConfig()

    def __call__(self, clip: ClipState, track: SubjectTrack, subject_id: str, sig: Signals) -> list[Candidate]:
        F, H, W = clip.shape
        segs = segment_track(sig, F, H, W, self.cfg)
        out = []
        for f0, f1, label in segs:
            if label == "stay" and (f1 - f0) < self.cfg.min_action_slots * TIME_COMPRESSION:
                continue  # a pause, not a sub-action
            out.append(Candidate(subject_id, f0, f1, self.captions.get(label, label.replace("_", " ")), self.name, label))
        return out


class VlmTimelineGenerator:
    def __init__(self, vlm):
        self.vlm = vlm
        self.name = vlm.name

    def __call__(self, clip: ClipState, track: SubjectTrack, subject_id: str, sig: Signals) -> list[Candidate]:
        out = []
        for it in self.vlm.timeline(clip.frames, clip.fps, track.entity.label):
            f0, f1 = int(round(it["start"] * clip.fps)), int(round(it["end"] * clip.fps))
            out.append(Candidate(subject_id, f0, f1, it["text"], self.name, keyword_action(it["text"])))
        return out


class MotionFitScorer:
    """Video-text alignment, offline: how much better the caption's motion model explains the
    subject's track over the span than the alternatives, in [0, 1]."""

    name = "motion-fit"

    def __init__(self, config: MotionConfig | None = None):
        self.cfg = config or MotionConfig()

    def __call__(self, clip: ClipState, sig: Signals, cand: Candidate) -> float:
        F, H, W = clip.shape
        action = cand.action or keyword_action(cand.text)
        f0, f1 = max(0, cand.start_frame), min(F - 1, cand.end_frame)
        if action is None or f1 - f0 < TIME_COMPRESSION:
            return 0.0
        if action in ("spin", "stay"):
            vals = sig.turn[f0:max(f0 + 1, f1 - TIME_COMPRESSION + 1)]
            vals = vals[~np.isnan(vals)]
            level = float(np.median(vals)) if vals.size else 0.0
            still = model_cost(sig, f0, f1, "stay", H, W, self.cfg)
            moving = min(model_cost(sig, f0, f1, a, H, W, self.cfg) for a in _PARAMS if a != "stay")
            pos = 1.0 if not math.isfinite(moving) else float(moving / (still + moving + 1e-9))
            turn_ok = min(1.0, level / self.cfg.spin_min) if action == "spin" else float(level < self.cfg.spin_min)
            return pos * turn_ok
        c = model_cost(sig, f0, f1, action, H, W, self.cfg)
        if not math.isfinite(c):
            return 0.0
        n = max(1, f1 - f0 + 1)
        alt = min(model_cost(sig, f0, f1, a, H, W, self.cfg) for a in _PARAMS if a != action)
        fit = math.exp(-c / (3 * n))  # about 1 when the residual is at the noise level
        margin = 1.0 if not math.isfinite(alt) else float(alt / (alt + c + 1e-9))
        return fit * margin


class MotionGrounder:
    """Re-localises a caption's span: both boundaries move on the latent grid within +-window
    latent frames to where the caption's motion model (and standing still around it) fits best."""

    name = "motion-grounder"

    def __init__(self, config: MotionConfig | None = None, window: int = 1):
        self.cfg = config or MotionConfig()
        self.window = window

    def __call__(self, clip: ClipState, sig: Signals, cand: Candidate) -> tuple[int, int] | None:
        F, H, W = clip.shape
        action = cand.action or keyword_action(cand.text)
        if action is None or action in ("stay", "spin"):
            return None
        T = TIME_COMPRESSION
        s0, e0 = int(round(cand.start_frame / T)), int(round(cand.end_frame / T))
        K = (F - 1) // T
        best, best_cost = None, math.inf
        for s in range(max(0, s0 - self.window), min(K, s0 + self.window) + 1):
            for e in range(max(s + 1, e0 - self.window), min(K, e0 + self.window) + 1):
                c = model_cost(sig, s * T, e * T, action, H, W, self.cfg)
                if not math.isfinite(c):
                    continue
                lo = model_cost(sig, max(0, s * T - 2 * T), s * T, "stay", H, W, self.cfg) if s > 0 else 0.0
                hi = model_cost(sig, e * T, min(F - 1, e * T + 2 * T), "stay", H, W, self.cfg) if e < K else 0.0
                if c + 0.5 * (lo + hi) < best_cost:
                    best, best_cost = (s * T, e * T), c + 0.5 * (lo + hi)
        return best


# --------------------------------------------------------------------------------------------
# The ensemble
# --------------------------------------------------------------------------------------------
def _tiou(a: Candidate, b: Candidate) -> float:
    inter = max(0, min(a.end_frame, b.end_frame) - max(a.start_frame, b.start_frame))
    union = max(a.end_frame, b.end_frame) - min(a.start_frame, b.start_frame)
    return inter / union if union > 0 else 0.0


class TimelineStage:
    def __init__(self, generators: list, grounders: list | None = None, scorer=None):
        self.generators = generators
        self.grounders = grounders or []
        self.scorer = scorer

    def __call__(self, clip: ClipState, subject_ids: list[str]) -> dict[str, list[Action]]:
        F, H, W = clip.shape
        result: dict[str, list[Action]] = {}
        all_cands: list[Candidate] = []
        for sid, t in zip(subject_ids, clip.tracks):
            sig = track_signals(clip.frames, t.masks)
            proposals = [g(clip, t, sid, sig) for g in self.generators]
            primary = next((p for p in proposals if p), [])
            groups: list[list[Candidate]] = [[c] for c in primary]
            for p in proposals:
                if p is primary:
                    continue
                for c in p:
                    best = max(range(len(groups)), key=lambda i: _tiou(groups[i][0], c), default=None)
                    if best is not None and _tiou(groups[best][0], c) > 0.3:
                        groups[best].append(c)
            for gi, g in enumerate(groups):
                for gr in self.grounders:
                    span = gr(clip, sig, g[0])
                    if span is not None and span != (g[0].start_frame, g[0].end_frame):
                        g.append(Candidate(sid, span[0], span[1], g[0].text, gr.name, g[0].action))
                for c in g:
                    c.group = gi
                    c.score = self.scorer(clip, sig, c) if self.scorer is not None else None
            chosen = []
            for g in groups:
                pick = max(g, key=lambda c: -1.0 if c.score is None else c.score) if self.scorer is not None else g[0]
                chosen.append(pick)
                all_cands += g
            result[sid] = self._to_actions(chosen, clip.fps, F)
        clip.timeline_candidates = [c.to_dict() for c in all_cands]
        names = [g.name for g in self.generators] + [g.name for g in self.grounders]
        clip.sources["timeline"] = "+".join(names) + (f", scored by {self.scorer.name}" if self.scorer is not None else "")
        return result

    @staticmethod
    def _to_actions(chosen: list[Candidate], fps: int, F: int) -> list[Action]:
        """On the latent grid, inside the clip, non-overlapping, each at least one latent frame."""
        T = TIME_COMPRESSION
        out: list[Action] = []
        last_end = 0
        for c in sorted(chosen, key=lambda c: c.start_frame):
            s = max(last_end, int(round(c.start_frame / T)) * T)
            e = min((F - 1) // T * T, int(round(c.end_frame / T)) * T)
            if e - s < T or not c.text.strip():
                continue
            out.append(Action(snap_to_grid(s / fps, fps), snap_to_grid(e / fps, fps), c.text.strip()))
            last_end = e
        return out


def default_timeline_stage(captions: dict[str, str], vlm=None, config: MotionConfig | None = None, grounder: bool = True) -> TimelineStage:
    cfg = config or MotionConfig()
    gens = ([VlmTimelineGenerator(vlm)] if vlm is not None else []) + [MotionTrackGenerator(captions, cfg)]
    return TimelineStage(gens, [MotionGrounder(cfg)] if grounder else [], MotionFitScorer(cfg))


__all__ = ["Candidate", "MotionConfig", "MotionFitScorer", "MotionGrounder", "MotionTrackGenerator", "Signals", "TimelineStage",
           "VlmTimelineGenerator", "default_timeline_stage", "model_cost", "segment_track", "track_signals"]
