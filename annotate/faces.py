"""Stage 7: faces of human subjects (paper §3.1, App. B.2 "Face Detection and Segmentation").

As the paper does, with offline parts: faces are detected at 2 fps (MTCNN from `facenet-pytorch`,
whose three small networks ship in its wheel; the paper uses InsightFace), duplicates are removed
by non-maximum suppression at 25% overlap, outlier boxes (far from the person's median face size)
are dropped, and for each person the confident faces are ranked and five frames sampled uniformly
through the clip. Each kept face gets a mask (box-prompted GrabCut, refined like the subject masks;
SAM2 when loaded).

facenet-pytorch imports two functions from torchvision (`batched_nms`, `to_tensor`), and PyPI's
torchvision does not import beside the local CPU torch (DESIGN.md §5). It is installed with
`--no-deps`, and `load_mtcnn` lends it those two functions, written here in torch, for the time
of the import only (nothing else sees a fake torchvision).
"""

from __future__ import annotations

import sys
import types

import numpy as np

from .common import ClipState, NotAvailable, box_iou
from .masks import GrabCutMasker, refine


def _nms_torch(boxes, scores, idxs, iou):
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    b = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
    x1, y1, x2, y2 = b.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        inter = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0) * (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        suppressed |= inter / (area[i] + area - inter) > iou
    return torch.tensor(keep, dtype=torch.long)


_MTCNN = {}


def load_mtcnn():
    """facenet-pytorch's MTCNN (weights in its wheel), one per process."""
    if "m" in _MTCNN:
        return _MTCNN["m"]
    import torch

    shim = {}
    try:
        import torchvision  # noqa: F401  (a working torchvision needs no shim)
    except Exception:
        tv, ops, boxes, tr, fn = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.boxes",
                                                                   "torchvision.transforms", "torchvision.transforms.functional"))
        boxes.batched_nms = _nms_torch
        fn.to_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32)).permute(2, 0, 1) / 255.0
        tv.ops, ops.boxes, tv.transforms, tr.functional = ops, boxes, tr, fn
        shim = {"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes, "torchvision.transforms": tr,
                "torchvision.transforms.functional": fn}
        for k in shim:
            sys.modules.pop(k, None)
        sys.modules.update(shim)
    try:
        from facenet_pytorch.models.mtcnn import MTCNN
    except ImportError as exc:
        raise NotAvailable(f"the face detector is not available: facenet-pytorch does not import ({exc}); "
                           "install it with pip install --no-deps facenet-pytorch==2.6.0") from None
    finally:
        for k, mod in shim.items():
            if sys.modules.get(k) is mod:
                del sys.modules[k]
    _MTCNN["m"] = MTCNN(keep_all=True, device="cpu", post_process=False)
    return _MTCNN["m"]


def nms(faces: list[dict], iou: float = 0.25) -> list[dict]:
    """Greedy NMS by score: a face overlapping a better one by more than `iou` is a duplicate."""
    kept: list[dict] = []
    for f in sorted(faces, key=lambda d: -d["score"]):
        if all(box_iou(f["box"], k["box"]) <= iou for k in kept if k["frame"] == f["frame"]):
            kept.append(f)
    return sorted(kept, key=lambda d: (d["frame"], -d["score"]))


def drop_outliers(faces: list[dict], low: float = 0.5, high: float = 2.0) -> list[dict]:
    if len(faces) < 3:
        return faces
    sizes = np.array([np.sqrt(f["box"][2] * f["box"][3]) for f in faces])
    med = np.median(sizes)
    return [f for f, s in zip(faces, sizes) if low * med <= s <= high * med]


def pick_uniform(faces: list[dict], n: int = 5, min_score: float = 0.9) -> list[dict]:
    """Rank by confidence, keep the confident ones, then n frames sampled uniformly through time."""
    good = [f for f in sorted(faces, key=lambda d: -d["score"]) if f["score"] >= min_score] or sorted(faces, key=lambda d: -d["score"])[:n]
    good = sorted(good, key=lambda d: d["frame"])
    if len(good) <= n:
        return good
    idx = np.unique(np.linspace(0, len(good) - 1, n).round().astype(int))
    return [good[i] for i in idx]


class FaceStage:
    name = "mtcnn(facenet-pytorch)"

    def __init__(self, fps_sample: float = 2.0, nms_iou: float = 0.25, per_person: int = 5, min_score: float = 0.9, masker=None,
                 detector=None):
        self.fps_sample, self.nms_iou, self.per_person, self.min_score = fps_sample, nms_iou, per_person, min_score
        self.masker = masker or GrabCutMasker()
        self.detector = detector  # callable frame -> [(box (x, y, w, h), score)]; default MTCNN

    def _detect(self, frame: np.ndarray) -> list[tuple[tuple, float]]:
        if self.detector is not None:
            return self.detector(frame)
        boxes, probs = load_mtcnn().detect(frame)
        if boxes is None:
            return []
        return [((float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])), float(p)) for b, p in zip(boxes, probs)]

    def __call__(self, clip: ClipState) -> list[dict]:
        humans = [t for t in clip.tracks if t.entity.kind == "human"]
        if not humans:
            return []
        F, H, W = clip.shape
        stride = max(1, int(round(clip.fps / self.fps_sample)))
        found = []
        for f in range(0, F, stride):
            for box, score in self._detect(clip.frames[f]):
                x, y, w, h = box
                x0, y0 = max(0.0, x), max(0.0, y)
                box = (x0, y0, min(float(W), x + w) - x0, min(float(H), y + h) - y0)
                if box[2] > 1 and box[3] > 1:
                    found.append({"frame": f, "box": box, "score": score})
        found = nms(found, self.nms_iou)
        by_subject: dict[int, list[dict]] = {}
        for d in found:
            k = self._owner(clip, humans, d)
            if k is not None:
                by_subject.setdefault(k, []).append(d)
        out = []
        sid = {id(t): f"s{i + 1}" for i, t in enumerate(clip.tracks)}
        for k, faces in by_subject.items():
            for d in pick_uniform(drop_outliers(faces), self.per_person, self.min_score):
                m = refine(self.masker(clip.frames[d["frame"]], d["box"], None), 1, image=clip.frames[d["frame"]])
                out.append({"subject_id": sid[id(humans[k])], "frame": int(d["frame"]), "box": tuple(float(v) for v in d["box"]),
                            "score": float(d["score"]), "mask": m})
        clip.sources["faces"] = f"{self.name if self.detector is None else getattr(self.detector, 'name', 'custom')} @{self.fps_sample:g}fps, " \
                                f"nms{self.nms_iou:g}, top{self.per_person}, {getattr(self.masker, 'name', 'masker')}"
        return out

    @staticmethod
    def _owner(clip: ClipState, humans, d) -> int | None:
        x, y, w, h = d["box"]
        cx, cy = int(x + w / 2), int(y + h / 2)
        f = d["frame"]
        for k, t in enumerate(humans):
            if t.masks is not None and 0 <= cy < t.masks.shape[1] and 0 <= cx < t.masks.shape[2] and t.masks[f, cy, cx]:
                return k
        if len(humans) == 1:
            return 0
        best = max(range(len(humans)), key=lambda k: box_iou(d["box"], humans[k].boxes[f]) if humans[k].boxes[f] else -1)
        return best if humans[best].boxes[f] is not None else None


__all__ = ["FaceStage", "drop_outliers", "load_mtcnn", "nms", "pick_uniform"]
