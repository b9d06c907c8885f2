"""The learnability ladder (issue 14): score a model on one level's held-out sprite scenes, with chance controls.

    # train a level (presets in train/presets/ladder_*.yaml), then score its export
    python -m train --config ladder_l0 --threads 2 --export runs/l0/export
    python benchmarks/ladder.py runs/l0/export --level l0 --n 20 --strip docs/img/l0.png

Columns (train/sprite_eval.py): identity fidelity, the share of (subject, frame) pairs where the subject is
found at all, action accuracy and timing error against the scene's own timeline, binding accuracy, and two
chance controls: the same generated frames scored against another held-out scene's timeline (a model that
ignores its timeline scores the same on both), and the ground-truth renderer and its VAE round trip as the
ceiling. `--sensitivity` adds the held-out flow-loss ratio with another scene's timeline (train/held_out.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

HELD_OUT_SEED = 900_000  # the sprite benchmark's held-out seeds: training clips start at data.seed (1000)


def level_world(level: str) -> dict:
    """The world of a ladder preset (train/presets/ladder_<level>.yaml)."""
    from train.config import read_config_file

    # the world only: read without validating the training part (a level whose warm start is not on disk still scores)
    return dict(read_config_file(f"ladder_{level}").get("data", {}).get("world", {}))


def held_out(n: int, world: dict, first: int = 0):
    """Held-out scenes first .. first+n-1 (a later block is a fresh sample for a choice made on the first one)."""
    from train.sprites import WorldConfig, generate_clip

    w = WorldConfig.from_kwargs(**world)
    return [generate_clip(HELD_OUT_SEED + i, w) for i in range(first, first + n)]


def _found_share(frames, clip) -> float:
    from train.sprite_eval import track_subject

    return float(np.mean([track_subject(frames, r[0]).found.mean() for r in clip.references_intra]))


def flow_solver(name: str, shift: float):
    """UniPC (Wan's own sampler) or DPM-Solver++ over flow-matching sigmas with the given shift."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    cls = {"unipc": UniPCMultistepScheduler, "dpm": DPMSolverMultistepScheduler}[name]
    return cls(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)


def score(directory: str, clips, steps: int, guidance: float, strip: str | None = None, mask_feedback="previous",
          shift: float | None = None, mask_steps: int | None = None, layout: str | None = None,
          layout_radius: float | None = None, first_frame_guidance: float | None = None, seed_offset: int = 0,
          first_frame_redraw: float | None = None, sampler: str | None = None, first_frame_redraw_init: str | None = None,
          references: str = "intra", init_strength: float | None = None) -> dict:
    from evaluation.paired import scene_record
    from model.pipeline import ReactIDPipeline
    from train.sprite_eval import evaluate_clip, start_positions, summarize, track_subjects

    pipe = ReactIDPipeline.from_pretrained(directory)
    if sampler is not None:  # a multistep solver over the same flow sigmas instead of the export's Euler
        pipe.scheduler = flow_solver(sampler, pipe.scheduler.config.get("shift", 3.0) if shift is None else shift)
    elif shift is not None:  # the sampling schedule's shift (the export's scheduler says 3: more steps at high noise)
        from diffusers import FlowMatchEulerDiscreteScheduler

        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=shift)
    # how long given masks bind: the oracle's for mask_steps steps, or a start layout (its own defaults unless told)
    given_kw = {"binding_masks_steps": mask_steps}
    if layout:
        given_kw = {"layout": layout}
        if mask_steps is not None:
            given_kw["layout_steps"] = mask_steps
        if layout_radius is not None:
            given_kw["layout_radius"] = layout_radius
    if first_frame_guidance is not None:
        given_kw["first_frame_guidance"] = first_frame_guidance
    if first_frame_redraw is not None:
        given_kw["first_frame_redraw"] = first_frame_redraw
    if first_frame_redraw_init is not None:
        given_kw["first_frame_redraw_init"] = first_frame_redraw_init
    if init_strength is not None:  # where the model loses what the truth had: redraw the truth from this share of the steps
        given_kw["strength"] = init_strength
    own, control, ident_control, found, times, videos, truth_moves, starts, truth_scores = [], [], [], [], [], [], [], [], []
    for i, clip in enumerate(clips):
        # the conditioning: a crop of the clip itself (intra) or a re-render at another scale, angle, light and background
        # (inter, the paper's cross-clip references); the scoring always tracks the subject as the clip draws it
        given = clip.references_intra if references == "intra" else clip.references_inter
        refs = {s.id: [given[k][0]] for k, s in enumerate(clip.timeline.subjects)}
        t0 = time.perf_counter()
        # oracle: the truth's token masks bind at every step (what the predicted masks cost, with the motion given
        # away); oracle_start: the truth's first-frame masks in every frame (who stands where, no motion)
        oracle = mask_feedback in ("oracle", "oracle_start")
        out = pipe(clip.timeline, refs, num_inference_steps=steps, guidance_scale=guidance, seed=seed_offset + i, progress=False,
                   mask_feedback="previous" if oracle else mask_feedback,
                   binding_masks=true_token_masks(pipe, clip, mask_feedback == "oracle_start") if oracle else None,
                   init_video=clip.frames if init_strength is not None else None, **given_kw)
        times.append(time.perf_counter() - t0)
        ref_imgs = [r[0] for r in clip.references_intra]
        gen_tracks, true_tracks = track_subjects(out.frames, ref_imgs), track_subjects(clip.frames, ref_imgs)
        own.append(evaluate_clip(out.frames, clip.timeline, ref_imgs, actions=clip.actions, tracks=gen_tracks))
        starts.append(start_positions(gen_tracks, true_tracks))
        truth_scores.append(evaluate_clip(clip.frames, clip.timeline, ref_imgs, actions=clip.actions, tracks=true_tracks))
        truth_moves.extend(r["moved_px"] for r in truth_scores[-1].actions if r["moved_px"] is not None)
        # chance control: the same frames against another scene's timeline with the same subject count
        other = next((c for c in clips[i + 1:] + clips[:i] if len(c.timeline.subjects) == len(clip.timeline.subjects)), None)
        if other is not None:
            tl = other.timeline
            control.append(evaluate_clip(out.frames, tl, ref_imgs, actions=other.actions))
            # identity's control: the same frames against the other scene's references
            ident_control.append(evaluate_clip(out.frames, clip.timeline, [r[0] for r in other.references_intra]).identity_fidelity)
        found.append(_found_share(out.frames, clip))
        videos.append(out.frames)
    row = summarize(own)
    # per scene, each metric's value and weight: what benchmarks/compare_models.py resamples for its intervals
    row["per_scene"] = [scene_record(sc) for sc in own]
    for rec, sc in zip(row["per_scene"], own):  # each scored action as read, for looking into the confusions
        rec["actions"] = [{k: r.get(k) for k in ("subject", "commanded", "observed", "f0", "f1", "moved_px", "log_area", "bound")}
                          for r in sc.actions if r["scored"]]
        rec["boundaries"] = [{k: b.get(k) for k in ("subject", "commanded", "detected", "error")} for b in sc.boundaries]
    ctrl = summarize(control) if control else {}
    row["found"] = float(np.mean(found))
    # identity per reference shape (and texture): which references the model draws as blobs
    for key in ("shape", "texture"):
        groups: dict[str, list[float]] = {}
        for sc, clip in zip(own, clips):
            for ident, ok in zip(clip.identities, sc.identity_per_subject):
                groups.setdefault(getattr(ident, key), []).append(ok)
        row[f"identity_by_{key}"] = {k: [float(np.mean(v)), len(v)] for k, v in sorted(groups.items())}
    # motion amplitude: median pixels moved in the commanded direction over the scenes' translations
    moves = [r["moved_px"] for sc in own for r in sc.actions if r["moved_px"] is not None]
    row["move_px"] = float(np.median(moves)) if moves else None
    row["truth_move_px"] = float(np.median(truth_moves)) if truth_moves else None
    row.update(area_change(own, truth_scores))
    confusion: dict[str, dict[str, int]] = {}
    for sc in own:
        for r in sc.actions:
            if r["scored"]:
                confusion.setdefault(r["commanded"], {}).setdefault(r["observed"], 0)
                confusion[r["commanded"]][r["observed"]] += 1
    row["confusion"] = confusion
    row["control_action_accuracy"] = ctrl.get("action_accuracy")
    row["control_timing_error_frames"] = ctrl.get("timing_error_frames")
    row["control_binding_accuracy"] = ctrl.get("binding_accuracy")
    row["control_identity_fidelity"] = float(np.mean(ident_control)) if ident_control else None
    row["s_per_clip"] = statistics.median(times)
    own_px = [d for st in starts for d in st["own_px"]]
    other_px = [d for st in starts for d in st["other_px"]]
    orders = [st["order_ok"] for st in starts if st["order_ok"] is not None]
    row["start_px"] = float(np.median(own_px)) if own_px else None
    row["start_px_other"] = float(np.median(other_px)) if other_px else None
    row["order_right"] = [sum(orders), len(orders)]
    if strip:
        save_strip(videos[:6], [c.frames for c in clips[:6]], strip)
    return row


