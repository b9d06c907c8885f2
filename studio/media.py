"""What the studio shows of a generation: the MP4, the subject masks over the frames, a copy with each
subject's current action burned in (moviepy), a thumbnail. numpy + PIL + the model's H.264 writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.timeline import Timeline, active_action

DISPLAY_SIDE = 256  # tiny model outputs are enlarged (nearest neighbour) to at least this short side


def display_scale(height: int, width: int, target: int = DISPLAY_SIDE) -> int:
    return max(1, int(np.ceil(target / max(1, min(height, width)))))


def _rgb(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


def write_video(frames: np.ndarray, path: str | Path, fps: int) -> Path:
    """The generated clip as a browser-playable H.264 MP4 (pixel-repeated when tiny)."""
    from model.video import export_mp4

    _, h, w, _ = frames.shape
    return export_mp4(frames, path, fps, upscale=display_scale(h, w))


def mask_overlay(frames: np.ndarray, masks: np.ndarray, colors: list[str], alpha: float = 0.6) -> np.ndarray:
    """frames uint8 [F,H,W,3], masks float [S,F,H,W] in 0..1 -> frames tinted with each subject's colour."""
    out = frames.astype(np.float32)
    for s in range(masks.shape[0]):
        m = np.clip(masks[s], 0, 1)[..., None] * alpha
        out = out * (1 - m) + _rgb(colors[s % len(colors)]) * m
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_mask_video(frames: np.ndarray, masks: np.ndarray, path: str | Path, fps: int, colors: list[str]) -> Path:
    from model.video import export_mp4

    _, h, w, _ = frames.shape
    return export_mp4(mask_overlay(frames, masks, colors), path, fps, upscale=display_scale(h, w))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def caption_frames(frames: np.ndarray, timeline: Timeline, colors: list[str], fps: int) -> np.ndarray:
    """Enlarged frames with a band below: one line per subject, its colour and its current action."""
    F, h, w, _ = frames.shape
    k = display_scale(h, w)
    big = frames.repeat(k, axis=1).repeat(k, axis=2)
    W = big.shape[2]
    line = 18
    band = line * len(timeline.subjects) + 8
    band += band % 2
    H = big.shape[1] + band
    H += H % 2
    W2 = W + W % 2
    font = _font(12)
    out = np.zeros((F, H, W2, 3), dtype=np.uint8)
    for f in range(F):
        t = f / fps
        img = Image.new("RGB", (W2, H), (20, 20, 24))
        img.paste(Image.fromarray(big[f]), (0, 0))
        draw = ImageDraw.Draw(img)
        for i, s in enumerate(timeline.subjects):
            y = big.shape[1] + 4 + i * line
            j = active_action(s, t)
            text = f"{s.name}: {s.actions[j].text}" if j >= 0 else f"{s.name}: —"
            draw.rectangle([6, y + 3, 16, y + 13], fill=tuple(int(v) for v in _rgb(colors[i % len(colors)])))
            draw.text((22, y), _fit(draw, text, font, W2 - 26), fill=(240, 240, 240), font=font)
        out[f] = np.asarray(img)
    return out


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, shortened with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def write_captioned_video(frames: np.ndarray, timeline: Timeline, path: str | Path, fps: int, colors: list[str]) -> Path:
    """Captions burned into a copy, encoded by moviepy (H.264, yuv420p, faststart)."""
    from moviepy import ImageSequenceClip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    captioned = caption_frames(frames, timeline, colors, fps)
    clip = ImageSequenceClip(list(captioned), fps=fps)
    try:
        clip.write_videofile(
            str(path), fps=fps, codec="libx264", audio=False, preset="medium", pixel_format="yuv420p",
            ffmpeg_params=["-movflags", "+faststart", "-crf", "18"], logger=None,
        )
    finally:
        clip.close()
    return path


def thumbnail(frames: np.ndarray, path: str | Path, side: int = 160) -> Path:
    mid = frames[len(frames) // 2]
    img = Image.fromarray(mid)
    k = max(1, side // max(1, min(img.size)))
    img = img.resize((img.width * k, img.height * k), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def mask_legend(timeline: Timeline, colors: list[str]) -> str:
    parts = [
        f"<span style='display:inline-block;width:10px;height:10px;border-radius:2px;background:{colors[i % len(colors)]}'></span> {_escape(s.name)}"
        for i, s in enumerate(timeline.subjects)
    ]
    return "Predicted subject masks: " + " &nbsp; ".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
