"""Does a model draw its reference's outline? Each held-out subject of one shape (default: star) is generated twice
with the same timeline and seed: conditioned on its own reference, and on a same-colour circle of the same
circumradius painted on that reference's background. Both clips are scored with the sprite benchmark's shape test
against both references, and the subject's drawn area is measured.

A model that reads the outline draws the circle-conditioned subject rounder (it passes the circle test more often
and the star test less often than the star-conditioned one); a model that reads only colour and size draws the same
shape for both (issue 14; docs/BENCHMARKS.md "Where shapes are lost").

    python benchmarks/reference_swap.py assets/default_model --shape star --n 96
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder import held_out, level_world  # noqa: E402


def circle_like(crop: np.ndarray) -> np.ndarray:
    """The crop's background (its border's median) with a disc of the sprite's median colour, centred on the sprite's
    centroid, of the sprite's circumradius; the sprite is the silhouette the shape test itself reads."""
    from train.sprite_eval import reference_silhouette

    c = crop.astype(np.float32)
    bg = np.median(np.concatenate([c[0], c[-1], c[:, 0], c[:, -1]]), 0)
    _, fg = reference_silhouette(crop)
    ys, xs = np.nonzero(fg)
    cy, cx = ys.mean(), xs.mean()
    radius = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).max() + 0.5
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float32)
    out = np.broadcast_to(bg, c.shape).copy()
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius] = np.median(c[fg], 0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def swap_rows(directory: str, clips, shape: str, steps: int = 20, guidance: float = 3.0, layout: str | None = "paths",
              keep_frames: bool = False) -> list[dict]:
    """One row per subject of `shape` (the first in each scene): shape-test pass rates of both clips against both
    references, and the median drawn area (pixels) of the subject in the truth and in both clips (with keep_frames
    also the two clips, under 'frames')."""
    from model.pipeline import ReactIDPipeline
    from train.sprite_eval import evaluate_clip, track_subjects

    pipe = ReactIDPipeline.from_pretrained(directory)
    rows = []
    for i, clip in enumerate(clips):
        hits = [k for k, ident in enumerate(clip.identities) if ident.shape == shape]
        if not hits:
            continue
        k = hits[0]
        own = [r[0] for r in clip.references_intra]
        swapped = list(own)
        swapped[k] = circle_like(own[k])
        row = {"scene": i, "truth_area": _median_area(track_subjects(clip.frames, own)[k])}
        for name, refs in (("own", own), ("circle", swapped)):
            given = {s.id: [refs[j]] for j, s in enumerate(clip.timeline.subjects)}
            kw = {"layout": layout} if layout else {}
            frames = pipe(clip.timeline, given, num_inference_steps=steps, guidance_scale=guidance, seed=i, progress=False, **kw).frames
            for test, test_refs in ((shape, own), ("circle", swapped)):
                row[f"{name}_passes_{test}"] = evaluate_clip(frames, clip.timeline, test_refs).identity_per_subject[k]
            row[f"{name}_area"] = _median_area(track_subjects(frames, own)[k])
            if keep_frames:
                row.setdefault("frames", {})[name] = frames
        rows.append(row)
    return rows


def _median_area(track) -> float | None:
    found = track.area[track.found]
    return float(np.median(found)) if found.size else None


def summary(rows: list[dict]) -> dict:
    out = {"subjects": len(rows)}
    for key in rows[0]:
        if key in ("scene", "frames"):
            continue
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.median(vals) if key.endswith("area") else np.mean(vals)) if vals else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", nargs="+", help="pipeline directories, scored one after the other on the same scenes")
    ap.add_argument("--level", default="l2c")
    ap.add_argument("--shape", default="star")
    ap.add_argument("--n", type=int, default=96, help="held-out scenes searched for subjects of the shape")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--strip", help="frame strip PNG of the first model's first three subjects: truth above the clip "
                                    "from its own reference, truth above the clip from the circle")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = held_out(args.n, level_world(args.level))
    s = args.shape
    print(f"level {args.level}, the {s} subjects of {args.n} held-out scenes, each drawn from its own reference and from a "
          f"same-colour circle; pass rates of the shape test, median area in pixels")
    print(f"| model | subjects | own ref: passes {s} | passes circle | area | circle ref: passes {s} | passes circle | area | truth area |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for n, directory in enumerate(args.export):
        rows = swap_rows(directory, clips, s, args.steps, keep_frames=bool(args.strip) and n == 0)
        if args.strip and n == 0:
            from ladder import save_strip

            shown = rows[:3]
            save_strip([r["frames"][k] for r in shown for k in ("own", "circle")],
                       [clips[r["scene"]].frames for r in shown for _ in (0, 1)], args.strip)
        m = summary(rows)
        print(f"| {directory} | {m['subjects']} | {fmt(m[f'own_passes_{s}'])} | {fmt(m['own_passes_circle'])} | {fmt(m['own_area'], 0)} | "
              f"{fmt(m[f'circle_passes_{s}'])} | {fmt(m['circle_passes_circle'])} | {fmt(m['circle_area'], 0)} | {fmt(m['truth_area'], 0)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
