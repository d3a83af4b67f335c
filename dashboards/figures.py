"""Thin plotly renderers for the data computed in :mod:`dashboards.analysis`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ._common import MetricInfo
from ._curves import LearningCurves
from ._importance import ParamImportance
from ._marginal import MarginalEffect, SeedSpread
from ._surface import SURFACE_MIN_POINTS, ResponseSurface
from .analysis import StudyAnalysis

__all__ = [
    "COLORSCALE",
    "MAX_CURVES",
    "plot_importance",
    "plot_learning_curves",
    "plot_marginal",
    "plot_seed_spread",
    "plot_surface",
    "report_figures",
]

COLORSCALE = "Viridis"
#: The learning-curve figure draws at most this many curves (a seeded random subset).
MAX_CURVES = 1500
_BAND = "rgba(31, 119, 180, 0.2)"
_LINE = "rgb(31, 119, 180)"
_LAYOUT = dict(template="plotly_white", margin=dict(l=70, r=30, t=70, b=60))


def _label(param: str) -> str:
    names = {"zoneout_cell": "zoneout cell rate z_c", "zoneout_hidden": "zoneout hidden rate z_h"}
    return names.get(param, param.replace("_", " "))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _metric_axis(metric: MetricInfo) -> dict:
    return dict(title=dict(text=metric.axis_title), type="log" if metric.log_axis else "linear")


def plot_marginal(m: MarginalEffect, metric: MetricInfo) -> go.Figure:
    """Raw points (COMPLETE vs PRUNED), the smoothed mean and its 95% band as a filled area."""
    fig = go.Figure()
    if m.grid.size:
        fig.add_trace(
            go.Scatter(x=m.grid, y=m.upper, mode="lines", line=dict(width=0), hoverinfo="skip",
                       showlegend=False, name="upper 95%")
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=m.grid, y=m.lower, mode="lines", line=dict(width=0), fill="tonexty",
                       fillcolor=_BAND, name="95% band", hoverinfo="skip")
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=m.grid, y=m.mean, mode="lines", line=dict(color=_LINE, width=2.5),
                       name=f"mean ({m.method})")
        )  # fmt: skip
    for state, symbol, color in (("COMPLETE", "circle", "#444"), ("PRUNED", "x", "#d62728")):
        sel = m.states == state
        if sel.any():
            fig.add_trace(
                go.Scatter(
                    x=m.x[sel], y=m.y[sel], mode="markers", name=state.lower(),
                    marker=dict(symbol=symbol, size=6, color=color, opacity=0.55),
                    customdata=m.numbers[sel],
                    hovertemplate="trial %{customdata}<br>%{x:.4g}: %{y:.4g}<extra></extra>",
                )
            )  # fmt: skip
    if len(m.spread):
        s = m.spread
        fig.add_trace(
            go.Scatter(
                x=s["x"], y=s["mean"], mode="markers", name="seed mean (95% bootstrap)",
                marker=dict(symbol="diamond", size=9, color="#ff7f0e"),
                error_y=dict(type="data", symmetric=False, array=s["ci_high"] - s["mean"],
                             arrayminus=s["mean"] - s["ci_low"]),
                customdata=s["n_seeds"],
                hovertemplate="%{x:.4g}: %{y:.4g} over %{customdata} seeds<extra></extra>",
            )
        )  # fmt: skip
    if np.isfinite(m.best_x):
        fig.add_vline(x=m.best_x, line=dict(dash="dot", color="#2ca02c"))
    fig.update_layout(
        title=dict(text=f"{_cap(metric.title)} vs {_label(m.param)}"),
        xaxis=dict(title=dict(text=_label(m.param)), type="log" if m.log_scale else "linear"),
        yaxis=_metric_axis(metric),
        **_LAYOUT,
    )
    return fig


def plot_seed_spread(spread: SeedSpread, metric: MetricInfo, *, top: int = 30) -> go.Figure:
    """Best ``top`` configurations: mean over seeds with the bootstrap 95% interval."""
    c = spread.configs.head(top)
    fig = go.Figure(
        go.Scatter(
            x=c["mean"], y=c["config"], mode="markers", name="mean over seeds",
            marker=dict(size=8, color=_LINE),
            error_x=dict(type="data", symmetric=False, array=c["ci_high"] - c["mean"],
                         arrayminus=c["mean"] - c["ci_low"]),
            customdata=c["n_seeds"],
            hovertemplate="%{y}<br>%{x:.4g} over %{customdata} seeds<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=dict(text=f"Seed-to-seed spread: best {len(c)} configurations (95% bootstrap)"),
        xaxis=_metric_axis(metric),
        yaxis=dict(title=dict(text="configuration"), autorange="reversed", automargin=True),
        **_LAYOUT,
    )
    return fig


def plot_surface(s: ResponseSurface, metric: MetricInfo) -> go.Figure:
    """GP mean and GP std side by side with the observed points, the best point and the
    region within one standard error of the best (outlined)."""
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.14,
        subplot_titles=(f"GP mean of {metric.title}", "GP std (uncertainty)"),
    )  # fmt: skip
    if s.available:
        fig.add_trace(
            go.Contour(x=s.x_grid, y=s.y_grid, z=s.mean, colorscale=COLORSCALE, name="GP mean",
                       colorbar=dict(x=0.43, title=dict(text=metric.unit))),
            row=1, col=1,
        )  # fmt: skip
        fig.add_trace(
            go.Contour(x=s.x_grid, y=s.y_grid, z=s.std, colorscale="Greys", name="GP std",
                       colorbar=dict(x=1.0, title=dict(text="std"))),
            row=1, col=2,
        )  # fmt: skip
        fig.add_trace(
            go.Contour(
                x=s.x_grid, y=s.y_grid, z=s.within_se.astype(float), name="within 1 SE of best",
                showscale=False, contours=dict(start=0.5, end=0.5, size=1, coloring="lines"),
                colorscale=[[0, "white"], [1, "white"]],
                line=dict(color="white", width=3, dash="dash"), showlegend=True, hoverinfo="skip",
            ),
            row=1, col=1,
        )  # fmt: skip
    for col in (1, 2):
        fig.add_trace(
            go.Scatter(
                x=s.x, y=s.y, mode="markers", name="trials", showlegend=col == 1,
                marker=dict(size=5, color="rgba(255,255,255,0.8)",
                            line=dict(width=1, color="#333")),
                customdata=np.column_stack([s.numbers, s.values]) if len(s.x) else None,
                hovertemplate="trial %{customdata[0]}: %{customdata[1]:.4g}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
    if s.available:
        fig.add_trace(
            go.Scatter(
                x=[s.best_x], y=[s.best_y], mode="markers", name="best (GP mean)",
                marker=dict(symbol="star", size=16, color="#d62728", line=dict(width=1)),
                hovertemplate=f"best: {s.best_mean:.4g} ± {s.best_se:.2g}<extra></extra>",
            ),
            row=1, col=1,
        )  # fmt: skip
    fig.update_xaxes(title_text=_label(s.x_param), type="log" if s.log_x else "linear")
    fig.update_yaxes(title_text=_label(s.y_param), type="log" if s.log_y else "linear")
    fig.update_layout(
        title=dict(text=f"{_cap(metric.title)} over {_label(s.x_param)} and "
                        f"{_label(s.y_param)} ({_surface_note(s)})"),
        legend=dict(orientation="h", y=-0.18),
        **_LAYOUT,
    )  # fmt: skip
    return fig


def _surface_note(surface: ResponseSurface) -> str:
    if surface.available:
        return surface.method
    # Say why the panels are empty rather than invent a surface from too few points.
    return f"observed points only: a surface needs {SURFACE_MIN_POINTS} full-budget trials"


def plot_learning_curves(
    c: LearningCurves, metric: MetricInfo, *, max_curves: int = MAX_CURVES, n_colors: int = 8
) -> go.Figure:
    """Curves coloured by the trial's rate (binned into ``n_colors`` traces for speed), stopped
    ones dashed with an ``x`` where they stopped, and the ASHA rungs as vertical lines."""
    df, final = c.curves, c.final
    shown = len(final)
    if shown > max_curves:
        keep = np.random.default_rng(0).choice(shown, size=max_curves, replace=False)
        final = final.iloc[np.sort(keep)]
        key = set(zip(final["number"], final["seed"].fillna(-1), strict=True))
        mask = [k in key for k in zip(df["number"], df["seed"].fillna(-1), strict=True)]
        df = df[np.asarray(mask, dtype=bool)]
    fig = go.Figure()
    color = df["color"].to_numpy(dtype=float)
    has_color = bool(np.isfinite(color).any())
    lo = float(np.nanmin(color)) if has_color else 0.0
    hi = float(np.nanmax(color)) if has_color else 1.0
    edges = np.linspace(lo, hi, n_colors + 1)
    colors = sample_colorscale(COLORSCALE, list(np.linspace(0, 1, n_colors)))
    cbin = np.clip(np.searchsorted(edges, color, side="right") - 1, 0, n_colors - 1)
    cbin = np.where(np.isfinite(color), cbin, 0)
    for stopped in (False, True):
        for b in range(n_colors):
            sel = (cbin == b) & (df["stopped_early"].to_numpy(dtype=bool) == stopped)
            if not sel.any():
                continue
            part = df[sel]
            x, y = _with_gaps(part)
            fig.add_trace(
                go.Scatter(
                    x=x, y=y, mode="lines", connectgaps=False, hoverinfo="skip",
                    line=dict(color=colors[b] if has_color else _LINE, width=1,
                              dash="dot" if stopped else "solid"),
                    opacity=0.6, showlegend=False,
                    name=f"{'stopped' if stopped else 'full'} {edges[b]:.3g}-{edges[b + 1]:.3g}",
                )
            )  # fmt: skip
    stop = final[final["stopped_early"].astype(bool)]
    if len(stop):
        fig.add_trace(
            go.Scatter(
                x=stop["epoch"], y=stop["valid_metric"], mode="markers", name="stopped early",
                marker=dict(symbol="x", size=7, color="#d62728"),
                customdata=stop["number"],
                hovertemplate="trial %{customdata} stopped at epoch %{x}<extra></extra>",
            )
        )  # fmt: skip
    done = final[~final["stopped_early"].astype(bool)]
    if len(done):
        fig.add_trace(
            go.Scatter(
                x=done["epoch"], y=done["valid_metric"], mode="markers",
                name="full budget" if c.budget == "full" else "last epoch",
                marker=dict(size=5, color=done["color"] if has_color else _LINE,
                            colorscale=COLORSCALE, cmin=lo, cmax=hi, showscale=has_color,
                            colorbar=dict(title=dict(text=_label(c.color_param or "")))),
                customdata=done["number"],
                hovertemplate="trial %{customdata}: %{y:.4g}<extra></extra>",
            )
        )  # fmt: skip
    for r in c.rungs:
        fig.add_vline(x=r, line=dict(color="#999", dash="dash", width=1))
    which = "full-budget trials only" if c.budget == "full" else "all trials, last epoch marked"
    note = f", {len(final)} of {shown} curves shown" if shown > len(final) else ""
    fig.update_layout(
        title=dict(text=f"Learning curves ({which}{note})"),
        legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"),
        xaxis=dict(title=dict(text="epoch"), range=[0.5, c.max_epochs + 0.5]),
        yaxis=_metric_axis(metric),
        **_LAYOUT,
    )
    return fig


def _with_gaps(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate curves into one polyline with NaN gaps between them."""
    gid = part.groupby(["number", "seed"], sort=False, dropna=False).ngroup().to_numpy()
    x = part["epoch"].to_numpy(dtype=float)
    y = part["valid_metric"].to_numpy(dtype=float)
    breaks = np.nonzero(np.diff(gid) != 0)[0] + 1
    return np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan)


