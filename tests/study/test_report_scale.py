"""`report` at scale (issue 25) and read-only (issue 24).

The report reads every fact from the store: importance's input, each complete trial's
parameters and score, is taken from the store's trials frame instead of loading every Optuna
trial, so it must be exactly what the Optuna study holds (checked here on a study built like
the service builds one, and on the committed databases the service wrote). `report` writes
nothing into the database unless asked (`--save-to-study`); `run` keeps saving its figures.
A computed importance is kept in a cache and read back by the next report of the same trials.

The databases are built without Ray: Optuna trials made with ``create_trial`` and the store's
rows with the fields ``study.callbacks.StoreCallback`` writes.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

import dashboards as d
from dashboards import _analysis
from dashboards._importance import IMPORTANCE_MIN_COMPLETE, parameter_importance
from study import optuna_study
from study.cli import app
from study.cli._report import write_report
from study.report import complete_trials, load_study_frames, write_study_report
from study.space import distributions
from study.spec import validate_spec
from study.store import RunRecord, Store

REPO = Path(__file__).resolve().parents[2]
COMMITTED = [
    REPO / "docs/results/ptb-char/midscale/midscale.db",
    REPO / "docs/results/ptb-char/ladder/ladder.db",
]
NAME = "tiny-scale"
SPEC: dict[str, Any] = {
    "name": NAME,
    "base": {"task": "ptb-char", "hidden_size": 8, "epochs": 3, "seed": 0},
    "search": {
        "zoneout_cell": {"type": "float", "low": 0.0, "high": 1.0},
        "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
        "hidden_size": {"type": "int", "low": 8, "high": 64, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    },
    "sampler": {"name": "random", "seed": 0},
    "n_trials": 40,
    "repeats": 2,
}


def _sha256(path: Path) -> str:
    """The database file's hash, with what its write-ahead log holds: a write a connection of
    this process made may sit in the -wal file until the last connection closes."""
    digest = hashlib.sha256(path.read_bytes())
    wal = path.with_name(path.name + "-wal")
    digest.update(wal.read_bytes() if wal.exists() else b"")
    return digest.hexdigest()


def _build(directory: Path, n: int = 30) -> str:
    """A finished study of ``n`` configurations (two seeds each): most complete, some pruned
    at epoch 1, one failed; the Optuna study and the store's rows as the service writes them."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{directory / 'tiny.db'}"
    spec = validate_spec(SPEC, "test")
    dists = distributions(spec)
    rng = np.random.default_rng(3)
    study = optuna.create_study(study_name=NAME, storage=url, direction="minimize")
    made = []
    rows = []
    for number in range(n):
        params = {
            "zoneout_cell": float(rng.uniform(0, 1)),
            "zoneout_hidden": float(rng.integers(0, 11) * 0.05),
            "hidden_size": int(rng.integers(8, 65)),
            "optimizer": str(rng.choice(["adam", "sgd"])),
        }
        base = 1.3 + (params["zoneout_cell"] - 0.5) ** 2 + 0.3 * params["zoneout_hidden"]
        state = TrialState.PRUNED if number % 7 == 3 else TrialState.COMPLETE
        state = TrialState.FAIL if number == 5 else state
        reached = 1 if state == TrialState.PRUNED else 3
        curves = [
            [base + 0.5 / epoch + 0.01 * seed + float(rng.normal(0, 0.01)) for epoch in (1, 2, 3)]
            for seed in (0, 1)
        ]
        seed_best = [min(c[:reached]) for c in curves]
        score = sum(seed_best) / 2
        value = score if state == TrialState.COMPLETE else None
        made.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                state=state,
                intermediate_values={e: score for e in range(1, reached + 1)},
                user_attrs={"seeds": [0, 1], "seed_values": seed_best},
            )
        )
        rows.append((number, params, state, reached, curves, seed_best, score))
    study.add_trials(made)
    with Store.open(url) as store:
        store.register_study(
            NAME,
            spec=SPEC,
            versions={"python": "3"},
            direction="minimize",
            metric="bpc",
            optuna_study_id=optuna_study.study_id(study),
        )
        for number, params, state, reached, curves, seed_best, score in rows:
            store.upsert_trial(NAME, number, params=params, seed=0, state="RUNNING")
            for seed, curve in enumerate(curves):
                for epoch in range(1, reached + 1):
                    store.record_epoch(
                        NAME,
                        number,
                        epoch,
                        seed=seed,
                        train_loss=curve[epoch - 1],
                        valid_loss=curve[epoch - 1],
                        valid_metric=curve[epoch - 1],
                        tokens_per_second=1e4,
                        seconds=1.0,
                    )
            failed = state == TrialState.FAIL
            store.upsert_trial(
                NAME,
                number,
                state=state.name,
                end_reason={"COMPLETE": "complete", "PRUNED": "pruned"}.get(state.name, "failed"),
                best_value=score,
                final_value=score,
                epochs=reached,
                error="ValueError: boom" if failed else None,
            )
            ended = {"COMPLETE": "budget", "PRUNED": "pruned"}.get(state.name, "failed")
            store.record_runs(
                NAME,
                number,
                [
                    RunRecord(seed, ended, reached, int(np.argmin(c[:reached])) + 1, best)
                    for seed, (c, best) in enumerate(zip(curves, seed_best, strict=True))
                ],
            )
        store.finish_study(NAME, "finished")
    return url


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' importance cache in the test's own directory, not the user's."""
    monkeypatch.setenv("ZONEOUT_CACHE_DIR", str(tmp_path / "user-cache"))


