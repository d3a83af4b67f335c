"""Tests of study.store on SQLite and PostgreSQL (see conftest.py for ``store_url``)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards import RUNS_FRAME, retired_kinds
from study.plan import Retired, TrialEnd
from study.store import (
    TRIAL_FIELDS,
    VERSION_TABLE,
    RunRecord,
    Store,
    StoreError,
    alembic_config,
    create_engine_for,
    current_revision,
    default_storage_url,
    head_revision,
    mask_url,
    normalize_url,
    scrub_secrets,
    upgrade,
)
from study.store._models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = {"name": "s", "storage": "sqlite:///x.db", "search": {"zoneout_cell": [0.0, 0.5]}}
VERSIONS = {"zoneout-study": "0.1.0", "torch": "2.2"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _open(url: str, name: str = "s", direction: str = "minimize") -> Store:
    store = Store.open(url)
    store.register_study(
        name, spec=SPEC, versions=VERSIONS, direction=direction, metric="valid_loss"
    )
    return store


def _epoch(store: Store, number: int, epoch: int, seed: int | None = None, loss: float = 1.0):
    return store.record_epoch(
        "s",
        number,
        epoch,
        train_loss=loss,
        valid_loss=loss + 0.1,
        valid_metric=loss + 0.2,
        tokens_per_second=1000.0,
        seconds=2.5,
        seed=seed,
    )


def _table_names(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---------------------------------------------------------------- schema / Alembic
def test_upgrade_idempotent_and_head(store_url: str) -> None:
    assert current_revision(store_url) is None
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()
    upgrade(store_url)  # second run is a no-op
    Store.open(store_url).close()
    assert current_revision(store_url) == head_revision()
    tables = _table_names(store_url)
    assert {"zs_studies", "zs_trials", "zs_epochs", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # Optuna's version table is left alone


def test_concurrent_upgrades(store_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(store_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert current_revision(store_url) == head_revision()


def test_store_init_does_not_create_schema(store_url: str) -> None:
    Store(store_url).close()
    assert current_revision(store_url) is None
    assert not {t for t in _table_names(store_url) if t.startswith("zs_")}


def test_migration_matches_models(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine_for(store_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, _parents: (
                        type_ != "table" or (name.startswith("zs_") and name != VERSION_TABLE)
                    ),
                },
            )
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_a_fresh_schema_has_the_retired_column(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine_for(store_url)
    try:
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("zs_trials")}
    finally:
        engine.dispose()
    assert columns["retired"]["nullable"]
    assert isinstance(columns["retired"]["type"], sa.String)
    assert columns["retired"]["type"].length == 32
    assert "retired" in TRIAL_FIELDS
    assert all(len(kind.value) <= 32 for kind in Retired)


# The errors older versions wrote for the trials they retired (before zs_trials.retired), as
# migration 0002 and dashboards.retired_kinds read them: literals, not today's constants.
OLD_INTERRUPTED = "interrupted: the driver stopped before the trial finished"
OLD_DRIVER_LOST = "driver lost"
OLD_CUT_OFF = "cut off by the infrastructure: "
OLD_ROWS = {  # number: (state, error, what the backfill makes of it)
    0: ("COMPLETE", None, None),
    1: ("FAIL", OLD_INTERRUPTED, "interrupted"),
    2: ("FAIL", f"{OLD_INTERRUPTED} (the disk is full)", "interrupted"),
    3: ("FAIL", OLD_DRIVER_LOST, "driver_lost"),
    4: ("FAIL", f"{OLD_CUT_OFF}RayActorError: the actor died", "infrastructure"),
    5: ("FAIL", "ValueError: 2000 tokens are too few", None),
    6: ("FAIL", f"{OLD_DRIVER_LOST} (and more)", None),  # the reaper's text is whole, or not
    7: ("FAIL", OLD_INTERRUPTED.upper(), None),  # compared as written (not SQL LIKE)
    8: ("RUNNING", OLD_INTERRUPTED, None),  # only FAIL rows were retired
    9: ("FAIL", None, None),
}


def _values(column: pd.Series) -> list[object]:
    """A frame's column as a list, a missing value (None or NaN, as pandas makes it) as None."""
    return [None if pd.isna(value) else value for value in column]


