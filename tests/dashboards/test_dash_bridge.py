"""Figures and notes saved into an Optuna study show up through optuna-dashboard's HTTP API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

import dashboards as d
from dashboards._optuna_bridge import graph_object_id
from tests.support import free_port


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_graph_object_ids_are_valid() -> None:
    from optuna_dashboard._custom_plot_data import is_valid_graph_object_id

    for name in ("marginal-zoneout_cell", "3d surface", "learning curves/full", ""):
        assert is_valid_graph_object_id(graph_object_id(name))


def test_dashboard_serves_saved_figures_and_both_note_sections(make_grid, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid()
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(study_name="zoneout-dash", storage=url)
    dists = {
        "zoneout_cell": FloatDistribution(0, 0.5, step=0.25),
        "zoneout_hidden": FloatDistribution(0, 0.05, step=0.05),
    }
    for row in trials.itertuples():
        study.add_trial(
            optuna.trial.create_trial(
                params={
                    "zoneout_cell": row.param_zoneout_cell,
                    "zoneout_hidden": row.param_zoneout_hidden,
                },
                distributions=dists,
                value=1.0 + row.number / 100,
            )
        )
    a = d.analyze(
        trials, epochs, metric="bpc", max_epochs=4, study=study, study_name="zoneout-dash"
    )
    figs = d.report_figures(a)
    ids = d.save_figures_to_study(study, figs, a.summary_markdown)
    assert ids == [graph_object_id(n) for n in figs]
    d.save_note_section(study, "## Table 1: BPC by method\n\n| a | b |\n")
    d.save_figures_to_study(study, figs, a.summary_markdown)  # saving again overwrites

    port = free_port()
    with d.serve_dashboard(url, port=port, timeout=60) as server:  # type: ignore[union-attr]
        summaries = _get(f"{server.url}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "zoneout-dash"]
        detail = _get(f"{server.url}/api/studies/{summary['study_id']}")
        saved = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
        assert set(saved) == set(ids)
        assert saved["surface"]["data"][0]["type"] == "heatmap"
        note = detail["note"]["body"]
        # The report's summary and compare's Table 1 share the note; neither erases the other.
        assert note.count("## Study zoneout-dash") == 1 and note.count("## Table 1") == 1
    assert not server.running()
