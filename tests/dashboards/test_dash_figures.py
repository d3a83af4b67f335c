"""Renderers: expected traces, titles and axes."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

import dashboards as d

Frames = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def analysis(study_frames: Frames) -> d.StudyAnalysis:
    trials, epochs = study_frames
    return d.analyze(trials, epochs, metric="bpc", max_epochs=9, grace_period=1, reduction_factor=3)


def _names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data]


def test_marginal_figure_has_band_mean_and_states(analysis: d.StudyAnalysis) -> None:
    fig = d.plot_marginal(analysis.marginals["zoneout_cell"], analysis.metric)
    names = _names(fig)
    assert "95% band" in names and "mean (gp)" in names
    assert "complete" in names and "pruned" in names
    band = next(t for t in fig.data if t.name == "95% band")
    assert band.fill == "tonexty"
    pruned = next(t for t in fig.data if t.name == "pruned")
    complete = next(t for t in fig.data if t.name == "complete")
    assert pruned.marker.symbol != complete.marker.symbol
    assert "seed mean (95% bootstrap)" in names
    assert fig.layout.yaxis.title.text == "validation BPC (bits per character)"
    assert fig.layout.xaxis.title.text == "zoneout cell rate z_c"
    assert "zoneout cell rate" in fig.layout.title.text
    lr = d.plot_marginal(analysis.marginals["learning_rate"], analysis.metric)
    assert lr.layout.xaxis.type == "log"


def test_perplexity_gets_a_log_axis(study_frames: Frames) -> None:
    trials, epochs = study_frames
    a = d.analyze(trials, epochs, metric="perplexity", max_epochs=9)
    fig = d.plot_learning_curves(a.curves, a.metric)
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.title.text == "validation perplexity"
    err = d.metric_info("error")
    assert err.axis_title == "validation error (error rate)"


def test_surface_figure(analysis: d.StudyAnalysis) -> None:
    assert analysis.surface is not None
    fig = d.plot_surface(analysis.surface, analysis.metric)
    kinds = [t.type for t in fig.data]
    assert kinds.count("contour") == 3  # mean, std, within-1-SE outline
    names = _names(fig)
    assert {"GP mean", "GP std", "within 1 SE of best", "trials", "best (GP mean)"} <= set(names)
    assert fig.layout.xaxis.title.text == "zoneout cell rate z_c"
    assert fig.layout.yaxis.title.text == "zoneout hidden rate z_h"


def test_learning_curves_figure(analysis: d.StudyAnalysis) -> None:
    fig = d.plot_learning_curves(analysis.curves, analysis.metric)
    names = _names(fig)
    assert "stopped early" in names and "last epoch" in names
    dashed = [t for t in fig.data if t.mode == "lines" and t.line.dash == "dot"]
    assert dashed, "stopped curves are drawn dotted"
    assert len(fig.layout.shapes) == 2  # rungs at epochs 1 and 3
    assert fig.layout.xaxis.title.text == "epoch"
    assert "all trials" in fig.layout.title.text
    full = d.plot_learning_curves(analysis.curves_full, analysis.metric)
    assert "full-budget trials only" in full.layout.title.text
    assert "stopped early" not in _names(full)
    few = d.plot_learning_curves(analysis.curves, analysis.metric, max_curves=5)
    assert "5 of" in few.layout.title.text


def test_importance_and_report_figure_set(analysis: d.StudyAnalysis) -> None:
    fig = d.plot_importance(analysis.importance)
    assert fig.data[0].type == "bar"
    assert fig.data[0].y[-1] == "zoneout cell rate z_c"  # most important on top
    figs = d.report_figures(analysis)
    assert list(figs)[:2] == ["surface", "marginal-zoneout_cell"]
    assert {"learning-curves", "learning-curves-full", "seed-spread", "importance"} <= set(figs)
