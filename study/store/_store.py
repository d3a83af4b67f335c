"""The store: written by the Ray Tune driver callback, read by dashboards as DataFrames."""

from __future__ import annotations

import datetime as _dt
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dashboards import Col, TrialState, param_column

from . import _queries
from ._engine import create_engine_for, normalize_url, run_with_retry
from ._errors import StoreError
from ._models import EpochRow, RunRow, StudyRow, TrialRow, UTCDateTime, utcnow
from ._secrets import mask_url, scrub_secrets, to_json_safe

__all__ = ["TRIAL_FIELDS", "RunRecord", "Store"]

T = TypeVar("T")

DIRECTIONS = ("minimize", "maximize")
STUDY_STATUSES = ("running", "finished", "interrupted", "failed")
FINAL_STUDY_STATUSES = ("finished", "interrupted", "failed")
# The states a trial row can hold: Optuna's, but WAITING (the store sees a trial once it runs).
# dashboards' TrialState spells Optuna's names without importing Optuna (read commands don't).
TRIAL_STATES = tuple(
    state.name
    for state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
)
_NEW_TRIAL_STATE = TrialState.RUNNING.name


def _fields_of(types: tuple[type[sa.types.TypeEngine[Any]], ...]) -> tuple[str, ...]:
    return tuple(
        column.name
        for column in TrialRow.__table__.columns
        if column.name in TRIAL_FIELDS and isinstance(column.type, types)
    )


# The trial's columns, read from the model (the one list): everything but the keys and
# updated_at, which the store sets itself.
TRIAL_FIELDS = tuple(
    column.name
    for column in TrialRow.__table__.columns
    if column.name not in ("id", "study_id", "number", "updated_at")  # frame-contract: not a column
)
_STR_FIELDS = _fields_of((sa.String,))  # Text is a String
_INT_FIELDS = _fields_of((sa.Integer,))  # BigInteger is an Integer
_FLOAT_FIELDS = _fields_of((sa.Float,))
_TIME_FIELDS = _fields_of((UTCDateTime,))
_JSON_FIELDS = tuple(
    name
    for name in TRIAL_FIELDS
    if name not in (*_STR_FIELDS, *_INT_FIELDS, *_FLOAT_FIELDS, *_TIME_FIELDS)
)
_EPOCH_METRICS = ("train_loss", "valid_loss", Col.VALID_METRIC, "tokens_per_second", "seconds")
# Frames: identity and state first, the JSON columns last.
_TRIAL_COLUMNS = [
    Col.STUDY,
    Col.NUMBER,
    Col.STATE,
    *(f for f in TRIAL_FIELDS if f != Col.STATE and f not in _JSON_FIELDS),
    "updated_at",
    *_JSON_FIELDS,
]
_EPOCH_COLUMNS = [Col.STUDY, Col.NUMBER, Col.SEED, Col.EPOCH, *_EPOCH_METRICS, "recorded_at"]
_RUN_FIELDS = (Col.ENDED, Col.EPOCHS, Col.BEST_EPOCH, Col.BEST_VALUE)
# Columns of migration 0005: in the frame only where the database has them (a read-only
# command does not migrate, and a table written before them prints as it did).
_RUN_PATH_FIELDS = (Col.LAYER_PATH, Col.LAYER_FALLBACK)
_RUN_COLUMNS = [Col.STUDY, Col.NUMBER, Col.SEED, *_RUN_FIELDS]
# The unique keys the upserts conflict on: SQL column names (study.store._models).
_TRIAL_KEY = ("study_id", "number")  # frame-contract: not a column (SQL columns)
_EPOCH_KEY = ("trial_id", "seed", "epoch")  # frame-contract: not a column (SQL columns)
_RUN_KEY = ("trial_id", "seed")  # frame-contract: not a column (SQL columns)


@dataclass(frozen=True)
class RunRecord:
    """One seed's run of a trial: why it ended (a ``study.score.RunEnd`` value), the last epoch
    it ran, and its best epoch and value."""

    seed: int
    ended: str
    epochs: int | None
    best_epoch: int | None
    best_value: float | None
    # The recurrent layer's path (trials.trainable's ``layer_path`` report) and why it fell back
    # from the preferred one; None where the run reported none (a rescore keeps what is stored).
    layer_path: str | None = None
    layer_fallback: str | None = None


