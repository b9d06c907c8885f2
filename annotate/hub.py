"""Loaders for the paper's hub models (ReactID-Data, paper §3.1 and App. B).

DINOv2 (scene-cut features), RAFT (optical flow), Qwen2.5-VL (captions, entity labels, timeline
proposals), Florence-2 (open-vocabulary detection), SigLIP (label verification and video-text
alignment) and SAM2 (box-prompted masks). None of their weights can be downloaded on these machines
(DESIGN.md §5), so every loader takes a local directory (`from_pretrained(path,
local_files_only=True)`) and raises `NotAvailable` naming the model, the path and what is missing
when it cannot load. The pipeline's offline defaults are used instead, and every record names the
backend that really ran.

The loaders are real: the DINOv2 one is tested on a tiny random model built in code
(tests/test_annotation_pipeline.py); the others need their processors' tokenizer files, which
cannot be made offline, so their tests check the clean failure only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .common import NotAvailable

HUB_MODELS = {
    "dinov2": "facebook/dinov2-small (any Dinov2Model directory)",
    "raft": "torchvision raft_large weights (.pth)",
    "qwen2.5-vl": "Qwen/Qwen2.5-VL-7B-Instruct (the paper uses 7B for captions, 72B for timelines)",
    "florence-2": "microsoft/Florence-2-large (transformers-native checkpoint)",
    "siglip": "google/siglip-so400m-patch14-384",
    "sam2": "facebook/sam2.1-hiera-large (transformers Sam2Model checkpoint)",
}


def _need_dir(name: str, path: str | Path | None) -> Path:
    if path is None or str(path).strip() == "":
        raise NotAvailable(f"{name} is not available: no model directory given (expects a local copy of {HUB_MODELS[name]}; "
                           f"nothing is downloaded on this machine)")
    p = Path(path)
    if not p.is_dir():
        raise NotAvailable(f"{name} is not available: {p} is not a directory (expects a local copy of {HUB_MODELS[name]}; "
                           f"nothing is downloaded on this machine)")
    if not (p / "config.json").is_file():
        raise NotAvailable(f"{name} is not available: {p} has no config.json (is it a transformers model directory?)")
    return p


def _load(name: str, path: Path, loader, **kw):
    try:
        return loader(str(path), local_files_only=True, **kw)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise NotAvailable(f"{name} is not available from {path}: {type(exc).__name__}: {exc}") from None


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _load_checkpoint(obj: Any, name: str, path: str | Path | None, device: str | None, model_cls: str, processor_cls: str) -> Path:
    """Load a transformers checkpoint from a local directory onto `obj`: `device`, `model` (eval mode, on
    the device), `processor` and `name` = "<name>(<directory>)". The classes are transformers names; one
    this transformers lacks makes the model NotAvailable. Returns the directory."""
    import transformers

    p = _need_dir(name, path)
    classes = []
    for cls_name in (model_cls, processor_cls):
        cls = getattr(transformers, cls_name, None)
        if cls is None:  # pragma: no cover - present in the pinned transformers
            raise NotAvailable(f"{name} is not available: this transformers has no {cls_name}")
        classes.append(cls)
    obj.device = _device(device)
    obj.model = _load(name, p, classes[0].from_pretrained).to(obj.device).eval()
    obj.processor = _load(name, p, classes[1].from_pretrained)
    obj.name = f"{name}({p.name})"
    return p


# --------------------------------------------------------------------------------------------
# DINOv2: adjacent-frame features for scene cuts (paper B.1)
# --------------------------------------------------------------------------------------------
class DinoV2Features:
    name = "dinov2"

    def __init__(self, path: str | Path, device: str | None = None):
        _load_checkpoint(self, "dinov2", path, device, "AutoModel", "AutoImageProcessor")

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), 16):
                inputs = self.processor(images=list(frames[i:i + 16]), return_tensors="pt").to(self.device)
                h = self.model(**inputs).last_hidden_state[:, 0]
                out.append(h.float().cpu().numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# RAFT: optical flow for the motion score (paper B.1)
# --------------------------------------------------------------------------------------------
class RaftFlow:
    name = "raft"

    def __init__(self, weights: str | Path | None, device: str | None = None):
        try:
            from torchvision.models.optical_flow import raft_large
        except Exception as exc:  # PyPI torchvision does not import beside the local CPU torch (DESIGN.md §5)
            raise NotAvailable(f"raft is not available: torchvision's RAFT does not import here ({type(exc).__name__}: {exc})") from None
        if weights is None or not Path(weights).is_file():
            raise NotAvailable(f"raft is not available: weights file {weights!r} not found (expects {HUB_MODELS['raft']})")
        import torch

        self.device = _device(device)
        self.model = raft_large(weights=None)
        self.model.load_state_dict(torch.load(weights, map_location="cpu"))
        self.model = self.model.to(self.device).eval()
        self.name = "raft-large"

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] x2 -> flow [H, W, 2] (dx, dy) in pixels."""
        import torch

        def prep(x):
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
            H, W = t.shape[-2:]
            ph, pw = (-H) % 8, (-W) % 8
            return torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate").to(self.device), H, W

        (ta, H, W), (tb, _, _) = prep(a), prep(b)
        with torch.inference_mode():
            flow = self.model(ta, tb)[-1][0, :, :H, :W]
        return flow.permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Qwen2.5-VL: captions, fine-grained living-subject labels, timeline proposals (paper B.1, B.2)