def _old_database(url: str) -> None:
    """A store at revision 0001 (before zs_trials.retired) holding study 's' with OLD_ROWS."""
    upgrade(url, "0001")
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    engine = create_engine_for(url)
    try:
        with engine.begin() as conn:
            meta = sa.MetaData()
            meta.reflect(conn, only=["zs_studies", "zs_trials"])
            assert "retired" not in meta.tables["zs_trials"].c
            conn.execute(
                meta.tables["zs_studies"].insert(),
                [
                    {
                        "id": 1,
                        "name": "s",
                        "direction": "minimize",
                        "metric": "bpc",
                        "spec": {},
                        "versions": {},
                        "status": "interrupted",
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            conn.execute(
                meta.tables["zs_trials"].insert(),
                [
                    {"study_id": 1, "number": n, "state": state, "error": error, "updated_at": now}
                    for n, (state, error, _) in OLD_ROWS.items()
                ],
            )
    finally:
        engine.dispose()


def test_an_old_store_is_read_by_its_error_text_then_upgraded_and_backfilled(
    store_url: str,
) -> None:
    _old_database(store_url)
    expected = {n: kind for n, (_, _, kind) in OLD_ROWS.items()}
    # A command that only reads never migrates: the frame has no `retired`, and readers fall
    # back to the error text, by the rule the backfill follows.
    with Store(store_url) as store:
        frame = store.trials_frame("s")
    assert current_revision(store_url) == "0001"
    assert "retired" not in frame.columns and "error" in frame.columns
    assert dict(zip(frame["number"], retired_kinds(frame), strict=True)) == expected

    with Store.open(store_url) as store:  # a run upgrades it
        assert current_revision(store_url) == head_revision()
        frame = store.trials_frame("s")
        assert dict(zip(frame["number"], _values(frame["retired"]), strict=True)) == expected
        assert dict(zip(frame["number"], retired_kinds(frame), strict=True)) == expected
        # The same Store keeps reading after the upgrade, and writes the new column.
        store.upsert_trial("s", 5, retired=Retired.INFRASTRUCTURE.value)
        assert store.trials_frame("s").set_index("number").loc[5, "retired"] == "infrastructure"


MIDSCALE = REPO_ROOT / "docs" / "results" / "ptb-char" / "midscale" / "midscale.db"


def test_the_committed_midscale_database_upgrades_on_a_copy(tmp_path: Path) -> None:
    """A real database taken back to an older version (revision 0001, as the mid-scale study
    wrote it before `db upgrade`): a copy upgrades, and its three Figure-3 trials cut off by
    Ctrl-C are 'interrupted' again (read from their error text). The committed file is never
    opened."""
    from alembic import command

    copy = tmp_path / "midscale.db"
    with sqlite3.connect(f"file:{MIDSCALE}?mode=ro", uri=True) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)  # a consistent copy even while a study writes the file
    url = f"sqlite:///{copy}"
    command.downgrade(alembic_config(url), "0001")
    assert current_revision(url) == "0001"
    with Store.open(url) as store:
        retired = {
            (name, int(number)): kind
            # The 26-epoch studies; the converged follow-up's are checked by their own test.
            for name in store.studies_frame()["name"]
            if name.startswith("ptb-char-midscale-")
            for number, kind in store.trials_frame(name)[["number", "retired"]].itertuples(
                index=False
            )
            if pd.notna(kind)
        }
    assert current_revision(url) == head_revision()
    figure3 = "ptb-char-midscale-figure3"
    assert retired == {(figure3, 5): "interrupted", (figure3, 9): "interrupted",
                       (figure3, 11): "interrupted"}  # fmt: skip


# Rows of a store at revision 0003 (before zs_trials.end_reason), with what migration 0004 fills
# in: number -> (state, error, retired, each seed's zs_runs.ended, the end_reason).
DIVERGED_ERROR = "trials.trainable.TrialDiverged: training loss became nan"
END_ROWS: dict[int, tuple[str, str | None, str | None, tuple[str, ...], str | None]] = {
    0: ("COMPLETE", None, None, ("budget", "converged"), "complete"),
    1: ("PRUNED", None, None, ("pruned",), "pruned"),
    2: ("RUNNING", None, None, (), None),
    3: ("FAIL", OLD_INTERRUPTED, "interrupted", ("interrupted",), "interrupted"),
    4: ("FAIL", OLD_DRIVER_LOST, "driver_lost", (), "driver_lost"),
    5: ("FAIL", f"{OLD_CUT_OFF}RayActorError: died", "infrastructure", (), "infrastructure"),
    6: ("FAIL", "RuntimeError: the loss exploded", None, ("diverged", "diverged"), "diverged"),
    7: ("FAIL", f"{DIVERGED_ERROR}; ValueError: bad", None, ("diverged", "failed"), "failed"),
    8: ("FAIL", DIVERGED_ERROR, None, (), "diverged"),  # no runs rows: the error names it
    9: ("FAIL", f"{DIVERGED_ERROR}; ValueError: bad", None, (), "failed"),
    10: ("FAIL", "ValueError: bad", None, (), "failed"),
    11: ("FAIL", None, None, (), "failed"),
    12: ("FAIL", "a seed has no finite validation value", None, ("budget",), "failed"),
    # Not retired by the fact (a row written with the sentence but without `retired`): failed.
    13: ("FAIL", OLD_INTERRUPTED, None, (), "failed"),
}


def _store_at_0003(url: str) -> None:
    upgrade(url, "0003")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    engine = create_engine_for(url)
    try:
        with engine.begin() as conn:
            meta = sa.MetaData()
            meta.reflect(conn, only=["zs_studies", "zs_trials", "zs_runs"])
            assert "end_reason" not in meta.tables["zs_trials"].c
            conn.execute(
                meta.tables["zs_studies"].insert(),
                [
                    {
                        "id": 1,
                        "name": "s",
                        "direction": "minimize",
                        "metric": "bpc",
                        "spec": {},
                        "versions": {},
                        "status": "interrupted",
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            for n, (state, error, retired, ends, _) in END_ROWS.items():
                conn.execute(
                    meta.tables["zs_trials"].insert(),
                    [
                        {
                            "id": n + 1,
                            "study_id": 1,
                            "number": n,
                            "state": state,
                            "error": error,
                            "retired": retired,
                            "updated_at": now,
                        }
                    ],
                )
                if ends:
                    conn.execute(
                        meta.tables["zs_runs"].insert(),
                        [
                            {"trial_id": n + 1, "seed": seed, "ended": ended}
                            for seed, ended in enumerate(ends)
                        ],
                    )
    finally:
        engine.dispose()


def _ends_of(frame: pd.DataFrame, ends: pd.Series) -> dict[int, str | None]:
    return {
        int(n): (end.value if end is not None else None)
        for n, end in zip(frame["number"], ends, strict=True)
    }


def test_migration_0004_fills_each_trials_end_from_its_state_retired_and_runs(
    store_url: str,
) -> None:
    from study.failures import trial_ends

    _store_at_0003(store_url)
    expected = {n: end for n, (*_, end) in END_ROWS.items()}
    # Read without migrating: no end_reason column; the reader derives the same ends, except
    # that a trials frame has no runs (trial 6 diverged by its runs, not by its error text).
    with Store(store_url) as store:
        frame = store.trials_frame("s")
    assert "end_reason" not in frame.columns
    assert _ends_of(frame, trial_ends(frame)) == {**expected, 6: "failed"}

    with Store.open(store_url) as store:  # a run upgrades it
        assert current_revision(store_url) == head_revision()
        frame = store.trials_frame("s")
        assert dict(zip(frame["number"], _values(frame["end_reason"]), strict=True)) == expected
        assert _ends_of(frame, trial_ends(frame)) == expected
        columns = list(frame.columns)
        assert columns.index("retired") == columns.index("error") + 1
        assert columns.index("end_reason") == columns.index("retired") + 1
        # The same Store writes the new column.
        store.upsert_trial("s", 2, state="COMPLETE", end_reason=TrialEnd.COMPLETE)
        assert store.trials_frame("s").set_index("number").loc[2, "end_reason"] == "complete"

    from alembic import command

    command.downgrade(alembic_config(store_url), "0003")  # the column goes, nothing else
    with Store(store_url) as store:
        frame = store.trials_frame("s")
    assert "end_reason" not in frame.columns
    assert _values(frame["retired"]) == [retired for (_, _, retired, _, _) in END_ROWS.values()]
    upgrade(store_url)
    with Store(store_url) as store:
        again = store.trials_frame("s")
    assert dict(zip(again["number"], _values(again["end_reason"]), strict=True)) == {
        **expected,
        2: "complete",  # RUNNING, its end NULL: refilled by its state, as any old row
    }


@pytest.mark.parametrize("revision", ["0003", "0001"])
def test_the_midscale_database_gets_its_interrupted_and_complete_trials_ends(
    tmp_path: Path, revision: str
) -> None:
    """The committed mid-scale database (its three Figure-3 trials cut off by Ctrl-C), copied
    with SQLite's backup (a study may be writing it), taken back to a revision before
    ``end_reason`` and upgraded: those trials end 'interrupted', the others 'complete'."""

    from alembic import command

    from study.failures import summarize_failures, trial_ends

    copy = tmp_path / "midscale.db"
    with sqlite3.connect(f"file:{MIDSCALE}?mode=ro", uri=True) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    url = f"sqlite:///{copy}"
    command.downgrade(alembic_config(url), revision)
    assert current_revision(url) == revision
    figure3 = "ptb-char-midscale-figure3"
    expected = {n: "interrupted" if n in (5, 9, 11) else "complete" for n in range(15)}
    with Store(url) as store:  # read-only: derived from what the database has
        frame = store.trials_frame(figure3)
    assert "end_reason" not in frame.columns
    derived = {int(n): e.value for n, e in zip(frame["number"], trial_ends(frame), strict=True)}
    assert derived == expected
    with Store.open(url) as store:
        frame = store.trials_frame(figure3)
    assert current_revision(url) == head_revision()
    stored = dict(zip(frame["number"].astype(int), frame["end_reason"], strict=True))
    assert stored == expected
    summary = summarize_failures(frame)
    assert (summary.complete, summary.interrupted, summary.failed) == (12, 3, 0)


@pytest.mark.parametrize("store_first", [True, False], ids=["store-first", "optuna-first"])
def test_optuna_coexistence(store_url: str, store_first: bool) -> None:
    url = normalize_url(store_url)

    def optuna_storage() -> optuna.storages.RDBStorage:
        storage = optuna.storages.RDBStorage(url)
        storages.append(storage)
        return storage

    storages: list[optuna.storages.RDBStorage] = []
    if store_first:
        store = _open(url)
        optuna_study = optuna.create_study(
            study_name="s", storage=optuna_storage(), direction="minimize"
        )
    else:
        optuna_study = optuna.create_study(
            study_name="s", storage=optuna_storage(), direction="minimize"
        )
        store = _open(url)
    try:
        optuna_study.optimize(lambda t: t.suggest_float("zoneout_cell", 0.0, 0.5), n_trials=2)
        store.register_study(
            "s",
            spec=SPEC,
            versions=VERSIONS,
            direction="minimize",
            metric="valid_loss",
            optuna_study_id=optuna_study._study_id,
        )
        store.upsert_trial("s", 0, params=optuna_study.trials[0].params, state="COMPLETE")
        # both sides still work, each with its own version table
        upgrade(url)
        assert current_revision(url) == head_revision()
        loaded = optuna.load_study(study_name="s", storage=optuna_storage())
        assert len(loaded.trials) == 2
        tables = _table_names(url)
        assert {"studies", "trials", "alembic_version", VERSION_TABLE} <= tables
        frame = store.studies_frame()
        assert frame.loc[0, "optuna_study_id"] == optuna_study._study_id
        assert store.trials_frame("s")["param_zoneout_cell"].notna().all()
    finally:
        store.close()
        for storage in storages:
            storage.remove_session()
            storage.engine.dispose()


# ---------------------------------------------------------------- studies
def test_register_and_finish(store_url: str) -> None:
    with _open(store_url) as store:
        frame = store.studies_frame()
        assert list(frame["name"]) == ["s"]
        row = frame.iloc[0]
        assert (row["direction"], row["metric"], row["status"]) == (
            "minimize",
            "valid_loss",
            "running",
        )
        assert pd.isna(row["finished_at"])
        assert row["n_trials"] == 0
        assert row["created_at"].tzinfo is not None

        store.finish_study("s", "finished")
        row = store.studies_frame().iloc[0]
        assert row["status"] == "finished"
        assert not pd.isna(row["finished_at"])

        # re-registering resumes the study and refreshes the snapshot
        store.register_study(
            "s",
            spec={**SPEC, "extra": 1},
            versions={"torch": "2.3"},
            direction="minimize",
            metric="valid_loss",
        )
        row = store.studies_frame().iloc[0]
        assert row["status"] == "running"
        assert pd.isna(row["finished_at"])
        assert store.study_spec("s")["extra"] == 1
        assert len(store.studies_frame()) == 1

        for status in ("interrupted", "failed"):
            store.finish_study("s", status)
            assert store.studies_frame().iloc[0]["status"] == status
        with pytest.raises(ValueError):
            store.finish_study("s", "done")
        with pytest.raises(StoreError, match="unknown study"):
            store.finish_study("nope", "finished")
        with pytest.raises(StoreError, match="unknown study"):
            store.study_spec("nope")
        with pytest.raises(StoreError, match="unknown study"):
            store.upsert_trial("nope", 0, state="RUNNING")


def test_direction_mismatch(store_url: str) -> None:
    with _open(store_url) as store:
        with pytest.raises(StoreError, match="direction"):
            store.register_study(
                "s", spec=SPEC, versions=VERSIONS, direction="maximize", metric="valid_loss"
            )
        assert store.studies_frame().iloc[0]["direction"] == "minimize"
        # the same direction (any case, or an Optuna enum) is fine
        store.register_study(
            "s",
            spec=SPEC,
            versions=VERSIONS,
            direction=optuna.study.StudyDirection.MINIMIZE,
            metric="valid_loss",
        )
        with pytest.raises(ValueError):
            store.register_study("t", spec={}, versions={}, direction="up", metric="m")


def test_spec_snapshot_is_scrubbed(store_url: str) -> None:
    spec = {
        "storage": "postgresql+psycopg://alice:hunter2pw@db.example/studies",
        "ray": {"address": "auto", "auth_token": "tok-123456"},
        "nested": [{"password": "pw-abcdef"}],
        "data": {"unk_token": "<unk>", "tokens_per_second": 5},
    }
    with Store.open(store_url) as store:
        store.register_study("s", spec=spec, versions={}, direction="minimize", metric="m")
        got = store.study_spec("s")
        with store.engine.connect() as conn:
            raw = conn.execute(sa.text("SELECT CAST(spec AS TEXT) FROM zs_studies")).scalar_one()
    for secret in ("hunter2pw", "tok-123456", "pw-abcdef"):
        assert secret not in json.dumps(got)
        assert secret not in raw
    assert got["storage"] == "postgresql+psycopg://alice:***@db.example/studies"
    assert got["data"] == {"unk_token": "<unk>", "tokens_per_second": 5}


# ---------------------------------------------------------------- trials and epochs
def test_upsert_trial_partial_updates(store_url: str) -> None:
    with _open(store_url) as store:
        started = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        store.upsert_trial(
            "s",
            3,
            ray_trial_id="abc_00003",
            params={"zoneout_cell": 0.25, "zoneout_hidden": 0.05},
            seed=7,
            node="10.0.0.5",
            config={"lr": 0.001, "storage": "postgresql://u:secretpw@h/db"},
            started_at=started,
        )
        row = store.trials_frame("s").iloc[0]
        assert row["state"] == "RUNNING"  # default for a new trial
        assert row["ray_trial_id"] == "abc_00003"
        assert row["started_at"] == pd.Timestamp("2024-05-01 10:00", tz="UTC")
        assert "secretpw" not in json.dumps(row["config"])

        store.upsert_trial("s", 3, state="COMPLETE", best_value=1.25, epochs=4, wall_seconds=9.5)
        store.upsert_trial("s", 3, final_value=1.3, finished_at=1_700_000_000.0)
        frame = store.trials_frame("s")
        assert len(frame) == 1
        row = frame.iloc[0]
        assert row["state"] == "COMPLETE"
        assert row["ray_trial_id"] == "abc_00003"  # untouched by later partial updates
        assert row["seed"] == 7
        assert row["node"] == "10.0.0.5"
        assert (row["best_value"], row["final_value"], row["epochs"]) == (1.25, 1.3, 4)
        assert row["param_zoneout_cell"] == 0.25
        assert row["finished_at"] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")

        store.upsert_trial("s", 3, node=None, state="fail", error="CUDA out of memory")
        row = store.trials_frame("s").iloc[0]
        assert row["node"] is None
        assert (row["state"], row["error"]) == ("FAIL", "CUDA out of memory")

        with pytest.raises(TypeError, match="unknown field"):
            store.upsert_trial("s", 3, colour="red")
        with pytest.raises(ValueError):
            store.upsert_trial("s", 3, state="DONE")
        assert store.studies_frame().iloc[0]["n_fail"] == 1


def test_retired_round_trip(store_url: str) -> None:
    with _open(store_url) as store:
        store.upsert_trial("s", 0, state="FAIL", error="interrupted", retired=Retired.INTERRUPTED)
        store.upsert_trial("s", 1, state="FAIL", error="lost", retired="driver_lost")
        store.upsert_trial("s", 2, state="FAIL", error="ValueError: bad")
        store.upsert_trial("s", 3, state="COMPLETE", best_value=1.0)
        frame = store.trials_frame("s")
        assert _values(frame["retired"]) == ["interrupted", "driver_lost", None, None]
        columns = list(frame.columns)
        assert columns.index("retired") == columns.index("error") + 1
        store.upsert_trial("s", 0, epochs=3)  # a partial update leaves it alone
        assert store.trials_frame("s")["retired"].iloc[0] == "interrupted"
        store.upsert_trial("s", 1, retired=None)
        assert pd.isna(store.trials_frame("s")["retired"].iloc[1])


def test_record_epoch_idempotent(store_url: str) -> None:
    with _open(store_url) as store:
        store.upsert_trial("s", 0, seed=11)
        assert _epoch(store, 0, 1, loss=2.0) is True
        assert _epoch(store, 0, 1, loss=1.5) is False  # re-sent: updated in place
        assert _epoch(store, 0, 1, seed=11, loss=1.7) is True  # another seed, another row
        assert _epoch(store, 0, 1, seed=11, loss=1.6) is False
        assert _epoch(store, 0, 2) is True
        assert _epoch(store, 5, 1) is True  # creates trial 5 (RUNNING) on the fly
        frame = store.epochs_frame("s")
        assert len(frame) == 4
        first = frame[(frame["number"] == 0) & (frame["seed"] == 0) & (frame["epoch"] == 1)]
        assert len(first) == 1
        assert first.iloc[0]["train_loss"] == 1.5
        seeded = frame[(frame["seed"] == 11)]
        assert seeded["train_loss"].tolist() == [1.6]
        assert store.trials_frame("s")["number"].tolist() == [0, 5]
        assert store.trials_frame("s").iloc[1]["state"] == "RUNNING"


def test_frames_shape_and_param_columns(store_url: str) -> None:
    with _open(store_url) as store:
        _open(store_url, name="other", direction="maximize").close()
        for n in range(3):
            store.upsert_trial(
                "s",
                n,
                params={"zoneout_cell": 0.1 * n, "zoneout_hidden": 0.05, "cell": "lstm"},
                state="COMPLETE" if n < 2 else "PRUNED",
            )
            for e in range(1, 4):
                _epoch(store, n, e, loss=3.0 - e)
        studies = store.studies_frame()
        assert list(studies.columns) == [
            "name",
            "direction",
            "metric",
            "status",
            "created_at",
            "finished_at",
            "optuna_study_id",
            "versions",
            "n_trials",
            "n_running",
            "n_complete",
            "n_pruned",
            "n_fail",
        ]
        s = studies.set_index("name")
        assert s.loc["s", "n_trials"] == 3
        assert (s.loc["s", "n_complete"], s.loc["s", "n_pruned"]) == (2, 1)
        assert s.loc["other", "n_trials"] == 0
        assert s.loc["other", "direction"] == "maximize"
        assert s.loc["s", "versions"] == VERSIONS

        trials = store.trials_frame("s")
        assert trials.shape[0] == 3
        assert {"param_zoneout_cell", "param_zoneout_hidden", "param_cell"} <= set(trials.columns)
        for field in ("number", *TRIAL_FIELDS):  # every column of the model
            assert field in trials.columns
        assert trials["param_zoneout_cell"].tolist() == pytest.approx([0.0, 0.1, 0.2])
        assert trials["number"].tolist() == [0, 1, 2]

        epochs = store.epochs_frame("s")
        assert epochs.shape[0] == 9
        assert list(epochs.columns) == [
            "study",
            "number",
            "seed",
            "epoch",
            "train_loss",
            "valid_loss",
            "valid_metric",
            "tokens_per_second",
            "seconds",
            "recorded_at",
        ]
        assert str(epochs["recorded_at"].dtype) == "datetime64[us, UTC]"
        assert store.epochs_frame("other").empty
        assert store.trials_frame("other").empty
        with pytest.raises(StoreError):
            store.trials_frame("nope")


def test_nan_handling(store_url: str) -> None:
    nan, inf = float("nan"), float("inf")
    with Store.open(store_url) as store:
        store.register_study(
            "s",
            spec={"lr": nan, "clip": [inf, 1.0], "ok": 2.0},
            versions={},
            direction="minimize",
            metric="valid_loss",
        )
        assert store.study_spec("s") == {"lr": None, "clip": [None, 1.0], "ok": 2.0}
        store.upsert_trial(
            "s",
            0,
            params={"zoneout_cell": nan},
            config={"x": -inf},
            best_value=nan,
            final_value=inf,
            wall_seconds=-inf,
        )
        row = store.trials_frame("s").iloc[0]
        assert pd.isna(row["best_value"])
        assert row["final_value"] == inf
        assert row["wall_seconds"] == -inf
        assert row["config"] == {"x": None}
        assert pd.isna(row["param_zoneout_cell"])
        store.record_epoch(
            "s",
            0,
            1,
            train_loss=nan,
            valid_loss=inf,
            valid_metric=None,
            tokens_per_second=nan,
            seconds=1.0,
        )
        ep = store.epochs_frame("s").iloc[0]
        assert pd.isna(ep["train_loss"]) and pd.isna(ep["valid_metric"])
        assert ep["valid_loss"] == inf


def test_timestamps_are_utc_aware(store_url: str) -> None:
    with _open(store_url) as store:
        before = pd.Timestamp.now(tz="UTC")
        store.upsert_trial("s", 0, started_at=dt.datetime(2024, 1, 1, 12, 0))  # naive = UTC
        row = store.trials_frame("s").iloc[0]
        assert row["started_at"] == pd.Timestamp("2024-01-01 12:00", tz="UTC")
        assert row["updated_at"] >= before - pd.Timedelta(seconds=5)
        assert str(row["updated_at"].tz) == "UTC"


# ---------------------------------------------------------------- engines
def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = create_engine_for(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_engine_options(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    legacy = postgres_url.replace("postgresql+psycopg://", "postgres://")
    for url in (plain, legacy):
        engine = create_engine_for(url)
        try:
            assert engine.dialect.driver == "psycopg"
            assert engine.pool._pre_ping
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_postgres_connection_loss_is_survived(
    postgres_url: str, pg_admin_engine: sa.Engine
) -> None:
    db = sa.engine.make_url(postgres_url).database
    with _open(postgres_url) as store:
        assert _epoch(store, 0, 1)
        # what a server restart does to pooled connections
        with pg_admin_engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": db},
            )
        assert _epoch(store, 0, 2)
        assert len(store.epochs_frame("s")) == 2


def test_unreachable_postgres_raises_store_error() -> None:
    url = "postgresql://alice:Sup3rSecretPw@127.0.0.1:1/studies"
    for call in (Store, Store.open, upgrade, current_revision, create_engine_for):
        with pytest.raises(StoreError) as info:
            call(url)
        message = str(info.value)
        assert "Sup3rSecretPw" not in message
        assert "\n" not in message
        assert "alice:***@127.0.0.1:1/studies" in message
        assert "check" in message


def test_bad_sqlite_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")


def test_invalid_url_raises_store_error() -> None:
    with pytest.raises(StoreError):
        create_engine_for("not a url :: pw")
    with pytest.raises(StoreError):
        create_engine_for("")


# ---------------------------------------------------------------- concurrency
_WRITER = textwrap.dedent(
    """
    import sys
    from study.store import Store
    url, number, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = Store(url)
    for e in range(n):
        store.record_epoch("s", number, e, train_loss=1.0, valid_loss=1.0, valid_metric=None,
                           tokens_per_second=10.0, seconds=0.01)
        store.upsert_trial("s", number, epochs=e + 1, best_value=1.0 / (e + 1))
    store.close()
    """
)


def test_concurrent_writers_and_reader(store_url: str) -> None:
    n_epochs = 40
    _open(store_url).close()
    # two writer processes (separate connections and locks, like two drivers) and two
    # writer threads, while this process keeps reading frames
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, store_url, str(number), str(n_epochs)],
            cwd=REPO_ROOT,
            env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in (0, 1)
    ]
    errors: list[BaseException] = []

    def thread_writer(number: int) -> None:
        try:
            with Store(store_url) as store:
                for e in range(n_epochs):
                    _epoch(store, number, e)
                    store.upsert_trial("s", number, epochs=e + 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(n,)) for n in (2, 3)]
    for t in threads:
        t.start()
    reads = 0
    with Store(store_url) as reader:
        deadline = time.monotonic() + 120
        while any(p.poll() is None for p in procs) or any(t.is_alive() for t in threads):
            assert time.monotonic() < deadline, "writers did not finish"
            reader.epochs_frame("s")
            reader.trials_frame("s")
            reader.studies_frame()
            reads += 1
        for t in threads:
            t.join()
        for p in procs:
            _, stderr = p.communicate()
            assert p.returncode == 0, stderr
            assert "database is locked" not in stderr
        assert not errors, errors
        epochs = reader.epochs_frame("s")
        assert len(epochs) == 4 * n_epochs
        assert not epochs.duplicated(["number", "seed", "epoch"]).any()
        assert reader.trials_frame("s")["epochs"].tolist() == [n_epochs] * 4
    assert reads > 0


# ---------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://alice:s3cret@db:5432/x", "postgresql+psycopg://alice:***@db:5432/x"),
        ("postgresql://alice@db/x", "postgresql://alice@db/x"),
        ("sqlite:///zoneout-studies.db", "sqlite:///zoneout-studies.db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=hunter2", "postgresql://u@h/db?password=***"),
        ("not a url", "not a url"),
        ("weird://u:pw@host:notaport/db", "weird://u:***@host:notaport/db"),
        ("", ""),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_mask_url_never_raises_on_odd_input() -> None:
    for odd in (None, 123, b"postgresql://u:pw@h/db", object()):
        assert isinstance(mask_url(odd), str)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60),
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{3,10}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]{6,16}", fullmatch=True),
)
def test_mask_url_property(garbage: str, user: str, password: str) -> None:
    assert isinstance(mask_url(garbage), str)
    secret = "PW" + password
    masked = mask_url(f"postgresql+psycopg://{user}:{secret}@db.example:5432/studies")
    assert secret not in masked
    assert user in masked


