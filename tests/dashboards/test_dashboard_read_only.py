"""`zoneout-study dashboard` is read-only unless told otherwise: every write route optuna-dashboard
exposes answers 403 and the study is left as it was; with ``allow_writes`` the same requests
reach optuna-dashboard (so the 403s are not an artefact of wrong routes)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest

from dashboards import serve_dashboard
from tests.reliability.conftest import record_external
from tests.support import free_port

pytestmark = pytest.mark.slow


def _study(url: str) -> tuple[int, int]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="kept", storage=url)
    study.optimize(lambda t: t.suggest_float("zoneout_cell", 0.0, 0.5), n_trials=2)
    running = study.ask()
    running.suggest_float("zoneout_cell", 0.0, 0.5)
    return study._study_id, running._trial_id


def _write_requests(study_id: int, trial_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route optuna-dashboard 0.x registers with a method other than GET (its _app.py,
    artifact/_backend.py and llm/_api_views.py), with a plausible body."""
    s, t = study_id, trial_id
    return [
        ("POST", "/api/studies", {"study_name": "new", "directions": ["minimize"]}),
        ("POST", f"/api/studies/{s}/rename", {"study_name": "renamed"}),
        ("PUT", f"/api/studies/{s}/note", {"version": 1, "body": "overwritten"}),
        ("POST", f"/api/studies/{s}/preference", {"candidates": [0, 1], "clicked": 0}),
        ("PUT", f"/api/studies/{s}/preference_feedback_component", {"output_type": "note"}),
        ("DELETE", f"/api/studies/{s}/preference/abc", {}),
        ("POST", f"/api/studies/{s}/preference/abc", {}),
        ("POST", f"/api/trials/{t}/tell", {"state": "Complete", "values": [0.0]}),
        ("POST", f"/api/trials/{t}/user-attrs", {"user_attrs": {"x": 1}}),
        ("POST", f"/api/studies/{s}/{t}/skip", {}),
        ("PUT", f"/api/studies/{s}/{t}/note", {"version": 1, "body": "overwritten"}),
        ("POST", f"/api/artifacts/{s}/{t}", {"file": "data:,x", "filename": "x"}),
        ("POST", f"/api/artifacts/{s}", {"file": "data:,x", "filename": "x"}),
        ("DELETE", f"/api/artifacts/{s}/{t}/0123abcd", {}),
        ("DELETE", f"/api/artifacts/{s}/0123abcd", {}),
        ("POST", "/api/llm/trial_filter_query", {}),
        ("POST", "/incompatible-rdb-schema", {}),
        ("PATCH", f"/api/studies/{s}", {}),
        ("DELETE", f"/api/studies/{s}", {}),
    ]  # fmt: skip


def _send(base: str, method: str, path: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _contents(url: str) -> list[Any]:
    study = optuna.load_study(study_name="kept", storage=url)
    names = [s.study_name for s in optuna.get_all_study_summaries(url)]
    trials = [(t.number, t.state, t.params, t.value, t.user_attrs) for t in study.get_trials()]
    # optuna-dashboard keeps notes in the study's system attributes (Optuna 5 has no public
    # reader for them): white-box, read through the storage.
    notes = study._storage.get_study_system_attrs(study._study_id)
    return [names, trials, study.user_attrs, notes]


def test_every_write_route_is_refused_and_the_study_is_intact(tmp_path: Path) -> None:
    database = tmp_path / "d.db"
    url = f"sqlite:///{database}"
    study_id, trial_id = _study(url)
    before, digest = _contents(url), hashlib.sha256(database.read_bytes()).hexdigest()
    requests = _write_requests(study_id, trial_id)
    with serve_dashboard(url, port=free_port(), timeout=90) as server:  # type: ignore[union-attr]
        assert _send(server.url, "GET", "/api/studies", {}) == 200  # it serves
        statuses = {(m, p): _send(server.url, m, p, b) for m, p, b in requests}
    assert set(statuses.values()) == {403}, statuses
    assert _contents(url) == before
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest
    methods = sorted({method for method, _, _ in requests})
    record_external(
        "tests/dashboards/test_dashboard_read_only.py::"
        "test_every_write_route_is_refused_and_the_study_is_intact",
        "Dashboard writes (read-only by default)",
        f"{len(requests)} requests ({', '.join(methods)}) to every write route optuna-dashboard "
        "registers, DELETE /api/studies/<id> included, on `zoneout-study dashboard`'s server",
        f"all {len(statuses)} answered 403; the study's trials, notes and attributes unchanged "
        "and the database file byte-identical (with --allow-writes the same requests succeed)",
    )


def test_allow_writes_lets_the_same_requests_through(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study_id, trial_id = _study(url)
    server = serve_dashboard(url, port=free_port(), timeout=90, allow_writes=True)
    assert server is not None
    with server:
        note = f"/api/studies/{study_id}/{trial_id}/note"
        assert _send(server.url, "PUT", note, {"version": 1, "body": "kept"}) == 204
        assert _send(server.url, "DELETE", f"/api/studies/{study_id}", {}) == 204
    assert "kept" not in [s.study_name for s in optuna.get_all_study_summaries(url)]
