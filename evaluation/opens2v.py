"""OpenS2V-Eval v1.1: how raw scores become the 0-1 numbers of the paper's tables, and the TotalScore.

The paper (ReactID, Tables 1, 5 and 11) follows OpenS2V-Nexus: seven scores, each normalised to 0-1, then a
weighted sum. The tables print the *normalised* values as percentages (49.79% Aesthetics is 0.4979 after
normalisation, not a raw aesthetic score of 49.79), and the TotalScore column is the weighted sum of the other
columns as printed. `tests/test_evaluation.py` recomputes that column from the paper's numbers.

Normalisation (v1.1), applied to each video's raw score before averaging over videos:
- Aesthetics: raw predictor score (1-10 scale) clipped to [4, 7], then (x - 4) / 3;
- NaturalScore: the VLM's 1-5 rating clipped to [1, 5], then (x - 1) / 4;
- NexusScore: clipped at 0.05 and divided by 0.05; videos whose Nexus is 0 (no subject detected) are left out
  of the mean;
- the others (Motion Smoothness, Motion Amplitude, FaceSim, GmeScore): capped at 1 (no lower clip, so a
  negative signed Motion Amplitude stays negative, as the reference code leaves it).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

# The seven columns, in the paper's order, with the labels its tables use.
METRICS = ("aesthetics", "motion_smoothness", "motion_amplitude", "facesim", "gme", "nexus", "natural")
LABELS = {
    "aesthetics": "Aes.",
    "motion_smoothness": "M. Smo.",
    "motion_amplitude": "M. Amp.",
    "facesim": "FaceSim",
    "gme": "Gme.",
    "nexus": "Nexus.",
    "natural": "Natural.",
}

# TotalScore weights (OpenS2V-Eval v1.1). Open and Single domains share one set; the Human domain has no
# NexusScore and gives its weight to the others.
WEIGHTS = {
    "open": {"aesthetics": 0.16, "motion_smoothness": 0.06, "motion_amplitude": 0.02, "facesim": 0.20, "gme": 0.12, "nexus": 0.20, "natural": 0.24},
    "human": {"aesthetics": 0.18, "motion_smoothness": 0.09, "motion_amplitude": 0.03, "facesim": 0.25, "gme": 0.15, "natural": 0.30},
}
WEIGHTS["single"] = WEIGHTS["open"]
DOMAINS = ("open", "single", "human")

AES_RANGE = (4.0, 7.0)
NATURAL_RANGE = (1.0, 5.0)
NEXUS_CAP = 0.05


def domain_metrics(domain: str) -> tuple[str, ...]:
    """The metrics that enter the TotalScore of `domain`, in table order."""
    return tuple(m for m in METRICS if m in weights(domain))


def weights(domain: str) -> dict[str, float]:
    try:
        return WEIGHTS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}") from None


def _clip_scale(x: float, lo: float, hi: float) -> float:
    return (min(max(x, lo), hi) - lo) / (hi - lo)


def normalize(metric: str, raw: float | None) -> float | None:
    """One video's raw score -> its 0-1 (v1.1) value. None stays None (not measured)."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    x = float(raw)
    if metric == "aesthetics":
        return _clip_scale(x, *AES_RANGE)
    if metric == "natural":
        return _clip_scale(x, *NATURAL_RANGE)
    if metric == "nexus":
        return min(x, NEXUS_CAP) / NEXUS_CAP
    if metric in METRICS:
        return min(x, 1.0)
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def aggregate(metric: str, normalised: Iterable[float | None]) -> float | None:
    """Mean over videos of normalised values; None entries (not measured) are skipped, and for NexusScore so
    are zeros (v1.1 leaves them out of its mean). None when nothing is left."""
    vals = [v for v in normalised if v is not None and not math.isnan(v)]
    if metric == "nexus":
        vals = [v for v in vals if v != 0.0]
    return sum(vals) / len(vals) if vals else None


def total_score(scores: Mapping[str, float | None], domain: str = "open") -> float | None:
    """Weighted sum of normalised (0-1) domain metrics; None when any metric the domain needs is missing
    (a TotalScore over fewer metrics would not be the benchmark's TotalScore)."""
    w = weights(domain)
    if any(scores.get(m) is None for m in w):
        return None
    return float(sum(w[m] * float(scores[m]) for m in w))


def missing_for_total(scores: Mapping[str, float | None], domain: str = "open") -> list[str]:
    """The metrics (table labels) that keep the TotalScore of `domain` from being computed."""
    return [LABELS[m] for m in domain_metrics(domain) if scores.get(m) is None]


__all__ = [
    "AES_RANGE", "DOMAINS", "LABELS", "METRICS", "NATURAL_RANGE", "NEXUS_CAP", "WEIGHTS",
    "aggregate", "domain_metrics", "missing_for_total", "normalize", "total_score", "weights",
]
