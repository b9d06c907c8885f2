"""The sprite benchmark's metrics, and timeline metrics in the manner of the paper's App. E.2.

Sprite benchmark: `train.sprite_eval.evaluate_clip` (action accuracy, timing error, binding accuracy, identity
fidelity), run on the decoded video with each subject's first reference image; the actions are read from the
captions (`train.sprites.caption_to_action`), so captions that name no sprite action are left out. It tracks
subjects by colour, so it measures sprite-world clips; on other videos it reports why it does not apply.

Timeline metrics (App. E.2 judges timeline annotations as true positives when "both the caption and timestamp
are correct", false positives when "the detected event does not exist in the video or the timestamp does not
match the event boundaries", false negatives when a salient event is missed). Here each commanded sub-action of
each subject is one judgement, made by the sprite evaluator instead of a person:
- TP: the motion measured over its span is the commanded one, and every visible boundary of the span (one
  between two different motions) is found within one latent frame (4 video frames) of where the timeline puts it;
- FP (timestamp): the right motion, but a boundary is missed or off by more than one latent frame;
- FP (event): a different motion is shown;
- FN: nothing is shown (the subject stays, or is not found) where the timeline asks for a motion.
Per subject, action accuracy = TP / commanded actions; the clip's value is the mean over its subjects (every
subject weighs the same, however many actions it has). Precision, recall and F1 pool the judgements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from model.timeline import TIME_COMPRESSION
from train.sprite_eval import SpriteScore, evaluate_clip, summarize

from .sample import Sample

BOUNDARY_TOLERANCE = TIME_COMPRESSION  # video frames: one latent frame


@dataclass
class TimelineScore:
    subject_accuracy: float | None  # mean over subjects of per-subject TP / actions
    tp: int
    fp_event: int
    fp_timestamp: int
    fn: int
    boundaries_within_tolerance: int
    boundaries: int
    per_subject: dict[str, dict] = field(default_factory=dict)
    judgements: list[dict] = field(default_factory=list)

    @property
    def fp(self) -> int:
        return self.fp_event + self.fp_timestamp

    def prf(self) -> tuple[float | None, float | None, float | None]:
        return precision_recall_f1(self.tp, self.fp, self.fn)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["precision"], d["recall"], d["f1"] = self.prf()
        return d


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return p, r, f


def timeline_score(sprite: SpriteScore, tolerance: int = BOUNDARY_TOLERANCE) -> TimelineScore:
    """Judge every commanded (scored) action of a SpriteScore as TP / FP / FN with the boundary tolerance."""
    judgements = []
    per: dict[str, dict] = {}
    for rec in sprite.actions:
        if not rec["scored"]:
            continue
        sid = rec["subject"]
        mine = [b for b in sprite.boundaries if b["subject"] == sid and b["commanded"] in (rec["f0"], rec["f1"])]
        on_time = all(b["detected"] is not None and abs(b["detected"] - b["commanded"]) <= tolerance for b in mine)
        if rec["observed"] == rec["commanded"]:
            verdict = "tp" if on_time else "fp_timestamp"
        elif rec["observed"] in ("stay", "missing") and rec["commanded"] != "stay":
            verdict = "fn"
        elif rec["observed"] == "missing":
            verdict = "fn"
        else:
            verdict = "fp_event"
        judgements.append({**{k: rec[k] for k in ("subject", "index", "text", "commanded", "observed", "f0", "f1")}, "verdict": verdict})
        s = per.setdefault(sid, {"actions": 0, "tp": 0})
        s["actions"] += 1
        s["tp"] += verdict == "tp"
    for s in per.values():
        s["accuracy"] = s["tp"] / s["actions"]
    count = {v: sum(j["verdict"] == v for j in judgements) for v in ("tp", "fp_event", "fp_timestamp", "fn")}
    within = sum(b["detected"] is not None and abs(b["detected"] - b["commanded"]) <= tolerance for b in sprite.boundaries)
    return TimelineScore(
        subject_accuracy=float(np.mean([s["accuracy"] for s in per.values()])) if per else None,
        boundaries_within_tolerance=int(within), boundaries=len(sprite.boundaries), per_subject=per, judgements=judgements, **count,
    )


def evaluate_sprite_sample(sample: Sample) -> SpriteScore:
    """The sprite benchmark on one sample; ValueError (with the reason) when it does not apply."""
    refs = []
    for subj, r in zip(sample.timeline.subjects, sample.references + [[]] * len(sample.timeline.subjects)):
        if not r:
            raise ValueError(f"subject {subj.id!r} has no reference image")
        refs.append(r[0])
    return evaluate_clip(sample.frames, sample.timeline, refs)


def summarize_sprite(scores: list[SpriteScore]) -> dict:
    return summarize(scores)


def summarize_timeline(scores: list[TimelineScore]) -> dict:
    """Pooled over a method's clips: subject accuracy averaged over every subject of every clip, counts added."""
    accs = [s["accuracy"] for t in scores for s in t.per_subject.values()]
    tp, fpe, fpt, fn = (sum(getattr(t, k) for t in scores) for k in ("tp", "fp_event", "fp_timestamp", "fn"))
    p, r, f = precision_recall_f1(tp, fpe + fpt, fn)
    nb = sum(t.boundaries for t in scores)
    return {
        "clips": len(scores),
        "subjects": len(accs),
        "subject_action_accuracy": float(np.mean(accs)) if accs else None,
        "precision": p, "recall": r, "f1": f,
        "tp": tp, "fp_event": fpe, "fp_timestamp": fpt, "fn": fn,
        "boundary_hit_rate": (sum(t.boundaries_within_tolerance for t in scores) / nb) if nb else None,
    }


__all__ = ["BOUNDARY_TOLERANCE", "TimelineScore", "evaluate_sprite_sample", "precision_recall_f1", "summarize_sprite", "summarize_timeline", "timeline_score"]
