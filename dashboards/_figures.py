"""Plotly renderers for :class:`~dashboards._analysis.StudyAnalysis`.

Conventions every figure keeps: a short title (it must fit optuna-dashboard's panel) and the
explanation in the subtitle; the epoch read and n (configurations, runs) stated; colour that
carries a value always has a colour bar, and each parameter has one colour scale with one range
in every figure; epochs on integer ticks. Given too little to draw (no configuration with a
value, say), a renderer returns a figure that says so rather than failing or drawing empty axes;
:func:`report_figures` leaves such figures out of the report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ._analysis import StudyAnalysis
from ._common import MetricInfo
from ._configs import ConfigTable
from ._curves import LearningCurves
from ._importance import ParamImportance
from ._marginal import Marginal
from ._stats import LEVEL, IntervalKind
from ._surface import Surface

__all__ = ["METRIC_COLORSCALE", "nothing_to_draw", "param_colorscale", "report_figures"]

#: The metric's colour scale (surface, heatmap, coloured points).
METRIC_COLORSCALE = "Viridis"
_PARAM_COLORSCALES = {"zoneout_cell": "Plasma", "zoneout_hidden": "Cividis"}
_OTHER_COLORSCALE = "Turbo"
MAX_CURVES = 1500
_BAND = "rgba(31, 119, 180, 0.25)"
_LINE = "rgb(31, 119, 180)"
_LAYOUT = dict(template="plotly_white", margin=dict(l=70, r=30, t=95, b=60))


def param_colorscale(param: str | None) -> str:
    """The one colour scale of a parameter across all figures."""
    return _PARAM_COLORSCALES.get(param or "", _OTHER_COLORSCALE)


def _label(param: str) -> str:
    names = {
        "zoneout_cell": "z_c (zoneout cell rate)",
        "zoneout_hidden": "z_h (zoneout hidden rate)",
    }
    return names.get(param, param.replace("_", " "))


def _short(param: str) -> str:
    return {"zoneout_cell": "z_c", "zoneout_hidden": "z_h"}.get(param, param.replace("_", " "))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_SUBTITLE_WIDTH = 90


def _wrap(text: str, width: int = _SUBTITLE_WIDTH) -> str:
    """Break a subtitle at '; ' into lines of about ``width`` characters (plotly does not wrap,
    and optuna-dashboard's panels are narrow)."""
    lines: list[str] = []
    for part in text.split("; "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return "<br>".join(lines)


def _title(text: str, subtitle: str) -> dict:
    return dict(
        text=text,
        subtitle=dict(text=_wrap(subtitle), font=dict(size=12, color="#555")),
        x=0.01,
        xanchor="left",
    )


def _metric_axis(metric: MetricInfo) -> dict:
    return dict(title=dict(text=metric.axis_title), type="log" if metric.log_axis else "linear")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _n_text(table: ConfigTable) -> str:
    c = table.configs
    seeds = sorted(set(int(n) for n in c["n"])) if len(c) else []
    s = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}" if seeds else "0"
    configs = f"{len(c)} configuration{'' if len(c) == 1 else 's'}"
    return f"{configs}, {s} seed{'' if s == '1' else 's'} each"


def nothing_to_draw(title: str, why: str) -> go.Figure:
    """A figure that says why it has nothing to draw: the title, the reason in the subtitle
    and across the empty plot, no axes."""
    fig = go.Figure()
    fig.add_annotation(
        text=f"nothing to draw: {_wrap(why, 60)}",
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=14, color="#555"),
    )
    fig.update_layout(
        title=_title(title, why),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        **_LAYOUT,
    )
    return fig


