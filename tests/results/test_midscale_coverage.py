"""Coverage of the committed mid-scale PTB-char studies (docs/results/ptb-char/midscale).

Recomputes from ``midscale.db`` and the three specs beside it which grid points ran, how many
times and how each run ended, and compares that with the tables written out below (the README's
"Coverage" section states the same facts). If the database changes, the failing assertion says
how: a point that finished, a new interruption, a trial that went missing.

Pure reading: the committed file is copied to a temporary directory and the copy is opened
read-only with sqlite3. The grid comes from the spec files (categorical choices, or a float
range with a step); the trials from Optuna's tables (``trials``, ``trial_params``,
``trial_user_attributes``, ``trial_system_attributes``), cross-checked against the service's
own rows (``zs_studies``, ``zs_trials``).

Words used below:

* retired: a FAIL trial the service wrote itself when a run was cut short (user attribute
  ``requeued`` true, ``fail_reason`` 'interrupted: ...' or 'driver lost'). It is no real
  failure: the service queued a replacement (user attribute ``requeued_from``) that continues it.
* failed: a FAIL trial without ``requeued``, i.e. a run that really went wrong.
* queued: a WAITING trial, enqueued (a replacement, or a point queued by hand) but never asked.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from study import keys
from study.reaper import DRIVER_LOST
from study.runner import INTERRUPTED

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "ptb-char" / "midscale"
DATABASE = RESULTS / "midscale.db"

FIGURE3 = "ptb-char-midscale-figure3"
RECURRENT_DROPOUT = "ptb-char-midscale-recurrent-dropout"
DROPOUT = "ptb-char-midscale-dropout"
SPEC_FILES = {
    FIGURE3: "ptb-char-midscale-figure3.yaml",
    RECURRENT_DROPOUT: "ptb-char-midscale-recurrent-dropout.yaml",
    DROPOUT: "ptb-char-midscale-dropout.yaml",
}

# The converged follow-up (issue 26) promotes these studies in the same database (a promoted
# study reads its source there); its studies are checked by their own test, not here.
CONVERGED_STUDIES = {
    "ptb-char-converged-zoneout",
    "ptb-char-converged-recurrent-dropout",
    "ptb-char-converged-dropout",
}

Point = tuple[Any, ...]  # one value per searched parameter, in the spec's order


@dataclass(frozen=True)
class Coverage:
    """What one grid point got. ``seeds``: seeds of its COMPLETE trials that ran the full epoch
    budget. ``continued``: retired trials for which a replacement trial exists."""

    complete: int = 0
    seeds: int = 0
    pruned: int = 0
    failed: int = 0
    retired: int = 0
    continued: int = 0
    queued: int = 0
    running: int = 0


# --------------------------------------------------------------------------- the facts
# Points are (zoneout_cell, zoneout_hidden) for Figure 3, (p,) for the other two studies.
# A point missing from a study's table would mean it has no trial at all; every point of the
# three grids has at least one (a point with none would be listed as Coverage()).
EXPECTED_COVERAGE: dict[str, dict[Point, Coverage]] = {
    FIGURE3: {
        (0.0, 0.0): Coverage(complete=1, seeds=2),
        (0.0, 0.05): Coverage(complete=1, seeds=2),
        (0.0, 0.1): Coverage(complete=1, seeds=2),
        (0.25, 0.0): Coverage(complete=1, seeds=2, retired=1, continued=1),
        (0.25, 0.05): Coverage(complete=1, seeds=2),
        (0.25, 0.1): Coverage(complete=1, seeds=2, retired=1, continued=1),
        (0.5, 0.0): Coverage(complete=1, seeds=2),
        (0.5, 0.05): Coverage(complete=1, seeds=2),
        (0.5, 0.1): Coverage(complete=1, seeds=2, retired=1, continued=1),
        # Queued by hand (user attribute 'queued_by_hand'), run on 2026-12-05.
        (0.75, 0.0): Coverage(complete=1, seeds=2),
        (0.75, 0.05): Coverage(complete=1, seeds=2),
        (0.75, 0.1): Coverage(complete=1, seeds=2),
    },
    RECURRENT_DROPOUT: {
        (0.05,): Coverage(complete=1, seeds=2),
        (0.2,): Coverage(complete=1, seeds=2),
        (0.5,): Coverage(complete=1, seeds=2),
        (0.7,): Coverage(complete=1, seeds=2),
    },
    DROPOUT: {
        (0.2,): Coverage(complete=1, seeds=2),
    },
}

# Every Optuna trial: number -> (point, how it ended, the trial it replaces or None).
# 'interrupted' = retired with fail_reason INTERRUPTED (Ctrl-C / the driver stopped).
EXPECTED_TRIALS: dict[str, dict[int, tuple[Point, str, int | None]]] = {
    FIGURE3: {
        0: ((0.5, 0.0), "COMPLETE", None),
        1: ((0.75, 0.1), "COMPLETE", None),
        2: ((0.25, 0.05), "COMPLETE", None),
        3: ((0.75, 0.05), "COMPLETE", None),
        4: ((0.0, 0.1), "COMPLETE", None),
        # Cut off at 15:32 (epochs 6 and 5); #6 continued it, but from epoch 0 on both seeds
        # (its checkpoints were not on the next machine: user attribute 'resume_skipped').
        5: ((0.5, 0.1), "interrupted", None),
        6: ((0.5, 0.1), "COMPLETE", 5),
        7: ((0.0, 0.0), "COMPLETE", None),
        8: ((0.5, 0.05), "COMPLETE", None),
        9: ((0.25, 0.0), "interrupted", None),  # cut off after epoch 1 of seed 0
        10: ((0.0, 0.05), "COMPLETE", None),
        11: ((0.25, 0.1), "interrupted", None),  # cut off before any epoch
        # The three queued trials, run on 2026-12-05 (a fresh machine: #13 and #14 started
        # their seeds from epoch 0, their checkpoints being elsewhere: 'resume_skipped').
        12: ((0.75, 0.0), "COMPLETE", None),
        13: ((0.25, 0.0), "COMPLETE", 9),
        14: ((0.25, 0.1), "COMPLETE", 11),
    },
    RECURRENT_DROPOUT: {
        0: ((0.5,), "COMPLETE", None),
        1: ((0.7,), "COMPLETE", None),
        2: ((0.2,), "COMPLETE", None),
        3: ((0.05,), "COMPLETE", None),
    },
    DROPOUT: {
        0: ((0.2,), "COMPLETE", None),
    },
}


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Trial:
    number: int
    state: str  # Optuna's state name
    params: Point | None  # the suggested (stored) parameters; None for a WAITING trial
    fixed: Point | None  # the enqueued parameters ('fixed_params'), if enqueued
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]

    @property
    def point(self) -> Point:
        point = self.params if self.params is not None else self.fixed
        assert point is not None, f"trial {self.number} holds no parameters at all"
        return point

    @property
    def retired(self) -> bool:
        return self.state == "FAIL" and bool(self.user_attrs.get(keys.REQUEUED))

    @property
    def kind(self) -> str:
        if not self.retired:
            return self.state
        reason = self.user_attrs.get(keys.FAIL_REASON)
        if reason == INTERRUPTED:
            return "interrupted"
        if reason == DRIVER_LOST:
            return "driver lost"
        return f"retired: {reason}"


@dataclass(frozen=True)
class Study:
    name: str
    spec: dict[str, Any]  # the YAML file
    grid: dict[str, list[Any]]  # name -> values, in the spec's order
    trials: dict[int, Trial]
    user_attrs: dict[str, Any]
    store_spec: dict[str, Any]  # zs_studies.spec: the snapshot the service stored
    store_trials: dict[int, dict[str, Any]]  # zs_trials rows by number

    @property
    def points(self) -> list[Point]:
        points: list[Point] = [()]
        for values in self.grid.values():
            points = [(*point, value) for point in points for value in values]
        return points


def _grid(search: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid of a spec's ``search`` block: categorical choices, or low..high by step."""
    grid: dict[str, list[Any]] = {}
    for name, param in search.items():
        if param["type"] == "categorical":
            grid[name] = list(param["choices"])
        elif param["type"] == "float":
            low, high, step = param["low"], param["high"], param["step"]
            count = math.floor((high - low) / step + 1e-9) + 1
            grid[name] = [round(low + index * step, 12) for index in range(count)]
        else:
            assert param["type"] == "int", param
            grid[name] = list(range(param["low"], param["high"] + 1, param.get("step", 1)))
    return grid


