"""Every call of study/ into Optuna's study and storage API goes through this module.

Opening a study on the store's database, ask / tell / report, trial and study attributes, the
driver heartbeat in the study's system attributes, retiring a trial and enqueueing its
replacement, reading trials. Each storage call waits out a lost database connection
(:func:`db_call`). Optuna's private attributes are used here only, each with its reason.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from study import keys
from study._optuna_trials import FastTrialsRDBStorage
from study.disk import DiskFullError, disk_line, is_disk_full
from study.store import StoreError, mask_url, normalize_url, retry_call, retry_connect

__all__ = [
    "FinishedValues",
    "UpdateFinishedTrialError",
    "ask",
    "best_complete",
    "counted",
    "counted_trials",
    "enqueue_point",
    "enqueue_replacement",
    "heartbeats",
    "is_retired",
    "load_study",
    "minimizes",
    "open_study",
    "queued_params",
    "record_heartbeat",
    "report",
    "retire_lost_trial",
    "retire_trial",
    "rewrite_finished_values",
    "set_study_attrs",
    "set_trial_attr",
    "state_counts",
    "study_attrs",
    "study_id",
    "tell",
    "trial_attrs",
    "trials",
    "use_sampler",
]

T = TypeVar("T")

UpdateFinishedTrialError = optuna.exceptions.UpdateFinishedTrialError

_RETRY_SECONDS = 90.0


def db_call(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one Optuna storage call, waiting out a lost database connection.

    A PostgreSQL restart kills the connection a statement is running on; the statement's
    transaction is rolled back, so running it again is safe. Other errors pass through.
    """
    import sqlalchemy.exc

    lost = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        optuna.exceptions.StorageInternalError,
    )
    try:
        return retry_call(
            lambda: call(*args, **kwargs),
            # A full disk is no lost connection: waiting does not cure it.
            retry_if=lambda error: isinstance(error, lost) and not is_disk_full(error),
            seconds=_RETRY_SECONDS,
            first_delay=0.5,
            max_delay=5.0,
        )
    except Exception as error:
        if is_disk_full(error):
            raise DiskFullError(f"the database's disk is full ({disk_line(error)})") from error
        raise