def test_scrub_secrets_nested() -> None:
    obj = {
        "storage": "postgresql://bob:pa55word@h/db",
        "db": {"password": "x1", "user": "bob", "DB_PASSWORD": "x2"},
        "cloud": [{"apiKey": "k1"}, {"aws_secret_access_key": "k2"}, ("auth_token", "keep")],
        "clientSecret": "k3",
        "model": {"hidden": 1000, "tokens_per_second": 3, "pad_token": "<pad>"},
        "dsn": "postgresql://bob:pw@h/db",
        "note": "see redis://:redispw@cache:6379/0",
        "empty_password": "",
    }
    before = json.dumps(obj, default=str)
    out = scrub_secrets(obj)
    assert json.dumps(obj, default=str) == before  # not mutated
    assert out["storage"] == "postgresql://bob:***@h/db"
    assert out["db"] == {"password": "***", "user": "bob", "DB_PASSWORD": "***"}
    assert out["cloud"][0] == {"apiKey": "***"}
    assert out["cloud"][1] == {"aws_secret_access_key": "***"}
    assert out["cloud"][2] == ("auth_token", "keep")  # a tuple of values, not a key
    assert out["clientSecret"] == "***"
    assert out["model"] == {"hidden": 1000, "tokens_per_second": 3, "pad_token": "<pad>"}
    assert out["dsn"] == "postgresql://bob:***@h/db"
    assert out["empty_password"] == ""
    assert scrub_secrets(5) == 5
    assert scrub_secrets(None) is None


