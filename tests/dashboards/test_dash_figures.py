"""Figures: never empty, colour on a colour bar, n and the epoch stated, titles that fit."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

import dashboards as d


def _traces(fig: go.Figure, kind: str) -> list:
    return [t for t in fig.data if t.type == kind]


def test_grid_surface_is_an_annotated_heatmap(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid()
    figs = d.report_figures(d.analyze(trials, epochs, metric="bpc", max_epochs=4))
    surface = figs["surface"]
    (heat,) = _traces(surface, "heatmap")
    cells = [t for row in heat.text for t in row if t]
    assert len(cells) == 6 and all(t.endswith("n=2") for t in cells)
    assert heat.showscale and heat.colorbar.title.text == "validation BPC"
    assert "6 configurations, 2 seeds each" in surface.layout.title.subtitle.text
    assert "full budget (epoch 4)" in surface.layout.title.subtitle.text


def test_four_trials_are_coloured_points_without_a_curve(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(4, seed=3)
    figs = d.report_figures(d.analyze(trials, epochs, metric="bpc", max_epochs=9))
    (pts,) = _traces(figs["surface"], "scatter")
    assert len(pts.marker.color) == 4 and pts.marker.showscale
    assert not _traces(figs["surface"], "contour")
    for name in ("marginal-zoneout_cell", "marginal-zoneout_hidden"):
        fig = figs[name]
        assert not [t for t in fig.data if t.mode == "lines"], name
        assert "no curve" in fig.layout.title.subtitle.text
    assert "importance" not in figs  # refused, with its reason in the summary


def test_one_colour_scale_per_parameter_and_integer_epochs(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(30, 2, prune_frac=0.3, seed=2)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=9, grace_period=1, reduction_factor=3)
    figs = d.report_figures(a)
    scales = {}
    for fig in figs.values():
        for t in fig.data:
            marker = getattr(t, "marker", None)
            if marker is None or marker.colorbar is None or not marker.showscale:
                continue
            param = marker.colorbar.title.text
            scales.setdefault(param, set()).add((str(marker.colorscale), marker.cmin, marker.cmax))
    assert scales and all(len(v) == 1 for v in scales.values()), scales
    x = figs["learning-curves"].layout.xaxis
    assert x.tickformat == "d" and float(x.dtick).is_integer()


def test_titles_fit_and_explanations_go_to_the_subtitle(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid(n_seeds=3)
    figs = d.report_figures(d.analyze(trials, epochs, metric="bpc", max_epochs=4))
    assert {"surface", "differences", "learning-curves"} <= set(figs)
    for name, fig in figs.items():
        assert len(fig.layout.title.text) <= 50, (name, fig.layout.title.text)
        assert fig.layout.title.subtitle.text, name
    sub = figs["differences"].layout.title.subtitle.text
    assert "95% Student-t over 3 paired seeds" in sub and "unregularized" in sub


def test_two_seed_differences_show_both_values_not_an_interval(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid()
    fig = d.report_figures(d.analyze(trials, epochs, metric="bpc", max_epochs=4))["differences"]
    assert "n = 2 seeds: both differences shown, no interval" in fig.layout.title.subtitle.text
    assert not any("95%" in (t.name or "") for t in fig.data)


def test_unfinished_runs_are_dashed_and_counted_apart_from_stopped_ones(study_frames) -> None:  # type: ignore[no-untyped-def]
    """A FAIL (interrupted) run and a RUNNING one are neither full-budget curves nor runs the
    scheduler stopped: dashed, an open circle at their last epoch, counted as unfinished."""
    trials, epochs = study_frames
    failed = int(trials.loc[trials["state"] == "FAIL", "number"].iloc[0])
    cut = epochs[(epochs["number"] == 1) & (epochs["epoch"] <= 2)].assign(number=failed)
    a = d.analyze(trials, pd.concat([epochs, cut], ignore_index=True), metric="bpc", max_epochs=9)
    final = a.curves.final
    unfinished = final[final["unfinished"]]
    assert set(unfinished["state"]) == {"FAIL", "RUNNING"}
    assert not (final["unfinished"] & final["stopped_early"]).any()
    assert a.curves.n_stopped_early == int((final["state"] == "PRUNED").sum())
    fig = d.report_figures(a)["learning-curves"]
    dashed = [t for t in fig.data if t.mode == "lines" and t.line.dash == "dash"]
    assert dashed and all(
        t.line.dash in ("solid", "dot", "dash") for t in fig.data if t.mode == "lines"
    )
    (marks,) = [t for t in fig.data if t.name and t.name.startswith("unfinished")]
    assert len(marks.x) == a.curves.n_unfinished == len(unfinished)
    assert f"{a.curves.n_unfinished} unfinished (dashed)" in fig.layout.title.subtitle.text
