"""What every figure of the report shares: colour scales, titles with their subtitle, axes.

Conventions every figure keeps: a short title (it must fit optuna-dashboard's panel) and the
explanation in the subtitle; the epoch read and n (configurations, runs) stated; colour that
carries a value always has a colour bar, and each parameter has one colour scale with one range
in every figure; epochs on integer ticks. Given too little to draw (no configuration with a
value, say), a renderer returns a figure that says so (:func:`nothing_to_draw`) rather than
failing or drawing empty axes.
"""

from __future__ import annotations

import plotly.graph_objects as go

from ._common import MetricInfo
from ._configs import ConfigTable

__all__ = [
    "BAND",
    "LAYOUT",
    "LINE",
    "METRIC_COLORSCALE",
    "cap",
    "fmt",
    "label",
    "metric_axis",
    "metric_colors",
    "n_text",
    "nothing_to_draw",
    "param_colorscale",
    "short",
    "titled",
    "wrap",
]

METRIC_COLORSCALE = "Viridis"
_PARAM_COLORSCALES = {"zoneout_cell": "Plasma", "zoneout_hidden": "Cividis"}
_OTHER_COLORSCALE = "Turbo"
BAND = "rgba(31, 119, 180, 0.25)"
LINE = "rgb(31, 119, 180)"
LAYOUT = dict(template="plotly_white", margin=dict(l=70, r=30, t=95, b=60))


def param_colorscale(param: str | None) -> str:
    """The one colour scale of a parameter across all figures."""
    return _PARAM_COLORSCALES.get(param or "", _OTHER_COLORSCALE)


def label(param: str) -> str:
    names = {
        "zoneout_cell": "z_c (zoneout cell rate)",
        "zoneout_hidden": "z_h (zoneout hidden rate)",
    }
    return names.get(param, param.replace("_", " "))


def short(param: str) -> str:
    return {"zoneout_cell": "z_c", "zoneout_hidden": "z_h"}.get(param, param.replace("_", " "))


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_SUBTITLE_WIDTH = 90


def wrap(text: str, width: int = _SUBTITLE_WIDTH) -> str:
    """Break a subtitle at '; ' into lines of about ``width`` characters (plotly does not wrap,
    and optuna-dashboard's panels are narrow)."""
    lines: list[str] = []
    for part in text.split("; "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return "<br>".join(lines)


def titled(text: str, subtitle: str) -> dict:
    return dict(
        text=text,
        subtitle=dict(text=wrap(subtitle), font=dict(size=12, color="#555")),
        x=0.01,
        xanchor="left",
    )


def metric_axis(metric: MetricInfo) -> dict:
    return dict(title=dict(text=metric.axis_title), type="log" if metric.log_axis else "linear")


def fmt(v: float) -> str:
    return f"{v:.4g}"


def n_text(table: ConfigTable) -> str:
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
        text=f"nothing to draw: {wrap(why, 60)}",
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=14, color="#555"),
    )
    fig.update_layout(
        title=titled(title, why),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        **LAYOUT,
    )
    return fig


def metric_colors(lo: float, hi: float, metric: MetricInfo, *, showscale: bool) -> dict:
    """The metric's one colour scale and range, set on each trace. (Not a shared coloraxis:
    markers and a contour on one coloraxis hang plotly.js in headless Chromium.)"""
    return dict(
        colorscale=METRIC_COLORSCALE,
        zmin=lo,
        zmax=hi,
        showscale=showscale,
        colorbar=dict(title=dict(text=metric.title, side="right")),
    )