def plot_surface(s: Surface, metric: MetricInfo) -> go.Figure:
    """Observed configurations (heatmap of cell means on a lattice, else coloured points) and,
    where the GP supports it, its partial-dependence surface; one colour bar for the metric."""
    title = f"{_cap(metric.title)} over {_short(s.x_param)} × {_short(s.y_param)}"
    if not len(s.points):
        return nothing_to_draw(title, f"{s.epoch_label}: no configuration has a {metric.title}")
    panels = ["heatmap" if s.lattice is not None else "points"]
    if s.gp is not None:
        panels.append("gp")
    names = {
        "heatmap": "mean over seeds per cell (n = seeds)",
        "points": "observed configurations (mean over seeds)",
        "gp": "GP mean (partial dependence)",
    }
    fig = make_subplots(
        rows=1, cols=len(panels), horizontal_spacing=0.12, subplot_titles=[names[p] for p in panels]
    )
    pts = s.points
    vals = pts["mean"].to_numpy(float)
    lo, hi = (float(np.nanmin(vals)), float(np.nanmax(vals))) if len(vals) else (0.0, 1.0)
    if s.gp is not None:
        lo, hi = min(lo, float(s.gp.mean.min())), max(hi, float(s.gp.mean.max()))
    for col, panel in enumerate(panels, start=1):
        if panel == "heatmap":
            lat = s.lattice
            assert lat is not None
            text = [
                [f"{m:.3f}<br>n={n}" if n else "" for m, n in zip(mr, nr, strict=True)]
                for mr, nr in zip(lat.mean, lat.n, strict=True)
            ]
            fig.add_trace(
                go.Heatmap(
                    x=[_fmt(v) for v in lat.x_values],
                    y=[_fmt(v) for v in lat.y_values],
                    z=lat.mean,
                    text=text,
                    texttemplate="%{text}",
                    **_metric_colors(lo, hi, metric, showscale=True),
                    name="cell mean",
                    hovertemplate=(
                        f"{_short(s.x_param)}=%{{x}}, {_short(s.y_param)}=%{{y}}<br>"
                        "%{text}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
            fig.update_xaxes(type="category", row=1, col=col)
            fig.update_yaxes(type="category", row=1, col=col)
        elif panel == "points":
            fig.add_trace(_points(pts, s, lo, hi, metric, showscale=s.gp is None), row=1, col=col)
        else:
            g = s.gp
            assert g is not None
            fig.add_trace(
                go.Contour(
                    x=g.x_grid,
                    y=g.y_grid,
                    z=g.mean,
                    **_metric_colors(lo, hi, metric, showscale=s.lattice is None),
                    name="GP mean",
                    ncontours=24,
                    contours=dict(coloring="heatmap", showlines=False),
                    hovertemplate="%{x:.3g}, %{y:.3g}: %{z:.4g}<extra>GP mean</extra>",
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Contour(
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
                ),
                row=1,
                col=col,
            )
            fig.add_trace(_points(pts, s, lo, hi, metric, legend=False), row=1, col=col)
            fig.add_trace(
                go.Scatter(
                    x=[g.best_x],
                    y=[g.best_y],
                    mode="markers",
                    name="best of GP mean",
                    marker=dict(
                        symbol="star", size=16, color="#d62728", line=dict(width=1, color="white")
                    ),
                    hovertemplate=f"best: {g.best_mean:.4g} ± {g.best_se:.2g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            fig.update_xaxes(type="log" if s.log_x else "linear", row=1, col=col)
            fig.update_yaxes(type="log" if s.log_y else "linear", row=1, col=col)
    fig.update_xaxes(title_text=_label(s.x_param))
    fig.update_yaxes(title_text=_label(s.y_param))
    sub = f"{s.epoch_label}; {_n_text(s.table)}"
    if s.gp is not None:
        over = f", averaged over {', '.join(s.gp.averaged_over)}" if s.gp.averaged_over else ""
        sub += f"; {s.gp.method} fit{over}, inside the observed box"
    else:
        sub += f"; no GP surface: {s.gp_reason}"
    fig.update_layout(
        title=_title(title, sub),
        legend=dict(orientation="h", y=-0.2),
        **{**_LAYOUT, "margin": dict(l=70, r=30, t=120, b=60)},
    )
    return fig


def _metric_colors(lo: float, hi: float, metric: MetricInfo, *, showscale: bool) -> dict:
    """The metric's one colour scale and range, set on each trace. (Not a shared coloraxis:
    markers and a contour on one coloraxis hang plotly.js in kaleido's Chromium.)"""
    return dict(
        colorscale=METRIC_COLORSCALE,
        zmin=lo,
        zmax=hi,
        showscale=showscale,
        colorbar=dict(title=dict(text=metric.title, side="right")),
    )


def _points(
    pts: pd.DataFrame,
    s: Surface,
    lo: float,
    hi: float,
    metric: MetricInfo,
    *,
    legend: bool = True,
    showscale: bool = False,
) -> go.Scatter:
    """Configurations coloured by their mean on the metric's scale and range."""
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
            cmin=lo,
            cmax=hi,
            showscale=showscale,
            colorbar=dict(title=dict(text=metric.title)),
            line=dict(width=1.5, color="#222"),
        ),
        customdata=custom,
        hovertemplate=(
            f"{_short(s.x_param)}=%{{x:.3g}}, {_short(s.y_param)}=%{{y:.3g}}<br>"
            "mean %{customdata[0]:.4g} over %{customdata[1]} seeds<extra></extra>"
        ),
    )


def plot_marginal(
    m: Marginal, metric: MetricInfo, ranges: dict[str, tuple[float, float]]
) -> go.Figure:
    """Per-configuration means (intervals by seed count) coloured by the other rate, and the GP
    partial-dependence curve with its band where the GP supports one."""
    if not len(m.configs):
        return nothing_to_draw(
            f"{_cap(metric.title)} vs {_short(m.param)}",
            f"{m.epoch_label}: no configuration has a {metric.title}",
        )
    fig = go.Figure()
    if m.curve is not None:
        cv = m.curve
        fig.add_trace(
            go.Scatter(
                x=cv.grid,
                y=cv.high,
                mode="lines",
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=cv.grid,
                y=cv.low,
                mode="lines",
                line=dict(width=0),
                fill="tonexty",
                fillcolor=_BAND,
                name="95% GP credible band (of the curve)",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=cv.grid,
                y=cv.mean,
                mode="lines",
                name="GP partial dependence",
                line=dict(color=_LINE, width=2.5),
            )
        )
    c = m.configs
    cscale = param_colorscale(m.color_param)
    crange = ranges.get(m.color_param or "", (0.0, 1.0))
    has_color = m.color_param is not None and bool(np.isfinite(c["color"].to_numpy(float)).any())
    marker = dict(size=10, line=dict(width=1, color="#222"))
    if has_color:
        marker.update(
            color=c["color"],
            colorscale=cscale,
            cmin=crange[0],
            cmax=crange[1],
            showscale=True,
            colorbar=dict(title=dict(text=_short(m.color_param or ""))),
        )
    else:
        marker.update(color="#444")
    t = c["kind"] == IntervalKind.STUDENT_T.value
    err = dict(
        type="data",
        symmetric=False,
        array=np.where(t, c["high"] - c["mean"], 0),
        arrayminus=np.where(t, c["mean"] - c["low"], 0),
        color="#555",
        thickness=1.2,
    )
    kinds = set(c["kind"])
    name = "mean over seeds"
    if IntervalKind.STUDENT_T.value in kinds:
        name += f" ± {LEVEL:.0%} Student-t"
    # Configurations sharing a value of the parameter are dodged sideways by their colour
    # value (at most 1.5% of the axis) so their intervals do not hide each other; hover shows
    # the true value.
    xs = _dodged(c, m.log_scale)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=c["mean"],
            mode="markers",
            name=name,
            marker=marker,
            error_y=err,
            customdata=np.column_stack([c["n"], c["color"], c["x"]]) if len(c) else None,
            hovertemplate=(
                "%{customdata[2]:.4g}: mean %{y:.4g}, n = %{customdata[0]}"
                + (f", {_short(m.color_param or '')} = %{{customdata[1]:.3g}}" if has_color else "")
                + "<extra></extra>"
            ),
        )
    )
    two = c[c["kind"] == IntervalKind.TWO_VALUES.value]
    if len(two):
        x2 = np.repeat(xs[two.index.to_numpy()], 2)
        ys = np.concatenate([np.asarray(v, dtype=float) for v in two["values"]])
        fig.add_trace(
            go.Scatter(
                x=x2,
                y=ys,
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
    sub = f"{m.epoch_label}; {_n_text(m.table)}"
    if m.curve is not None:
        over = m.curve.averaged_over
        sub += (
            f"; curve: {m.curve.method} averaged over {', '.join(over)}"
            if over
            else (f"; curve: {m.curve.method}")
        )
    else:
        sub += f"; no curve: {m.curve_reason}"
    fig.update_layout(
        title=_title(f"{_cap(metric.title)} vs {_short(m.param)}", sub),
        xaxis=dict(title=dict(text=_label(m.param)), type="log" if m.log_scale else "linear"),
        yaxis=_metric_axis(metric),
        legend=dict(orientation="h", y=-0.2),
        **_LAYOUT,
    )
    return fig


def _dodged(c: pd.DataFrame, log: bool) -> np.ndarray:
    x = c["x"].to_numpy(dtype=float)
    if len(x) < 2:
        return x
    t = np.log10(x) if log else x
    span = float(np.ptp(t)) or 1.0
    out = t.copy()
    for value in np.unique(t):
        idx = np.nonzero(t == value)[0]
        if len(idx) > 1:
            order = np.argsort(np.argsort(c["color"].to_numpy(float)[idx], kind="stable"))
            out[idx] = value + (order - (len(idx) - 1) / 2) * 0.015 * span / max(len(idx) - 1, 1)
    return 10**out if log else out


def plot_differences(table: ConfigTable, metric: MetricInfo, *, top: int = 30) -> go.Figure:
    """Seed-paired difference of each configuration to the baseline (0 = as good as it)."""
    title = "Difference to the baseline, paired by seed"
    if table.baseline is None or "diff_n" not in table.configs:
        return nothing_to_draw(title, f"no baseline: {table.baseline_reason}")
    c = table.configs[table.configs["config"] != table.baseline].head(top)
    c = c[c["diff_n"] > 0].iloc[::-1]
    if c.empty:
        return nothing_to_draw(
            title, f"no other configuration shares a seed with the baseline {table.epoch.label}"
        )
    labels = [
        ", ".join(
            f"{_short(p)}={_fmt(float(r['param_' + p]))}"
            if isinstance(r["param_" + p], (int, float))
            else f"{p}={r['param_' + p]}"
            for p in table.params
        )
        for _, r in c.iterrows()
    ]
    t = c["diff_kind"] == IntervalKind.STUDENT_T.value
    fig = go.Figure(
        go.Scatter(
            x=c["diff"],
            y=labels,
            mode="markers",
            name="mean paired difference",
            marker=dict(size=9, color=_LINE),
            error_x=dict(
                type="data",
                symmetric=False,
                array=np.where(t, c["diff_high"] - c["diff"], 0),
                arrayminus=np.where(t, c["diff"] - c["diff_low"], 0),
            ),
            customdata=c["diff_n"],
            hovertemplate="%{y}: %{x:+.4g} over %{customdata} paired seeds<extra></extra>",
        )
    )
    two = c[c["diff_kind"] == IntervalKind.TWO_VALUES.value]
    if len(two):
        lab2 = [
            lab
            for lab, k in zip(labels, c["diff_kind"], strict=True)
            if k == IntervalKind.TWO_VALUES.value
        ]
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([two["diff_low"], two["diff_high"]]),
                y=lab2 * 2,
                mode="markers",
                name="n = 2: both seeds' differences",
                marker=dict(
                    symbol="line-ns-open", size=12, color="#555", line=dict(width=2, color="#555")
                ),
            )
        )
    fig.add_vline(x=0, line=dict(color="#d62728", dash="dash"))
    kinds = set(c["diff_kind"])
    what = (
        f"{LEVEL:.0%} Student-t over paired seeds"
        if IntervalKind.STUDENT_T.value in kinds
        else "n = 2 seeds: both differences shown, no interval"
    )
    better = "left of 0 = better" if metric.direction == "minimize" else "right of 0 = better"
    fig.update_layout(
        title=_title(
            title,
            f"{table.epoch.label}; baseline: {table.baseline_reason}; {what}; {better}",
        ),
        xaxis=dict(title=dict(text=f"Δ {metric.title} (configuration − baseline)")),
        yaxis=dict(title=dict(text="configuration"), automargin=True),
        legend=dict(orientation="h", y=-0.2),
        height=max(460, 170 + 30 * len(c)),
        **_LAYOUT,
    )
    return fig


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
    df, final = c.curves, c.final
    if final.empty:
        return nothing_to_draw("Learning curves", "no run has a per-epoch validation value")
    shown = len(final)
    if shown > max_curves:
        keep = np.random.default_rng(0).choice(shown, size=max_curves, replace=False)
        final = final.iloc[np.sort(keep)]
        key = set(zip(final["number"], final["seed"].fillna(-1), strict=True))
        mask = [k in key for k in zip(df["number"], df["seed"].fillna(-1), strict=True)]
        df = df[np.asarray(mask, dtype=bool)]
    fig = go.Figure()
    cscale = param_colorscale(c.color_param)
    lo, hi = ranges.get(c.color_param or "", (0.0, 1.0))
    color = df["color"].to_numpy(dtype=float)
    has_color = bool(np.isfinite(color).any())
    span = hi - lo if hi > lo else 1.0
    # Quantize to n_colors levels of the same continuous scale the colour bar shows.
    level = np.clip(np.round((color - lo) / span * (n_colors - 1)), 0, n_colors - 1)
    level = np.where(np.isfinite(level), level, 0).astype(int)
    colors = sample_colorscale(cscale, list(np.linspace(0, 1, n_colors)))
    # Line style says how a run ended: full budget solid, stopped by the scheduler dotted,
    # unfinished (failed, interrupted or still running) dashed.
    styles = np.where(
        df["stopped_early"].to_numpy(dtype=bool),
        "dot",
        np.where(df["unfinished"].to_numpy(dtype=bool), "dash", "solid"),
    )
    for style in ("solid", "dot", "dash"):
        for b in np.unique(level):
            sel = (level == b) & (styles == style)
            if not sel.any():
                continue
            x, y = _with_gaps(df[sel])
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    connectgaps=False,
                    hoverinfo="skip",
                    line=dict(
                        color=colors[b] if has_color else _LINE,
                        width=1.2,
                        dash=style,
                    ),
                    opacity=0.75,
                    showlegend=False,
                )
            )
    stop = final[final["stopped_early"].astype(bool)]
    if len(stop):
        fig.add_trace(
            go.Scatter(
                x=stop["epoch"],
                y=stop["valid_metric"],
                mode="markers",
                name="stopped early",
                marker=dict(symbol="x", size=8, color="#d62728"),
                customdata=stop["number"],
                hovertemplate="trial %{customdata} stopped at epoch %{x}<extra></extra>",
            )
        )
    unfinished = final[final["unfinished"].astype(bool)]
    if len(unfinished):
        fig.add_trace(
            go.Scatter(
                x=unfinished["epoch"],
                y=unfinished["valid_metric"],
                mode="markers",
                name="unfinished (failed, interrupted or running)",
                marker=dict(symbol="circle-open", size=8, color="#555"),
                customdata=np.stack([unfinished["number"], unfinished["state"]], axis=-1),
                hovertemplate="trial %{customdata[0]} (%{customdata[1]}) last at epoch %{x}"
                "<extra></extra>",
            )
        )
    done = final[~final["stopped_early"].astype(bool) & ~final["unfinished"].astype(bool)]
    if len(done):
        marker = dict(size=6, line=dict(width=0.5, color="#222"))
        if has_color:
            marker.update(
                color=done["color"],
                colorscale=cscale,
                cmin=lo,
                cmax=hi,
                showscale=True,
                colorbar=dict(title=dict(text=_short(c.color_param or ""))),
            )
        else:
            marker.update(color=_LINE)
        fig.add_trace(
            go.Scatter(
                x=done["epoch"],
                y=done["valid_metric"],
                mode="markers",
                name="last epoch",
                marker=marker,
                customdata=done["number"],
                hovertemplate="trial %{customdata}: %{y:.4g}<extra></extra>",
            )
        )
    for r in c.rungs:
        fig.add_vline(x=r, line=dict(color="#999", dash="dash", width=1))
    note = f", {len(final)} of {shown} shown" if shown > len(final) else ""
    sub = (
        f"{shown} runs{note}; colour: {_short(c.color_param or '') or 'none'}; "
        f"{c.n_stopped_early} stopped early (dotted)"
    )
    if c.n_unfinished:
        sub += f"; {c.n_unfinished} unfinished (dashed)"
    if c.rungs:
        sub += f"; ASHA rungs at epochs {', '.join(map(str, c.rungs))}"
    step = max(1, math.ceil(c.max_epochs / 12))
    fig.update_layout(
        title=_title("Learning curves", sub),
        legend=dict(orientation="h", y=-0.2),
        xaxis=dict(
            title=dict(text="epoch"),
            range=[0.7, c.max_epochs + 0.3],
            tickmode="linear",
            tick0=1,
            dtick=step,
            tickformat="d",
        ),
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
    """Horizontal bars, most important on top (only drawn when importance was computed)."""
    if not imp.importances:
        return nothing_to_draw("Parameter importance", imp.reason or "not computed")
    names = list(imp.importances)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[imp.importances[n] for n in names],
            y=[_label(n) for n in names],
            orientation="h",
            marker_color=_LINE,
            name="importance",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=_title(
            "Parameter importance",
            f"{imp.evaluator} on the Optuna study's own search space, {imp.n_complete} "
            "complete trials: the evaluator optuna-dashboard's panel uses",
        ),
        xaxis=dict(title=dict(text="importance (sums to 1)")),
        yaxis=dict(title=dict(text="parameter"), automargin=True),
        **_LAYOUT,
    )
    return fig


