"""The marginal figure of one parameter: per-configuration means with their intervals (coloured
by the other rate) and the GP's partial-dependence curve with its band where it is supported."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._common import MetricInfo
from ._fig_style import (
    BAND,
    LAYOUT,
    LINE,
    cap,
    label,
    metric_axis,
    n_text,
    nothing_to_draw,
    param_colorscale,
    short,
    titled,
)
from ._marginal import Marginal, MarginalCurve, dodged_x
from ._stats import LEVEL, IntervalKind

__all__ = ["MarginalInfo", "get_marginal_info", "plot_marginal"]


class MarginalInfo(NamedTuple):
    """What the marginal figure draws, computed from :class:`~dashboards._marginal.Marginal`."""

    title: str
    subtitle: str
    xs: np.ndarray
    """Each configuration's x, dodged where configurations share a value."""
    student_t: np.ndarray
    """Per configuration: whether its interval is a Student-t one (else no error bar)."""
    name: str
    has_color: bool
    color_range: tuple[float, float]
    two_x: np.ndarray
    two_y: np.ndarray
    """Both seeds' values of the n = 2 configurations, at their x."""


def get_marginal_info(
    m: Marginal, metric: MetricInfo, ranges: dict[str, tuple[float, float]]
) -> MarginalInfo:
    c = m.configs
    has_color = m.color_param is not None and bool(np.isfinite(c["color"].to_numpy(float)).any())
    name = "mean over seeds"
    if IntervalKind.STUDENT_T.value in set(c["kind"]):
        name += f" ± {LEVEL:.0%} Student-t"
    xs = dodged_x(c, m.log_scale)
    two = c[c["kind"] == IntervalKind.TWO_VALUES.value]
    two_x, two_y = np.array([]), np.array([])
    if len(two):
        two_x = np.repeat(xs[two.index.to_numpy()], 2)
        two_y = np.concatenate([np.asarray(v, dtype=float) for v in two["values"]])
    sub = f"{m.epoch_label}; {n_text(m.table)}"
    if m.curve is not None:
        over = m.curve.averaged_over
        sub += f"; curve: {m.curve.method}" + (f" averaged over {', '.join(over)}" if over else "")
    else:
        sub += f"; no curve: {m.curve_reason}"
    return MarginalInfo(
        title=f"{cap(metric.title)} vs {short(m.param)}",
        subtitle=sub,
        xs=xs,
        student_t=(c["kind"] == IntervalKind.STUDENT_T.value).to_numpy(),
        name=name,
        has_color=has_color,
        color_range=ranges.get(m.color_param or "", (0.0, 1.0)),
        two_x=two_x,
        two_y=two_y,
    )


def plot_marginal(
    m: Marginal, metric: MetricInfo, ranges: dict[str, tuple[float, float]]
) -> go.Figure:
    """Per-configuration means (intervals by seed count) coloured by the other rate, and the GP
    partial-dependence curve with its band where the GP supports one."""
    info = get_marginal_info(m, metric, ranges)
    if not len(m.configs):
        return nothing_to_draw(
            info.title, f"{m.epoch_label}: no configuration has a {metric.title}"
        )
    fig = go.Figure()
    if m.curve is not None:
        for trace in _curve_traces(m.curve):
            fig.add_trace(trace)
    fig.add_trace(_means(m, info))
    if len(info.two_x):
        fig.add_trace(
            go.Scatter(
                x=info.two_x,
                y=info.two_y,
                mode="markers",
                name="n = 2: both seeds",
                marker=dict(
                    symbol="line-ew-open", size=12, color="#555", line=dict(width=2, color="#555")
                ),
                hovertemplate="%{x:.4g}: seed value %{y:.4g}<extra></extra>",
            )
        )
    if m.curve is not None:
        fig.add_vline(x=m.curve.best_x, line=dict(dash="dot", color="#2ca02c"))
    fig.update_layout(
        title=titled(info.title, info.subtitle),
        xaxis=dict(title=dict(text=label(m.param)), type="log" if m.log_scale else "linear"),
        yaxis=metric_axis(metric),
        legend=dict(orientation="h", y=-0.2),
        **LAYOUT,
    )
    return fig


def _curve_traces(cv: MarginalCurve) -> list[go.Scatter]:
    """The GP curve over its 95% band (upper edge, lower edge filled to it, the mean)."""
    return [
        go.Scatter(
            x=cv.grid,
            y=cv.high,
            mode="lines",
            line=dict(width=0),
            hoverinfo="skip",
            showlegend=False,
        ),
        go.Scatter(
            x=cv.grid,
            y=cv.low,
            mode="lines",
            line=dict(width=0),
            fill="tonexty",
            fillcolor=BAND,
            name="95% GP credible band (of the curve)",
            hoverinfo="skip",
        ),
        go.Scatter(
            x=cv.grid,
            y=cv.mean,
            mode="lines",
            name="GP partial dependence",
            line=dict(color=LINE, width=2.5),
        ),
    ]


def _means(m: Marginal, info: MarginalInfo) -> go.Scatter:
    """Each configuration's mean with its Student-t interval, coloured by the other parameter."""
    c: pd.DataFrame = m.configs
    marker = dict(size=10, line=dict(width=1, color="#222"))
    if info.has_color:
        marker.update(
            color=c["color"],
            colorscale=param_colorscale(m.color_param),
            cmin=info.color_range[0],
            cmax=info.color_range[1],
            showscale=True,
            colorbar=dict(title=dict(text=short(m.color_param or ""))),
        )
    else:
        marker.update(color="#444")
    t = info.student_t
    err = dict(
        type="data",
        symmetric=False,
        array=np.where(t, c["high"] - c["mean"], 0),
        arrayminus=np.where(t, c["mean"] - c["low"], 0),
        color="#555",
        thickness=1.2,
    )
    color_hover = (
        f", {short(m.color_param or '')} = %{{customdata[1]:.3g}}" if info.has_color else ""
    )
    return go.Scatter(
        x=info.xs,
        y=c["mean"],
        mode="markers",
        name=info.name,
        marker=marker,
        error_y=err,
        customdata=np.column_stack([c["n"], c["color"], c["x"]]) if len(c) else None,
        hovertemplate=(
            "%{customdata[2]:.4g}: mean %{y:.4g}, n = %{customdata[0]}"
            + color_hover
            + "<extra></extra>"
        ),
    )
