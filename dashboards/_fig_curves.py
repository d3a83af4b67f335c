"""The learning-curves figure: every run's curve coloured by its rate, how each run ended, the
ASHA rungs. What to draw (the sample of runs, the colour levels) is :func:`curve_lines`'."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from ._common import MetricInfo
from ._curves import MAX_CURVES, CurveLines, LearningCurves, curve_lines
from ._fig_style import LAYOUT, LINE, metric_axis, nothing_to_draw, param_colorscale, short, titled
from ._frame import Col

__all__ = ["plot_learning_curves"]


def plot_learning_curves(
    c: LearningCurves,
    metric: MetricInfo,
    ranges: dict[str, tuple[float, float]],
    *,
    max_curves: int = MAX_CURVES,
    n_colors: int = 24,
) -> go.Figure:
    """Every run's curve coloured by its rate (the parameter's colour scale and range), runs
    stopped early dotted with an x where they stopped, ASHA rungs as dashed lines."""
    if c.final.empty:
        return nothing_to_draw("Learning curves", "no run has a per-epoch validation value")
    info = curve_lines(c, ranges, max_curves=max_curves, n_colors=n_colors)
    cscale = param_colorscale(c.color_param)
    colors = sample_colorscale(cscale, list(np.linspace(0, 1, n_colors)))
    fig = go.Figure()
    for style, level, x, y in info.lines:
        color = colors[level] if info.has_color else LINE
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                connectgaps=False,
                hoverinfo="skip",
                line=dict(color=color, width=1.2, dash=style),
                opacity=0.75,
                showlegend=False,
            )
        )
    for trace in _end_markers(c, info, cscale):
        fig.add_trace(trace)
    for r in c.rungs:
        fig.add_vline(x=r, line=dict(color="#999", dash="dash", width=1))
    step = max(1, math.ceil(c.max_epochs / 12))
    fig.update_layout(
        title=titled("Learning curves", _subtitle(c, info)),
        legend=dict(orientation="h", y=-0.2),
        xaxis=dict(
            title=dict(text="epoch"),  # frame-contract: not a column (the axis title)
            range=[0.7, c.max_epochs + 0.3],
            tickmode="linear",
            tick0=1,
            dtick=step,
            tickformat="d",
        ),
        yaxis=metric_axis(metric),
        **LAYOUT,
    )
    return fig


def _subtitle(c: LearningCurves, info: CurveLines) -> str:
    note = f", {len(info.final)} of {info.shown} shown" if info.shown > len(info.final) else ""
    sub = (
        f"{info.shown} runs{note}; colour: {short(c.color_param or '') or 'none'}; "
        f"{c.n_stopped_early} stopped early (dotted)"
    )
    if c.n_unfinished:
        sub += f"; {c.n_unfinished} unfinished (dashed)"
    if c.rungs:
        sub += f"; ASHA rungs at epochs {', '.join(map(str, c.rungs))}"
    return sub


def _end_markers(c: LearningCurves, info: CurveLines, cscale: str) -> list[go.Scatter]:
    """Where each drawn run ended: an x where the scheduler stopped it, an open circle where it
    is unfinished, its last epoch (coloured by its rate) where it ran to the end."""
    final: pd.DataFrame = info.final
    stopped, unfinished = final["stopped_early"].astype(bool), final["unfinished"].astype(bool)
    traces = []
    stop = final[stopped]
    if len(stop):
        traces.append(
            go.Scatter(
                x=stop[Col.EPOCH],
                y=stop[Col.VALID_METRIC],
                mode="markers",
                name="stopped early",
                marker=dict(symbol="x", size=8, color="#d62728"),
                customdata=stop[Col.NUMBER],
                hovertemplate="trial %{customdata} stopped at epoch %{x}<extra></extra>",
            )
        )
    cut = final[unfinished]
    if len(cut):
        traces.append(
            go.Scatter(
                x=cut[Col.EPOCH],
                y=cut[Col.VALID_METRIC],
                mode="markers",
                name="unfinished (failed, interrupted or running)",
                marker=dict(symbol="circle-open", size=8, color="#555"),
                customdata=np.stack([cut[Col.NUMBER], cut[Col.STATE]], axis=-1),
                hovertemplate="trial %{customdata[0]} (%{customdata[1]}) last at epoch %{x}"
                "<extra></extra>",
            )
        )
    done = final[~stopped & ~unfinished]
    if len(done):
        marker = dict(size=6, line=dict(width=0.5, color="#222"))
        if info.has_color:
            lo, hi = info.color_range
            colorbar = dict(title=dict(text=short(c.color_param or "")))
            marker.update(
                color=done["color"],
                colorscale=cscale,
                cmin=lo,
                cmax=hi,
                showscale=True,
                colorbar=colorbar,
            )
        else:
            marker.update(color=LINE)
        traces.append(
            go.Scatter(
                x=done[Col.EPOCH],
                y=done[Col.VALID_METRIC],
                mode="markers",
                name="last epoch",
                marker=marker,
                customdata=done[Col.NUMBER],
                hovertemplate="trial %{customdata}: %{y:.4g}<extra></extra>",
            )
        )
    return traces
