"""Results as the paper prints them (stdout), as CSV and JSON files, and as a plotly comparison chart.

Like the paper's tables, OpenS2V columns are normalised values printed as percentages; the CSV files keep
0-1 fractions. "n/a" = the model for that column is not available; "—" = measured nowhere (for instance
FaceSim on clips without a human subject, or NexusScore in the Human domain, which the benchmark leaves out).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from . import opens2v
from .run import Results

DOMAIN_TITLES = {"open": "OpenS2V-Eval layout: Open Domain", "single": "OpenS2V-Eval layout: Single Domain", "human": "OpenS2V-Eval layout: Human Domain"}
SPRITE_COLUMNS = [("action_accuracy", "Action acc.", "pct"), ("timing_error_frames", "Timing err. (frames)", "num"),
                  ("binding_accuracy", "Binding acc.", "pct"), ("identity_fidelity", "Identity", "pct")]
TIMELINE_COLUMNS = [("subject_action_accuracy", "Subject action acc. (±1 latent frame)", "pct"), ("precision", "P", "pct"),
                    ("recall", "R", "pct"), ("f1", "F1", "pct"), ("boundary_hit_rate", "Boundaries within ±1 latent frame", "pct")]


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _num(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def opens2v_table(res: Results) -> str:
    """The paper's Table 1 layout: one block per domain, one row per method."""
    if not res.opens2v:
        return "(no clip could be evaluated)"
    header = ["Method"] + [res.columns[c]["label"] + "↑" for c in opens2v.METRICS] + ["Total.↑", "clips"]
    rows, blocks = [], []
    for dom in dict.fromkeys(r["domain"] for r in res.opens2v):
        rows = []
        for r in (x for x in res.opens2v if x["domain"] == dom):
            cells = [r["method"]]
            for c in opens2v.METRICS:
                if c not in r["values"]:
                    cells.append("—")  # not part of this domain
                elif not res.columns[c]["available"]:
                    cells.append("n/a")
                else:
                    cells.append(_pct(r["values"][c]))
            cells += [_pct(r["total"]) if r["total"] is not None else "n/a", str(r["clips"])]
            rows.append(cells)
        blocks.append(DOMAIN_TITLES[dom] + "\n" + _grid(header, rows))
    return "\n\n".join(blocks)


def _simple_table(title: str, rows_in: list[dict], columns) -> str:
    if not rows_in:
        return f"{title}\n(no clip this table applies to)"
    header = ["Method", "Domain", "clips"] + [lab for _, lab, _ in columns]
    rows = [[r["method"], r["domain"], str(r["clips"])] + [(_pct if kind == "pct" else _num)(r.get(k)) for k, _, kind in columns] for r in rows_in]
    return title + "\n" + _grid(header, rows)


def sprite_table(res: Results) -> str:
    return _simple_table("Sprite benchmark (train/sprite_eval.py)", res.sprite, SPRITE_COLUMNS)


def timeline_table(res: Results) -> str:
    return _simple_table("Timeline metrics (App. E.2 judgements, per-subject action accuracy)", res.timeline, TIMELINE_COLUMNS)


def footnotes(res: Results) -> str:
    lines = ["Columns:"]
    for c in opens2v.METRICS:
        col = res.columns[c]
        tag = "paper metric" if col["paper_metric"] else "SUBSTITUTE, not the paper's metric"
        lines.append(f"  {col['label']:<13} {tag if col['available'] else 'n/a'}: {col['detail']}")
    tot = [f"{r['method']} ({r['domain']}): {r['total_missing']}" for r in res.opens2v if r["total"] is None and r["total_missing"]]
    if tot:
        lines.append("Total. not computed (it needs every column as the paper's metric):")
        lines += [f"  {t}" for t in tot]
    bad = [i for i in res.items if not i["ok"]]
    if bad or res.problems:
        lines.append(f"Not evaluated ({len(bad) + len(res.problems)}):")
        lines += [f"  {i['notes'][0]}" for i in bad] + [f"  {p}" for p in res.problems]
    return "\n".join(lines)


def render(res: Results) -> str:
    return "\n\n".join([opens2v_table(res), sprite_table(res), timeline_table(res), footnotes(res)])


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])


