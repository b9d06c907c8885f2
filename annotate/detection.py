"""Stage 5: detection and verification (paper §3.1 "Subject Detection", App. B.2).

Each entity is grounded to a box per frame by the first detector that can take it:

- `SpriteColourDetector` (offline): entities whose label names a colour of the taxonomy ("the red
  striped circle"). Saturated pixels near that colour's hue (refined to the clip's own hue peak),
  cleaned by connected components, as the sprite benchmark's tracker does. It handles the sprite
  world and any scene of saturated, distinctly coloured objects; verification is the hue match
  itself (no shape check), and its records say so.
- `PersonDetector` (offline): human entities. MediaPipe's selfie-segmentation model (the
  `selfie_segmentation.tflite` shipped in the `mediapipe` wheel) run with `ai-edge-litert` gives
  person pixels; connected components are people, assigned to the caption's human entities left
  to right (a limitation: the offline default cannot tell which person the caption means; a VLM
  label plus Florence-2 can).
- `Florence2Detection` (hub): any entity, by phrase grounding; each box verified by SigLIP
  (image-text score of the crop against the label) when a SigLIP model is loaded.

An entity no detector can take, or that is found in no frame, is noted in the clip's errors and
left out; a clip where no entity is found fails with "no subject found".
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from model.colour import hue_dist, rgb_to_hsv

from .common import ClipState, Entity, NotAvailable, StageError, SubjectTrack, box_of, keep_large_components

SAT_MIN = 0.35
VAL_MIN = 0.15
HUE_TOL = 12.0
HUE_SEARCH = 22.0  # the clip's own hue peak is looked for within this of the taxonomy's nominal hue


class SpriteColourDetector:
    name = "sprite-colour (hue match, no shape check)"

    def __init__(self, colours: dict[str, float], min_frac: float = 0.0015):
        self.colours = colours
        self.min_frac = min_frac
        self._hsv = None

    def can_detect(self, e: Entity) -> bool:
        return e.colour is not None and e.colour in self.colours

    def detect(self, clip: ClipState, e: Entity) -> SubjectTrack | None:
        F, H, W = clip.shape
        if self._hsv is None or self._hsv[0] is not clip.frames:
            self._hsv = (clip.frames, *rgb_to_hsv(clip.frames))
        _, h, s, v = self._hsv
        sat = (s > SAT_MIN) & (v > VAL_MIN)
        nominal = self.colours[e.colour]
        near = sat & (hue_dist(h, nominal) < HUE_SEARCH)
        if near.sum() < 6:
            return None
        signed = (h[near] - nominal + 180.0) % 360.0 - 180.0  # in (-HUE_SEARCH, HUE_SEARCH)
        nbins = int(HUE_SEARCH)  # 2-degree bins
        hist = np.bincount(((signed + HUE_SEARCH) // 2).astype(int).clip(0, nbins - 1), minlength=nbins)
        peak = nominal - HUE_SEARCH + (np.argmax(hist) + 0.5) * 2
        sel = near & (hue_dist(h, peak) < HUE_TOL * 1.5)
        ang = np.deg2rad(h[sel])
        hue = float(np.rad2deg(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360.0)
        cand = sat & (hue_dist(h, hue) < HUE_TOL)
        min_px = max(6, int(self.min_frac * H * W))
        hint = np.zeros((F, H, W), dtype=bool)
        boxes: list = [None] * F
        scores = np.zeros(F)
        for f in range(F):
            m = keep_large_components(cand[f])
            if m.sum() >= min_px:
                hint[f] = m
                boxes[f] = box_of(m)
                scores[f] = 1.0
        if not any(b is not None for b in boxes):
            return None
        return SubjectTrack(e, boxes, scores, hint=hint, detector=f"{self.name}, hue {hue:.0f}")


def _mediapipe_model(name: str) -> Path:
    spec = importlib.util.find_spec("mediapipe")  # the wheel only carries the model file; mediapipe itself is never imported
    if spec is None or not spec.submodule_search_locations:
        raise NotAvailable(f"the person segmenter is not available: the mediapipe wheel (which ships {name}) is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / "modules" / "selfie_segmentation" / name
    if not p.is_file():
        raise NotAvailable(f"the person segmenter is not available: {p} is missing (mediapipe >= 0.10.30 ships no models; pin 0.10.21)")
    return p


class SelfieSegmenter:
    """MediaPipe selfie segmentation (256x256 float input in [0, 1], person probability out) on LiteRT."""

    name = "mediapipe-selfie-segmentation(litert)"

    def __init__(self):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise NotAvailable(f"the person segmenter is not available: ai-edge-litert is not installed ({exc})") from None
        self.interp = Interpreter(model_path=str(_mediapipe_model("selfie_segmentation.tflite")), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.size = tuple(int(x) for x in self.inp["shape"][1:3])

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> person probability float32 [H, W]."""
        import cv2

        H, W = frame.shape[:2]
        x = cv2.resize(frame, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self.interp.set_tensor(self.inp["index"], x[None])
        self.interp.invoke()
        p = self.interp.get_tensor(self.out["index"])[0, ..., 0]
        return cv2.resize(p, (W, H), interpolation=cv2.INTER_LINEAR)


class PersonDetector:
    name = "mediapipe-selfie-segmentation"

    def __init__(self, threshold: float = 0.5, min_frac: float = 0.02):
        self.threshold = threshold
        self.min_frac = min_frac
        self._seg = None
        self._cache = None

    def can_detect(self, e: Entity) -> bool:
        return e.kind == "human"

    def _instances(self, clip: ClipState) -> list[list[tuple[np.ndarray, float]]]:
        if self._cache is not None and self._cache[0] is clip.frames:
            return self._cache[1]
        if self._seg is None:
            self._seg = SelfieSegmenter()
        F, H, W = clip.shape
        import cv2

        per_frame = []
        for f in range(F):
            p = self._seg(clip.frames[f])
            m = (p > self.threshold).astype(np.uint8)
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            inst = []
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] >= self.min_frac * H * W:
                    mk = lab == k
                    inst.append((mk, float(p[mk].mean())))
            per_frame.append(inst)
        self._cache = (clip.frames, per_frame)
        return per_frame

    def detect_all(self, clip: ClipState, ents: list[Entity]) -> list[SubjectTrack | None]:
        """People are assigned to the human entities left to right, per frame, after sorting the
        largest len(ents) components by their centroid's x."""
        F, H, W = clip.shape
        per_frame = self._instances(clip)
        n = len(ents)
        boxes = [[None] * F for _ in ents]
        scores = [np.zeros(F) for _ in ents]
        hints = [np.zeros((F, H, W), dtype=bool) for _ in ents]
        for f, inst in enumerate(per_frame):
            inst = sorted(inst, key=lambda t: -t[0].sum())[:n]
            inst = sorted(inst, key=lambda t: np.nonzero(t[0])[1].mean())
            for k, (mk, sc) in enumerate(inst):
                boxes[k][f] = box_of(mk)
                scores[k][f] = sc
                hints[k][f] = mk
        out = []
        for k, e in enumerate(ents):
            if any(b is not None for b in boxes[k]):
                out.append(SubjectTrack(e, boxes[k], scores[k], hint=hints[k], detector=self._seg.name if self._seg else self.name))
            else:
                out.append(None)
        return out


