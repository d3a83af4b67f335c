"""Run a study: store + Optuna study on one URL, Ray Tune schedules, the searcher asks and tells.

`run_study()` is the data flow of DESIGN.md as a page of named steps; each step is a function
below it, in the order it runs.
"""

from __future__ import annotations

import platform
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from study import keys
from study import optuna_study as ostudy
from study.callbacks import ProgressCallback, StoreCallback
from study.heartbeat import HeartbeatCallback, new_driver_id, other_live_drivers
from study.ray_session import RaySessionError, ray_session
from study.reaper import DRIVER_LOST, reap_lost_trials
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import StudySpec
from study.store import Store, mask_url, resolve_storage_url, scrub_secrets

__all__ = [
    "INTERRUPTED",
    "StudyOutcome",
    "StudyRunError",
    "package_versions",
    "resolve_storage",
    "run_study",
]

INTERRUPTED = "interrupted: the driver stopped before the trial finished"


class StudyRunError(RuntimeError):
    """A study that cannot start (e.g. its stored direction differs from this spec's)."""


@dataclass
class StudyOutcome:
    name: str
    storage: str  # masked
    status: str  # finished | interrupted
    counts: dict[str, int] = field(default_factory=dict)  # by TrialState name
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    best_number: int | None = None
    reaped: list[int] = field(default_factory=list)
    epochs_written: int = 0
    store_write_seconds: float = 0.0
    wall_seconds: float = 0.0


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
    started = time.perf_counter()
    console = console or Console()
    spec = _effective_spec(spec, storage, n_trials)
    assert spec.storage is not None
    # Ray first: a spec whose trials can never be scheduled fails before the store is written.
    with _ray(spec, ray_address), Store.open(spec.storage) as store:
        study = _open_study(spec, store)
        driver_id = new_driver_id()
        _join(study, spec, driver_id)
        outcome = StudyOutcome(name=spec.name, storage=mask_url(spec.storage), status="finished")
        outcome.reaped = _reap(study, store, spec, driver_id, console)
        if ostudy.counted_trials(study) >= spec.n_trials:
            console.print(f"study {spec.name!r} already has {spec.n_trials} trials; nothing to run")
        else:
            _tune(study, store, spec, driver_id, console, trainable, outcome)
        store.finish_study(spec.name, outcome.status)
    _summarize(study, outcome)
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