def write_files(res: Results, out: str | Path) -> dict[str, Path]:
    """results.json, opens2v.csv, sprite.csv, timeline.csv, items.csv and comparison.html under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / n for k, n in [("json", "results.json"), ("opens2v", "opens2v.csv"), ("sprite", "sprite.csv"),
                                      ("timeline", "timeline.csv"), ("items", "items.csv"), ("chart", "comparison.html")]}
    paths["json"].write_text(json.dumps(res.to_dict(), indent=2, ensure_ascii=False, default=float), encoding="utf-8")
    labels = [res.columns[c]["label"] for c in opens2v.METRICS]
    _write_csv(paths["opens2v"], ["domain", "method", "clips"] + labels + ["Total.", "total_missing"],
               [[r["domain"], r["method"], r["clips"]] + [r["values"].get(c) for c in opens2v.METRICS] + [r["total"], r["total_missing"]] for r in res.opens2v])
    _write_csv(paths["sprite"], ["domain", "method", "clips"] + [k for k, _, _ in SPRITE_COLUMNS], [[r["domain"], r["method"], r["clips"]] + [r.get(k) for k, _, _ in SPRITE_COLUMNS] for r in res.sprite])
    tcols = [k for k, _, _ in TIMELINE_COLUMNS] + ["subjects", "tp", "fp_event", "fp_timestamp", "fn"]
    _write_csv(paths["timeline"], ["domain", "method", "clips"] + tcols, [[r["domain"], r["method"], r["clips"]] + [r.get(k) for k in tcols] for r in res.timeline])
    _write_csv(paths["items"], ["method", "clip", "ok", "domain", "frames"] + [f"raw {l}" for l in labels] + ["action_accuracy", "subject_action_accuracy", "notes"],
               [[i["method"], i["clip"], i["ok"], i.get("domain"), i.get("frames")] + [i["raw"].get(c) for c in opens2v.METRICS]
                + [(i["sprite"] or {}).get("action_accuracy"), (i["timeline"] or {}).get("subject_accuracy"), " | ".join(i["notes"])] for i in res.items])
    write_chart(res, paths["chart"])
    return paths


def write_chart(res: Results, path: str | Path) -> Path:
    """comparison.html: chart_figure as a page that opens offline."""
    fig = chart_figure(res)
    # plotly.js is embedded so the page works offline (no CDN can be reached from these machines)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return Path(path)


def chart_figure(res: Results):
    """Grouped bars, one colour per method: the OpenS2V columns (normalised) and the sprite/timeline scores."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.18,
                        subplot_titles=("OpenS2V-Eval columns (normalised, as in the paper's tables)", "Sprite benchmark and timeline metrics"))
    multi = len({r["domain"] for r in res.opens2v}) > 1
    name = lambda r: f"{r['method']} ({r['domain']})" if multi else r["method"]
    colours = {}
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    for r in res.opens2v:
        n = name(r)
        colours.setdefault(n, palette[len(colours) % len(palette)])
        cols = [c for c in opens2v.METRICS if r["values"].get(c) is not None] + (["total"] if r["total"] is not None else [])
        fig.add_trace(go.Bar(name=n, legendgroup=n, marker_color=colours[n], x=[res.columns[c]["label"] if c != "total" else "Total." for c in cols],
                             y=[r["values"][c] if c != "total" else r["total"] for c in cols], texttemplate="%{y:.1%}", textposition="outside"), row=1, col=1)
    for sp, tl in zip(res.sprite, res.timeline):
        n = name(sp)
        colours.setdefault(n, palette[len(colours) % len(palette)])
        keys = [("action_accuracy", "Action acc.", sp), ("binding_accuracy", "Binding acc.", sp), ("identity_fidelity", "Identity", sp),
                ("subject_action_accuracy", "Subject action acc. (±1 latent)", tl), ("f1", "Timeline F1", tl)]
        keys = [(lab, src[k]) for k, lab, src in keys if src.get(k) is not None]
        fig.add_trace(go.Bar(name=n, legendgroup=n, showlegend=False, marker_color=colours[n], x=[k for k, _ in keys], y=[v for _, v in keys],
                             texttemplate="%{y:.1%}", textposition="outside"), row=2, col=1)
    fig.update_layout(barmode="group", title="ReactID Studio evaluation: " + str(res.root), template="plotly_white", height=760)
    fig.update_yaxes(tickformat=".0%")
    return fig


__all__ = ["chart_figure", "footnotes", "opens2v_table", "render", "sprite_table", "timeline_table", "write_chart", "write_files"]