class Florence2Detection:
    """Hub detector: Florence-2 phrase grounding every `stride` frames (boxes held in between), each
    box verified with SigLIP when a scorer is given."""

    def __init__(self, detector, verifier=None, stride: int = 4, min_verify: float = 0.1):
        self.detector, self.verifier, self.stride, self.min_verify = detector, verifier, stride, min_verify
        self.name = detector.name + (f"+{verifier.name}" if verifier else "")

    def can_detect(self, e: Entity) -> bool:
        return True

    def detect(self, clip: ClipState, e: Entity) -> SubjectTrack | None:
        F = clip.shape[0]
        boxes: list = [None] * F
        scores = np.zeros(F)
        verified = []
        last = None
        for f in range(F):
            if f % self.stride == 0:
                found = self.detector.detect(clip.frames[f], e.label)
                last = max(found, key=lambda t: t[1]) if found else None
                if last is not None and self.verifier is not None:
                    x, y, w, h = (int(round(v)) for v in last[0])
                    crop = clip.frames[f][max(0, y):y + max(1, h), max(0, x):x + max(1, w)]
                    s = float(self.verifier.score([crop], e.label)[0]) if crop.size else 0.0
                    verified.append(s)
                    if s < self.min_verify:
                        last = None
            if last is not None:
                boxes[f], scores[f] = last[0], last[1]
        if not any(b is not None for b in boxes):
            return None
        return SubjectTrack(e, boxes, scores, verified=float(np.mean(verified)) if verified else 1.0, detector=self.name)


class DetectionStage:
    def __init__(self, detectors: list):
        self.detectors = detectors

    def __call__(self, clip: ClipState) -> list[SubjectTrack]:
        tracks: dict[int, SubjectTrack] = {}
        todo = list(range(len(clip.entities)))
        for det in self.detectors:
            mine = [i for i in todo if det.can_detect(clip.entities[i])]
            if not mine:
                continue
            try:
                if hasattr(det, "detect_all"):
                    found = det.detect_all(clip, [clip.entities[i] for i in mine])
                else:
                    found = [det.detect(clip, clip.entities[i]) for i in mine]
            except NotAvailable as exc:
                clip.warn("detection", str(exc))
                continue
            for i, t in zip(mine, found):
                if t is not None:
                    tracks[i] = t
                else:
                    clip.warn("detection", f"{clip.entities[i].label!r} ({clip.entities[i].kind}): not found in any frame by {det.name}")
            todo = [i for i in todo if i not in mine]
        for i in todo:
            e = clip.entities[i]
            clip.warn("detection", f"{e.label!r} ({e.kind}): no detector on this machine can find it "
                                   f"(the offline detectors take coloured sprites and people; load Florence-2 with --detector-model DIR)")
        if not tracks:
            names = ", ".join(repr(e.label) for e in clip.entities)
            raise StageError("detection", f"no subject found: none of {names} was found in any frame", clip.clip_id)
        out = [tracks[i] for i in sorted(tracks)]
        clip.sources["detection"] = "; ".join(dict.fromkeys(t.detector.split(", hue")[0] for t in out))
        return out


def default_detectors(taxonomy, detector_model: str | None = None, verifier_model: str | None = None) -> list:
    dets: list = []
    if detector_model:
        from .hub import Florence2Detector, SiglipScorer

        dets.append(Florence2Detection(Florence2Detector(detector_model), SiglipScorer(verifier_model) if verifier_model else None))
    dets += [SpriteColourDetector(taxonomy.colours), PersonDetector()]
    return dets


__all__ = ["DetectionStage", "Florence2Detection", "PersonDetector", "SelfieSegmenter", "SpriteColourDetector", "default_detectors"]
