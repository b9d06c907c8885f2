"""Evaluate a directory of generated clips: every metric on every clip, then the tables.

Which model fills each of the paper's seven columns: the paper's model when its weights were given and it loads,
else the offline substitute when there is one (M. Smo.-flow for M. Smo., FaceSim-dlib for FaceSim), else
nothing ("n/a"). Motion Amplitude is the benchmark's own definition, so it is always the paper's column. A
TotalScore is computed only when every column its domain needs holds the paper's metric: a total over
substitutes or over fewer metrics would not be the benchmark's TotalScore, so it is left out and the table says
which columns are missing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import opens2v
from .facesim import load_facesim_dlib
from .layout import LoadError, discover, load_sample
from .models import Scorer, load_paper_models
from .motion import motion_amplitude, motion_smoothness
from .sample import Sample
from .timeline_metrics import evaluate_sprite_sample, summarize_sprite, summarize_timeline, timeline_score

DOMAIN_MODES = ("auto",) + opens2v.DOMAINS


def _builtin(column: str, label: str, paper: bool, detail: str, fn) -> Scorer:
    return Scorer(column, label, paper, True, detail, fn)


def choose_scorers(paper: dict[str, Scorer], facesim_dlib: Scorer | None = None) -> dict[str, Scorer]:
    """Column -> the scorer that fills it (see the module doc)."""
    out = {}
    for col in opens2v.METRICS:
        if col == "motion_amplitude":
            out[col] = _builtin(col, "M. Amp.", True, "OpenS2V-Eval's definition: Farneback flow on 16-px-wide frames, signed mean",
                               lambda smp: motion_amplitude(smp.frames))
            continue
        s = paper.get(col)
        if s is not None and s.available:
            out[col] = s
        elif col == "motion_smoothness":
            out[col] = _builtin(col, "M. Smo.-flow", False, "VBench's protocol with Farneback-flow interpolation instead of AMT-S (substitute)", lambda smp: motion_smoothness(smp.frames))
        elif col == "facesim" and facesim_dlib is not None and facesim_dlib.available:
            out[col] = facesim_dlib
        else:
            out[col] = s if s is not None else Scorer(col, opens2v.LABELS[col], True, False, "not available")
    return out


def item_domain(sample: Sample, mode: str) -> str:
    if mode != "auto":
        return mode
    subjects = sample.timeline.subjects
    return "human" if subjects and all(s.kind == "human" for s in subjects) else "open"


@dataclass
class Results:
    root: str
    domain_mode: str
    models: list[dict]
    columns: dict[str, dict]  # column -> {"label", "paper_metric", "available", "detail"}
    items: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that make no item (a video without a timeline)
    opens2v: list[dict] = field(default_factory=list)
    sprite: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "evaluation": "ReactID Studio evaluation suite (python -m evaluation)",
            "root": self.root, "domain_mode": self.domain_mode, "seconds": round(self.seconds, 2),
            "columns": self.columns, "models": self.models, "problems": self.problems,
            "tables": {"opens2v": self.opens2v, "sprite": self.sprite, "timeline": self.timeline},
            "items": self.items,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Results":
        """Read back what to_dict wrote (results.json): enough for report.render and report.chart_figure."""
        t = d.get("tables", {})
        return cls(d["root"], d["domain_mode"], d.get("models", []), d["columns"], d.get("items", []), d.get("problems", []),
                   t.get("opens2v", []), t.get("sprite", []), t.get("timeline", []), float(d.get("seconds", 0.0)))

    @property
    def evaluated(self) -> int:
        return sum(1 for i in self.items if i["ok"])


def _value_and_notes(res) -> tuple[float | None, list[str], dict]:
    if isinstance(res, dict):
        v = res.get("value")
        return v, list(res.get("notes", [])), {k: w for k, w in res.items() if k not in ("value", "notes")}
    return res, [], {}


def _finite(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def evaluate_sample(sample: Sample, scorers: dict[str, Scorer], domain: str, sprite: bool = True,
                    progress: Callable[[dict], None] | None = None) -> dict:
    """Every metric on one clip. `progress` gets a "metric" event before each metric that runs."""
    item = {"method": sample.method, "clip": sample.name, "domain": domain, "ok": True, "notes": list(sample.notes),
            "frames": int(len(sample.frames)), "fps": sample.fps, "raw": {}, "normalised": {}, "details": {}}
    cols = opens2v.domain_metrics(domain)
    steps = [scorers[c].label for c in cols if scorers[c].available] + (["sprite and timeline metrics"] if sprite else [])
    step = 0

    def starting(label: str) -> None:
        nonlocal step
        if progress is not None:
            progress({"event": "metric", "method": sample.method, "clip": sample.name, "metric": label, "done": step, "of": len(steps)})
        step += 1

    for col in cols:
        sc = scorers[col]
        if sc.available:
            starting(sc.label)
        if not sc.available:
            item["raw"][col] = None
            continue
        try:
            value, notes, details = _value_and_notes(sc.score(sample))
        except Exception as exc:  # one metric failing on one clip must not stop the run
            value, notes, details = None, [f"{sc.label}: failed ({exc.__class__.__name__}: {exc})"], {}
        item["raw"][col] = _finite(value)
        item["notes"] += notes
        if details:
            item["details"][col] = details
        item["normalised"][col] = opens2v.normalize(col, item["raw"][col])
    item["sprite"] = item["timeline"] = None
    if sprite:
        starting(steps[-1])
        try:
            sp = evaluate_sprite_sample(sample)
        except ValueError as exc:
            item["notes"].append(f"sprite metrics do not apply: {exc}")
        else:
            tl = timeline_score(sp)
            item["sprite"] = {k: v for k, v in sp.to_dict().items()}
            item["timeline"] = tl.to_dict()
            item["_sprite_obj"], item["_timeline_obj"] = sp, tl
    return item


def evaluate_dir(root: str | Path, *, domain: str = "auto", weights: dict[str, str | None] | None = None, sprite: bool = True,
                 facesim_dlib: bool = True, exclude: list = (), log: Callable[[str], None] = print,
                 progress: Callable[[dict], None] | None = None) -> Results:
    """Measure every clip under `root` (layout: evaluation/layout.py). Raises LoadError when root is not a
    folder; every per-clip problem is recorded and the run goes on. `progress` gets the events of
    evaluation/progress.py (found, clip, metric, evaluated) as dicts."""
    emit = progress or (lambda rec: None)
    if domain not in DOMAIN_MODES:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAIN_MODES)}")
    t0 = time.perf_counter()
    entries, problems = discover(root, exclude)
    paper = load_paper_models(weights or {})
    dlib_scorer = load_facesim_dlib() if facesim_dlib else None
    scorers = choose_scorers(paper, dlib_scorer)
    models = [s.to_dict() for s in paper.values()] + ([dlib_scorer.to_dict()] if dlib_scorer else [])
    res = Results(str(root), domain, models, {c: s.to_dict() for c, s in scorers.items()}, problems=list(problems))
    for p in problems:
        log(f"  ! {p}")
    emit({"event": "found", "clips": len(entries), "problems": list(problems)})
    for k, e in enumerate(entries, 1):
        where = {"method": e.method, "clip": e.name}
        emit({"event": "clip", **where, "done": k - 1, "of": len(entries)})
        try:
            sample = load_sample(e)
        except LoadError as exc:
            log(f"[{k}/{len(entries)}] {e.method}/{e.name}: skipped: {exc}")
            res.items.append({"method": e.method, "clip": e.name, "domain": None, "ok": False, "notes": [str(exc)], "raw": {}, "normalised": {}, "sprite": None, "timeline": None})
            emit({"event": "evaluated", **where, "ok": False, "done": k, "of": len(entries)})
            continue
        item = evaluate_sample(sample, scorers, item_domain(sample, domain), sprite, progress)
        emit({"event": "evaluated", **where, "ok": True, "done": k, "of": len(entries)})
        log(f"[{k}/{len(entries)}] {e.method}/{e.name}: {len(sample.frames)} frames, {item['domain']} domain" + (f" ({len(item['notes'])} note(s))" if item["notes"] else ""))
        for n in item["notes"]:
            log(f"    - {n}")
        res.items.append(item)
    aggregate(res, scorers)
    for it in res.items:
        it.pop("_sprite_obj", None)
        it.pop("_timeline_obj", None)
    res.seconds = time.perf_counter() - t0
    return res


def aggregate(res: Results, scorers: dict[str, Scorer]) -> None:
    """Fill the three tables: per (domain, method) in order of first appearance."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for it in res.items:
        if it["ok"]:
            groups.setdefault((it["domain"], it["method"]), []).append(it)
    order = {d: i for i, d in enumerate(("open", "single", "human"))}
    for (dom, method), items in sorted(groups.items(), key=lambda kv: order.get(kv[0][0], 9)):
        values = {}
        for col in opens2v.domain_metrics(dom):
            values[col] = opens2v.aggregate(col, [i["normalised"].get(col) for i in items])
        all_paper = all(scorers[c].paper and scorers[c].available for c in opens2v.domain_metrics(dom))
        total = opens2v.total_score(values, dom) if all_paper else None
        cols = opens2v.domain_metrics(dom)
        absent = [scorers[c].label for c in cols if not scorers[c].available]
        empty = [scorers[c].label for c in cols if scorers[c].available and values[c] is None]
        subst = [scorers[c].label for c in cols if scorers[c].available and not scorers[c].paper]
        why = []
        if absent:
            why.append("not available: " + ", ".join(absent))
        if subst:
            why.append("substitutes, not the paper's metrics: " + ", ".join(subst))
        if empty:
            why.append("measured on no clip: " + ", ".join(empty))
        res.opens2v.append({"domain": dom, "method": method, "clips": len(items), "values": values,
                            "labels": {c: scorers[c].label for c in values}, "total": total, "total_missing": "; ".join(why) or None})
        sp = [i["_sprite_obj"] for i in items if i.get("_sprite_obj") is not None]
        tl = [i["_timeline_obj"] for i in items if i.get("_timeline_obj") is not None]
        if sp:
            res.sprite.append({"domain": dom, "method": method, **summarize_sprite(sp)})
            res.timeline.append({"domain": dom, "method": method, **summarize_timeline(tl)})


__all__ = ["DOMAIN_MODES", "Results", "aggregate", "choose_scorers", "evaluate_dir", "evaluate_sample", "item_domain"]