def resolve_storage(spec: StudySpec, storage: str | None = None) -> str:
    """The URL a run of ``spec`` uses (see :func:`study.store.resolve_storage_url`)."""
    return resolve_storage_url(storage, spec.storage)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("zoneout-study", "torch", "optuna", "ray", "sqlalchemy", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# --------------------------------------------------------------------- the steps
def _effective_spec(spec: StudySpec, storage: str | None, n_trials: int | None) -> StudySpec:
    """The spec with the command line's n_trials and the storage URL actually used."""
    updates: dict[str, Any] = {"storage": resolve_storage_url(storage, spec.storage)}
    if n_trials is not None:
        updates["n_trials"] = n_trials
    return spec.model_copy(update=updates)


@contextmanager
def _ray(spec: StudySpec, address: str | None) -> Iterator[None]:
    try:
        with ray_session(
            address or spec.ray_address, cpu=spec.resources.cpu, gpu=spec.resources.gpu
        ):
            yield
    except RaySessionError as error:
        raise StudyRunError(str(error)) from None


def _open_study(spec: StudySpec, store: Store) -> optuna.Study:
    """The Optuna study on the store's URL, its attributes, and the store's study row with a
    password-free spec snapshot."""
    assert spec.storage is not None
    study = ostudy.open_study(spec.storage, spec.name, build_sampler(spec))
    if not ostudy.minimizes(study):
        raise StudyRunError(
            f"study {spec.name!r} in {mask_url(spec.storage)} maximizes; this service minimizes "
            "the validation metric: use another study name"
        )
    attrs: dict[str, Any] = {keys.METRIC: spec.metric, keys.MAX_EPOCHS: spec.max_epochs}
    if spec.scheduler.name == "asha":
        attrs[keys.GRACE_PERIOD] = spec.scheduler.grace_period
        attrs[keys.REDUCTION_FACTOR] = spec.scheduler.reduction_factor
    ostudy.set_study_attrs(study, attrs)
    store.register_study(
        spec.name,
        spec=scrub_secrets(spec.model_dump(mode="json")),
        versions=package_versions(),
        direction="minimize",
        metric=spec.metric,
        optuna_study_id=ostudy.study_id(study),
    )
    return study


def _join(study: optuna.Study, spec: StudySpec, driver_id: str) -> None:
    """Announce this driver; a driver joining a study under way samples with its own seed (the
    first driver's seed would replay its suggestions: random start-up trials, random search)."""
    ostudy.record_heartbeat(study, driver_id)
    if ostudy.trials(study) or other_live_drivers(study, driver_id):
        ostudy.use_sampler(study, build_sampler(spec, seed_offset=zlib.crc32(driver_id.encode())))


def _reap(
    study: optuna.Study, store: Store, spec: StudySpec, driver_id: str, console: Console
) -> list[int]:
    """Trials a dead driver left RUNNING: FAIL ('driver lost'), replacements queued that
    continue their checkpoints."""
    reaped = reap_lost_trials(study, current_driver=driver_id)
    for number in reaped:
        store.upsert_trial(spec.name, number, state=TrialState.FAIL, error=DRIVER_LOST)
    if reaped:
        console.print(f"continuing {len(reaped)} trial(s) left running by a lost driver: {reaped}")
    return reaped


def _tune(
    study: optuna.Study,
    store: Store,
    spec: StudySpec,
    driver_id: str,
    console: Console,
    trainable: Any,
    outcome: StudyOutcome,
) -> None:
    """Ray Tune with our searcher (ask/tell), ASHA, the store, heartbeat and progress
    callbacks. Whatever is still open when it stops (Ctrl-C) is retired and queued to
    continue from its checkpoints."""
    searcher = OptunaSearcher(study, spec, driver_id=driver_id)
    store_callback = StoreCallback(store, searcher, spec.name)
    progress = ProgressCallback(searcher, metric=spec.metric, console=console)
    heartbeat = HeartbeatCallback(study, driver_id)
    tuner = _tuner(spec, driver_id, searcher, [store_callback, heartbeat, progress], trainable)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        outcome.status = "interrupted"
    finally:
        progress.close()
        retired = searcher.finalize(INTERRUPTED)
        for number in retired:
            store.upsert_trial(spec.name, number, state=TrialState.FAIL, error=INTERRUPTED)
        if retired:
            outcome.status = "interrupted"
        outcome.epochs_written = store_callback.epochs_written
        outcome.store_write_seconds = store_callback.write_seconds


def _tuner(
    spec: StudySpec, driver_id: str, searcher: OptunaSearcher, callbacks: list, trainable: Any
) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from trials.trainable import run_trial

    if spec.scheduler.name == "asha":
        scheduler: Any = ASHAScheduler(
            time_attr="epoch",
            max_t=spec.max_epochs,
            grace_period=min(spec.scheduler.grace_period, spec.max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        tune.with_resources(
            trainable or run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
        ),
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
            storage_path=_checkpoint_root(spec),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            # The newest two: the one a replacement continues from is never deleted before the
            # next one has been recorded (see study.resume).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )


def _checkpoint_root(spec: StudySpec) -> str:
    root = spec.checkpoint_path or str(Path.cwd() / "runs")
    if "://" in root:
        return root
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _summarize(study: optuna.Study, outcome: StudyOutcome) -> None:
    outcome.counts = {state.name: n for state, n in ostudy.state_counts(study).items()}
    best = ostudy.best_complete(study)
    if best:
        outcome.best_value = best[0].value
        outcome.best_params = dict(best[0].params)
        outcome.best_number = best[0].number
