"""The paper's difficulty-aware curriculum (§3.2 and §4 'Implementation Details').

Candidates: every sample can be drawn with its intra-clip reference (score D_overall with D_sam=0)
and, where it has one, with an inter-clip reference (D_sam=1, so about lambda_sam harder). All
candidate scores are pre-sorted; the thresholds tau are the quartiles (Q1, Q2, Q3, max) of that
score distribution. Total steps are split 4:2:1:1 into four phases; tau steps up to the next
quartile at each phase change and stays fixed in between; only candidates with D_overall <= tau are
eligible. Within a phase a draw uses an inter-clip reference with the phase's ratio (default 0, 0,
0.11, 0.33, as in the paper), taken from the eligible inter candidates (if none is eligible yet the
draw falls back to an intra one; `schedule_description` reports the effective ratio).

Ablations: mode="none" (all candidates from step 0, one constant inter ratio: by default the
step-weighted mean of the phase ratios, so both runs see the same number of inter references) and
mode="random" (the paper's 'Random Expansion': the same growing pool sizes, filled in a random
order instead of by difficulty).

The sampler is a pure function of (seed, step): `sample(step)` draws the step's batch from
`numpy.random.default_rng([seed, step])`, so a resumed run reproduces the data order exactly given
only the step it resumes from. Draws are with replacement within the eligible pool.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Iterator, Sequence

import numpy as np

MODES = ("curriculum", "none", "random")


class CurriculumConfigError(ValueError):
    """A bad curriculum setting; `.key` names it and the message starts with it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


def _finite(x) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) and math.isfinite(float(x))