def true_token_masks(pipe, clip, start_only: bool = False) -> torch.Tensor:
    """[S, N]: each subject's share of each video token in the clip's own render (as training's cache makes them);
    start_only: the first frame's masks in every frame."""
    from model.timeline import num_latent_frames
    from train.prepare import token_masks

    p = pipe.transformer.config.patch_size
    H, W = clip.frames.shape[1:3]
    s = pipe.vae_scale_spatial
    n_lat = num_latent_frames(clip.frames.shape[0])
    if p[0] != 1:
        raise ValueError("oracle binding masks are made per latent frame: a temporal patch of 1 (every ladder preset)")
    masks = np.repeat(clip.masks[:, :1], clip.masks.shape[1], 1) if start_only else clip.masks
    return token_masks(masks, n_lat, (H // s // p[1], W // s // p[2]))  # [S, F' * H' * W']


def area_change(generated: list, truth: list) -> dict:
    """How much the drawn size changes where the timeline keeps it (every action but grow and shrink), generated
    against the truth's renders: the median |log area ratio| over such actions' spans, and the mean frame-to-frame
    |log area change| (sprite_eval.area_wobble) over subjects. The truth's figures are the floor (the tracker's
    own noise); the classifier reads grow/shrink from |log area ratio| >= sprite_eval.AREA_LOG."""
    def span_change(scores):
        vals = [abs(r["log_area"]) for sc in scores for r in sc.actions
                if r["scored"] and r["commanded"] not in ("grow", "shrink") and r["log_area"] is not None]
        return float(np.median(vals)) if vals else None

    def wobble(scores):
        vals = [w for sc in scores for w in sc.area_wobble_per_subject if w is not None]
        return float(np.mean(vals)) if vals else None

    return {"area_span_log": span_change(generated), "truth_area_span_log": span_change(truth),
            "area_wobble": wobble(generated), "truth_area_wobble": wobble(truth)}


def save_strip(generated: list[np.ndarray], truth: list[np.ndarray], path: str, every: int = 8) -> None:
    """One row per scene: the ground-truth frames every `every` frames above the generated ones."""
    from PIL import Image

    rows = []
    for g, t in zip(generated, truth):
        idx = list(range(0, len(g), every))
        rows.append(np.concatenate([t[i] for i in idx], 1))
        rows.append(np.concatenate([g[i] for i in idx], 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    img = np.concatenate(rows, 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path)


def ceiling(directory: str, clips) -> dict:
    """The level's clips through the model's VAE: the sprite benchmark's ceiling row (bench_sprite.vae_ceiling_row)."""
    from bench_sprite import vae_ceiling_row

    return vae_ceiling_row(directory, clips)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="pipeline directory (python -m train ... --export DIR)")
    ap.add_argument("--level", required=True, help="ladder level: l0, l1, l2, l3 (train/presets/ladder_<level>.yaml)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="first held-out scene (scene k is generated with seed k)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--shift", type=float, default=None, help="sampling schedule shift instead of the export's (3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--strip", help="write a frame strip PNG (truth above generated) of the first scenes")
    ap.add_argument("--sensitivity", action="store_true", help="also the held-out loss ratio with another scene's timeline")
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--mask-steps", type=int, default=None,
                    help="given binding masks (oracle, oracle_start, --layout) bind only the first K denoising steps")
    ap.add_argument("--layout", choices=["columns", "paths"], help="a start layout binds the first steps (model/layout.py)")
    ap.add_argument("--layout-radius", type=float, help="the columns layout's disc radius, a fraction of the frame side")
    ap.add_argument("--first-frame-guidance", type=float,
                    help="CFG scale of the lone first latent frame (default: the export's first_frame_guidance, else --guidance)")
    ap.add_argument("--sampler", choices=["unipc", "dpm"], help="a multistep flow solver instead of the export's Euler")
    ap.add_argument("--first-frame-redraw", type=float,
                    help="redraw the first latent frame over this last fraction of the steps with the rest pinned")
    ap.add_argument("--first-frame-redraw-init", choices=["own", "next_frame"],
                    help="where the first frame's redraw starts: its own latents or the second video frame's picture")
    ap.add_argument("--mask-feedback", default="previous", choices=["previous", "fresh", "none", "oracle", "oracle_start"],
                    help="binding masks at each step: the previous step's (default), a fresh no-binding pass, none, or "
                         "oracle (the truth's masks: how much the predicted masks cost, motion given away) or "
                         "oracle_start (the truth's first-frame masks in every frame: who stands where, no motion)")
    ap.add_argument("--world", action="append", default=[], metavar="KEY=VALUE",
                    help="override a world key of the level (YAML value), e.g. duration=4.0 to see whether a level "
                         "trained on 2 s clips carries over to 4 s")
    ap.add_argument("--references", choices=["intra", "inter"], default="intra",
                    help="condition on a crop of the clip itself (intra) or on a re-render of each subject (inter)")
    ap.add_argument("--init-strength", type=float,
                    help="redraw each scene's true clip over this last share of the steps instead of generating it "
                         "(which noise levels lose the truth's shapes and motion)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = level_world(args.level)
    for kv in args.world:
        key, _, value = kv.partition("=")
        world[key] = yaml.safe_load(value)
    clips = held_out(args.n, world, args.first)
    row = score(args.export, clips, args.steps, args.guidance, args.strip, args.mask_feedback, args.shift, args.mask_steps, args.layout, args.layout_radius,
                args.first_frame_guidance, seed_offset=args.first, first_frame_redraw=args.first_frame_redraw,
                sampler=args.sampler, first_frame_redraw_init=args.first_frame_redraw_init, references=args.references,
                init_strength=args.init_strength)
    if not args.no_ceiling:
        row["ceiling"] = ceiling(args.export, clips)
    if args.sensitivity:
        from model.pipeline import ReactIDPipeline
        from train.held_out import conditioning_sensitivity

        sens = conditioning_sensitivity(ReactIDPipeline.from_pretrained(args.export), clips[: min(12, len(clips))])
        row["timeline_ratio"], row["refs_ratio"] = sens["timeline_ratio"], sens["refs_ratio"]
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    shift = f", shift {args.shift:g}" if args.shift is not None else ""
    refs = ", inter-clip references" if args.references == "inter" else ""
    print(f"level {args.level}, {args.n} held-out scenes (from scene {args.first}), {args.steps} steps, CFG {args.guidance}{shift}{refs}: {args.export}")
    print("| identity | found | action | action (other timeline) | timing (fr) | timing (other) | binding | s/clip |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {fmt(row['identity_fidelity'])} | {fmt(row['found'])} | {fmt(row['action_accuracy'])} | {fmt(row['control_action_accuracy'])} | "
          f"{fmt(row['timing_error_frames'], 2)} | {fmt(row['control_timing_error_frames'], 2)} | {fmt(row['binding_accuracy'])} | {fmt(row['s_per_clip'], 2)} |")
    print(f"chance controls: identity {fmt(row['control_identity_fidelity'])} (the frames against another scene's references), "
          f"binding {fmt(row['control_binding_accuracy'])} (against another scene's timeline)")
    for key in ("shape", "texture"):
        if len(row.get(f"identity_by_{key}", {})) > 1:
            print(f"identity by reference {key}: " + ", ".join(f"{k} {fmt(v[0])} ({v[1]})" for k, v in row[f"identity_by_{key}"].items()))
    if row.get("start_px") is not None:
        print(f"start positions (frames 4-12): median {fmt(row['start_px'], 1)} px from the subject's true place, "
              f"{fmt(row['start_px_other'], 1)} px from another subject's (chance); left-to-right order right in "
              f"{row['order_right'][0]} of {row['order_right'][1]} multi-subject scenes")
    if row.get("move_px") is not None:
        from train.sprite_eval import MOVE_FRAC

        print(f"motion amplitude: translations move a median {row['move_px']:.1f} px the commanded way (truth {row['truth_move_px']:.1f} px; "
              f"a move counts from {MOVE_FRAC * clips[0].frames.shape[2]:.1f} px)")
    if row.get("area_span_log") is not None:
        from train.sprite_eval import AREA_LOG

        print(f"drawn size where the timeline keeps it: median |log area ratio| over an action {fmt(row['area_span_log'])} "
              f"(truth {fmt(row['truth_area_span_log'])}; grow/shrink from {AREA_LOG:g}), frame-to-frame |log area change| "
              f"{fmt(row['area_wobble'])} (truth {fmt(row['truth_area_wobble'])})")
    if row.get("confusion"):
        print("commanded -> observed: " + "; ".join(
            f"{c} -> " + ", ".join(f"{o} {k}" for o, k in sorted(obs.items(), key=lambda x: -x[1])) for c, obs in sorted(row["confusion"].items())))
    if "ceiling" in row:
        c = row["ceiling"]
        print(f"VAE ceiling: identity {fmt(c['identity_fidelity'])}, action {fmt(c['action_accuracy'])}, timing {fmt(c['timing_error_frames'], 2)}, binding {fmt(c['binding_accuracy'])}")
    if "timeline_ratio" in row:
        print(f"sensitivity: x{row['timeline_ratio']:.3f} with another timeline (sigma .5/.9), x{row['refs_ratio']:.3f} with other references")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