_STUDY_COLUMNS = [
    "name",
    "direction",
    "metric",
    "status",
    "created_at",
    "finished_at",
    "optuna_study_id",
    "versions",
    "n_trials",
    *(f"n_{s.lower()}" for s in TRIAL_STATES),
]


# ---------------------------------------------------------------- value coercion
def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)  # optuna StudyDirection / TrialState
    return str(name if isinstance(name, str) else value)


def _direction(value: Any) -> str:
    d = _enum_name(value).strip().lower()
    if d not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {value!r}")
    return d


def _state(value: Any) -> str:
    s = _enum_name(value).strip().upper()
    if s not in TRIAL_STATES:
        raise ValueError(f"trial state must be one of {TRIAL_STATES}, got {value!r}")
    return s


def _float(value: Any) -> float | None:
    # NaN / inf are kept: PostgreSQL stores them; SQLite stores NaN as NULL.
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _time(value: Any) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        result = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        result = _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    elif isinstance(value, str):
        result = _dt.datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected a datetime, POSIX timestamp or ISO string, got {value!r}")
    if result.tzinfo is None:
        return result.replace(tzinfo=_dt.timezone.utc)
    return result.astimezone(_dt.timezone.utc)


def _json_object(value: Any, *, scrub: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    out = to_json_safe(scrub_secrets(value) if scrub else value)
    assert isinstance(out, dict)
    return out


def _trial_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(TRIAL_FIELDS))
    if unknown:
        raise TypeError(f"upsert_trial() got unknown field(s) {unknown}; known: {TRIAL_FIELDS}")
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "state":  # frame-contract: not a column (a SQL column)
            values[key] = _state(value)
        elif key in _STR_FIELDS:
            if key == "checkpoint" and value is not None:
                value = getattr(value, "path", value)  # a ray.train.Checkpoint
            if isinstance(value, enum.Enum):  # end_reason=TrialEnd.INTERRUPTED: its value
                value = value.value
            values[key] = None if value is None else str(value)
        elif key in _INT_FIELDS:
            values[key] = _int(value)
        elif key in _FLOAT_FIELDS:
            values[key] = _float(value)
        elif key in _TIME_FIELDS:
            values[key] = _time(value)
        else:  # params, config
            values[key] = _json_object(value, scrub=key == "config")
    return values


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _numbers(numbers: Iterable[int] | None) -> list[int]:
    """Trial numbers to select by, as ints (a numpy integer does not bind on every driver)."""
    return [] if numbers is None else sorted({int(number) for number in numbers})


def _typed_frame(
    rows: list[dict[str, Any]],
    columns: list[str],
    *,
    ints: tuple[str, ...] = (),
    floats: tuple[str, ...] = (),
    times: tuple[str, ...] = (),
) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for c in ints:
        frame[c] = frame[c].astype("Int64")
    for c in floats:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in times:
        frame[c] = pd.to_datetime(frame[c], utc=True).astype("datetime64[us, UTC]")
    return frame


def _raw_time(conn: sa.Connection) -> sa.types.TypeEngine[Any]:
    """The type a time column is read as when the frame converts it (``_typed_frame``'s
    ``times``): SQLite's text as it is, PostgreSQL's timestamptz as the driver returns it."""
    return sa.String() if conn.dialect.name == "sqlite" else sa.DateTime(timezone=True)