@dataclass
class CurriculumConfig:
    total_steps: int
    phase_ratios: tuple[float, ...] = (4, 2, 1, 1)
    quantiles: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    thresholds: tuple[float, ...] | None = None  # explicit tau per phase instead of quantiles (e.g. the paper's 0.53, 0.67, 1.44, 1.84)
    inter_ratios: tuple[float, ...] = (0.0, 0.0, 0.11, 0.33)
    mode: str = "curriculum"
    flat_inter_ratio: float | None = None  # mode "none"; None = step-weighted mean of inter_ratios
    batch_size: int = 1
    seed: int = 0

    def __post_init__(self):
        for key in ("phase_ratios", "quantiles", "thresholds", "inter_ratios"):
            v = getattr(self, key)
            if isinstance(v, list):
                setattr(self, key, tuple(v))

    def validate(self) -> "CurriculumConfig":
        bad = CurriculumConfigError
        if not isinstance(self.total_steps, (int, np.integer)) or isinstance(self.total_steps, bool) or self.total_steps <= 0:
            raise bad("total_steps", f"must be an integer > 0, got {self.total_steps!r}")
        if not isinstance(self.batch_size, (int, np.integer)) or isinstance(self.batch_size, bool) or self.batch_size <= 0:
            raise bad("batch_size", f"must be an integer > 0, got {self.batch_size!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise bad("seed", f"must be an integer >= 0, got {self.seed!r}")
        if self.mode not in MODES:
            raise bad("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        r = self.phase_ratios
        if not isinstance(r, tuple) or not r:
            raise bad("phase_ratios", "must be a non-empty list of positive numbers")
        for i, x in enumerate(r):
            if not _finite(x) or x <= 0:
                raise bad("phase_ratios", f"entry {i + 1} must be a positive number, got {x!r}")
        n = len(r)
        for key in ("quantiles", "inter_ratios") + (("thresholds",) if self.thresholds is not None else ()):
            v = getattr(self, key)
            if not isinstance(v, tuple) or len(v) != n:
                raise bad(key, f"needs one value per phase ({n}, as phase_ratios), got {v!r}")
            for i, x in enumerate(v):
                if not _finite(x):
                    raise bad(key, f"entry {i + 1} must be a finite number, got {x!r}")
        for i, q in enumerate(self.quantiles):
            if not 0 < q <= 1:
                raise bad("quantiles", f"entry {i + 1} must be in (0, 1], got {q!r}")
        for key in ("quantiles",) + (("thresholds",) if self.thresholds is not None else ()):
            v = getattr(self, key)
            for i in range(1, n):
                if v[i] < v[i - 1]:
                    raise bad(key, f"must not decrease from phase to phase (phase {i} has {v[i - 1]}, phase {i + 1} has {v[i]})")
        for i, x in enumerate(self.inter_ratios):
            if not 0 <= x <= 1:
                raise bad("inter_ratios", f"entry {i + 1} must be in [0, 1], got {x!r}")
        if self.flat_inter_ratio is not None and not (_finite(self.flat_inter_ratio) and 0 <= self.flat_inter_ratio <= 1):
            raise bad("flat_inter_ratio", f"must be in [0, 1], got {self.flat_inter_ratio!r}")
        return self

    @property
    def num_phases(self) -> int:
        return len(self.phase_ratios)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "CurriculumConfig":
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise CurriculumConfigError(key, f"unknown curriculum setting (known: {', '.join(sorted(known))})")
        if "total_steps" not in d:
            raise CurriculumConfigError("total_steps", "is required")
        return cls(**d).validate()


def phase_boundaries(total_steps: int, ratios: Sequence[float]) -> list[int]:
    """Start step of each phase plus the end: [0, ..., total_steps]; 10000 steps at 4:2:1:1 ->
    [0, 5000, 7500, 8750, 10000]."""
    c = np.cumsum(np.asarray(ratios, dtype=np.float64))
    return [0] + [int(round(total_steps * x / c[-1])) for x in c[:-1]] + [int(total_steps)]


class Curriculum:
    """Thresholds, phases and the deterministic sampler over a set of scored samples.

    scores_intra[i]: D_overall of sample i with its intra-clip reference; scores_inter[i]: with its
    inter-clip reference, NaN (or None) where the sample has none."""

    def __init__(self, scores_intra: Sequence[float], scores_inter: Sequence[float | None] | None = None, config: CurriculumConfig | None = None, **kwargs):
        if config is None:
            config = CurriculumConfig(**kwargs)
        elif kwargs:
            raise TypeError("give either config or keyword settings, not both")
        self.config = config.validate()
        si = np.asarray(scores_intra, dtype=np.float64).reshape(-1)
        if si.size == 0:
            raise CurriculumConfigError("scores_intra", "no samples to schedule")
        bad = np.flatnonzero(~np.isfinite(si))
        if bad.size:
            raise CurriculumConfigError("scores_intra", f"sample {int(bad[0])} has no finite score ({si[bad[0]]})")
        if scores_inter is None:
            se = np.full_like(si, np.nan)
        else:
            se = np.array([np.nan if v is None else v for v in scores_inter], dtype=np.float64).reshape(-1)
            if se.shape != si.shape:
                raise CurriculumConfigError("scores_inter", f"has {se.size} entries for {si.size} samples")
        self.scores_intra, self.scores_inter = si, se
        has_inter = np.isfinite(se)
        self.cand_sample = np.concatenate([np.arange(si.size), np.flatnonzero(has_inter)])
        self.cand_inter = np.concatenate([np.zeros(si.size, bool), np.ones(int(has_inter.sum()), bool)])
        self.cand_score = np.concatenate([si, se[has_inter]])
        self.order = np.argsort(self.cand_score, kind="stable")  # the paper's pre-sort
        self.sorted_scores = self.cand_score[self.order]
        cfg = self.config
        self.boundaries = phase_boundaries(cfg.total_steps, cfg.phase_ratios)
        n_cand, P = self.cand_score.size, cfg.num_phases

        quartile_taus = [float(np.quantile(self.cand_score, q)) for q in cfg.quantiles]
        if cfg.mode == "none":
            self.thresholds = [float(self.sorted_scores[-1])] * P
            counts = [n_cand] * P
            ranking = self.order
        else:
            self.thresholds = [float(t) for t in cfg.thresholds] if cfg.thresholds is not None else quartile_taus
            counts = [int(np.searchsorted(self.sorted_scores, t, side="right")) for t in self.thresholds]
            ranking = self.order
            if cfg.mode == "random":  # same pool sizes, no difficulty guidance
                ranking = np.random.default_rng([cfg.seed, 0xE4]).permutation(n_cand)
        for p, c in enumerate(counts):
            if c == 0:
                raise CurriculumConfigError("thresholds", f"phase {p + 1} threshold {self.thresholds[p]:.4g} admits no sample (lowest score {self.sorted_scores[0]:.4g})")
        self.eligible_counts = counts
        self._pools = []
        for c in counts:
            sel = ranking[:c]
            self._pools.append((self.cand_sample[sel][~self.cand_inter[sel]], self.cand_sample[sel][self.cand_inter[sel]]))
        if cfg.mode == "none":
            if cfg.flat_inter_ratio is not None:
                flat = float(cfg.flat_inter_ratio)
            else:
                lengths = np.diff(self.boundaries)
                flat = float(np.dot(lengths, cfg.inter_ratios) / max(1, lengths.sum()))
            self.inter_ratios = [flat] * P
        else:
            self.inter_ratios = [float(r) for r in cfg.inter_ratios]

    # ---- construction from a dataset ------------------------------------------------------
    @classmethod
    def from_records(cls, records: Sequence[dict], config: CurriculumConfig) -> "Curriculum":
        """From manifest records carrying difficulty = {"overall_intra": .., "overall_inter": ..}."""
        si, se = [], []
        for i, r in enumerate(records):
            d = r.get("difficulty") or {}
            if d.get("overall_intra") is None:
                raise CurriculumConfigError("difficulty", f"sample {r.get('id', i)!r} has no overall_intra score (run the difficulty pass first)")
            si.append(d["overall_intra"])
            se.append(d.get("overall_inter"))
        return cls(si, se, config)

    # ---- schedule -------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.scores_intra.size

    def phase_at(self, step: int) -> int:
        """Phase index of a step; steps past total_steps stay in the last phase."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return int(min(np.searchsorted(self.boundaries[1:], step, side="right"), self.config.num_phases - 1))

    def threshold_at(self, step: int) -> float:
        return self.thresholds[self.phase_at(step)]

    def inter_ratio_at(self, step: int) -> float:
        return self.inter_ratios[self.phase_at(step)]

    def eligible(self, phase: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample indices eligible with an intra reference, those eligible with an inter one)."""
        return self._pools[phase]

    def effective_inter_ratio(self, phase: int) -> float:
        intra, inter = self._pools[phase]
        r = self.inter_ratios[phase]
        if inter.size == 0:
            return 0.0
        if intra.size == 0:
            return 1.0
        return r

    # ---- sampling -------------------------------------------------------------------------
    def sample(self, step: int, batch_size: int | None = None) -> list[tuple[int, bool]]:
        """The batch for `step`: (sample index, use the inter-clip reference). Pure in (seed, step)."""
        B = int(batch_size or self.config.batch_size)
        p = self.phase_at(step)
        intra, inter = self._pools[p]
        rng = np.random.default_rng([self.config.seed, int(step)])
        want_inter = rng.random(B) < self.inter_ratios[p]
        pick_intra = rng.integers(0, max(1, intra.size), B)
        pick_inter = rng.integers(0, max(1, inter.size), B)
        out = []
        for b in range(B):
            use_inter = bool((want_inter[b] and inter.size) or intra.size == 0)
            idx = inter[pick_inter[b]] if use_inter else intra[pick_intra[b]]
            out.append((int(idx), use_inter))
        return out

    def iterate(self, start_step: int = 0, end_step: int | None = None) -> Iterator[tuple[int, list[tuple[int, bool]]]]:
        """(step, batch) from start_step up to end_step (default total_steps)."""
        end = self.config.total_steps if end_step is None else end_step
        for step in range(start_step, end):
            yield step, self.sample(step)

    def batch_sampler(self, start_step: int = 0) -> "CurriculumBatchSampler":
        """For torch DataLoader(batch_sampler=...): each batch is a list of (index, use_inter)."""
        return CurriculumBatchSampler(self, start_step)

    # ---- resume ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(np.round(self.scores_intra, 9).tobytes())
        h.update(np.round(np.nan_to_num(self.scores_inter, nan=-1.0), 9).tobytes())
        h.update(repr(self.config.to_dict()).encode())
        return h.hexdigest()[:16]

    def state_dict(self, step: int) -> dict:
        """All a checkpoint needs: the sampler has no hidden state beyond (seed, step)."""
        return {"step": int(step), "seed": int(self.config.seed), "fingerprint": self.fingerprint(), "config": self.config.to_dict()}

    def resume_step(self, state: dict) -> int:
        """Check a checkpoint's state matches this curriculum (same scores, same config) and return
        the step to continue from."""
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError("curriculum state: the checkpoint was made with other scores or settings "
                             f"(fingerprint {state.get('fingerprint')} != {self.fingerprint()}); the data order would differ")
        return int(state["step"])

    # ---- for the launcher tab -------------------------------------------------------------
    def schedule_description(self, bins: int = 20) -> dict:
        """Plot-ready, JSON-safe summary of the schedule."""
        cfg = self.config
        phases = []
        for p in range(cfg.num_phases):
            intra, inter = self._pools[p]
            phases.append({
                "index": p,
                "start": self.boundaries[p],
                "end": self.boundaries[p + 1],
                "threshold": self.thresholds[p],
                "quantile": (cfg.quantiles[p] if cfg.mode != "none" and cfg.thresholds is None else None),
                "eligible": self.eligible_counts[p],
                "eligible_intra": int(intra.size),
                "eligible_inter": int(inter.size),
                "eligible_fraction": self.eligible_counts[p] / self.cand_score.size,
                "inter_ratio": self.inter_ratios[p],
                "effective_inter_ratio": self.effective_inter_ratio(p),
            })
        lo, hi = float(self.sorted_scores[0]), float(self.sorted_scores[-1])
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        return {
            "mode": cfg.mode,
            "total_steps": cfg.total_steps,
            "num_samples": self.num_samples,
            "num_candidates": int(self.cand_score.size),
            "boundaries": list(self.boundaries),
            "thresholds": list(self.thresholds),
            "eligible_counts": list(self.eligible_counts),
            "inter_ratios": list(self.inter_ratios),
            "phases": phases,
            "score_histogram": {
                "edges": edges.tolist(),
                "intra": np.histogram(self.cand_score[~self.cand_inter], edges)[0].tolist(),
                "inter": np.histogram(self.cand_score[self.cand_inter], edges)[0].tolist(),
            },
            "fingerprint": self.fingerprint(),
        }


class CurriculumBatchSampler:
    """Yields one batch of (index, use_inter) per step from start_step to total_steps."""

    def __init__(self, curriculum: Curriculum, start_step: int = 0):
        self.curriculum, self.start_step = curriculum, int(start_step)

    def __iter__(self):
        for _, batch in self.curriculum.iterate(self.start_step):
            yield batch

    def __len__(self) -> int:
        return max(0, self.curriculum.config.total_steps - self.start_step)


def schedule_figure(description: dict):
    """A plotly Figure of a schedule_description(): tau and the inter ratio as step functions over
    training steps, phases shaded and labelled with their eligible counts."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    phases = description["phases"]
    xs, tau, inter = [], [], []
    for ph in phases:
        xs += [ph["start"], ph["end"]]
        tau += [ph["threshold"]] * 2
        inter += [ph["effective_inter_ratio"]] * 2
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=xs, y=tau, name="threshold τ", mode="lines", line={"width": 3}), secondary_y=False)
    fig.add_trace(go.Scatter(x=xs, y=inter, name="inter-clip ratio", mode="lines", line={"dash": "dash"}), secondary_y=True)
    for ph in phases:
        fig.add_vrect(x0=ph["start"], x1=ph["end"], opacity=0.08 + 0.06 * (ph["index"] % 2), line_width=0, fillcolor="steelblue",
                      annotation_text=f"phase {ph['index'] + 1}: {ph['eligible']} eligible", annotation_position="top left")
    fig.update_layout(title=f"Curriculum ({description['mode']}): {description['num_samples']} samples, {description['total_steps']} steps",
                      xaxis_title="training step", legend={"orientation": "h"})
    fig.update_yaxes(title_text="D_overall threshold τ", secondary_y=False)
    fig.update_yaxes(title_text="inter-clip reference ratio", range=[0, 1], secondary_y=True)
    return fig


__all__ = ["MODES", "Curriculum", "CurriculumBatchSampler", "CurriculumConfig", "CurriculumConfigError", "phase_boundaries", "schedule_figure"]
