"""Run a study: store + Optuna study on one URL, Ray Tune schedules, the searcher asks and tells.

`run_study()` is the whole data flow of DESIGN.md in one function, top to bottom.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
import zlib
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from study.callbacks import StoreCallback
from study.errors import UserError
from study.progress import ProgressCallback
from study.reaper import DRIVER_LOST, beat, other_live_drivers, reap_lost_trials
from study.searcher import OptunaSearcher, counted_trials, new_driver_id
from study.space import build_sampler
from study.spec import StudySpec
from study.store import (
    Store,
    StoreError,
    default_storage_url,
    mask_url,
    normalize_url,
    retry_connect,
    scrub_secrets,
)

__all__ = [
    "StoreError",
    "StudyOutcome",
    "StudyRunError",
    "open_optuna_study",
    "package_versions",
    "resolve_storage",
    "run_study",
]

INTERRUPTED = "interrupted: the driver stopped before the trial finished"


class StudyRunError(UserError, RuntimeError):
    """A study that cannot start (e.g. its stored direction differs from this spec's)."""


@dataclass
class StudyOutcome:
    name: str
    storage: str  # masked
    status: str  # finished | interrupted
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    best_number: int | None = None
    reaped: list[int] = field(default_factory=list)
    epochs_written: int = 0
    store_write_seconds: float = 0.0
    wall_seconds: float = 0.0


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("zoneout-study", "torch", "optuna", "ray", "sqlalchemy", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _optuna_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """RDBStorage creates Optuna's schema on first use without a lock: two drivers starting on
    an empty database race (e.g. both CREATE TYPE studydirection). The loser retries and finds
    the schema made."""
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_optuna_study(
    url: str, name: str, sampler: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    """The Optuna study on the SAME database as the store (created if missing)."""
    url = normalize_url(url)  # 'postgresql://' means psycopg 3 here, as in the store
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 30}
    else:
        engine_kwargs["pool_pre_ping"] = True
    storage = _optuna_storage(url, engine_kwargs)
    # The database answered just now: from here on a restart (pool_pre_ping finds the dead
    # connection, the server is not back yet) is waited out instead of failing the study.
    retry_connect(storage.engine)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )


def _ray_init(address: str | None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "WARNING",
        "configure_logging": True,
    }
    # A local Ray this process starts: Ray >= 2.59 turns token authentication on for it (a
    # token in ~/.ray/auth_token, made if missing) and warns that it did, on every run. The
    # protection stays; the warning about a cluster of our own making goes. (Setting
    # RAY_AUTH_MODE=token here instead does not work: Ray has already read its configuration,
    # so this driver would not send the token its own new cluster asks for.)
    starts_local = not address and not os.environ.get("RAY_ADDRESS")
    quiet = _quiet_logger(_RAY_AUTH_LOGGER, logging.ERROR) if starts_local else nullcontext()
    try:
        with quiet:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise StudyRunError(
            f"cannot connect to Ray at {address or 'a new local instance'}: {first_line}; "
            "check --ray-address (and that every node uses the same RAY_AUTH_MODE)"
        ) from None
    return True


_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Drop ``name``'s records below ``level`` while the block runs."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def resolve_storage(spec: StudySpec, storage: str | None = None) -> str:
    """--storage, then $ZONEOUT_STUDY_STORAGE, then the spec's storage, then the default."""
    return (
        storage or os.environ.get("ZONEOUT_STUDY_STORAGE") or spec.storage or default_storage_url()
    )


def _check_resources(spec: StudySpec) -> None:
    """A trial asking for more than any node of the cluster has would wait forever."""
    import ray

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    largest_cpu = max((node["Resources"].get("CPU", 0.0) for node in nodes), default=0.0)
    largest_gpu = max((node["Resources"].get("GPU", 0.0) for node in nodes), default=0.0)
    if spec.resources.cpu > largest_cpu:
        raise StudyRunError(
            f"resources.cpu is {spec.resources.cpu:g} per trial but the largest Ray node has "
            f"{largest_cpu:g} CPUs: lower resources.cpu or add bigger nodes"
        )
    if spec.resources.gpu > largest_gpu:
        raise StudyRunError(
            f"resources.gpu is {spec.resources.gpu:g} per trial but the largest Ray node has "
            f"{largest_gpu:g} GPUs: set resources.gpu to 0 here or run on a GPU cluster"
        )


def run_study(
    spec: StudySpec,
    *,
    storage: str | None = None,
    ray_address: str | None = None,
    n_trials: int | None = None,
    console: Console | None = None,
    trainable: Any = None,
) -> StudyOutcome:
    """Run or resume ``spec``; ``trainable`` replaces the training trainable (benchmarks)."""

    # The legacy reporter honours verbose=0: the study draws its own progress display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every epoch reports a checkpoint by design; Tune's warning about frequent experiment
    # snapshots would repeat all study long.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from trials.trainable import run_trial

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = console or Console()
    if n_trials is not None:
        spec = spec.model_copy(update={"n_trials": n_trials})
    url = resolve_storage(spec, storage)
    if url != spec.storage:
        spec = spec.model_copy(update={"storage": url})

    # 0. Ray first: a spec whose trials can never be scheduled must fail before anything is
    #    written to the store.
    started_ray = _ray_init(ray_address or spec.ray_address)
    try:
        _check_resources(spec)
    except StudyRunError:
        if started_ray:
            import ray

            ray.shutdown()
        raise

    # 1. Schema (Alembic) and the study row, with a password-free spec snapshot.
    store = Store.open(url)
    study = open_optuna_study(url, spec.name, build_sampler(spec))
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise StudyRunError(
            f"study {spec.name!r} in {mask_url(url)} maximizes; this service minimizes the "
            "validation metric: use another study name"
        )
    study.set_user_attr("metric", spec.metric)
    study.set_user_attr("max_epochs", spec.max_epochs)
    if spec.scheduler.name == "asha":
        study.set_user_attr("grace_period", spec.scheduler.grace_period)
        study.set_user_attr("reduction_factor", spec.scheduler.reduction_factor)
    store.register_study(
        spec.name,
        spec=scrub_secrets(spec.model_dump(mode="json")),
        versions=package_versions(),
        direction="minimize",
        metric=spec.metric,
        optuna_study_id=study._study_id,
    )

    # 2. Trials a dead driver left RUNNING: FAIL ('driver lost') and re-enqueued.
    driver_id = new_driver_id()
    beat(study, driver_id)
    if study.get_trials(deepcopy=False) or other_live_drivers(study, driver_id):
        # Joining a study under way: a sampler seeded like the first driver's would replay
        # its suggestions (random start-up trials, random search).
        study.sampler = build_sampler(spec, seed_offset=zlib.crc32(driver_id.encode()))
    reaped = reap_lost_trials(study, current_driver=driver_id)
    for number in reaped:
        store.upsert_trial(spec.name, number, state="FAIL", error=DRIVER_LOST)
    if reaped:
        console.print(f"re-running {len(reaped)} trial(s) left running by a lost driver: {reaped}")

    outcome = StudyOutcome(name=spec.name, storage=mask_url(url), status="finished", reaped=reaped)
    if counted_trials(study) >= spec.n_trials:
        console.print(f"study {spec.name!r} already has {spec.n_trials} trials; nothing to run")
        _summarize(study, outcome)
        store.finish_study(spec.name, "finished")
        if started_ray:
            import ray

            ray.shutdown()
        return outcome

    # 3. Ray Tune: our searcher (ask/tell), ASHA, the store and progress callbacks.
    searcher = OptunaSearcher(study, spec, driver_id=driver_id)
    store_callback = StoreCallback(store, searcher, spec.name)
    progress = ProgressCallback(
        searcher,
        metric=spec.metric,
        planned=spec.n_trials - counted_trials(study),
        console=console,
        heartbeat=lambda: beat(study, driver_id),
    )
    if spec.scheduler.name == "asha":
        scheduler: Any = ASHAScheduler(
            time_attr="epoch",
            max_t=spec.max_epochs,
            grace_period=min(spec.scheduler.grace_period, spec.max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    storage_path = Path(spec.checkpoint_path or Path.cwd() / "runs").expanduser()
    if "://" not in str(storage_path):
        storage_path = storage_path.resolve()
        storage_path.mkdir(parents=True, exist_ok=True)
    trial_function = tune.with_resources(
        trainable or run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )
    tuner = tune.Tuner(
        trial_function,
        tune_config=tune.TuneConfig(
            metric="valid_metric",
            mode="min",
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1,
            max_concurrent_trials=spec.max_concurrent_trials,
            # A new worker process per trial costs seconds (imports, torch start-up); the
            # trainable keeps no state between trials, so workers are reused.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{driver_id.rsplit(':', 1)[-1]}",
            storage_path=str(storage_path),
            callbacks=[store_callback, progress],
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    try:
        # On Ctrl-C Tune stops the trials, logs "Trials did not complete" and advises
        # Tuner.restore(); a study resumes by running its spec again, which the CLI says.
        with _quiet_logger("ray.tune.tune"):
            tuner.fit()
    except KeyboardInterrupt:
        outcome.status = "interrupted"
    finally:
        progress.close()
        # Anything still open was cut short: FAIL now, parameters queued for the next run.
        retired = searcher.finalize(INTERRUPTED)
        for number in retired:
            store.upsert_trial(spec.name, number, state="FAIL", error=INTERRUPTED)
        if retired:
            outcome.status = "interrupted"
        store.finish_study(spec.name, outcome.status)
        if started_ray:
            import ray

            ray.shutdown()

    _summarize(study, outcome)
    outcome.epochs_written = store_callback.epochs_written
    outcome.store_write_seconds = store_callback.write_seconds
    outcome.wall_seconds = time.perf_counter() - started
    store.close()
    return outcome


def _summarize(study: optuna.Study, outcome: StudyOutcome) -> None:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    outcome.counts = counts
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = min(complete, key=lambda trial: trial.value)  # type: ignore[arg-type,return-value]
        outcome.best_value = best.value
        outcome.best_params = dict(best.params)
        outcome.best_number = best.number
