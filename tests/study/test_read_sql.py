"""The read commands' SQL answers are Optuna's answers (issue 25): ``export --top K``'s ranking,
``status``'s counts by state and its summary rows, ``list``'s counts, asked of the database
(ORDER BY ... LIMIT, GROUP BY) instead of read from every trial, on SQLite and PostgreSQL.

One study of 200 trials is written per backend the way the service writes one, without
Ray: Optuna's public API (``create_trial`` + ``add_trials``, with the user attributes the
searcher sets) and the store's writers (``upsert_trial``, ``record_runs``). It holds ties in
score, PRUNED and FAIL trials whose stored partial score beats every COMPLETE one, the three
kinds of retired trial, RUNNING ones, WAITING ones only Optuna has, and COMPLETE trials whose
value is not finite.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from dashboards import Col
from study import keys
from study import optuna_study as ostudy
from study.cli import app
from study.cli._status import SHOWN, SUMMARY_ABOVE
from study.cli._words import FailureWords, kind_counts
from study.export import best_configs
from study.plan import Retired, TrialEnd
from study.store import RunRecord, Store
from tests.support import TINY_PTB_BASE, ZONEOUT_SEARCH, create_database, drop_database, pg_url

NAME = "read-sql"
OTHER = "read-sql-other"  # a second study: `list` counts every study in one query
N_TRIALS = 200
SEEDS = [TINY_PTB_BASE["seed"], TINY_PTB_BASE["seed"] + 1]
SPEC = {
    "name": NAME,
    "base": TINY_PTB_BASE,
    "search": ZONEOUT_SEARCH,
    "sampler": {"name": "random", "seed": 0},
    "n_trials": N_TRIALS,
    "repeats": len(SEEDS),
    "resources": {"cpu": 2},
}
DISTRIBUTIONS = {
    "zoneout_cell": optuna.distributions.FloatDistribution(0.0, 0.7),
    "zoneout_hidden": optuna.distributions.FloatDistribution(0.0, 0.3),
}
# Seed scores on a coarse grid of exact binary fractions: many configurations tie in score.
LEVELS = (1.0, 1.25, 1.5, 1.75, 2.0)


@dataclass
class Built:
    url: str
    store: Store
    study: optuna.Study


def _write(url: str) -> Built:
    rng = random.Random(25)
    study = ostudy.open_study(url, NAME)
    store = Store.open(url)
    store.register_study(
        NAME,
        spec=SPEC,
        versions={"python": "3"},
        direction="minimize",
        metric="bpc",
        optuna_study_id=ostudy.study_id(study),
    )
    kinds = (
        ["complete"] * 100
        + ["pruned"] * 40
        + ["failed"] * 20
        + ["retired"] * 24
        + ["running"] * 6
        + ["waiting"] * 4
        + ["infinite", "not-a-number"]
    )
    kinds += ["complete"] * (N_TRIALS - len(kinds))
    rng.shuffle(kinds)
    retired = iter(list(Retired) * N_TRIALS)  # the three kinds in turn
    made, rows = [], []
    for number, kind in enumerate(kinds):
        params = {"zoneout_cell": rng.uniform(0.0, 0.7), "zoneout_hidden": rng.uniform(0.0, 0.3)}
        seed_values = [rng.choice(LEVELS) for _ in SEEDS]
        score = sum(seed_values) / len(seed_values)
        attrs: dict[str, Any] = {keys.SEEDS: SEEDS, keys.SEED_VALUES: seed_values}
        row: dict[str, Any] = {
            "params": params,
            "config": {**TINY_PTB_BASE, **params, "seed": SEEDS[0]},
            "node": f"node-{number % 3}",
            "seed": SEEDS[0],
        }
        values: dict[str, Any] = {}
        if kind in ("complete", "infinite", "not-a-number"):
            # Not finite: Optuna's value inf; the store's inf, or NaN (SQLite keeps it as NULL;
            # PostgreSQL orders it above infinity). Neither ranks.
            value = score if kind == "complete" else math.inf
            state, end = TrialState.COMPLETE, TrialEnd.COMPLETE
            values = {"value": value}
            stored = math.nan if kind == "not-a-number" else value
            row.update(best_value=stored, final_value=stored, epochs=3)
        elif kind == "pruned":
            # A partial score below every COMPLETE one: it must not rank.
            state, end = TrialState.PRUNED, TrialEnd.PRUNED
            values = {"intermediate_values": {1: 0.5}}
            row.update(best_value=0.5, epochs=1)
        elif kind in ("failed", "retired"):
            state = TrialState.FAIL
            why = next(retired) if kind == "retired" else None
            end = TrialEnd.of_retired(why) if why else TrialEnd.FAILED
            attrs[keys.FAIL_REASON] = "boom" if why is None else "cut short"
            if why is not None:
                attrs.update({keys.REQUEUED: True, keys.RETIRED_BECAUSE: why.value})
            row.update(best_value=0.25, epochs=1, error=attrs[keys.FAIL_REASON], retired=why)
        else:
            state = TrialState.RUNNING if kind == "running" else TrialState.WAITING
            end = None
        made.append(
            optuna.trial.create_trial(
                state=state,
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                **values,
            )
        )
        if state != TrialState.WAITING:  # the store sees a trial once it runs
            rows.append((number, state, end, row, seed_values))
    study.add_trials(made)
    for number, state, end, row, seed_values in rows:
        store.upsert_trial(NAME, number, state=state, end_reason=end, **row)
        if state == TrialState.COMPLETE:
            runs = [
                RunRecord(s, "budget", 3, 3, v, layer_path="cpu_extension")
                for s, v in zip(SEEDS, seed_values, strict=True)
            ]
            store.record_runs(NAME, number, runs)
    store.register_study(OTHER, spec={}, versions={}, direction="minimize", metric="bpc")
    for number, state in enumerate([TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]):
        why = Retired.DRIVER_LOST if number == 2 else None
        store.upsert_trial(OTHER, number, state=state, best_value=1.0, retired=why)
    return Built(url, store, study)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The study, once per backend (a fresh PostgreSQL database, dropped after)."""
    if request.param == "sqlite":
        made = _write(f"sqlite:///{tmp_path_factory.mktemp('read-sql') / 'study.db'}")
        yield made
        made.store.close()
        return
    admin = request.getfixturevalue("pg_admin_engine")  # fails in CI when PostgreSQL is down
    database = f"zs_test_{uuid.uuid4().hex[:16]}"
    create_database(admin, database)
    try:
        made = _write(pg_url(database))
        yield made
        made.store.close()
    finally:
        drop_database(admin, database)


