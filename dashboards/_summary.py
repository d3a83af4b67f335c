"""A short Markdown summary of the findings."""

from __future__ import annotations

import math

import pandas as pd

from ._common import PARAM_PREFIX, MetricInfo, scored_trials
from ._curves import LearningCurves
from ._importance import ParamImportance
from ._marginal import MarginalEffect, SeedSpread
from ._surface import ResponseSurface

__all__ = ["summarize"]


def _g(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.4g}"
    return str(v)


def _md_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\`*_{}[]<>()#+!|" else ch for ch in text)


def summarize(
    trials: pd.DataFrame,
    *,
    metric: MetricInfo,
    study_name: str = "study",
    marginals: dict[str, MarginalEffect] | None = None,
    surface: ResponseSurface | None = None,
    importance: ParamImportance | None = None,
    curves: LearningCurves | None = None,
    spread: SeedSpread | None = None,
    value: str = "best_value",
) -> str:
    """Markdown: counts, best configuration, rate ranges within 1 SE, most important parameter."""
    lines = [f"## Study {_md_escape(study_name)}", ""]
    states = trials["state"].astype(str).value_counts() if "state" in trials else pd.Series()
    counts = ", ".join(
        f"{int(states.get(s, 0))} {s.lower()}"
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
        if states.get(s, 0)
    )
    lines.append(f"- Trials: {len(trials)} ({counts or 'none'}).")
    scored = scored_trials(trials, value=value)
    if scored.empty:
        lines.append(f"- No completed trial has a {metric.title} yet.")
        return "\n".join(lines) + "\n"
    asc = metric.direction == "minimize"
    best = scored.sort_values(value, ascending=asc).iloc[0]
    pcols = [c for c in scored.columns if c.startswith(PARAM_PREFIX)]
    cfg = ", ".join(f"{c[len(PARAM_PREFIX) :]}={_g(best[c])}" for c in pcols)
    lines.append(
        f"- Best trial: #{int(best['number'])} with {metric.title} {_g(float(best[value]))} "
        f"({metric.unit}); {cfg}."
    )
    if spread is not None and spread.has_repeats:
        top = spread.configs.iloc[0]
        lines.append(
            f"- Best configuration averaged over seeds ({int(top['n_seeds'])} seeds): mean "
            f"{_g(float(top['mean']))}, 95% bootstrap interval [{_g(float(top['ci_low']))}, "
            f"{_g(float(top['ci_high']))}]."
        )
    if surface is not None and surface.available:
        lines.append(
            f"- Fitted surface ({surface.method}) is best at {surface.x_param}="
            f"{_g(surface.best_x)}, {surface.y_param}={_g(surface.best_y)}: "
            f"{_g(surface.best_mean)} ± {_g(surface.best_se)} (1 SE)."
        )
        ranges = surface.within_se_ranges()
        if ranges is not None:
            (x0, x1), (y0, y1) = ranges
            lines.append(
                f"- Within one SE of the best: {surface.x_param} in [{_g(x0)}, {_g(x1)}], "
                f"{surface.y_param} in [{_g(y0)}, {_g(y1)}]."
            )
    for m in (marginals or {}).values():
        if m.within_se is not None:
            lines.append(
                f"- Marginal of {m.param} ({m.method}): best near {_g(m.best_x)}; within one SE "
                f"for {m.param} in [{_g(m.within_se[0])}, {_g(m.within_se[1])}]."
            )
    if importance is not None:
        if importance.importances:
            ranked = ", ".join(f"{k} {v:.2f}" for k, v in importance.importances.items())
            lines.append(
                f"- Most important parameter ({importance.evaluator}): "
                f"**{importance.most_important}** ({ranked})."
            )
        elif importance.reason:
            lines.append(f"- Parameter importance unavailable: {importance.reason}.")
    if curves is not None and len(curves.final):
        msg = f"- Stopped early: {curves.n_stopped_early} of {len(curves.final)} curves"
        if curves.rungs:
            rc = curves.final["rung"].dropna().astype(int).value_counts().sort_index()
            at = ", ".join(f"{n} at epoch {r}" for r, n in rc.items())
            msg += f" (ASHA rungs {curves.rungs}: {at or 'none'})"
        lines.append(msg + ".")
    return "\n".join(lines) + "\n"