def plot_importance(imp: ParamImportance) -> go.Figure:
    """Horizontal bars, most important on top."""
    names = list(imp.importances)[::-1]
    vals = [imp.importances[n] for n in names]
    fig = go.Figure(
        go.Bar(x=vals, y=[_label(n) for n in names], orientation="h", marker_color=_LINE,
               name="importance", hovertemplate="%{y}: %{x:.3f}<extra></extra>")
    )  # fmt: skip
    title = f"Parameter importance ({imp.evaluator}, {imp.n_trials} complete trials)"
    if not imp.importances and imp.reason:
        title += f": {imp.reason}"
    fig.update_layout(
        title=dict(text=title),
        xaxis=dict(title=dict(text="importance (normalized to sum 1)")),
        yaxis=dict(title=dict(text="parameter"), automargin=True),
        **_LAYOUT,
    )
    return fig


def report_figures(a: StudyAnalysis) -> dict[str, go.Figure]:
    """All figures of the report, keyed by a short file-name-safe name, in display order."""
    figs: dict[str, go.Figure] = {}
    if a.surface is not None:
        figs["surface"] = plot_surface(a.surface, a.metric)
    for name, m in a.marginals.items():
        figs[f"marginal-{name}"] = plot_marginal(m, a.metric)
    figs["learning-curves"] = plot_learning_curves(a.curves, a.metric)
    figs["learning-curves-full"] = plot_learning_curves(a.curves_full, a.metric)
    if a.spread.has_repeats:
        figs["seed-spread"] = plot_seed_spread(a.spread, a.metric)
    figs["importance"] = plot_importance(a.importance)
    return figs