# --------------------------------------------------------------------------------------------
CAPTION_PROMPT = ("Describe this video for a personalised video generation dataset. For each subject that appears, describe "
                  "its physical appearance and its actions in order; then describe the background environment. Use singular "
                  "nouns for individual subjects.")
LABEL_PROMPT = ("Give a short unique descriptive label for each {noun} in this video, such as 'the person in red' or 'the person "
                "sitting on the bench'. Answer with a JSON list of strings.")
TIMELINE_PROMPT = ("Identify each sub-action of {label} in this video, split at meaningful changes of action. Answer with a JSON list "
                   "of objects {{\"start\": seconds, \"end\": seconds, \"caption\": short caption of the sub-action}}.")


class QwenVL:
    name = "qwen2.5-vl"

    def __init__(self, path: str | Path | None, device: str | None = None, max_frames: int = 16):
        _load_checkpoint(self, "qwen2.5-vl", path, device, "Qwen2_5_VLForConditionalGeneration", "AutoProcessor")
        self.max_frames = max_frames

    def ask(self, frames: np.ndarray, fps: float, prompt: str, max_new_tokens: int = 256) -> str:
        import torch

        idx = np.linspace(0, len(frames) - 1, min(self.max_frames, len(frames))).round().astype(int)
        video = [frames[i] for i in idx]
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], videos=[video], return_tensors="pt",
                                videos_kwargs={"fps": float(fps) * len(idx) / max(1, len(frames))}).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()

    def caption(self, frames: np.ndarray, fps: float) -> str:
        return self.ask(frames, fps, CAPTION_PROMPT)

    def living_labels(self, frames: np.ndarray, fps: float, noun: str) -> list[str]:
        return [str(x) for x in parse_json_list(self.ask(frames, fps, LABEL_PROMPT.format(noun=noun), 128)) if isinstance(x, str)]

    def timeline(self, frames: np.ndarray, fps: float, label: str) -> list[dict]:
        items = parse_json_list(self.ask(frames, fps, TIMELINE_PROMPT.format(label=label), 384))
        out = []
        for it in items:
            try:
                out.append({"start": float(it["start"]), "end": float(it["end"]), "text": str(it["caption"]).strip()})
            except (KeyError, TypeError, ValueError):
                continue
        return out


def parse_json_list(text: str) -> list:
    """The first JSON list in a model's answer ([] when there is none)."""
    m = re.search(r"\[.*\]", text, re.S)
    if not m:
        return []
    try:
        v = json.loads(m.group(0))
    except json.JSONDecodeError:
        return []
    return v if isinstance(v, list) else []


# --------------------------------------------------------------------------------------------
# Florence-2 (detection) and SigLIP (verification) (paper §3.1, B.2)
# --------------------------------------------------------------------------------------------
class Florence2Detector:
    name = "florence-2"
    TASK = "<CAPTION_TO_PHRASE_GROUNDING>"

    def __init__(self, path: str | Path | None, device: str | None = None):
        _load_checkpoint(self, "florence-2", path, device, "Florence2ForConditionalGeneration", "AutoProcessor")

    def detect(self, image: np.ndarray, label: str) -> list[tuple[tuple[float, float, float, float], float]]:
        """Boxes (x, y, w, h) for a phrase in one frame, each with a score (Florence-2 gives none: 1.0)."""
        import torch

        inputs = self.processor(text=self.TASK + label, images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=256, do_sample=False, num_beams=3)
        text = self.processor.batch_decode(ids, skip_special_tokens=False)[0]
        parsed = self.processor.post_process_generation(text, task=self.TASK, image_size=(image.shape[1], image.shape[0]))
        res = parsed.get(self.TASK, {})
        return [((b[0], b[1], b[2] - b[0], b[3] - b[1]), 1.0) for b in res.get("bboxes", [])]


class SiglipScorer:
    """Image-text alignment: the label verifier of paper B.2, and an offline-free stand-in for the
    video-text scorer of the timeline ensemble (mean over the span's frames)."""

    name = "siglip"

    def __init__(self, path: str | Path | None, device: str | None = None):
        _load_checkpoint(self, "siglip", path, device, "AutoModel", "AutoProcessor")

    def score(self, images: list[np.ndarray], text: str) -> np.ndarray:
        import torch

        inputs = self.processor(text=[text], images=images, padding="max_length", return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits_per_image[:, 0]
        return torch.sigmoid(logits).float().cpu().numpy()


# --------------------------------------------------------------------------------------------
# SAM2: box-prompted masks (paper §3.1, B.2)
# --------------------------------------------------------------------------------------------
class Sam2Masker:
    name = "sam2"

    def __init__(self, path: str | Path | None, device: str | None = None):
        _load_checkpoint(self, "sam2", path, device, "Sam2Model", "Sam2Processor")

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float], hint: np.ndarray | None = None) -> np.ndarray:
        import torch

        x, y, w, h = box
        inputs = self.processor(images=image, input_boxes=[[[x, y, x + w, y + h]]], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs, multimask_output=False)
        masks = self.processor.post_process_masks(out.pred_masks.cpu(), inputs["original_sizes"].cpu())[0]
        return np.asarray(masks[0, 0], dtype=bool)


def describe_missing(name: str, path: Any) -> str:
    try:
        _need_dir(name, path)
    except NotAvailable as exc:
        return str(exc)
    return ""


__all__ = ["DinoV2Features", "Florence2Detector", "HUB_MODELS", "QwenVL", "RaftFlow", "Sam2Masker", "SiglipScorer", "describe_missing",
           "parse_json_list"]
