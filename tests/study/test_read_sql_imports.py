"""The read commands load no heavy library (issue 25): ``list``, ``status`` and ``export`` run
as a user runs them (a fresh interpreter, the CLI's ``main``) on a tiny database, and none of
torch, ray, scipy, scikit-learn or plotly is in ``sys.modules`` after. Each costs seconds to
import, more than the command's own work on a study of 10,000 trials.

Two paths still load one through modules other owners keep; each is marked where it fails
(strict: the mark must go once the module is fixed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboards import TrialState
from study.store import RunRecord, Store
from tests.support import TINY_PTB_BASE, ZONEOUT_SEARCH

HEAVY = ("torch", "ray", "scipy", "sklearn", "plotly")
SUMMARISED = 35  # trials: more than status shows row by row (study.cli._status.SUMMARY_ABOVE)

# Run the console script's entry point in a fresh interpreter, then say what it imported.
SCRIPT = """
import json, os, sys
from study.cli import main
sys.argv = ["zoneout-study", *sys.argv[1:]]
try:
    main()
except SystemExit as end:
    code = end.code
else:
    code = 0
with open(os.environ["ZS_IMPORTS_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def _spec(name: str, sampler: str, search: dict[str, object]) -> dict[str, object]:
    return {
        "name": name,
        "base": TINY_PTB_BASE,
        "search": search,
        "sampler": {"name": sampler, "seed": 0},
        "n_trials": SUMMARISED,
        "resources": {"cpu": 1},
    }


def _database(path: Path, *, sampler: str = "random", layer_path: str | None = None) -> str:
    """A study of SUMMARISED finished trials (COMPLETE, PRUNED, FAIL, one retired) and its
    runs, written by the store alone (what the read commands read; no Optuna study)."""
    url = f"sqlite:///{path}"
    search = ZONEOUT_SEARCH
    if sampler == "grid":
        search = {name: {**space, "step": 0.1} for name, space in ZONEOUT_SEARCH.items()}
    states = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    with Store.open(url) as store:
        store.register_study(
            "s",
            spec=_spec("s", sampler, search),
            versions={"python": "3"},
            direction="minimize",
            metric="bpc",
        )
        for number in range(SUMMARISED):
            params = {"zoneout_cell": 0.1 * (number % 7), "zoneout_hidden": 0.1 * (number % 3)}
            state = states[number % len(states)]
            retired = "interrupted" if number == SUMMARISED - 1 else None
            store.upsert_trial(
                "s",
                number,
                state=TrialState.FAIL if retired else state,
                params=params,
                config={**TINY_PTB_BASE, **params},
                best_value=1.0 + (number % 5) / 10,
                epochs=3,
                node="laptop",
                error="boom" if state == TrialState.FAIL or retired else None,
                retired=retired,
            )
            record = RunRecord(TINY_PTB_BASE["seed"], "budget", 3, 3, 1.0, layer_path=layer_path)
            store.record_runs("s", number, [record])
    return url


def _imports(tmp_path: Path, url: str, *args: str) -> list[str]:
    """Run ``zoneout-study ARGS --storage URL``; the heavy modules it imported."""
    out = tmp_path / "imports.json"
    env = dict(os.environ, ZS_IMPORTS_OUT=str(out), COLUMNS="120")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args, "--storage", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.is_file(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["code"] == 0, proc.stdout + proc.stderr
    modules = set(result["modules"])
    return [name for name in HEAVY if name in modules]


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["status"],
        ["status", "s"],
        ["status", "s", "--all"],
        ["export", "s", "--top", "3", "--out", "best"],
    ],
    ids=" ".join,
)
def test_a_read_command_imports_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    url = _database(tmp_path / "read.db")
    assert _imports(tmp_path, url, *args) == []


def test_status_of_runs_that_recorded_a_layer_path(tmp_path: Path) -> None:
    url = _database(tmp_path / "paths.db", layer_path="cpu_extension")
    assert _imports(tmp_path, url, "status", "s") == []


def test_list_with_a_grid_study(tmp_path: Path) -> None:
    url = _database(tmp_path / "grid.db", sampler="grid")
    assert _imports(tmp_path, url, "list") == []
