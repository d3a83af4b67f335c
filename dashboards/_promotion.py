"""The report section of a promoted study: its configurations' scores at the small scale (the
source study) and at its own, large scale, and how well the one ranked the other.

A run's score is read at its study's full budget (its best validation value up to where it
stopped; a converged run keeps its best), the configuration's score is the mean over its seeds:
the service's one score, at each scale. :func:`dashboards._ladder.scale_agreement` does the
statistics; this module turns two studies' frames into its input and its output into a section.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from ._common import PARAM_PREFIX, Direction, MetricInfo
from ._frame import Col, check_frames
from ._ladder import (
    ScaleAgreement,
    plot_scale_agreement,
    scale_agreement,
    scale_agreement_markdown,
)
from ._runs import study_runs

__all__ = ["ScaleFrames", "promotion_section"]

FIGURE_NAME = "scale-agreement"


class ScaleFrames(NamedTuple):
    """One scale of a ladder: a study's frames (the store's trials, epochs and runs)."""

    label: str  # e.g. "quickstart (6 epochs)"
    trials: pd.DataFrame
    epochs: pd.DataFrame
    ends: pd.DataFrame | None
    max_epochs: int


def _scores(scale: ScaleFrames, params: list[str]) -> pd.DataFrame:
    """One row per (configuration, seed) that finished the scale's budget (or converged):
    ``config`` ('name=value, ...' over ``params``), ``seed``, ``value``."""
    runs = study_runs(scale.trials, scale.epochs, max_epochs=scale.max_epochs, ends=scale.ends)
    at = runs.at_budget()
    if at.empty:
        return pd.DataFrame(columns=["config", Col.SEED, "value"])
    names = [p for p in params if PARAM_PREFIX + p in at]
    key = at[PARAM_PREFIX + names[0]].map(lambda v: f"{names[0]}={_short(v)}")
    for name in names[1:]:
        key = key + at[PARAM_PREFIX + name].map(lambda v, n=name: f", {n}={_short(v)}")
    return pd.DataFrame({"config": key, Col.SEED: at[Col.SEED].astype(int), "value": at["value"]})


def _short(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def promotion_section(
    small: ScaleFrames,
    large: ScaleFrames,
    *,
    params: list[str],
    metric: MetricInfo,
    direction: Direction = "minimize",
) -> tuple[str, dict[str, go.Figure], ScaleAgreement]:
    """Markdown, the two-scale figure and the statistics of a promoted study (``large``) and its
    source (``small``), over the configurations the large study ran."""
    for scale in (small, large):
        where = f"dashboards.promotion_section ({scale.label})"
        check_frames(where, trials=scale.trials, epochs=scale.epochs, runs=scale.ends)
    large_scores = _scores(large, params)
    small_scores = _scores(small, params)
    small_scores = small_scores[small_scores["config"].isin(set(large_scores["config"]))]
    agreement = scale_agreement(small_scores, large_scores, direction=direction)
    markdown = scale_agreement_markdown(agreement, metric, small.label, large.label)
    figure = plot_scale_agreement(
        agreement, metric, small_label=small.label, large_label=large.label
    )
    return markdown, {FIGURE_NAME: figure}, agreement
