"""The surface figure: observed configurations (a Figure-3 heatmap on a lattice, else points
coloured by value) and the GP's partial-dependence surface where it is supported."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import MetricInfo
from ._fig_style import (
    LAYOUT,
    METRIC_COLORSCALE,
    cap,
    fmt,
    label,
    metric_colors,
    n_text,
    nothing_to_draw,
    short,
    titled,
)
from ._surface import Surface

__all__ = ["SurfaceInfo", "get_surface_info", "plot_surface"]

_PANEL_TITLES = {
    "heatmap": "mean over seeds per cell (n = seeds)",
    "points": "observed configurations (mean over seeds)",
    "gp": "GP mean (partial dependence)",
}


class SurfaceInfo(NamedTuple):
    """What the surface figure draws, computed from :class:`~dashboards._surface.Surface`."""

    title: str
    subtitle: str
    panels: list[str]
    """'heatmap' or 'points', then 'gp' where the GP supports a surface."""
    lo: float
    hi: float
    """The metric's colour range, shared by every panel."""
    cell_text: list[list[str]]
    """Per lattice cell: its mean and n ('' where the cell was not run)."""


def get_surface_info(s: Surface, metric: MetricInfo) -> SurfaceInfo:
    title = f"{cap(metric.title)} over {short(s.x_param)} × {short(s.y_param)}"
    panels = ["heatmap" if s.lattice is not None else "points"]
    if s.gp is not None:
        panels.append("gp")
    vals = s.points["mean"].to_numpy(float)
    lo, hi = (float(np.nanmin(vals)), float(np.nanmax(vals))) if len(vals) else (0.0, 1.0)
    if s.gp is not None:
        lo, hi = min(lo, float(s.gp.mean.min())), max(hi, float(s.gp.mean.max()))
    text = []
    if s.lattice is not None:
        text = [
            [f"{m:.3f}<br>n={n}" if n else "" for m, n in zip(mr, nr, strict=True)]
            for mr, nr in zip(s.lattice.mean, s.lattice.n, strict=True)
        ]
    sub = f"{s.epoch_label}; {n_text(s.table)}"
    if s.gp is not None:
        over = f", averaged over {', '.join(s.gp.averaged_over)}" if s.gp.averaged_over else ""
        sub += f"; {s.gp.method} fit{over}, inside the observed box"
    else:
        sub += f"; no GP surface: {s.gp_reason}"
    return SurfaceInfo(title, sub, panels, lo, hi, text)


def plot_surface(s: Surface, metric: MetricInfo) -> go.Figure:
    """Observed configurations (heatmap of cell means on a lattice, else coloured points) and,
    where the GP supports it, its partial-dependence surface; one colour bar for the metric."""
    info = get_surface_info(s, metric)
    if not len(s.points):
        return nothing_to_draw(
            info.title, f"{s.epoch_label}: no configuration has a {metric.title}"
        )
    fig = make_subplots(
        rows=1,
        cols=len(info.panels),
        horizontal_spacing=0.12,
        subplot_titles=[_PANEL_TITLES[p] for p in info.panels],
    )
    for col, panel in enumerate(info.panels, start=1):
        if panel == "heatmap":
            _heatmap_panel(fig, col, s, info, metric)
        elif panel == "points":
            points = _points(s, info, metric, showscale=s.gp is None)
            fig.add_trace(points, row=1, col=col)
        else:
            _gp_panel(fig, col, s, info, metric)
    fig.update_xaxes(title_text=label(s.x_param))
    fig.update_yaxes(title_text=label(s.y_param))
    fig.update_layout(
        title=titled(info.title, info.subtitle),
        legend=dict(orientation="h", y=-0.2),
        **{**LAYOUT, "margin": dict(l=70, r=30, t=120, b=60)},
    )
    return fig


def _heatmap_panel(
    fig: go.Figure, col: int, s: Surface, info: SurfaceInfo, metric: MetricInfo
) -> None:
    lat = s.lattice
    assert lat is not None
    fig.add_trace(
        go.Heatmap(
            x=[fmt(v) for v in lat.x_values],
            y=[fmt(v) for v in lat.y_values],
            z=lat.mean,
            text=info.cell_text,
            texttemplate="%{text}",
            **metric_colors(info.lo, info.hi, metric, showscale=True),
            name="cell mean",
            hovertemplate=(
                f"{short(s.x_param)}=%{{x}}, {short(s.y_param)}=%{{y}}<br>%{{text}}<extra></extra>"
            ),
        ),
        row=1,
        col=col,
    )
    fig.update_xaxes(type="category", row=1, col=col)
    fig.update_yaxes(type="category", row=1, col=col)


def _gp_panel(fig: go.Figure, col: int, s: Surface, info: SurfaceInfo, metric: MetricInfo) -> None:
    g = s.gp
    assert g is not None
    mean = go.Contour(
        x=g.x_grid,
        y=g.y_grid,
        z=g.mean,
        **metric_colors(info.lo, info.hi, metric, showscale=s.lattice is None),
        name="GP mean",
        ncontours=24,
        contours=dict(coloring="heatmap", showlines=False),
        hovertemplate="%{x:.3g}, %{y:.3g}: %{z:.4g}<extra>GP mean</extra>",
    )
    within = go.Contour(
        x=g.x_grid,
        y=g.y_grid,
        z=g.within_se.astype(float),
        name="within 1 SD of best",
        showscale=False,
        hoverinfo="skip",
        contours=dict(start=0.5, end=0.5, size=1, coloring="lines"),
        colorscale=[[0, "white"], [1, "white"]],
        showlegend=True,
        line=dict(color="white", width=3, dash="dash"),
    )
    best = go.Scatter(
        x=[g.best_x],
        y=[g.best_y],
        mode="markers",
        name="best of GP mean",
        marker=dict(symbol="star", size=16, color="#d62728", line=dict(width=1, color="white")),
        hovertemplate=f"best: {g.best_mean:.4g} ± {g.best_se:.2g}<extra></extra>",
    )
    for trace in (mean, within, _points(s, info, metric, legend=False), best):
        fig.add_trace(trace, row=1, col=col)
    fig.update_xaxes(type="log" if s.log_x else "linear", row=1, col=col)
    fig.update_yaxes(type="log" if s.log_y else "linear", row=1, col=col)


def _points(
    s: Surface,
    info: SurfaceInfo,
    metric: MetricInfo,
    *,
    legend: bool = True,
    showscale: bool = False,
) -> go.Scatter:
    """Configurations coloured by their mean on the metric's scale and range."""
    pts: pd.DataFrame = s.points
    custom = np.column_stack([pts["mean"], pts["n"]]) if len(pts) else None
    return go.Scatter(
        x=pts["x"],
        y=pts["y"],
        mode="markers",
        name="configurations",
        showlegend=legend,
        marker=dict(
            size=12,
            color=pts["mean"],
            colorscale=METRIC_COLORSCALE,
            cmin=info.lo,
            cmax=info.hi,
            showscale=showscale,
            colorbar=dict(title=dict(text=metric.title)),
            line=dict(width=1.5, color="#222"),
        ),
        customdata=custom,
        hovertemplate=(
            f"{short(s.x_param)}=%{{x:.3g}}, {short(s.y_param)}=%{{y:.3g}}<br>"
            "mean %{customdata[0]:.4g} over %{customdata[1]} seeds<extra></extra>"
        ),
    )
