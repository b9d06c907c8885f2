"""Benchmark of the annotation pipeline against exact ground truth (docs/ANNOTATION.md, "Measured").

Renders sprite clips with train/sprites.py, writes them as H.264 MP4 (model/video.py) with their
scene prompt as the caption beside each video, runs `python -m annotate run`'s code on them, and
scores what it stored against the renderer's exact masks and timelines:

- mask IoU: mean over (subject, frame) pairs where the subject is visible; a subject the pipeline
  missed counts 0 in each of its frames;
- subject detection: per (subject, frame), a detection box with IoU >= 0.5 against the true box
  is a hit; recall = hits / visible pairs, precision = hits / boxes the pipeline gave;
- timeline F1 (paper App. E.2's rule): a predicted sub-action is right when its caption's action
  (train.sprites.caption_to_action) is the true action and both boundaries are within one latent
  frame (4 video frames) of the truth; one-to-one matching per subject.

    python benchmarks/bench_annotate.py --n 24 --size 64 --size 128 --workers 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotate.pipeline import PipelineConfig  # noqa: E402
from annotate.run import DB_NAME, run  # noqa: E402
from annotate.store import AnnotationStore  # noqa: E402
from model.video import export_mp4  # noqa: E402
from train.sprites import caption_to_action, generate_clip  # noqa: E402

TOL = 4  # frames: one latent frame


def render(n: int, size: int, seed: int, out: Path, duration: float = 4.0) -> list:
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        clip = generate_clip(seed * 100_003 + i, height=size, width=size, duration=duration)
        v = out / f"sprite-{size}-{i:04d}.mp4"
        export_mp4(clip.frames, v, clip.fps)
        v.with_suffix(".txt").write_text(clip.timeline.prompt + "\n", encoding="utf-8")
        clips.append((v, clip))
    return clips


def _box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def _iou_box(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def score(clips: list, store: AnnotationStore) -> dict:
    by_video = {str(v.resolve()): (v, c) for v, c in clips}
    docs = {}
    for cid in store.clip_ids():
        d = store.get(cid)
        docs.setdefault(d.meta["pipeline"]["video"], []).append(d)
    ious: list[float] = []
    det = Counter()
    tl = Counter()
    per_action = {}
    failures = []
    for key, (v, clip) in by_video.items():
        S, F, H, W = clip.masks.shape
        gt_actions = [[(a.start, a.end, act) for a, act in zip(s.sorted_actions(), acts)] for s, acts in zip(clip.timeline.subjects, clip.actions)]
        ds = docs.get(key, [])
        if len(ds) != 1:
            failures.append(f"{v.name}: {len(ds)} clips stored")
        pm = {}  # gt subject -> (doc, k)
        if ds:
            d = ds[0]
            p = d.meta["pipeline"]
            a0 = p["start_frame"]
            crop = p.get("crop")
            gm = clip.masks[:, a0:a0 + d.num_frames]
            if crop:
                x, y, w, h = crop
                gm = gm[:, :, y:y + h, x:x + w]
            pred = d.masks_array()
            # match subjects by mean mask IoU (greedy)
            pairs = []
            for k in range(pred.shape[0]):
                for g in range(S):
                    inter = (pred[k] & gm[g]).sum()
                    union = (pred[k] | gm[g]).sum()
                    pairs.append((inter / max(union, 1), k, g))
            used_k, used_g = set(), set()
            for val, k, g in sorted(pairs, reverse=True):
                if val > 0.1 and k not in used_k and g not in used_g:
                    used_k.add(k)
                    used_g.add(g)
                    pm[g] = (d, k, gm[g], pred[k])
            det["extra_boxes"] += sum(sum(b is not None for b in d.meta["detected"][k]["boxes"]) for k in range(pred.shape[0]) if k not in used_k)
        for g in range(S):
            vis = clip.masks[g].reshape(F, -1).any(1)
            acts = gt_actions[g]
            for a in acts:
                per_action.setdefault(a[2], Counter())["gt"] += 1
            tl["gt"] += len(acts)
            if g not in pm:
                ious += [0.0] * int(vis.sum())
                det["fn"] += int(vis.sum())
                continue
            d, k, gmask, pmask = pm[g]
            boxes = d.meta["detected"][k]["boxes"]
            for f in range(len(gmask)):
                if gmask[f].any():
                    ious.append(float((gmask[f] & pmask[f]).sum() / (gmask[f] | pmask[f]).sum()))
                gb = _box(gmask[f])
                pb = boxes[f]
                hit = gb is not None and pb is not None and _iou_box(gb, pb) >= 0.5
                det["tp"] += hit
                det["fn"] += gb is not None and not hit
                det["fp"] += pb is not None and not hit
            fps = d.timeline.fps
            off = d.meta["pipeline"]["start_frame"]
            pred_acts = [(a.start * fps + off, a.end * fps + off, caption_to_action(a.text)) for a in d.timeline.subjects[k].sorted_actions()]
            tl["pred"] += len(pred_acts)
            used = set()
            for gs, ge, ga in acts:
                for j, (ps, pe, pa) in enumerate(pred_acts):
                    if j not in used and pa == ga and abs(ps - gs * fps) <= TOL and abs(pe - ge * fps) <= TOL:
                        used.add(j)
                        tl["tp"] += 1
                        per_action[ga]["tp"] += 1
                        break
    for d_list in docs.values():
        for d in d_list:
            if d.meta["pipeline"]["video"] not in by_video:
                tl["pred"] += sum(len(s.actions) for s in d.timeline.subjects)
    det_fp = det["fp"] + det["extra_boxes"]
    prec = tl["tp"] / tl["pred"] if tl["pred"] else 0.0
    rec = tl["tp"] / tl["gt"] if tl["gt"] else 0.0
    return {
        "clips": len(clips), "stored": sum(len(x) for x in docs.values()), "failures": failures,
        "mask_iou": float(np.mean(ious)) if ious else 0.0, "mask_iou_p10": float(np.percentile(ious, 10)) if ious else 0.0,
        "det_recall": det["tp"] / max(1, det["tp"] + det["fn"]), "det_precision": det["tp"] / max(1, det["tp"] + det_fp),
        "tl_precision": prec, "tl_recall": rec, "tl_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "tl_counts": dict(tl), "per_action_recall": {a: round(c["tp"] / c["gt"], 3) for a, c in sorted(per_action.items())},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24, help="clips per size")
    ap.add_argument("--size", type=int, action="append", help="frame side in pixels (repeatable; default 64)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ocr", choices=("rapidocr", "none"), default="rapidocr")
    ap.add_argument("--no-grounder", action="store_true", help="the timeline ensemble without the motion-grounder's candidates")
    ap.add_argument("--work", help="keep the videos and the dataset here (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    sizes = args.size or [64]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for size in sizes:
            clips = render(args.n, size, args.seed, work / f"videos-{size}", args.duration)
            cfg = PipelineConfig()
            cfg.quality.ocr = args.ocr
            cfg.timeline_grounder = not args.no_grounder
            t0 = time.time()
            rep = run([v for v, _ in clips], work / f"dataset-{size}", workers=args.workers, config=cfg, progress=False)
            secs = time.time() - t0
            with AnnotationStore(work / f"dataset-{size}" / DB_NAME) as store:
                r = score(clips, store)
            r.update({"size": size, "seconds": secs, "seconds_per_clip": secs / max(1, args.n), "errors": [e["error"] for e in rep.errors],
                      "exported": len(rep.exported), "workers": args.workers, "ocr": args.ocr,
                      "grounder": not args.no_grounder})
            rows.append(r)
    print(f"{'size':>5} {'clips':>5} {'stored':>6} {'mask IoU':>8} {'IoU p10':>7} {'det R':>6} {'det P':>6} {'TL P':>5} {'TL R':>5} {'TL F1':>5} {'s/clip':>6}")
    for r in rows:
        print(f"{r['size']:>5} {r['clips']:>5} {r['stored']:>6} {r['mask_iou']:>8.3f} {r['mask_iou_p10']:>7.3f} {r['det_recall']:>6.3f} "
              f"{r['det_precision']:>6.3f} {r['tl_precision']:>5.3f} {r['tl_recall']:>5.3f} {r['tl_f1']:>5.3f} {r['seconds_per_clip']:>6.2f}")
    for r in rows:
        print(f"size {r['size']}: per-action timeline recall {r['per_action_recall']}; counts {r['tl_counts']}")
        for e in r["errors"] + r["failures"]:
            print(f"  {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