def test_the_ranking_is_optunas(built: Built) -> None:
    everything = ostudy.best_complete(built.study, top=N_TRIALS)
    values = [t.value for t in everything]
    assert len(values) > len(set(values)) + 50, "the study holds many ties"
    for top in (1, 3, SHOWN, 37, N_TRIALS):
        ranked = built.store.ranked_complete(NAME, top)
        expected = ostudy.best_complete(built.study, top=top)
        assert ranked == [t.number for t in expected], top
        frame = built.store.trials_frame(NAME, numbers=ranked).set_index(Col.NUMBER)
        assert [frame.loc[n, Col.BEST_VALUE] for n in ranked] == [t.value for t in expected]
    assert built.store.ranked_complete(NAME, 0) == []


def test_the_counts_by_state_are_optunas(built: Built) -> None:
    counts = built.store.trial_counts(NAME)
    by_state = counts.groupby(Col.STATE)["trials"].sum().to_dict()
    optunas = {s.name: n for s, n in ostudy.state_counts(built.study).items() if n}
    assert optunas.pop(TrialState.WAITING.name) == 4  # only Optuna holds a trial not yet run
    assert by_state == optunas
    assert int(counts["trials"].sum()) == N_TRIALS - 4


def test_the_words_count_what_every_row_said(built: Built) -> None:
    """status's and list's counts (kinds: COMPLETE, ..., interrupted, driver lost, cut off)
    from the groups equal those read from every trial's row, per study."""
    everything = built.store.trial_counts()
    assert set(everything[Col.STUDY]) == {NAME, OTHER}
    for name in (NAME, OTHER):
        rows = Counter(FailureWords(built.store.trials_frame(name)).kinds())
        assert kind_counts(everything[everything[Col.STUDY] == name]) == dict(rows)
        assert kind_counts(built.store.trial_counts(name)) == dict(rows)
    words = kind_counts(built.store.trial_counts(NAME))
    assert words is not None
    assert words["interrupted"] == words["driver lost"] == words["cut off"] == 8


def test_export_provenance_is_what_optunas_trials_said(built: Built) -> None:
    expected = ostudy.best_complete(built.study, top=12)
    exported = best_configs(built.store, NAME, top=12)
    assert [p["trial_number"] for _, p in exported] == [t.number for t in expected]
    for (config, provenance), trial in zip(exported, expected, strict=True):
        assert provenance["value"] == trial.value
        assert provenance["seeds"] == trial.user_attrs[keys.SEEDS]
        assert provenance["seed_values"] == trial.user_attrs[keys.SEED_VALUES]
        assert provenance["params"] == trial.params
        assert config.zoneout_cell == trial.params["zoneout_cell"]
        assert config.seed == SEEDS[0] and config.threads == 2