def test_default_storage_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZONEOUT_STUDY_STORAGE", raising=False)
    assert default_storage_url() == "sqlite:///zoneout-studies.db"
    monkeypatch.setenv("ZONEOUT_STUDY_STORAGE", "postgresql://u@h/db")
    assert default_storage_url() == "postgresql://u@h/db"


def test_normalize_url() -> None:
    assert normalize_url("postgres://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///a.db") == "sqlite:///a.db"


def test_carry_epochs_copies_a_seeds_rows_up_to_the_checkpoint_once(store_url: str) -> None:
    with _open(store_url) as store:
        for seed in (7, 8):
            for epoch in (1, 2, 3):
                _epoch(store, 0, epoch, seed=seed, loss=float(epoch + seed))
        assert store.carry_epochs("s", from_number=0, to_number=1, seed=7, through_epoch=2) == 2
        # Again (a Ray retry of the same seed): nothing new, nothing duplicated.
        assert store.carry_epochs("s", from_number=0, to_number=1, seed=7, through_epoch=2) == 0
        frame = store.epochs_frame("s")
        source = frame[(frame["number"] == 0) & (frame["seed"] == 7)].set_index("epoch")
        copied = frame[frame["number"] == 1].set_index("epoch")
        assert list(copied.index) == [1, 2] and set(copied["seed"]) == {7}
        for epoch in (1, 2):
            assert copied.loc[epoch, "recorded_at"] == source.loc[epoch, "recorded_at"]
            assert copied.loc[epoch, "valid_metric"] == source.loc[epoch, "valid_metric"]
        assert store.trials_frame("s")["number"].tolist() == [0, 1]


