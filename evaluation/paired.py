"""Confidence intervals for the sprite benchmark over its scenes, and paired differences between two models.

The benchmark pools each metric over its own items (actions, boundaries, bindings, subjects; train/sprite_eval.py
`summarize`), so a scene with more actions weighs more. Scenes, not items, are what was sampled, so the intervals
resample scenes (a percentile bootstrap) and recompute the pooled value on each resample. Two models scored on the
same scenes with the same seeds (benchmarks/ladder.py does) are compared on the same resamples: the interval of
their difference is much narrower than either model's own, because a hard scene is hard for both.

Per-scene records are what `scene_record` makes from a SpriteScore: for each metric its value and its weight.
"""

from __future__ import annotations

import math

import numpy as np

# metric name -> (SpriteScore value attribute, weight: an attribute name or a callable on the score)
METRICS = {
    "action_accuracy": ("action_accuracy", "n_actions"),
    "timing_error_frames": ("timing_error", "n_boundaries"),
    "binding_accuracy": ("binding_accuracy", "n_bindings"),
    "identity_fidelity": ("identity_fidelity", lambda s: len(s.identity_per_subject)),
}


def scene_record(score) -> dict:
    """{metric: [value, weight]} for one scene; a metric the scene has no item for gets [None, 0]."""
    rec = {}
    for name, (attr, weight) in METRICS.items():
        v = getattr(score, attr)
        w = weight(score) if callable(weight) else getattr(score, weight)
        ok = v is not None and w and not (isinstance(v, float) and math.isnan(v))
        rec[name] = [float(v), int(w)] if ok else [None, 0]
    return rec


def _arrays(records: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    vals = np.array([r[metric][0] if r[metric][0] is not None else 0.0 for r in records], dtype=float)
    wts = np.array([r[metric][1] if r[metric][0] is not None else 0 for r in records], dtype=float)
    return vals, wts


def _pooled(vals: np.ndarray, wts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Pooled value for each row of resampled scene indices idx [B, n] (NaN where a resample has no item)."""
    num, den = (vals * wts)[idx].sum(1), wts[idx].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap(records: list[dict], metric: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """One model: the pooled value over all scenes and its percentile interval over resampled scenes."""
    if not records:
        raise ValueError("no scenes to bootstrap")
    vals, wts = _arrays(records, metric)
    n = len(records)
    value = _pooled(vals, wts, np.arange(n)[None])[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    return {"value": None if np.isnan(value) else float(value), **_interval(_pooled(vals, wts, idx), level), "scenes": n}


def paired_difference(a: list[dict], b: list[dict], metric: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """B minus A on the same scenes (same order): the difference of the pooled values and its interval, each resample
    drawing the same scenes for both models. `p_le_0` (`p_ge_0`) is the share of resamples where B is not above (below) A."""
    if len(a) != len(b):
        raise ValueError(f"paired scenes: model A has {len(a)} scenes and model B {len(b)}; score both on the same scenes")
    if not a:
        raise ValueError("no scenes to compare")
    va, wa = _arrays(a, metric)
    vb, wb = _arrays(b, metric)
    n = len(a)
    full = np.arange(n)[None]
    diff = float(_pooled(vb, wb, full)[0] - _pooled(va, wa, full)[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    d = _pooled(vb, wb, idx) - _pooled(va, wa, idx)
    ok = d[~np.isnan(d)]
    return {"difference": None if math.isnan(diff) else diff, **_interval(d, level),
            "p_le_0": float((ok <= 0).mean()) if len(ok) else None, "p_ge_0": float((ok >= 0).mean()) if len(ok) else None,
            "scenes": n}


def _interval(samples: np.ndarray, level: float) -> dict:
    ok = samples[~np.isnan(samples)]
    if not len(ok):
        return {"low": None, "high": None}
    lo, hi = np.quantile(ok, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"low": float(lo), "high": float(hi)}