def _copy(url: str, directory: Path) -> tuple[str, Path]:
    """A copy of the database behind ``url`` (or of a file), so one test's writes stay its own."""
    source = url.removeprefix("sqlite:///")
    target = directory / Path(source).name
    with (
        sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src,
        sqlite3.connect(target) as dst,
    ):
        src.backup(dst)
    # The copy is in rollback-journal mode; the store's first connection switches it to WAL
    # (the mode the service's databases are in), before any hash is taken.
    Store(f"sqlite:///{target}").close()
    return f"sqlite:///{target}", target


def _assert_same_complete_trials(url: str, name: str) -> int:
    real = optuna_study.load_study(url, name)
    expected = [
        t
        for t in real.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and t.value is not None
    ]
    got = complete_trials(load_study_frames(url, name))
    assert got is not None
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.value == theirs.value  # exactly: the score the searcher told Optuna
        assert mine.params == theirs.params
        assert [type(v) for v in mine.params.values()] == [
            type(theirs.params[k]) for k in mine.params
        ]
        assert mine.distributions == theirs.distributions
    return len(got)


def test_importance_trials_from_the_store_are_optunas_own(tiny: str) -> None:
    n = _assert_same_complete_trials(tiny, NAME)
    assert n >= IMPORTANCE_MIN_COMPLETE
    real = optuna_study.load_study(tiny, NAME)
    from_store = complete_trials(load_study_frames(tiny, NAME))
    imp = parameter_importance(from_store)
    assert imp.importances and imp.n_complete == n
    assert imp == parameter_importance(real)  # the same numbers, not approximately


@pytest.mark.parametrize("database", COMMITTED, ids=lambda p: p.name)
def test_the_committed_studies_give_the_same_trials(database: Path, tmp_path: Path) -> None:
    url, _ = _copy(f"sqlite:///{database}", tmp_path)
    with Store(url) as store:
        names = list(store.studies_frame()["name"])
    assert names
    for name in names:
        _assert_same_complete_trials(url, name)


def test_a_frame_that_cannot_stand_in_falls_back_to_the_optuna_study(tiny: str) -> None:
    frames = load_study_frames(tiny, NAME)
    complete = frames.trials["state"] == "COMPLETE"
    number = int(frames.trials.loc[complete, "number"].iloc[0])
    broken = frames.trials.copy()
    broken.loc[broken["number"] == number, "best_value"] = math.nan
    assert complete_trials(replace(frames, trials=broken)) is None
    assert complete_trials(replace(frames, spec=None)) is None


def test_report_leaves_the_database_byte_identical(tiny: str, tmp_path: Path) -> None:
    url, database = _copy(tiny, tmp_path)
    before = _sha256(database)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", NAME, "--storage", url, "--out", str(out), "--no-png"]
    )
    assert result.exit_code == 0, result.output
    assert (out / f"{NAME}-report.html").is_file()
    assert "Optuna study" not in result.output  # nothing saved
    assert _sha256(database) == before
    assert list((tmp_path / "user-cache").glob("importance-*.json"))  # kept outside it

    # On request the figures and the summary go into the Optuna study, as before.
    result = CliRunner().invoke(
        app,
        ["report", NAME, "--storage", url, "--out", str(out), "--no-png", "--save-to-study"],
    )
    assert result.exit_code == 0, result.output
    assert "saved into the Optuna study" in " ".join(result.output.split())
    assert _sha256(database) != before


def test_run_still_saves_its_report_into_the_study(tiny: str, tmp_path: Path) -> None:
    from optuna_dashboard._note import get_note

    url, _ = _copy(tiny, tmp_path)
    analysis = write_report(url, NAME, tmp_path / "report", png=False)  # as `run` calls it
    assert analysis is not None
    note = get_note(optuna_study.load_study(url, NAME))
    assert f"## Study {NAME}" in note


def test_importance_is_kept_and_read_back(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = write_study_report(
        tiny, NAME, tmp_path / "a", png=False, save_to_optuna=False, importance_cache=cache
    )
    assert first.analysis is not None and first.analysis.importance.importances
    assert len(list(cache.glob("importance-*.json"))) == 1

    def not_again(*_: object, **__: object) -> d.ParamImportance:
        raise AssertionError("importance computed again")

    monkeypatch.setattr(_analysis, "parameter_importance", not_again)
    again = write_study_report(
        tiny, NAME, tmp_path / "b", png=False, save_to_optuna=False, importance_cache=cache
    )
    assert again.analysis is not None
    assert again.analysis.importance == first.analysis.importance
    summary = (tmp_path / "b" / f"{NAME}-summary.md").read_text(encoding="utf-8")
    assert summary == (tmp_path / "a" / f"{NAME}-summary.md").read_text(encoding="utf-8")

    # Other trials (one score changed) are another key: computed, not read back.
    url, _ = _copy(tiny, tmp_path)
    with Store(url) as store:
        store.upsert_trial(NAME, 0, best_value=0.5)
    with pytest.raises(AssertionError, match="computed again"):
        write_study_report(
            url, NAME, tmp_path / "c", png=False, save_to_optuna=False, importance_cache=cache
        )