def test_recorded_epochs_are_one_seeds_epochs_of_one_trial(store_url: str) -> None:
    with _open(store_url) as store:
        for epoch in (1, 2, 4):
            _epoch(store, 0, epoch, seed=7)
        _epoch(store, 0, 3, seed=8)
        _epoch(store, 1, 3, seed=7)
        assert store.recorded_epochs("s", 0, 7) == frozenset({1, 2, 4})
        assert store.recorded_epochs("s", 0, 8) == frozenset({3})
        assert store.recorded_epochs("s", 0, 9) == frozenset()
        assert store.recorded_epochs("s", 42, 7) == frozenset()  # no such trial: nothing


# ---------------------------------------------------------------- layer paths (migration 0005)
def test_migration_0005_adds_the_runs_layer_path_and_keeps_its_rows(store_url: str) -> None:
    _store_at_0003(store_url)
    upgrade(store_url, "0004")
    with Store(store_url) as old:  # a read-only command does not migrate: no such columns
        frame = old.runs_frame("s")
        assert "layer_path" not in frame.columns and "layer_fallback" not in frame.columns
        before = frame
    with Store.open(store_url) as store:
        frame = store.runs_frame("s")
        assert frame[["layer_path", "layer_fallback"]].isna().all().all()
        pd.testing.assert_frame_equal(frame.drop(columns=["layer_path", "layer_fallback"]), before)