def _point(grid: dict[str, list[Any]], values: dict[str, Any]) -> Point:
    assert set(values) == set(grid), f"parameters {sorted(values)}, spec {sorted(grid)}"
    return tuple(round(v, 12) if isinstance(v, float) else v for v in map(values.get, grid))


def _decode(distribution_json: str, internal: float) -> Any:
    """An Optuna parameter as the value the trial ran with (categoricals store the index)."""
    distribution = json.loads(distribution_json)
    name, attributes = distribution["name"], distribution["attributes"]
    if name == "CategoricalDistribution":
        return attributes["choices"][int(internal)]
    if name == "IntDistribution":
        return int(internal)
    assert name == "FloatDistribution", name
    return float(internal)


def _read_study(db: sqlite3.Connection, name: str) -> Study:
    spec = yaml.safe_load((RESULTS / SPEC_FILES[name]).read_text())
    assert spec["name"] == name
    grid = _grid(spec["search"])
    ((study_id,),) = db.execute("SELECT study_id FROM studies WHERE study_name = ?", (name,))
    study_attrs = {
        key: json.loads(value)
        for key, value in db.execute(
            "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", (study_id,)
        )
    }
    trials = {}
    for trial_id, number, state in db.execute(
        "SELECT trial_id, number, state FROM trials WHERE study_id = ? ORDER BY number",
        (study_id,),
    ).fetchall():
        params = {
            param: _decode(distribution, value)
            for param, value, distribution in db.execute(
                "SELECT param_name, param_value, distribution_json FROM trial_params"
                " WHERE trial_id = ?",
                (trial_id,),
            )
        }
        user_attrs = {
            key: json.loads(value)
            for key, value in db.execute(
                "SELECT key, value_json FROM trial_user_attributes WHERE trial_id = ?",
                (trial_id,),
            )
        }
        system_attrs = {
            key: json.loads(value)
            for key, value in db.execute(
                "SELECT key, value_json FROM trial_system_attributes WHERE trial_id = ?",
                (trial_id,),
            )
        }
        fixed = system_attrs.get("fixed_params")
        trials[number] = Trial(
            number=number,
            state=state,
            params=_point(grid, params) if params else None,
            fixed=_point(grid, fixed) if fixed is not None else None,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    ((store_id, store_spec),) = db.execute(
        "SELECT id, spec FROM zs_studies WHERE name = ? AND optuna_study_id = ?",
        (name, study_id),
    )
    columns = ("number", "state", "params", "error", "epochs", "best_value", "final_value")
    store_trials = {
        row[0]: dict(zip(columns, row, strict=True))
        for row in db.execute(
            f"SELECT {', '.join(columns)} FROM zs_trials WHERE study_id = ?", (store_id,)
        )
    }
    return Study(
        name=name,
        spec=spec,
        grid=grid,
        trials=trials,
        user_attrs=study_attrs,
        store_spec=json.loads(store_spec),
        store_trials=store_trials,
    )


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Study]]:
    # A copy, opened read-only: the committed file is never opened, so never touched (SQLite
    # writes -shm / -wal files beside a WAL database even to read it).
    copy = tmp_path_factory.mktemp("midscale") / "midscale.db"
    # The backup API takes a consistent copy even while a study writes the file (WAL).
    source = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        names = sorted(name for (name,) in db.execute("SELECT study_name FROM studies"))
        store_names = sorted(name for (name,) in db.execute("SELECT name FROM zs_studies"))
        assert names == store_names, (names, store_names)
        assert set(SPEC_FILES) <= set(names) <= set(SPEC_FILES) | CONVERGED_STUDIES, names
        yield {name: _read_study(db, name) for name in SPEC_FILES}
    finally:
        db.close()


