"""Stage 3: captions (paper App. B.1, "Video Captioning").

Backends:
- `SidecarCaptions` (the offline default): captions supplied beside the videos. For a video
  `dir/name.mp4` it reads, first found:
  1. `dir/name.json`: `{"caption": "...", "clips": {"<clip index>": "..."}}` (per-clip captions win);
  2. `dir/name.txt`: the whole file is the caption of every clip of that video;
  3. `dir/captions.json` (`{"name.mp4" or "name": "..."}`) or `dir/captions.jsonl` (lines of
     `{"video": "name.mp4", "caption": "..."}`).
- `VlmCaptions`: Qwen2.5-VL through transformers (`hub.QwenVL`), prompted as the paper does for
  subject-centric captions.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import ClipState, NotAvailable, StageError


class SidecarCaptions:
    name = "sidecar"

    def __call__(self, clip: ClipState, video: str | Path | None = None, index: int = 0) -> str:
        if video is None:
            raise StageError("captions", "no caption: the clip has no source video to look beside", clip.clip_id)
        v = Path(video)
        tried = []
        j = v.with_suffix(".json")
        tried.append(j.name)
        if j.is_file():
            try:
                d = json.loads(j.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise StageError("captions", f"{j} is not valid JSON ({exc.msg} at line {exc.lineno})", clip.clip_id) from None
            if isinstance(d, dict):
                per = d.get("clips") or {}
                if isinstance(per, dict) and str(index) in per:
                    return str(per[str(index)])
                if isinstance(d.get("caption"), str):
                    return d["caption"]
        t = v.with_suffix(".txt")
        tried.append(t.name)
        if t.is_file():
            return t.read_text(encoding="utf-8").strip()
        for name in ("captions.json", "captions.jsonl"):
            p = v.parent / name
            tried.append(name)
            if not p.is_file():
                continue
            try:
                if name.endswith(".jsonl"):
                    for line in p.read_text(encoding="utf-8").splitlines():
                        if line.strip():
                            rec = json.loads(line)
                            if rec.get("video") in (v.name, v.stem) and isinstance(rec.get("caption"), str):
                                return rec["caption"]
                else:
                    d = json.loads(p.read_text(encoding="utf-8"))
                    for key in (v.name, v.stem):
                        if isinstance(d.get(key), str):
                            return d[key]
            except (json.JSONDecodeError, AttributeError) as exc:
                raise StageError("captions", f"{p} is not readable ({exc})", clip.clip_id) from None
        raise StageError("captions", f"no caption supplied for {v.name} (looked for {', '.join(tried)} beside it); supply one, "
                                     "or caption with a VLM (--captioner qwen2.5-vl --captioner-model DIR)", clip.clip_id)


class VlmCaptions:
    def __init__(self, model):
        self.model = model  # hub.QwenVL
        self.name = model.name

    def __call__(self, clip: ClipState, video=None, index: int = 0) -> str:
        text = self.model.caption(clip.frames, clip.fps)
        if not text.strip():
            raise StageError("captions", f"{self.name} returned an empty caption", clip.clip_id)
        return text


def make_captioner(name: str = "sidecar", model_dir: str | None = None):
    if name == "sidecar":
        return SidecarCaptions()
    if name == "qwen2.5-vl":
        from .hub import QwenVL

        return VlmCaptions(QwenVL(model_dir))
    raise NotAvailable(f"unknown captioner {name!r} (sidecar or qwen2.5-vl)")


__all__ = ["SidecarCaptions", "VlmCaptions", "make_captioner"]
