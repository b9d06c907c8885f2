"""Compare models scored by benchmarks/ladder.py on the same scenes, with bootstrap intervals over the scenes.

    python benchmarks/ladder.py assets/default_model --level l2c --n 24 --no-ceiling --json runs/a.json
    python benchmarks/ladder.py runs/other/export    --level l2c --n 24 --no-ceiling --json runs/b.json
    python benchmarks/compare_models.py shipped=runs/a.json other=runs/b.json [--boot 2000]
    python benchmarks/compare_models.py shipped=runs/a0.json+runs/a48.json other=runs/b0.json+runs/b48.json

The first model is the baseline. For each metric: each model's pooled value with its 95% interval over resampled
scenes, and each other model's paired difference from the baseline (the same resampled scenes for both; intervals
from evaluation/paired.py) with the share of resamples where it is not better. Timing error is better when lower.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.paired import METRICS, bootstrap, paired_difference  # noqa: E402

LOWER_IS_BETTER = {"timing_error_frames"}


def load(spec: str) -> tuple[str, list[dict]]:
    """NAME=PATH, or NAME=A+B+C: the per-scene records of several ladder.py runs on consecutive blocks of scenes
    (e.g. --first 0, 48, 96), in that order."""
    name, sep, paths = spec.partition("=")
    if not sep:
        name, paths = Path(spec).stem, spec
    scenes = []
    for path in paths.split("+"):
        try:
            row = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{path}: cannot read a ladder.py --json file ({exc})")
        if "per_scene" not in row:
            raise SystemExit(f"{path}: no per-scene records; rescore it with the current benchmarks/ladder.py --json")
        scenes += row["per_scene"]
    return name, scenes


def table(models: list[tuple[str, list[dict]]], n_boot: int = 2000) -> list[str]:
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    base_name, base = models[0]
    head = ["metric", *(f"{n} (95% CI)" for n, _ in models), *(f"{n} − {base_name} (95% CI)" for n, _ in models[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        cells = [metric + (" (lower is better)" if metric in LOWER_IS_BETTER else "")]
        for _, recs in models:
            b = bootstrap(recs, metric, n_boot)
            cells.append(f"{fmt(b['value'])} ({fmt(b['low'])}–{fmt(b['high'])})")
        for _, recs in models[1:]:
            d = paired_difference(base, recs, metric, n_boot)
            worse = d["p_ge_0"] if metric in LOWER_IS_BETTER else d["p_le_0"]
            sign = lambda v: "–" if v is None else f"{v:+.3f}"  # noqa: E731
            cells.append(f"{sign(d['difference'])} ({sign(d['low'])} to {sign(d['high'])}); not better in {fmt(worse)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=ladder.json (or a path: its stem names it); the first is the baseline")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    args = ap.parse_args(argv)
    models = [load(s) for s in args.models]
    n = {len(r) for _, r in models}
    if len(n) > 1:
        raise SystemExit("the models were scored on different numbers of scenes: " + ", ".join(f"{m} {len(r)}" for m, r in models))
    print(f"{n.pop()} scenes, {args.boot} bootstrap resamples of the scenes")
    print("\n".join(table(models, args.boot)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