def report_figures(a: StudyAnalysis) -> dict[str, go.Figure]:
    """All figures of the report, keyed by a short file-name-safe name, in display order.

    Only the figures :attr:`StudyAnalysis.figures` names (the data supports them); a figure is
    left out, not drawn empty, and the summary says why. None at all for a study with nothing
    to draw (every trial failed, say): ``a.figure_note`` says why."""
    figs: dict[str, go.Figure] = {}
    for name in a.figures:
        if name == "surface" and a.surface is not None:
            figs[name] = plot_surface(a.surface, a.metric)
        elif name.startswith("marginal-") and name.removeprefix("marginal-") in a.marginals:
            m = a.marginals[name.removeprefix("marginal-")]
            figs[name] = plot_marginal(m, a.metric, a.param_ranges)
        elif name == "differences":
            figs[name] = plot_differences(a.table, a.metric)
        elif name == "learning-curves":
            figs[name] = plot_learning_curves(a.curves, a.metric, a.param_ranges)
        elif name == "importance":
            figs[name] = plot_importance(a.importance)
    for fig in figs.values():
        # Room above the plot for every subtitle line.
        extra = 16 * fig.layout.title.subtitle.text.count("<br>")
        fig.update_layout(margin=dict(t=(fig.layout.margin.t or 95) + extra))
        if fig.layout.height:
            fig.update_layout(height=fig.layout.height + extra)
    return figs
