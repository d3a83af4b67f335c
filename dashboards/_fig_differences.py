"""The differences figure: each configuration's seed-paired difference to the baseline."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._common import MetricInfo
from ._configs import ConfigTable
from ._fig_style import LAYOUT, LINE, fmt, nothing_to_draw, short, titled
from ._frame import param_column
from ._stats import LEVEL, IntervalKind

__all__ = ["DifferencesInfo", "get_differences_info", "plot_differences"]

TITLE = "Difference to the baseline, paired by seed"


class DifferencesInfo(NamedTuple):
    """What the differences figure draws, computed from a :class:`ConfigTable`."""

    configs: pd.DataFrame
    """The configurations drawn (at most ``top``, sharing a seed with the baseline), bottom up."""
    labels: list[str]
    """Each drawn configuration's parameters, its y label."""
    subtitle: str
    why_not: str | None
    """Why there is nothing to draw, else None."""


def get_differences_info(
    table: ConfigTable, metric: MetricInfo, *, top: int = 30
) -> DifferencesInfo:
    if table.baseline is None or "diff_n" not in table.configs:
        return DifferencesInfo(pd.DataFrame(), [], "", f"no baseline: {table.baseline_reason}")
    c = table.configs[table.configs["config"] != table.baseline].head(top)
    c = c[c["diff_n"] > 0].iloc[::-1]
    if c.empty:
        why = f"no other configuration shares a seed with the baseline {table.epoch.label}"
        return DifferencesInfo(c, [], "", why)
    labels = [
        ", ".join(_param_text(p, r[param_column(p)]) for p in table.params) for _, r in c.iterrows()
    ]
    lo, hi = int(c["diff_n"].min()), int(c["diff_n"].max())
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    what = (
        f"{LEVEL:.0%} Student-t over {seeds} paired seeds"
        if IntervalKind.STUDENT_T.value in set(c["diff_kind"])
        else "n = 2 seeds: both differences shown, no interval"
    )
    better = "left of 0 = better" if metric.direction == "minimize" else "right of 0 = better"
    sub = f"{table.epoch.label}; baseline: {table.baseline_reason}; {what}; {better}"
    return DifferencesInfo(c, labels, sub, None)


def _param_text(param: str, value: object) -> str:
    if isinstance(value, (int, float)):
        return f"{short(param)}={fmt(float(value))}"
    return f"{param}={value}"


def plot_differences(table: ConfigTable, metric: MetricInfo, *, top: int = 30) -> go.Figure:
    """Seed-paired difference of each configuration to the baseline (0 = as good as it)."""
    info = get_differences_info(table, metric, top=top)
    if info.why_not is not None:
        return nothing_to_draw(TITLE, info.why_not)
    c, labels = info.configs, info.labels
    t = c["diff_kind"] == IntervalKind.STUDENT_T.value
    fig = go.Figure(
        go.Scatter(
            x=c["diff"],
            y=labels,
            mode="markers",
            name="mean paired difference",
            marker=dict(size=9, color=LINE),
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
    fig.update_layout(
        title=titled(TITLE, info.subtitle),
        xaxis=dict(title=dict(text=f"Δ {metric.title} (configuration − baseline)")),
        yaxis=dict(title=dict(text="configuration"), automargin=True),
        legend=dict(orientation="h", y=-0.2),
        height=max(460, 170 + 30 * len(c)),
        **LAYOUT,
    )
    return fig