def test_the_rows_asked_for_are_the_full_frames_rows(built: Built) -> None:
    store = built.store
    full = store.trials_frame(NAME)
    numbers = [*store.ranked_complete(NAME, SHOWN), *store.latest_numbers(NAME, SHOWN)]
    part = store.trials_frame(NAME, numbers=numbers)
    expected = full[full[Col.NUMBER].isin(numbers)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    assert store.latest_numbers(NAME, SHOWN) == sorted(full[Col.NUMBER], reverse=True)[:SHOWN]
    assert set(store.trial_nodes(NAME, 5)) == set(full["node"].dropna())
    runs = store.runs_frame(NAME)
    ranked = store.ranked_complete(NAME, 5)
    pd.testing.assert_frame_equal(
        store.runs_frame(NAME, numbers=ranked),
        runs[runs[Col.NUMBER].isin(ranked)].reset_index(drop=True),
    )
    paths = store.run_layer_paths(NAME)
    for column in (Col.LAYER_PATH, Col.LAYER_FALLBACK):
        assert paths[column].tolist() == runs[column].tolist()


def test_status_summarises_a_large_study(built: Built, tmp_path: Path) -> None:
    assert N_TRIALS > SUMMARY_ABOVE
    runner = CliRunner()
    result = runner.invoke(app, ["status", NAME, "--storage", built.url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    words = kind_counts(built.store.trial_counts(NAME))
    assert words is not None
    assert lines[0] == (
        f"study {NAME}: {N_TRIALS - 4} trials: {words['COMPLETE']} COMPLETE, "
        f"{words['PRUNED']} PRUNED, {words['FAIL']} FAIL, 8 interrupted, 8 driver lost, "
        f"8 cut off, 6 RUNNING"
    )
    best = [t.number for t in ostudy.best_complete(built.study, top=SHOWN)]
    at = next(i for i, line in enumerate(lines) if "best by score" in line)
    shown = [int(line.split()[0]) for line in lines[at + 3 : at + 3 + SHOWN]]
    assert shown == best
    latest = sorted(t.number for t in ostudy.trials(built.study) if t.state != TrialState.WAITING)
    at = next(i for i, line in enumerate(lines) if "latest" in line)
    assert [int(line.split()[0]) for line in lines[at + 3 : at + 3 + SHOWN]] == latest[-SHOWN:]
    left_out = N_TRIALS - 4 - len(set(best) | set(latest[-SHOWN:]))
    assert f"{left_out} of {N_TRIALS - 4} trials not shown" in result.output
    assert "--all" in lines[-1] + lines[-2]
    every = runner.invoke(
        app, ["status", NAME, "--all", "--storage", built.url], catch_exceptions=False
    )
    assert every.exit_code == 0, every.output
    rows = [
        line for line in every.output.splitlines() if line.split()[:1] and line.split()[0].isdigit()
    ]
    assert [int(line.split()[0]) for line in rows] == latest


# ------------------------------------------------------------------ without a database
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"sampler": {"name": "tpe", "seed": 3}},
        {"points": [{"zoneout_cell": 0.0, "zoneout_hidden": 0.0}]},
        {
            "promote": {
                "study": "small",
                "top": 2,
                "points": [{"zoneout_cell": 0.5, "zoneout_hidden": 0.1}],
            }
        },
        {
            "sampler": {"name": "grid"},
            "search": {"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.5]}},
            "points": [{"zoneout_cell": 0.5}],
        },
    ],
    ids=["random", "tpe", "points", "promote", "grid"],
)
def test_lists_plan_is_the_spec_models(changes: dict[str, Any], tmp_path: Path) -> None:
    """`list` reads a stored spec's plan without the spec's model (which loads torch) where the
    snapshot says it: the same number the model gives."""
    from study.cli._status import _plan_size
    from study.plan import StudyPlan
    from study.spec import validate_spec
    from tests.support import tiny_ptb_spec

    spec = validate_spec({**tiny_ptb_spec("plan", tmp_path, n_trials=7), **changes})
    stored = spec.model_dump(mode="json")  # what `run` stores (study.runner)
    if spec.promote is not None:
        expected = spec.promote.top + len(spec.promote.points)
    else:
        expected = StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points).size
    assert _plan_size(stored) == expected


def test_groups_without_the_retired_column_are_not_counted() -> None:
    """A database from before the ``retired`` column says a retired trial only in its error
    text: its groups cannot be counted in words (status and list then read every row)."""
    groups = pd.DataFrame({Col.STATE: ["COMPLETE", "FAIL"], "trials": [3, 2]})
    assert kind_counts(groups) is None
    with_column = groups.assign(**{Col.RETIRED: [None, "interrupted"]})
    assert kind_counts(with_column) == {"COMPLETE": 3, "interrupted": 2}
