"""Where a model's drawn sprite size flickers (issue 14): the frame-to-frame |log area change| of each tracked
subject, split by how close the truth's nearest other subject is (centres closer than --near-px, 16 px by default:
two sprites of the level-2 worlds, 9 px wide, nearly touch), and the generated area against the truth's per frame. A rendered sprite that only moves keeps its area (truth: ~0.004).

The sprite benchmark reads grow and shrink from the area at a span's two ends (train/sprite_eval.py AREA_LOG, x1.35), so
a flickering size misreads moves and jumps as size changes (twenty-first session: 41 of the shipped model's 67 binding
failures). A second table compares the generated clips with the truth encoded and decoded by the export's VAE (what the
latent and its decoder alone do) and with the truth itself: the flicker, and the share of scored actions that keep the
size whose span's ends differ by more than x1.35; then the generated flicker by the frame's place in its latent frame
(place 0: the change into the first video frame decoded from a new latent frame).

    python benchmarks/size_flicker.py assets/default_model --n 24 [--first 0]
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

from bench_sprite import vae_round_trip  # noqa: E402
from ladder import held_out, level_world  # noqa: E402

from model.timeline import TIME_COMPRESSION  # noqa: E402

SOURCES = ("generated", "through the VAE", "truth")


def size_misreads(score) -> list[bool]:
    """Per scored action that keeps the size (all but grow and shrink): do its span's ends differ by more than the
    classifier's grow/shrink ratio?"""
    from train.sprite_eval import AREA_LOG

    return [abs(r["log_area"]) > AREA_LOG for r in score.actions
            if r["scored"] and r["commanded"] not in ("grow", "shrink") and r["log_area"] is not None]


def steps_by_place(track) -> dict[int, list[float]]:
    """sprite_eval.area_steps grouped by the place in its latent frame of the frame each step goes into (latent frame
    k >= 1 holds video frames 4(k-1)+1 .. 4k; place 0 is the first of them, where the decoder starts a new latent)."""
    from train.sprite_eval import area_steps

    steps, ok = area_steps(track)  # step j goes from frame j+1 into frame j+2
    out: dict[int, list[float]] = {}
    for j in np.nonzero(ok)[0]:
        out.setdefault(int((j + 1) % TIME_COMPRESSION), []).append(float(steps[j]))
    return out


def compare_sources(frames_by_source: dict, clip, ref_imgs, totals: dict) -> dict:
    """Add one clip's flicker (sprite_eval.area_wobble per track), size misreads and steps by latent-frame place to
    `totals` ({source: {"wobble": [], "misread": [], "by_place": {place: []}}}); returns each source's tracks."""
    from train.sprite_eval import area_wobble, evaluate_clip, track_subjects

    tracked = {}
    for name, frames in frames_by_source.items():
        tracks = tracked[name] = track_subjects(frames, ref_imgs)
        t = totals.setdefault(name, {"wobble": [], "misread": [], "by_place": {}})
        t["misread"] += size_misreads(evaluate_clip(frames, clip.timeline, ref_imgs, actions=clip.actions, tracks=tracks))
        t["wobble"] += [w for w in map(area_wobble, tracks) if w is not None]
        for tr in tracks:
            for place, v in steps_by_place(tr).items():
                t["by_place"].setdefault(place, []).extend(v)
    return tracked



def main() -> int:
    from model.framevae import load_vae
    from model.pipeline import ReactIDPipeline
    from train.sprite_eval import area_steps

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--level", default="l2c")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--first", type=int, default=0, help="first held-out scene (scene k is generated with seed k)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--near-px", type=float, default=16.0, help="centre distance under which another subject counts as near")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # a subject never found: nan, left out
    pipe = ReactIDPipeline.from_pretrained(args.export)
    vae = load_vae(args.export)
    # the export's start layout, as the studio and ladder.py --layout generate (the pipeline alone uses none)
    layout = {"layout": pipe.config.default_layout} if getattr(pipe.config, "default_layout", None) else {}
    near, far, by_count, totals = [], [], {}, {}
    for i, clip in enumerate(held_out(args.n, level_world(args.level), args.first), start=args.first):
        S = len(clip.timeline.subjects)
        refs = {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}
        out = pipe(clip.timeline, refs, num_inference_steps=20, guidance_scale=args.guidance, seed=i, progress=False, **layout)
        ref_imgs = [r[0] for r in clip.references_intra]
        tracked = compare_sources(dict(zip(SOURCES, (out.frames, vae_round_trip(vae, clip.frames), clip.frames))), clip, ref_imgs, totals)
        truth, gen = tracked["truth"], tracked["generated"]
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
    print(f"{args.export}: level {args.level}, {args.n} held-out scenes from {args.first}, 20 steps, CFG {args.guidance:g}, "
          f"layout {layout.get('layout', 'none')}; one video token covers "
          f"{token_px} x {token_px} px")
    print("| subjects | tracks | mean log(generated / true area) | its spread within a track |")
    print("|---:|---:|---:|---:|")
    for S in sorted(by_count):
        m = np.array(by_count[S], dtype=float)
        print(f"| {S} | {len(m)} | {np.nanmean(m[:, 0]):+.3f} | {np.nanmean(m[:, 1]):.3f} |")
    if near and far:
        print(f"frame-to-frame |log area change| in multi-subject scenes: {np.mean(near):.3f} over {len(near)} frames where the "
              f"truth's nearest other subject is closer than {args.near_px:g} px, {np.mean(far):.3f} over {len(far)} frames where it is not")
    print()
    places = range(TIME_COMPRESSION)
    print("| frames | mean frame-to-frame abs log area change per track | size-keeping actions read as a size change | "
          + " | ".join(f"change into place {p}" for p in places) + " |")
    print("|---|---:|---:|" + "---:|" * len(places))
    for name in SOURCES:
        t = totals[name]
        print(f"| {name} | {np.mean(t['wobble']):.4f} | {np.mean(t['misread']):.3f} of {len(t['misread'])} | "
              + " | ".join(f"{np.mean(t['by_place'].get(p, [np.nan])):.4f}" for p in places) + " |")
    print("(place 0: the first video frame decoded from a new latent frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
