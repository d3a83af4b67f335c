"""The importance figure: PED-ANOVA importances as horizontal bars, most important on top."""

from __future__ import annotations

import plotly.graph_objects as go

from ._fig_style import LAYOUT, LINE, label, nothing_to_draw, titled
from ._importance import ParamImportance

__all__ = ["plot_importance"]


def plot_importance(imp: ParamImportance) -> go.Figure:
    """Horizontal bars, most important on top (only drawn when importance was computed)."""
    if not imp.importances:
        return nothing_to_draw("Parameter importance", imp.reason or "not computed")
    names = list(imp.importances)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[imp.importances[n] for n in names],
            y=[label(n) for n in names],
            orientation="h",
            marker_color=LINE,
            name="importance",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=titled(
            "Parameter importance",
            f"{imp.evaluator} on the Optuna study's own search space, {imp.n_complete} "
            "complete trials: the evaluator optuna-dashboard's panel uses",
        ),
        xaxis=dict(title=dict(text="importance (sums to 1)")),
        yaxis=dict(title=dict(text="parameter"), automargin=True),
        **LAYOUT,
    )
    return fig