def test_runs_keep_their_layer_path_and_a_rescore_does_not_erase_it(store_url: str) -> None:
    with _open(store_url) as store:
        store.upsert_trial("s", 0, state="RUNNING")
        reason = "the CPU extension is turned off (ZONEOUT_CPU_EXTENSION=0)"
        store.record_runs(
            "s",
            0,
            [
                RunRecord(0, "budget", 2, 2, 1.5, layer_path="cpu_extension"),
                RunRecord(1, "budget", 2, 1, 1.4, layer_path="fused", layer_fallback=reason),
            ],
        )
        frame = store.runs_frame("s")
        assert list(frame["layer_path"]) == ["cpu_extension", "fused"]
        assert list(frame["layer_fallback"].isna()) == [True, False]
        assert frame["layer_fallback"].iloc[1] == reason
        # A rescore rewrites the runs from the epochs table, which holds no path.
        store.record_runs("s", 0, [RunRecord(0, "converged", 2, 2, 1.3)])
        frame = store.runs_frame("s")
        assert list(frame["ended"]) == ["converged", "budget"]
        assert list(frame["layer_path"]) == ["cpu_extension", "fused"]
        RUNS_FRAME.check(frame)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://root:Pw@x@127.0.0.1:5432/db",
        "postgresql://root:a@b@c@db.example/studies?sslmode=require",
        "postgresql://root:@@@h/db",
    ],
)
def test_mask_url_hides_a_password_with_an_unencoded_at(url: str) -> None:
    masked = mask_url(url)
    password = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0].partition(":")[2]
    assert masked.startswith(url.split("://", 1)[0] + "://root:***@"), masked
    assert password not in masked.replace("root:***@", "", 1), masked
    assert masked.endswith(url.split("/", 3)[3]), masked  # the host and database are kept


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9@]{1,8}@[A-Za-z0-9@]{1,8}", fullmatch=True))
def test_mask_url_property_at_in_password(password: str) -> None:
    masked = mask_url(f"postgresql+psycopg://bob:{password}@db.example:5432/studies")
    assert masked == "postgresql+psycopg://bob:***@db.example:5432/studies"
