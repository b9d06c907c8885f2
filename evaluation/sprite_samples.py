"""Write an evaluation folder from held-out sprite scenes: the ground truth and what each model generates.

    python -m evaluation sprite-samples --out samples --n 8 --model default=assets/default_model
    python -m evaluation eval samples

Each method folder holds <clip>.mp4, <clip>.json (the scene's timeline, its references listed) and refs/.
The scenes use the same held-out seeds as benchmarks/bench_sprite.py (900000 upwards, never trained on), so a
model is measured on the same scenes as in the sprite benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from model.video import export_mp4

HELD_OUT_SEED = 900_000
DEFAULT_WORLD = {"duration": 4.0, "max_subjects": 2, "max_actions": 3}


def _write(folder: Path, name: str, frames: np.ndarray, clip) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    export_mp4(frames, folder / f"{name}.mp4", fps=clip.fps)
    tl = clip.timeline.copy()
    for k, s in enumerate(tl.subjects):
        rel = f"refs/{name}_{s.id}.png"
        Image.fromarray(clip.references_intra[k][0]).save(folder / rel)
        s.references = [rel]
    tl.save(folder / f"{name}.json")


def write_sprite_samples(out: str | Path, n: int = 8, models: dict | None = None, steps: int = 20, guidance: float = 3.0,
                         world: dict | None = None, seed: int = 0, log: Callable[[str], None] = print,
                         progress: Callable[[dict], None] | None = None) -> Path:
    """`models`: method name -> pipeline directory or a loaded ReactIDPipeline. The ground truth is always a
    method ("ground-truth"). `progress` gets a "generated" event (evaluation/progress.py) per generated clip."""
    from train.sprites import WorldConfig, generate_clip

    if n < 1:
        raise ValueError("n must be >= 1")
    out = Path(out)
    w = WorldConfig.from_kwargs(**(world or DEFAULT_WORLD))
    clips = [generate_clip(HELD_OUT_SEED + i, w) for i in range(n)]
    for i, c in enumerate(clips):
        _write(out / "ground-truth", f"scene{i:03d}", c.frames, c)
    done = 0
    for name, pipe in (models or {}).items():
        if isinstance(pipe, (str, Path)):
            from model.pipeline import ReactIDPipeline

            pipe = ReactIDPipeline.from_pretrained(str(pipe))
        for i, c in enumerate(clips):
            refs = {s.id: [c.references_intra[k][0]] for k, s in enumerate(c.timeline.subjects)}
            frames = pipe(c.timeline, refs, num_inference_steps=steps, guidance_scale=guidance, seed=seed + i, progress=False).frames
            _write(out / name, f"scene{i:03d}", frames, c)
            log(f"{name}: scene{i:03d} ({i + 1}/{n})")
            if progress is not None:
                done += 1
                progress({"event": "generated", "method": name, "clip": f"scene{i:03d}", "done": done, "of": n * len(models)})
    return out


__all__ = ["DEFAULT_WORLD", "HELD_OUT_SEED", "write_sprite_samples"]
