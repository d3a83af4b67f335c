"""The report's figures of a :class:`~dashboards._analysis.StudyAnalysis`, one module each.

Each figure is a data step (``get_*_info`` beside its renderer, or the analysis module's own:
:func:`~dashboards._curves.curve_lines` samples and quantizes the learning curves) and a short
plotly renderer over its result; the conventions they share are in :mod:`dashboards._fig_style`.
:func:`report_figures` draws the figures the analysis supports and leaves out the others (a
renderer given too little to draw returns a figure that says so).
"""

from __future__ import annotations

import plotly.graph_objects as go

from ._analysis import StudyAnalysis
from ._fig_curves import plot_learning_curves
from ._fig_differences import plot_differences
from ._fig_importance import plot_importance
from ._fig_marginal import plot_marginal
from ._fig_style import METRIC_COLORSCALE, nothing_to_draw, param_colorscale
from ._fig_surface import plot_surface

__all__ = [
    "METRIC_COLORSCALE",
    "nothing_to_draw",
    "param_colorscale",
    "plot_differences",
    "plot_importance",
    "plot_learning_curves",
    "plot_marginal",
    "plot_surface",
    "report_figures",
]

_MARGINAL = "marginal-"


def report_figures(a: StudyAnalysis) -> dict[str, go.Figure]:
    """All figures of the report, keyed by a short file-name-safe name, in display order.

    Only the figures :attr:`StudyAnalysis.figures` names (the data supports them); a figure is
    left out, not drawn empty, and the summary says why. None at all for a study with nothing
    to draw (every trial failed, say): ``a.figure_note`` says why."""
    figs: dict[str, go.Figure] = {}
    for name in a.figures:
        if name == "surface" and a.surface is not None:
            figs[name] = plot_surface(a.surface, a.metric)
        elif name.startswith(_MARGINAL) and name.removeprefix(_MARGINAL) in a.marginals:
            m = a.marginals[name.removeprefix(_MARGINAL)]
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
