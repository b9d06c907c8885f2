"""Writing videos browsers play: H.264, yuv420p, even sizes, faststart."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def export_mp4(frames: np.ndarray, path: str | Path, fps: int, upscale: int = 1, crf: int = 18) -> Path:
    """frames uint8 [F, H, W, 3] -> H.264 MP4 at `path`. `upscale` repeats pixels (nearest) so tiny
    model outputs stay crisp in a player; odd sizes are padded to even (yuv420p needs even sides)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    F, H, W, _ = frames.shape
    ph, pw = H % 2, W % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(int(fps), 1))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode a video file -> (uint8 [F, H, W, 3], fps)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        frames = [fr.to_ndarray(format="rgb24") for fr in container.decode(stream)]
    if not frames:
        raise ValueError(f"{Path(path).name}: no video frames")
    return np.stack(frames), fps


def probe_video(path: str | Path) -> dict:
    """Codec facts a player cares about."""
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "width": s.codec_context.width, "height": s.codec_context.height, "frames": s.frames, "fps": float(s.average_rate or 0)}