# ---------------------------------------------------------------- the store
class Store:
    """The service's tables (``zs_studies``, ``zs_trials``, ``zs_epochs``, ``zs_runs``) in one
    database.

    ``Store(url)`` connects but does not create the schema; :meth:`Store.open` upgrades it
    first. Thread-safe (one engine, a connection per call). Use as a context manager or call
    :meth:`close`.
    """

    url: str
    engine: sa.Engine

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine_for(self.url, read_only=read_only)
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            self.engine.dispose()
            raise StoreError(
                f"unsupported database {mask_url(self.url)}: the store supports SQLite and "
                "PostgreSQL"
            )
        self._insert: Callable[..., Any] = (
            sqlite.insert if dialect == "sqlite" else postgresql.insert
        )
        self._trial_columns: tuple[str, ...] | None = None  # known once the schema is at head

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, create or upgrade the schema to head, and return the store."""
        from ._migrate import upgrade_engine  # Alembic: only where the schema may change

        store = cls(url)
        try:
            upgrade_engine(store.engine)
        except BaseException:
            store.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ plumbing
    def _write(self, fn: Callable[[sa.Connection], T]) -> T:
        return run_with_retry(self.engine, fn, write=True)

    def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        return run_with_retry(self.engine, fn, write=False)

    @staticmethod
    def _study_id(conn: sa.Connection, study: str) -> int:
        sid = conn.execute(sa.select(StudyRow.id).where(StudyRow.name == study)).scalar()
        if sid is None:
            raise StoreError(f"unknown study {study!r}: register_study() it first")
        return int(sid)

    def _trial_id(self, conn: sa.Connection, study: str, number: int) -> int:
        """The trial's row id; the row is created (state RUNNING) if it does not exist."""
        stmt = (
            sa.select(TrialRow.id)
            .join(StudyRow, StudyRow.id == TrialRow.study_id)
            .where(StudyRow.name == study, TrialRow.number == number)
        )
        tid = conn.execute(stmt).scalar()
        if tid is not None:
            return int(tid)
        study_id = self._study_id(conn, study)
        ins = self._insert(TrialRow).values(
            study_id=study_id, number=number, state=_NEW_TRIAL_STATE, updated_at=utcnow()
        )
        conn.execute(ins.on_conflict_do_nothing(index_elements=_TRIAL_KEY))
        return int(conn.execute(stmt).scalar_one())

    # ------------------------------------------------------------ writes
    def register_study(
        self,
        name: str,
        *,
        spec: dict[str, Any],
        versions: dict[str, str],
        direction: str,
        metric: str,
        optuna_study_id: int | None = None,
    ) -> None:
        """Insert the study, or refresh an existing one's spec snapshot and versions.

        The spec snapshot is stored through :func:`scrub_secrets`. An existing study's status
        becomes ``running`` again (and ``finished_at`` is cleared). A direction different from
        the stored one raises :class:`StoreError`.
        """
        direction = _direction(direction)
        spec_json = _json_object(spec, scrub=True) or {}
        versions_json = {str(k): str(v) for k, v in (versions or {}).items()}
        metric = str(metric)

        def _run(conn: sa.Connection) -> None:
            now = utcnow()
            ins = self._insert(StudyRow).values(
                name=name,
                direction=direction,
                metric=metric,
                spec=spec_json,
                versions=versions_json,
                status="running",
                created_at=now,
                updated_at=now,
                finished_at=None,
                optuna_study_id=optuna_study_id,
            )
            inserted = conn.execute(
                ins.on_conflict_do_nothing(index_elements=["name"]).returning(StudyRow.id)
            ).first()
            if inserted is not None:
                return
            stored = conn.execute(
                sa.select(StudyRow.direction).where(StudyRow.name == name)
            ).scalar_one()
            if stored != direction:
                raise StoreError(
                    f"study {name!r} exists with direction {stored!r}; it cannot be resumed "
                    f"with direction {direction!r} (use a new study name)"
                )
            changes: dict[str, Any] = {
                "metric": metric,
                "spec": spec_json,
                "versions": versions_json,
                "status": "running",
                "finished_at": None,
                "updated_at": now,
            }
            if optuna_study_id is not None:
                changes["optuna_study_id"] = optuna_study_id
            conn.execute(sa.update(StudyRow).where(StudyRow.name == name).values(**changes))

        self._write(_run)

    def finish_study(self, name: str, status: str) -> None:
        """Mark the study ``finished`` / ``interrupted`` / ``failed`` and set ``finished_at``."""
        status = str(status).strip().lower()
        if status not in FINAL_STUDY_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STUDY_STATUSES}, got {status!r}")

        def _run(conn: sa.Connection) -> None:
            now = utcnow()
            result = conn.execute(
                sa.update(StudyRow)
                .where(StudyRow.name == name)
                .values(status=status, finished_at=now, updated_at=now)
            )
            if result.rowcount == 0:
                raise StoreError(f"unknown study {name!r}: register_study() it first")

        self._write(_run)

    def upsert_trial(self, study: str, number: int, **fields: Any) -> None:
        """Insert or update trial ``number`` of ``study``; only the given fields change.

        Fields: see :data:`TRIAL_FIELDS`. A new trial without ``state`` is ``RUNNING``.
        Timestamps may be datetimes (naive = UTC), POSIX seconds or ISO strings. ``config`` is
        stored through :func:`scrub_secrets`; JSON values lose non-finite floats (-> null).
        Passing ``None`` sets a field to NULL. Unknown fields raise ``TypeError``.
        """
        values = _trial_values(fields)
        number = int(number)

        def _run(conn: sa.Connection) -> None:
            now = utcnow()
            study_id = self._study_id(conn, study)
            row = {"state": _NEW_TRIAL_STATE, **values}  # frame-contract: not a column
            ins = self._insert(TrialRow).values(
                study_id=study_id, number=number, updated_at=now, **row
            )
            set_ = {key: ins.excluded[key] for key in values}
            set_["updated_at"] = ins.excluded["updated_at"]
            conn.execute(ins.on_conflict_do_update(index_elements=_TRIAL_KEY, set_=set_))

        self._write(_run)

    def record_epoch(
        self,
        study: str,
        number: int,
        epoch: int,
        *,
        train_loss: float | None,
        valid_loss: float | None,
        valid_metric: float | None,
        tokens_per_second: float | None,
        seconds: float | None,
        seed: int | None = None,
    ) -> bool:
        """Record one epoch of trial ``number``; returns ``True`` if the row is new.

        Keyed by (study, trial number, seed, epoch): a re-sent result updates the row in place
        (no duplicate). ``seed=None`` is stored as seed ``0``. The trial row is created
        (state ``RUNNING``) if the driver has not upserted it yet. Non-finite metrics are kept
        on PostgreSQL; SQLite stores NaN as NULL.
        """
        key_seed = 0 if seed is None else int(seed)
        number, epoch = int(number), int(epoch)
        metrics = {
            "train_loss": _float(train_loss),
            "valid_loss": _float(valid_loss),
            "valid_metric": _float(valid_metric),  # frame-contract: not a column (a SQL column)
            "tokens_per_second": _float(tokens_per_second),
            "seconds": _float(seconds),
        }

        def _run(conn: sa.Connection) -> bool:
            now = utcnow()
            trial_id = self._trial_id(conn, study, number)
            ins = self._insert(EpochRow).values(
                trial_id=trial_id, seed=key_seed, epoch=epoch, recorded_at=now, **metrics
            )
            # RETURNING tells "inserted" from "conflicted" on both backends (rowcount is -1
            # on PostgreSQL when the statement returns rows).
            inserted = conn.execute(
                ins.on_conflict_do_nothing(index_elements=_EPOCH_KEY).returning(EpochRow.id)
            ).first()
            if inserted is not None:
                return True
            conn.execute(
                sa.update(EpochRow)
                .where(
                    EpochRow.trial_id == trial_id,
                    EpochRow.seed == key_seed,
                    EpochRow.epoch == epoch,
                )
                .values(recorded_at=now, **metrics)
            )
            return False

        return self._write(_run)

    def carry_epochs(
        self, study: str, *, from_number: int, to_number: int, seed: int, through_epoch: int
    ) -> int:
        """Copy trial ``from_number``'s epochs 1..``through_epoch`` of ``seed`` to trial
        ``to_number`` (a replacement that continues its checkpoint), keeping their metrics and
        ``recorded_at``; rows the target already has are left alone. Returns rows copied."""

        def _run(conn: sa.Connection) -> int:
            source = self._trial_id(conn, study, int(from_number))
            target = self._trial_id(conn, study, int(to_number))
            rows = conn.execute(
                sa.select(
                    EpochRow.epoch,
                    *(getattr(EpochRow, m) for m in _EPOCH_METRICS),
                    EpochRow.recorded_at,
                ).where(
                    EpochRow.trial_id == source,
                    EpochRow.seed == int(seed),
                    EpochRow.epoch <= int(through_epoch),
                )
            ).all()
            copied = 0
            for row in rows:
                ins = self._insert(EpochRow).values(
                    trial_id=target, seed=int(seed), **row._asdict()
                )
                done = conn.execute(
                    ins.on_conflict_do_nothing(index_elements=_EPOCH_KEY).returning(EpochRow.id)
                ).first()
                copied += done is not None
            return copied

        return self._write(_run)

    def record_runs(self, study: str, number: int, runs: Sequence[RunRecord]) -> None:
        """Write (or overwrite) the per-seed runs of trial ``number``."""
        number = int(number)

        def _run(conn: sa.Connection) -> None:
            trial_id = self._trial_id(conn, study, number)
            for run in runs:
                values = dict(  # zs_runs' SQL columns, as in the insert's keyword arguments
                    ended=str(run.ended),
                    epochs=None if run.epochs is None else int(run.epochs),
                    best_epoch=None if run.best_epoch is None else int(run.best_epoch),
                    best_value=_float(run.best_value),
                )
                paths = dict(  # zs_runs' SQL columns (migration 0005)
                    layer_path=None if run.layer_path is None else str(run.layer_path),
                    layer_fallback=None if run.layer_fallback is None else str(run.layer_fallback),
                )
                ins = self._insert(RunRow).values(
                    trial_id=trial_id, seed=int(run.seed), **values, **paths
                )
                table = RunRow.__table__
                update = {key: ins.excluded[key] for key in values}
                # A record without a path (a rescore from the epochs table) keeps the stored one.
                update.update(
                    {key: sa.func.coalesce(ins.excluded[key], table.c[key]) for key in paths}
                )
                conn.execute(ins.on_conflict_do_update(index_elements=_RUN_KEY, set_=update))

        self._write(_run)

    def _trial_table_columns(self, conn: sa.Connection) -> tuple[str, ...]:
        """The columns of ``zs_trials`` the database has. Commands that only read never
        migrate (``Store(url)``), so a database an older version made may lack the newer ones
        (``retired``, ``end_reason``); once every column is there, the answer is kept."""
        if self._trial_columns is not None:
            return self._trial_columns
        present = {column["name"] for column in sa.inspect(conn).get_columns("zs_trials")}
        columns = tuple(c.name for c in TrialRow.__table__.columns if c.name in present)
        if len(columns) == len(TrialRow.__table__.columns):
            self._trial_columns = columns
        return columns

    # ------------------------------------------------------------ reads
    def study_spec(self, study: str) -> dict[str, Any]:
        """The (scrubbed) spec snapshot stored by the last :meth:`register_study`."""

        def _run(conn: sa.Connection) -> dict[str, Any]:
            spec = conn.execute(sa.select(StudyRow.spec).where(StudyRow.name == study)).first()
            if spec is None:
                raise StoreError(f"unknown study {study!r}")
            return dict(spec[0] or {})

        return self._read(_run)

    def optuna_study_id(self, study: str) -> int | None:
        """The id of the Optuna study this store's study row was linked to; None for a study
        the store does not know or never linked."""

        def _run(conn: sa.Connection) -> int | None:
            value = conn.execute(
                sa.select(StudyRow.optuna_study_id).where(StudyRow.name == study)
            ).scalar()
            return None if value is None else int(value)

        return self._read(_run)

    def studies_frame(self) -> pd.DataFrame:
        """One row per study: name, direction, metric, status, created_at, finished_at,
        optuna_study_id, versions (dict), n_trials and n_running / n_complete / n_pruned /
        n_fail."""

        def _run(conn: sa.Connection) -> pd.DataFrame:
            studies = conn.execute(
                sa.select(
                    StudyRow.id,
                    StudyRow.name,
                    StudyRow.direction,
                    StudyRow.metric,
                    StudyRow.status,
                    StudyRow.created_at,
                    StudyRow.finished_at,
                    StudyRow.optuna_study_id,
                    StudyRow.versions,
                ).order_by(StudyRow.created_at, StudyRow.id)
            ).all()
            counts = conn.execute(
                sa.select(TrialRow.study_id, TrialRow.state, sa.func.count()).group_by(
                    TrialRow.study_id, TrialRow.state
                )
            ).all()
            per: dict[int, dict[str, int]] = {}
            for study_id, state, n in counts:
                per.setdefault(study_id, {})[state] = int(n)
            rows = []
            for s in studies:
                c = per.get(s.id, {})
                row = {k: getattr(s, k) for k in _STUDY_COLUMNS[:8]}
                row["n_trials"] = sum(c.values())
                for state in TRIAL_STATES:
                    row[f"n_{state.lower()}"] = c.get(state, 0)
                rows.append(row)
            return _typed_frame(
                rows,
                _STUDY_COLUMNS,
                ints=("optuna_study_id", *_STUDY_COLUMNS[8:]),
                times=("created_at", "finished_at"),
            )

        return self._read(_run)

    def trials_frame(self, study: str, *, numbers: Iterable[int] | None = None) -> pd.DataFrame:
        """One row per trial of ``study`` (ordered by number): every trial field, plus
        ``params`` expanded into ``param_<name>`` columns (nested keys joined with ``.``).
        ``numbers``: only those trials (e.g. :meth:`ranked_complete`'s), read by the database.

        ``end_reason`` is why the trial ended (a ``study.plan.TrialEnd`` value; None while it
        runs); ``retired`` is why the service retired the trial (a ``study.plan.Retired``
        value), else None. A database an older version made and no run has upgraded yet lacks
        the newer of these columns: so does its frame (readers then derive the end from what
        the frame has, as for the CSV tables of older versions; see
        ``study.failures.trial_ends`` and ``dashboards.retired_kinds``)."""
        wanted = _numbers(numbers)

        def _run(conn: sa.Connection) -> pd.DataFrame:
            study_id = self._study_id(conn, study)
            table = TrialRow.__table__
            present = self._trial_table_columns(conn)
            query = sa.select(*(table.c[name] for name in present)).where(
                table.c.study_id == study_id
            )
            if numbers is not None:
                query = query.where(table.c.number.in_(wanted))
            result = conn.execute(query.order_by(table.c.number)).mappings()
            frame_columns = [c for c in _TRIAL_COLUMNS if c == Col.STUDY or c in present]
            rows: list[dict[str, Any]] = []
            param_columns: dict[str, None] = {}
            for t in result:
                row = {c: t[c] for c in frame_columns[1:]}
                row[Col.STUDY] = study
                flat: dict[str, Any] = {}
                for k, v in (t["params"] or {}).items():
                    _flatten(param_column(k), v, flat)
                param_columns.update(dict.fromkeys(flat))
                row.update(flat)
                rows.append(row)
            return _typed_frame(
                rows,
                frame_columns + sorted(param_columns),
                ints=(Col.NUMBER, Col.SEED, Col.EPOCHS),
                floats=_FLOAT_FIELDS,
                times=("started_at", "finished_at", "updated_at"),
            )

        return self._read(_run)

    def runs_frame(self, study: str, *, numbers: Iterable[int] | None = None) -> pd.DataFrame:
        """One row per (trial number, seed) run of ``study``: ``ended``, ``epochs``,
        ``best_epoch``, ``best_value``, and ``layer_path``, ``layer_fallback`` where the database
        has them (migration 0005). Empty on a database from before the table (read-only
        commands do not migrate). ``numbers``: only those trials' runs."""
        wanted = _numbers(numbers)

        def _run(conn: sa.Connection) -> pd.DataFrame:
            study_id = self._study_id(conn, study)
            inspector = sa.inspect(conn)
            if not inspector.has_table(RunRow.__tablename__):
                return _typed_frame([], _RUN_COLUMNS, ints=(Col.NUMBER, Col.SEED))
            present = {c["name"] for c in inspector.get_columns(RunRow.__tablename__)}
            fields = (*_RUN_FIELDS, *(f for f in _RUN_PATH_FIELDS if f in present))
            query = (
                sa.select(TrialRow.number, RunRow.seed, *(getattr(RunRow, f) for f in fields))
                .join(TrialRow, TrialRow.id == RunRow.trial_id)
                .where(TrialRow.study_id == study_id)
            )
            if numbers is not None:
                query = query.where(TrialRow.number.in_(wanted))
            result = conn.execute(query.order_by(TrialRow.number, RunRow.seed)).all()
            rows = [{Col.STUDY: study, **r._asdict()} for r in result]
            return _typed_frame(
                rows,
                [Col.STUDY, Col.NUMBER, Col.SEED, *fields],
                ints=(Col.NUMBER, Col.SEED, Col.EPOCHS, Col.BEST_EPOCH),
                floats=(Col.BEST_VALUE,),
            )

        return self._read(_run)

    def recorded_epochs(self, study: str, number: int, seed: int) -> frozenset[int]:
        """The epochs of trial ``number``'s ``seed`` that are on record (empty for an unknown
        trial): a replacement continues a checkpoint only when every epoch up to it is."""

        def _run(conn: sa.Connection) -> frozenset[int]:
            rows = conn.execute(
                sa.select(EpochRow.epoch)
                .join(TrialRow, TrialRow.id == EpochRow.trial_id)
                .join(StudyRow, StudyRow.id == TrialRow.study_id)
                .where(
                    StudyRow.name == study,
                    TrialRow.number == int(number),
                    EpochRow.seed == int(seed),
                )
            ).scalars()
            return frozenset(int(e) for e in rows)

        return self._read(_run)

    def epochs_frame(self, study: str) -> pd.DataFrame:
        """One row per (trial number, seed, epoch) of ``study``, ordered that way."""

        def _run(conn: sa.Connection) -> pd.DataFrame:
            study_id = self._study_id(conn, study)
            result = conn.execute(
                sa.select(
                    TrialRow.number,
                    EpochRow.seed,
                    EpochRow.epoch,
                    *(getattr(EpochRow, m) for m in _EPOCH_METRICS),
                    # The raw column, converted for the whole frame at once below: the column
                    # type's per-row conversion cost seconds at 100k epochs (SQLite stores UTC
                    # wall time as text, PostgreSQL returns aware datetimes).
                    sa.type_coerce(EpochRow.recorded_at, _raw_time(conn)).label("recorded_at"),
                )
                .join(TrialRow, TrialRow.id == EpochRow.trial_id)
                .where(TrialRow.study_id == study_id)
                .order_by(TrialRow.number, EpochRow.seed, EpochRow.epoch)
            ).all()
            rows = [{Col.STUDY: study, **r._asdict()} for r in result]
            return _typed_frame(
                rows,
                _EPOCH_COLUMNS,
                ints=(Col.NUMBER, Col.SEED, Col.EPOCH),
                floats=_EPOCH_METRICS,
                times=("recorded_at",),
            )

        return self._read(_run)

    # ------------------------------------------------------------ reads that stay flat
    # What the read commands ask of a study of any size: answered by the database (ORDER BY ...
    # LIMIT, GROUP BY; study.store._queries), not by a frame of every trial.
    def ranked_complete(self, study: str, top: int) -> list[int]:
        """The numbers of ``study``'s ``top`` best COMPLETE trials: a finite score
        (``best_value``), lowest first, ties by number. The one ranking ``export`` and
        ``status`` show, as ``study.optuna_study.best_complete`` ranks Optuna's trials."""
        return self._read(
            lambda conn: _queries.ranked_complete(conn, self._study_id(conn, study), top)
        )

    def latest_numbers(self, study: str, count: int) -> list[int]:
        """The numbers of ``study``'s ``count`` latest trials (the highest), newest first."""
        return self._read(
            lambda conn: _queries.latest_numbers(conn, self._study_id(conn, study), count)
        )

    def trial_nodes(self, study: str, most: int = 2) -> list[str]:
        """Up to ``most`` of the distinct nodes ``study``'s trials ran on (sorted)."""
        return self._read(
            lambda conn: _queries.trial_nodes(conn, self._study_id(conn, study), most)
        )

    def trial_counts(self, study: str | None = None) -> pd.DataFrame:
        """How many trials each study (or only ``study``) holds per state and end: one row per
        (study, state, ``end_reason``, ``retired``) with its count in ``trials``. A database no
        run has upgraded yet may lack ``end_reason`` or ``retired``: so does the frame (as
        :meth:`trials_frame`'s). A study without trials has no row."""

        def _run(conn: sa.Connection) -> pd.DataFrame:
            query = sa.select(StudyRow.id, StudyRow.name)
            if study is not None:
                query = query.where(StudyRow.id == self._study_id(conn, study))
            ids = {int(row.id): str(row.name) for row in conn.execute(query)}
            present = self._trial_table_columns(conn)
            ends = [c for c in _queries.END_COLUMNS if c in present]
            columns = [Col.STUDY, Col.STATE, *ends, "trials"]
            rows = _queries.trial_counts(conn, ids, present) if ids else []
            return _typed_frame(rows, columns, ints=("trials",))

        return self._read(_run)

    def run_layer_paths(self, study: str) -> pd.DataFrame:
        """The runs frame's ``layer_path`` and ``layer_fallback`` alone (one row per run, in its
        order), for a study of any size: what ``dashboards.layer_paths`` reads. Without those
        columns (a database from before migration 0005) the frame has none."""

        def _run(conn: sa.Connection) -> pd.DataFrame:
            study_id = self._study_id(conn, study)
            inspector = sa.inspect(conn)
            if not inspector.has_table(RunRow.__tablename__):
                return pd.DataFrame()
            present = [c["name"] for c in inspector.get_columns(RunRow.__tablename__)]
            columns = _queries.run_layer_paths(conn, study_id, present)
            return pd.DataFrame(
                {name: pd.Series(values, dtype=object) for name, values in columns.items()}
            )

        return self._read(_run)