def _coverage(study: Study) -> dict[Point, Coverage]:
    table = {}
    replaced = {t.user_attrs.get(keys.REQUEUED_FROM) for t in study.trials.values()}
    epochs = study.spec["base"]["epochs"]
    for point in study.points:
        trials = [t for t in study.trials.values() if t.point == point]
        complete = [t for t in trials if t.state == "COMPLETE"]
        retired = [t for t in trials if t.retired]
        table[point] = Coverage(
            complete=len(complete),
            seeds=sum(e >= epochs for t in complete for e in t.user_attrs.get(keys.EPOCHS, [])),
            pruned=sum(t.state == "PRUNED" for t in trials),
            failed=sum(t.state == "FAIL" and not t.retired for t in trials),
            retired=len(retired),
            continued=sum(t.number in replaced for t in retired),
            queued=sum(t.state == "WAITING" for t in trials),
            running=sum(t.state == "RUNNING" for t in trials),
        )
    return table


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_the_database_ran_the_committed_specs(studies: dict[str, Study], name: str) -> None:
    """The grid read from the YAML is the grid the service stored and the sampler used."""
    study = studies[name]
    assert _grid(study.store_spec["search"]) == study.grid
    assert study.store_spec["repeats"] == study.spec["repeats"]
    assert study.store_spec["base"]["epochs"] == study.spec["base"]["epochs"]
    assert study.user_attrs[keys.MAX_EPOCHS] == study.spec["base"]["epochs"]
    assert len(study.points) == study.spec["n_trials"]
    for trial in study.trials.values():
        if "search_space" in trial.system_attrs:  # written by Optuna's GridSampler
            assert trial.system_attrs["search_space"] == study.grid, trial.number


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_coverage_per_grid_point(studies: dict[str, Study], name: str) -> None:
    assert _coverage(studies[name]) == EXPECTED_COVERAGE[name]


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_every_trial(studies: dict[str, Study], name: str) -> None:
    trials = {
        t.number: (t.point, t.kind, t.user_attrs.get(keys.REQUEUED_FROM))
        for t in studies[name].trials.values()
    }
    assert trials == EXPECTED_TRIALS[name]


