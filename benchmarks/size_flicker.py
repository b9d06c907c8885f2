"""Where a model's drawn sprite size flickers (issue 14): the frame-to-frame |log area change| of each tracked
subject, split by how close the truth's nearest other subject is (centres closer than --near-px, 16 px by default:
two sprites of the level-2 worlds, 9 px wide, nearly touch), and the generated area against the truth's per frame. A rendered sprite that only moves keeps its area (truth: ~0.004).

    python benchmarks/size_flicker.py assets/default_model --n 24
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ladder import held_out, level_world  # noqa: E402



def main() -> int:
    from model.pipeline import ReactIDPipeline
    from train.sprite_eval import area_steps, track_subjects

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--level", default="l2c")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--near-px", type=float, default=16.0, help="centre distance under which another subject counts as near")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # a subject never found: nan, left out
    pipe = ReactIDPipeline.from_pretrained(args.export)
    near, far, by_count = [], [], {}
    for i, clip in enumerate(held_out(args.n, level_world(args.level))):
        S = len(clip.timeline.subjects)
        refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
        out = pipe(clip.timeline, refs, num_inference_steps=20, guidance_scale=args.guidance, seed=i, progress=False)
        ref_imgs = [r[0] for r in clip.references_intra]
        truth, gen = track_subjects(clip.frames, ref_imgs), track_subjects(out.frames, ref_imgs)
        for k in range(S):
            log_ratio = np.log(np.maximum(gen[k].area, 1) / np.maximum(truth[k].area, 1))
            both = gen[k].found & truth[k].found
            by_count.setdefault(S, []).append((np.nanmean(np.where(both, log_ratio, np.nan)),
                                               np.nanstd(np.where(both, log_ratio, np.nan))))
            step, ok = area_steps(gen[k])  # from frame 1: frame 0 is the lone first latent; step j ends at frame j+2
            if S > 1:
                dist = np.min([np.hypot(truth[k].x - truth[j].x, truth[k].y - truth[j].y) for j in range(S) if j != k], 0)[2:]
                ok &= ~np.isnan(dist)
                for s, d in zip(step[ok], dist[ok]):
                    (near if d < args.near_px else far).append(s)
    token_px = pipe.vae_scale_spatial * pipe.transformer.config.patch_size[1]
    print(f"{args.export}: level {args.level}, {args.n} held-out scenes, 20 steps, CFG {args.guidance:g}; one video token covers "
          f"{token_px} x {token_px} px")
    print("| subjects | tracks | mean log(generated / true area) | its spread within a track |")
    print("|---:|---:|---:|---:|")
    for S in sorted(by_count):
        m = np.array(by_count[S], dtype=float)
        print(f"| {S} | {len(m)} | {np.nanmean(m[:, 0]):+.3f} | {np.nanmean(m[:, 1]):.3f} |")
    if near and far:
        print(f"frame-to-frame |log area change| in multi-subject scenes: {np.mean(near):.3f} over {len(near)} frames where the "
              f"truth's nearest other subject is closer than {args.near_px:g} px, {np.mean(far):.3f} over {len(far)} frames where it is not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