# --------------------------------------------------------------------- opening
def _rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage, reading trials without the ORM (study._optuna_trials).

    RDBStorage creates Optuna's schema on first use without a lock: two drivers starting on
    an empty database race (e.g. both CREATE TYPE studydirection). The loser retries and finds
    the schema made."""
    import sqlalchemy.exc

    url = normalize_url(url)  # 'postgresql://' means psycopg 3 here, as in the store
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 30}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        storage = retry_call(
            lambda: FastTrialsRDBStorage(url, engine_kwargs=engine_kwargs),
            retry_if=lambda error: isinstance(
                error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
            ),
            attempts=5,
            first_delay=0.5,
        )
    except RuntimeError as error:
        raise _unknown_schema(url, error) from None
    # The database answered just now: from here on a restart (pool_pre_ping finds the dead
    # connection, the server is not back yet) is waited out instead of failing the study.
    retry_connect(storage.engine)
    return storage


def check_schema(url: str) -> None:
    """Optuna's tables at ``url`` are of the schema this Optuna reads (StoreError otherwise,
    saying what to do); creates and changes nothing."""
    storage = optuna.storages.RDBStorage(
        normalize_url(url), skip_table_creation=True, skip_compatibility_check=True
    )
    try:  # the comparison Optuna's own check makes, without leaving its engine open
        current, head = storage.get_current_version(), storage.get_head_version()
        known = current in storage.get_all_versions()
    finally:
        storage.engine.dispose()
    if current == head:
        return
    if known:
        raise StoreError(
            f"Optuna's tables in {mask_url(url)} are of an older Optuna schema ({current}; "
            f"Optuna {optuna.__version__} reads {head}): upgrade them with `optuna storage "
            "upgrade --storage URL`"
        )
    raise _unknown_schema(url, RuntimeError("version"))


def _unknown_schema(url: str, error: RuntimeError) -> Exception:
    """Optuna's compatibility check failed: its tables are of a schema this Optuna does not
    know (a newer Optuna's, or another program's under Optuna's names)."""
    if "compatible" not in str(error) and "version" not in str(error):
        return error
    return StoreError(
        f"Optuna's tables in {mask_url(url)} are of a schema Optuna {optuna.__version__} does "
        "not know (written by a newer Optuna, or by another program): use the Optuna version "
        "that wrote them, or a database of its own (--storage)"
    )


def open_study(
    url: str, name: str, sampler: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    """The Optuna study on the SAME database as the store (created if missing); it minimizes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name,
        storage=_rdb_storage(url),
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )


def existing_study_id(url: str, name: str) -> int | None:
    """The id of Optuna's study ``name`` at ``url``, None where there is none (never created,
    or deleted through another client); creates nothing."""
    try:
        return int(_rdb_storage(url).get_study_id_from_name(name))
    except KeyError:
        return None


def load_study(url: str, name: str) -> optuna.Study:
    """An existing study (``KeyError`` if there is none), for reading."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=_rdb_storage(url))


def minimizes(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MINIMIZE


def use_sampler(study: optuna.Study, sampler: optuna.samplers.BaseSampler) -> None:
    """Sample this driver's suggestions with ``sampler`` from now on."""
    study.sampler = sampler


def study_id(study: optuna.Study) -> int:
    # Private: Optuna has no public accessor for the study's row id, which the store keeps
    # to link its study row to Optuna's.
    return int(study._study_id)


def set_study_attrs(study: optuna.Study, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        db_call(study.set_user_attr, key, value)


# --------------------------------------------------------------------- heartbeat
def record_heartbeat(study: optuna.Study, driver_id: str) -> None:
    """Record in the study's system attributes that ``driver_id`` is alive now."""
    # Private: Optuna 4 deprecated and Optuna 5 removed Study.set_system_attr; the storage
    # still keeps study system attributes, which a user's own attributes cannot collide with.
    db_call(
        study._storage.set_study_system_attr,
        study._study_id,
        keys.HEARTBEAT_PREFIX + driver_id,
        time.time(),
    )


def heartbeats(study: optuna.Study) -> dict[str, float]:
    """Driver id -> POSIX time of its last heartbeat on this study."""
    # Private, as in record_heartbeat: Study.system_attrs is gone in Optuna 5.
    attrs = db_call(study._storage.get_study_system_attrs, study._study_id)
    return {
        key.removeprefix(keys.HEARTBEAT_PREFIX): float(value)
        for key, value in attrs.items()
        if key.startswith(keys.HEARTBEAT_PREFIX)
    }


# --------------------------------------------------------------------- trials
def trials(study: optuna.Study, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
    """The study's trials (not copied: read only), optionally only those in ``states``."""
    chosen = tuple(states) if states is not None else None
    return db_call(study.get_trials, deepcopy=False, states=chosen)


def ask(study: optuna.Study, distributions: Mapping[str, BaseDistribution]) -> optuna.Trial:
    return db_call(study.ask, dict(distributions))


def set_trial_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    db_call(trial.set_user_attr, key, value)


def trial_attrs(trial: optuna.Trial) -> dict[str, Any]:
    return dict(db_call(lambda: trial.user_attrs))


def report(trial: optuna.Trial, value: float, step: int) -> None:
    db_call(trial.report, value, step=step)


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    value: float | None = None,
    *,
    state: TrialState | None = None,
) -> None:
    try:
        db_call(study.tell, trial, value, state=state, skip_if_finished=True)
    except RuntimeError as error:
        # GridSampler calls Study.stop() once its grid is used up, which only works inside
        # optimize(); with ask/tell the state is already stored (Optuna sets it in a finally),
        # and the searcher stops asking on its own budget.
        if "Study.stop" not in str(error):
            raise


def is_retired(trial: FrozenTrial) -> bool:
    """A trial the service took out of the plan itself (study.plan): retired to be continued
    (``keys.REQUEUED``) or asked beyond the plan (``keys.SURPLUS``). It does not count."""
    attrs = trial.user_attrs
    return trial.state == TrialState.FAIL and bool(
        attrs.get(keys.REQUEUED) or attrs.get(keys.SURPLUS)
    )


def counted(trials: Iterable[FrozenTrial]) -> int:
    """Trials that count towards the study's budget: running or finished, not retired."""
    return sum(1 for t in trials if t.state != TrialState.WAITING and not is_retired(t))


def counted_trials(study: optuna.Study) -> int:
    """:func:`counted` over the study's trials."""
    return counted(trials(study))


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a WAITING (enqueued) trial will run with."""
    # Optuna keeps an enqueued trial's parameters in its system attributes under this name
    # (Study.enqueue_trial) and gives no public accessor; FrozenTrial.system_attrs is read only.
    return dict(trial.system_attrs.get("fixed_params") or {})


def state_counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(
        (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.FAIL,
            TrialState.RUNNING,
            TrialState.WAITING,
        ),
        0,
    )
    for trial in trials(study):
        counts[trial.state] = counts.get(trial.state, 0) + 1
    return counts


def best_complete(study: optuna.Study, top: int = 1) -> list[FrozenTrial]:
    """The ``top`` COMPLETE trials with a finite value, best (lowest) first."""
    complete = [
        trial
        for trial in trials(study, (TrialState.COMPLETE,))
        if trial.value is not None and math.isfinite(trial.value)
    ]
    complete.sort(key=lambda trial: float(trial.value))  # type: ignore[arg-type]
    return complete[:top]


# --------------------------------------------------------------------- retiring and requeueing
def enqueue_replacement(
    study: optuna.Study,
    params: Mapping[str, Any],
    *,
    replaces: int,
    resume_points: list[dict[str, Any] | None] | None,
) -> None:
    """Queue the parameters of retired trial ``replaces`` for the next ask, with where each seed
    may continue from (see :mod:`study.resume`)."""
    attrs: dict[str, Any] = {keys.REQUEUED_FROM: replaces}
    if resume_points and any(resume_points):
        attrs[keys.RESUME_POINTS] = resume_points
    db_call(study.enqueue_trial, dict(params), user_attrs=attrs)


def enqueue_point(study: optuna.Study, params: Mapping[str, Any]) -> None:
    """Queue a point the spec fixes (a grid point, a listed point) for the next ask."""
    db_call(study.enqueue_trial, dict(params))


def retire_lost_trial(study: optuna.Study, trial: FrozenTrial, reason: str, because: str) -> bool:
    """FAIL a RUNNING trial that another (dead) driver asked, with ``reason`` (a sentence) and
    ``because`` (a study.plan.Retired value), and queue its replacement. Returns False when
    another driver retired or finished it first."""
    # Private: the trial belongs to another process, so there is no live optuna.Trial to call;
    # the storage API by trial id is the only way to set its attributes and state.
    storage = study._storage
    trial_id = trial._trial_id
    for key, value in _retirement(reason, because).items():
        db_call(storage.set_trial_user_attr, trial_id, key, value)
    try:
        db_call(storage.set_trial_state_values, trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    enqueue_replacement(
        study,
        trial.params,
        replaces=trial.number,
        resume_points=trial.user_attrs.get(keys.RESUME_POINTS),
    )
    return True


def retire_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    params: Mapping[str, Any],
    *,
    reason: str,
    because: str,
    resume_points: list[dict[str, Any] | None] | None,
) -> None:
    """FAIL a trial this driver runs as the run's doing, not its configuration's (``because``:
    a study.plan.Retired value; it does not count), and queue its replacement, which continues
    from ``resume_points``."""
    for key, value in _retirement(reason, because).items():
        set_trial_attr(trial, key, value)
    tell(study, trial, state=TrialState.FAIL)
    enqueue_replacement(study, params, replaces=trial.number, resume_points=resume_points)


def _retirement(reason: str, because: str) -> dict[str, Any]:
    """The attributes that mark a retired trial (study.plan reads them)."""
    return {keys.FAIL_REASON: reason, keys.RETIRED_BECAUSE: because, keys.REQUEUED: True}


def study_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes."""
    return dict(db_call(lambda: study.user_attrs))


# --------------------------------------------------------------------- rewriting values
@dataclass(frozen=True)
class FinishedValues:
    """What a finished trial's numbers become under a new definition of its value."""

    value: float | None  # the trial's value (None: leave it)
    intermediate: Mapping[int, float]  # step -> value, for steps the trial already has
    user_attrs: Mapping[str, Any]  # attributes to overwrite (they must exist already)


def rewrite_finished_values(study: optuna.Study, rewrites: Mapping[int, FinishedValues]) -> int:
    """Overwrite the value, intermediate values and some user attributes of finished trials
    (by number), in one transaction. Returns the number of trials rewritten.

    Optuna refuses every update to a finished trial through its API (by design: a value is told
    once). A change of the service's own definition of a trial's value (study.score) is the one
    case where stored values must follow, so this writes Optuna's tables (``trials``,
    ``trial_values``, ``trial_intermediate_values``, ``trial_user_attributes``, unchanged from
    Optuna 3 to 5) directly, updating rows in place: no row is added or removed, and only
    finite values are written (the type column of those rows stays FINITE)."""
    import sqlalchemy as sa

    # Private: the RDB storage behind Optuna's cache wrapper, for its engine.
    storage = getattr(study._storage, "_backend", study._storage)
    engine: sa.Engine = storage.engine
    trials_t = sa.table(
        "trials",
        sa.column("trial_id"),
        sa.column("number"),  # frame-contract: not a column (Optuna's SQL column)
        sa.column("study_id"),
    )
    values_t = sa.table(
        "trial_values", sa.column("trial_id"), sa.column("objective"), sa.column("value")
    )
    steps_t = sa.table(
        "trial_intermediate_values",
        sa.column("trial_id"),
        sa.column("step"),
        sa.column("intermediate_value"),
    )
    attrs_t = sa.table(
        "trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json")
    )

    def _run() -> int:
        with engine.begin() as conn:
            ids = dict(
                conn.execute(
                    sa.select(trials_t.c.number, trials_t.c.trial_id).where(
                        trials_t.c.study_id == study_id(study)
                    )
                ).all()
            )
            done = 0
            for number, rewrite in rewrites.items():
                trial_id = ids.get(number)
                if trial_id is None:
                    continue
                if rewrite.value is not None and math.isfinite(rewrite.value):
                    conn.execute(
                        values_t.update()
                        .where(values_t.c.trial_id == trial_id, values_t.c.objective == 0)
                        .values(value=float(rewrite.value))
                    )
                for step, value in rewrite.intermediate.items():
                    if math.isfinite(value):
                        conn.execute(
                            steps_t.update()
                            .where(steps_t.c.trial_id == trial_id, steps_t.c.step == int(step))
                            .values(intermediate_value=float(value))
                        )
                for key, value in rewrite.user_attrs.items():
                    conn.execute(
                        attrs_t.update()
                        .where(attrs_t.c.trial_id == trial_id, attrs_t.c.key == key)
                        .values(value_json=json.dumps(value))
                    )
                done += 1
            return done

    return db_call(_run)