# ---- invariants: they hold for any study of this service, whatever the table says
@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_every_trial_holds_a_grid_point(studies: dict[str, Study], name: str) -> None:
    study = studies[name]
    for trial in study.trials.values():
        assert trial.point in study.points, (trial.number, trial.point)
        if trial.params is not None and trial.fixed is not None:
            assert trial.params == trial.fixed, trial.number  # it ran what was enqueued


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_no_grid_point_finished_twice(studies: dict[str, Study], name: str) -> None:
    for point, coverage in _coverage(studies[name]).items():
        assert coverage.complete <= 1, point


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_retired_trials_are_continued_on_the_same_point(
    studies: dict[str, Study], name: str
) -> None:
    trials = studies[name].trials
    for trial in trials.values():
        if trial.retired:
            assert trial.user_attrs[keys.FAIL_REASON] in (INTERRUPTED, DRIVER_LOST), trial.number
            replacements = [
                t for t in trials.values() if t.user_attrs.get(keys.REQUEUED_FROM) == trial.number
            ]
            assert len(replacements) == 1, (trial.number, [t.number for t in replacements])
            assert replacements[0].point == trial.point, (trial.number, replacements[0].number)
            assert replacements[0].number > trial.number
        replaces = trial.user_attrs.get(keys.REQUEUED_FROM)
        if replaces is not None:
            assert trials[replaces].retired, (trial.number, replaces)


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_finished_trials_ran_every_seed_to_the_budget(studies: dict[str, Study], name: str) -> None:
    study = studies[name]
    base = study.spec["base"]
    seeds = [base["seed"] + index for index in range(study.spec["repeats"])]
    for trial in study.trials.values():
        if trial.state == "COMPLETE":
            assert trial.user_attrs[keys.SEEDS] == seeds, trial.number
            assert trial.user_attrs[keys.EPOCHS] == [base["epochs"]] * len(seeds), trial.number


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_the_store_agrees_with_optuna(studies: dict[str, Study], name: str) -> None:
    """One zs_trials row per trial that was asked (none for WAITING ones), with the same
    parameters, state and failure reason as Optuna's trial."""
    study = studies[name]
    asked = {n: t for n, t in study.trials.items() if t.state != "WAITING"}
    assert sorted(study.store_trials) == sorted(asked)
    for number, trial in asked.items():
        row = study.store_trials[number]
        assert _point(study.grid, json.loads(row["params"])) == trial.point, number
        assert row["state"] == trial.state, number
        assert row["error"] == trial.user_attrs.get(keys.FAIL_REASON), number
