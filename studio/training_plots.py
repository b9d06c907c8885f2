"""Read-only plotly views of the training tab: the loss curves and the curriculum (DESIGN.md §6: plotly for
read-only views)."""

from __future__ import annotations

import plotly.graph_objects as go

LOSS_TERMS = (("loss", "total", "#1f77b4"), ("flow", "flow matching", "#ff7f0e"), ("focal", "mask head", "#2ca02c"))
MAX_POINTS = 2500


def ema(values: list[float], smoothing: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out, m, w = [], 0.0, 0.0
    for v in values:
        m = smoothing * m + (1 - smoothing) * v
        w = smoothing * w + (1 - smoothing)
        out.append(m / w if w else v)
    return out


def loss_figure(records: list[dict], smoothing: float = 0.9, revision: str = "") -> go.Figure:
    """Each loss term raw (thin) and smoothed (solid), against the step."""
    fig = go.Figure()
    stride = max(1, len(records) // MAX_POINTS)
    shown = records[::stride]
    if records and shown[-1] is not records[-1]:
        shown = shown + [records[-1]]
    for key, label, colour in LOSS_TERMS:
        pts = [(r["step"], float(r[key])) for r in shown if isinstance(r.get(key), (int, float))]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} (raw)", legendgroup=key, mode="lines", line={"color": colour, "width": 1}, opacity=0.35))
        fig.add_trace(go.Scatter(x=xs, y=ema(ys, smoothing), name=f"{label} (smoothed)", legendgroup=key, mode="lines", line={"color": colour, "width": 2.5}))
    last = records[-1] if records else None
    title = "Loss" + (f" — step {last['step']}: total {last['loss']:.4f}" if last and "loss" in last else " (no step logged yet)")
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", template="plotly_white", height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25}, uirevision=revision or "loss")
    return fig


def difficulty_figure(desc: dict) -> go.Figure:
    """Histogram of D_overall over the candidates (intra- and inter-clip references), with the thresholds τ."""
    h = desc["score_histogram"]
    edges = h["edges"]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    width = (edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig = go.Figure()
    fig.add_trace(go.Bar(x=mids, y=h["intra"], width=width, name="intra-clip reference", marker_color="#4c78a8"))
    fig.add_trace(go.Bar(x=mids, y=h["inter"], width=width, name="inter-clip reference", marker_color="#f58518"))
    for ph in desc["phases"]:
        q = ph.get("quantile")
        label = f"τ{ph['index'] + 1}" + (f" (Q{int(round(q * 4))})" if q else "")
        fig.add_vline(x=ph["threshold"], line_dash="dash", line_color="#333", annotation_text=label, annotation_position="top")
    fig.update_layout(barmode="stack", title=f"Difficulty D_overall of {desc['num_candidates']} candidates ({desc['num_samples']} samples)",
                      xaxis_title="D_overall", yaxis_title="candidates", template="plotly_white", height=330, bargap=0.02,
                      margin={"l": 50, "r": 20, "t": 60, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def schedule_figure(desc: dict, step: int | None = None) -> go.Figure:
    """The phase schedule (4:2:1:1 by default) over steps: τ as a step function, phases shaded, the job's step."""
    fig = go.Figure()
    xs, ys = [], []
    for ph in desc["phases"]:
        xs += [ph["start"], ph["end"]]
        ys += [ph["threshold"]] * 2
        fig.add_vrect(x0=ph["start"], x1=ph["end"], fillcolor="steelblue", opacity=0.06 + 0.07 * (ph["index"] % 2), line_width=0,
                      annotation_text=f"phase {ph['index'] + 1}<br>{ph['eligible']} eligible", annotation_position="top left")
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="threshold τ", line={"width": 3, "color": "#4c78a8"}))
    if step is not None:
        fig.add_vline(x=step, line_color="#d62728", line_width=2, annotation_text=f"job: step {step}", annotation_position="bottom right")
    fig.update_layout(title=f"Phases over {desc['total_steps']} steps ({desc['mode']})", xaxis_title="step", yaxis_title="threshold τ",
                      template="plotly_white", height=330, margin={"l": 50, "r": 20, "t": 60, "b": 40}, showlegend=False)
    return fig


def inter_share_figure(desc: dict, observed: dict[int, float] | None = None, phase: int | None = None) -> go.Figure:
    """Share of inter-clip references per phase: the schedule's, what the eligible pool allows, what the job drew."""
    names = [f"phase {ph['index'] + 1}" for ph in desc["phases"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[ph["inter_ratio"] for ph in desc["phases"]], name="scheduled", marker_color="#9ecae9"))
    fig.add_trace(go.Bar(x=names, y=[ph["effective_inter_ratio"] for ph in desc["phases"]], name="effective (eligible pool)", marker_color="#4c78a8"))
    if observed:
        fig.add_trace(go.Bar(x=names, y=[observed.get(i + 1) for i in range(len(names))], name="drawn by the job", marker_color="#f58518"))
    if phase is not None and 1 <= phase <= len(names):
        fig.add_annotation(x=names[phase - 1], y=1.0, text="▼ job is here", showarrow=False, font={"color": "#d62728"})
    fig.update_layout(barmode="group", title="Inter-clip reference share per phase", yaxis={"range": [0, 1.08], "tickformat": ".0%"},
                      template="plotly_white", height=330, margin={"l": 50, "r": 20, "t": 60, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


__all__ = ["difficulty_figure", "ema", "inter_share_figure", "loss_figure", "schedule_figure"]
