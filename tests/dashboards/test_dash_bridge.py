"""Figures saved into an Optuna study show up through optuna-dashboard's HTTP API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import optuna
import pandas as pd

import dashboards as d
from tests.support import free_port

Frames = tuple[pd.DataFrame, pd.DataFrame]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_graph_object_ids_are_valid() -> None:
    from optuna_dashboard._custom_plot_data import is_valid_graph_object_id

    for name in ("marginal-zoneout_cell", "3d surface", "learning curves/full", ""):
        assert is_valid_graph_object_id(d.graph_object_id(name))


def test_dashboard_serves_study_trials_and_saved_figures(
    study_frames: Frames, tmp_path: Path
) -> None:
    trials, epochs = study_frames
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = d.build_optuna_study(
        trials.head(12), epochs=epochs, storage=storage, study_name="zoneout-dash"
    )
    a = d.analyze(trials.head(12), epochs, metric="bpc", max_epochs=9)
    figs = {"importance": d.plot_importance(a.importance)}
    figs["marginal-zoneout_cell"] = d.plot_marginal(a.marginals["zoneout_cell"], a.metric)
    ids = d.save_figures_to_study(study, figs, a.summary_markdown)
    assert ids == ["importance", "marginal-zoneout_cell"]
    d.save_figures_to_study(study, figs, a.summary_markdown)  # saving again overwrites

    port = free_port()
    with d.serve_dashboard(url, port=port, timeout=60) as server:  # type: ignore[union-attr]
        assert server.url == f"http://127.0.0.1:{port}"
        summaries = _get(f"{server.url}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "zoneout-dash"]
        detail = _get(f"{server.url}/api/studies/{summary['study_id']}")
        assert len(detail["trials"]) == 12
        assert detail["has_intermediate_values"]
        first = next(t for t in detail["trials"] if t["number"] == 0)
        assert [v["step"] for v in first["intermediate_values"]] == list(range(1, 10))
        states = {t["state"] for t in detail["trials"]}
        assert {"Complete", "Pruned"} <= states
        saved = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
        assert set(saved) == set(ids)
        assert saved["importance"]["data"][0]["type"] == "bar"
        assert "Most important parameter" in detail["note"]["body"]
    assert not server.running()
