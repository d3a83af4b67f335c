"""Run a study: store + Optuna study on one URL, Ray Tune schedules, the searcher asks and tells.

`run_study()` is the data flow of DESIGN.md as a page of named steps; each step is a function
below it, in the order it runs.
"""

from __future__ import annotations

import functools
import platform
import signal
import sys
import tempfile
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
from ray.tune.stopper import Stopper
from rich.console import Console

from study import keys
from study import optuna_study as ostudy
from study.callbacks import FaultLineCallback, StoreCallback
from study.disk import disk_line, is_disk_full, require_space
from study.errors import UserError
from study.heartbeat import HeartbeatCallback, new_driver_id, other_live_drivers
from study.identity import SpecSnapshot, change_record, differences, snapshot_of
from study.ladder import promoted_spec
from study.plan import StudyPlan, TrialEnd
from study.progress import ProgressCallback
from study.ray_session import RaySessionError, check_ray_directories, quiet_logger, ray_session
from study.reaper import DRIVER_LOST, continue_orphans, continued_trials, reap_lost_trials
from study.rescore import mark_scored, needs_rescore, rescore_study
from study.scheduler import ConfigurationASHA
from study.searcher import INTERRUPTED, METRIC, OptunaSearcher
from study.space import build_sampler
from study.spec import StudySpec
from study.store import Store, mask_url, normalize_url, resolve_storage_url, scrub_secrets

__all__ = [
    "INTERRUPTED",
    "RAY_OUTPUT_NAME",
    "StudyOutcome",
    "StudyRunError",
    "package_versions",
    "resolve_storage",
    "run_study",
]


# The file in a run's experiment directory that takes what Ray and Tune print on the driver.
RAY_OUTPUT_NAME = "ray-output.log"


class StudyRunError(UserError, RuntimeError):
    """A study that cannot start (e.g. its stored direction differs from this spec's)."""


@dataclass
class StudyOutcome:
    name: str
    storage: str  # masked
    status: str  # finished | interrupted
    # The signal that stopped the run (SIGINT, SIGTERM, SIGHUP), if one did.
    stopped_by: signal.Signals | None = None
    # Why the run stopped itself before its plan was done (a full disk, ...), if it did.
    stop_reason: str | None = None
    opened: bool = False  # False: stopped before the study was opened (nothing written)
    counts: dict[str, int] = field(default_factory=dict)  # by TrialState name
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    best_number: int | None = None
    reaped: list[int] = field(default_factory=list)
    # Retired trials whose replacement has run (study.reaper.continued_trials): nothing of them
    # is left to continue. None: not read (the study was not opened).
    continued: list[int] | None = None
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
    accept_changes: bool = False,
) -> StudyOutcome:
    """Run or resume ``spec``; ``trainable`` replaces the training trainable (benchmarks).

    ``accept_changes``: a rerun may change the stored spec's plan settings (study.identity)."""
    started = time.perf_counter()
    console = console or Console(markup=False)
    file_spec = spec
    spec = _effective_spec(spec, storage, n_trials)
    assert spec.storage is not None
    outcome = StudyOutcome(name=spec.name, storage=mask_url(spec.storage), status="finished")
    _check_ray_directories(spec, ray_address)
    _check_disk(spec)
    _scrub_argv(storage, console)
    study: optuna.Study | None = None
    driver_id = new_driver_id()
    try:
        # Signals first: SIGTERM while Ray starts stops the run too (study.ray_session keeps
        # Ray from replacing the handlers). Ray next: a spec whose trials can never be
        # scheduled fails before the store is written.
        with (
            _stop_signals(outcome),
            _ray(spec, ray_address, console, _ray_output_file(spec, driver_id)),
            Store.open(spec.storage) as store,
        ):
            try:
                study = _open_study(spec, store, file_spec, driver_id, accept_changes, console)
                if spec.promote is not None:
                    spec, promotion = promoted_spec(spec, study, spec.storage)
                    console.print(promotion.line(), markup=False, highlight=False)
                _join(study, spec, driver_id)
                outcome.reaped = _reap(study, store, spec, driver_id, console)
                if not _plan_done(spec, study, console):
                    _tune(study, store, spec, driver_id, console, trainable, outcome)
            except KeyboardInterrupt:  # a signal before Tune had installed its own handler
                outcome.status = "interrupted"
            _finish_study(store, spec, outcome)
    except KeyboardInterrupt:  # while Ray was starting: nothing of the study was written
        outcome.status = "interrupted"
    outcome.opened = study is not None
    if study is not None:
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


def _check_ray_directories(spec: StudySpec, address: str | None) -> None:
    """HOME and the temporary directory a local Ray writes to can be written (study.ray_session),
    before anything is: one line naming the variable instead of Ray's traceback."""
    try:
        check_ray_directories(address or spec.ray_address)
    except RaySessionError as error:
        raise StudyRunError(str(error)) from None


@contextmanager
def _ray(spec: StudySpec, address: str | None, console: Console, output: Path) -> Iterator[None]:
    """Ray for the run (study.ray_session): on a cluster that can grow, waits for a node that
    fits a trial (resources.wait_for_nodes_s), saying so on the console. What Ray itself prints
    on the driver goes to ``output`` instead of the terminal."""
    try:
        with ray_session(
            address or spec.ray_address,
            cpu=spec.resources.cpu,
            gpu=spec.resources.gpu,
            wait_s=spec.resources.wait_for_nodes_s,
            say=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
            mask=_mask_argument,
            output=output,
        ):
            yield
    except RaySessionError as error:
        raise StudyRunError(str(error)) from None


def _mask_argument(argument: str) -> str:
    """``argument`` with a URL's password masked (``--storage URL``, ``--storage=URL``)."""
    if "://" not in argument:
        return argument
    masked = mask_url(argument)
    return masked if "***" in masked and "***" not in argument else argument


def _scrub_argv(storage: str | None, console: Console) -> None:
    """A password given in ``--storage`` leaves ``sys.argv`` (the URL in use is kept in the
    spec); Ray records the masked command line, which also becomes the process title
    (study.ray_session). Says once how to keep it off the command line altogether: the process
    list shows it until then."""
    sys.argv[:] = [_mask_argument(argument) for argument in sys.argv]
    if storage and "***" in mask_url(storage) and "***" not in storage:
        console.print(
            "the --storage URL holds a password: it is masked in what this run and Ray record, "
            "but others on this machine could read it in the process list until Ray started; "
            "pass it as "
            f"ZONEOUT_STUDY_STORAGE='{mask_url(storage)}' (with the real password) instead",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@contextmanager
def _stop_signals(outcome: StudyOutcome) -> Iterator[None]:
    """SIGTERM (docker stop, Kubernetes, Ray's autoscaler) and SIGHUP (a closed terminal) stop
    the run as Ctrl-C does: they are handed to whatever handles SIGINT at that moment (Ray
    Tune's, which stops the trials and keeps their checkpoints, or Python's, which raises
    KeyboardInterrupt). Ray would replace them while it starts (study.ray_session keeps it
    from doing so in this process). The signal is kept in ``outcome`` for the exit status
    (128 + n)."""

    def forward(signum: int, frame: Any) -> None:
        outcome.stopped_by = outcome.stopped_by or signal.Signals(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def on_sigint(signum: int, frame: Any) -> None:
        outcome.stopped_by = outcome.stopped_by or signal.SIGINT
        raise KeyboardInterrupt

    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in (*stops, signal.SIGINT)}
    for signum in stops:
        signal.signal(signum, forward)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _open_study(
    spec: StudySpec,
    store: Store,
    file_spec: StudySpec,
    driver_id: str,
    accept_changes: bool,
    console: Console,
) -> optuna.Study:
    """The Optuna study on the store's URL, checked against the spec it was made with
    (study.identity), its attributes, and the store's study row with a password-free spec
    snapshot. A study whose values follow an older definition is rescored first (study.score:
    the sampler must learn from the number every report ranks by)."""
    assert spec.storage is not None
    linked = store.optuna_study_id(spec.name)
    if linked is not None and ostudy.existing_study_id(spec.storage, spec.name) != linked:
        # Deleted through another client (optuna-dashboard with writes allowed,
        # optuna.delete_study): a new Optuna study under the name would start its trial
        # numbers at 0 beside the store's records of the old ones.
        raise StudyRunError(
            f"study {spec.name!r} was deleted from Optuna's tables in {mask_url(spec.storage)} "
            "by another client; its zoneout-study records remain (list, status, export and "
            "report still read them): give this spec a new name to run it again"
        )
    study = ostudy.open_study(spec.storage, spec.name, build_sampler(spec))
    if not ostudy.minimizes(study):
        raise StudyRunError(
            f"study {spec.name!r} in {mask_url(spec.storage)} maximizes; this service minimizes "
            "the validation metric: use another study name"
        )
    _check_identity(study, store, file_spec, driver_id, accept_changes)
    attrs: dict[str, Any] = {keys.METRIC: spec.metric, keys.MAX_EPOCHS: spec.max_epochs}
    if spec.scheduler.name == "asha":
        attrs[keys.GRACE_PERIOD] = spec.scheduler.grace_period
        attrs[keys.REDUCTION_FACTOR] = spec.scheduler.reduction_factor
    ostudy.set_study_attrs(study, attrs)
    # The snapshot is the spec's: --n-trials (n_trials=) limits this run and leaves the spec's
    # n_trials as it is (a run_study(n_trials=0) that only opens the study stored a snapshot
    # that its own schema refused, and every report then read it as loose data).
    snapshot = spec.model_copy(update={"n_trials": file_spec.n_trials})
    store.register_study(
        spec.name,
        spec=scrub_secrets(snapshot.model_dump(mode="json")),
        versions=package_versions(),
        direction="minimize",
        metric=spec.metric,
        optuna_study_id=ostudy.study_id(study),
    )
    if needs_rescore(study):
        console.print(rescore_study(spec.storage, spec.name, store).line())
        # A fresh study object: the old one's storage cache holds the values from before.
        study = ostudy.open_study(spec.storage, spec.name, build_sampler(spec))
    else:
        mark_scored(study)
    return study


def _check_identity(
    study: optuna.Study,
    store: Store,
    spec: StudySpec,
    driver_id: str,
    accept_changes: bool,
) -> None:
    """Refuse a spec that is not the stored study's (identity), or that changes its plan
    settings without ``accept_changes``; store the snapshot on the first run and every
    accepted change after it."""
    where = mask_url(store.url)
    given = snapshot_of(spec.model_dump(mode="json"))
    attrs = ostudy.study_attrs(study)
    raw = attrs.get(keys.SPEC_IDENTITY)
    if raw is not None:
        stored: SpecSnapshot | None = SpecSnapshot.from_json(raw)
    elif spec.name in set(store.studies_frame()["name"]) and store.study_spec(spec.name):
        # A study from before identities were stored: its spec snapshot is the reference.
        stored = snapshot_of(store.study_spec(spec.name))
    else:
        stored = None
    if stored is not None:
        identity = differences(stored.identity, given.identity)
        if identity:
            raise StudyRunError(
                f"study {spec.name!r} in {where} was made with another "
                f"spec; this one differs in what the study is: "
                + "; ".join(change.describe() for change in identity)
                + ". Its trials would not be comparable: give this spec a new name"
            )
        settings = differences(stored.settings, given.settings)
        if settings and not accept_changes:
            raise StudyRunError(
                f"study {spec.name!r} was run with other plan settings: "
                + "; ".join(change.describe() for change in settings)
                + ". Run with --accept-change to continue the study under these settings "
                "(recorded in the study), or give this spec a new name"
            )
        if settings:
            history = list(attrs.get(keys.SPEC_CHANGES) or [])
            history.append(change_record(settings, driver_id))
            ostudy.set_study_attrs(study, {keys.SPEC_CHANGES: history})
        if raw is not None and not settings:
            return
    ostudy.set_study_attrs(study, {keys.SPEC_IDENTITY: given.to_json()})


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
    end = TrialEnd.DRIVER_LOST
    for number in reaped:
        store.upsert_trial(
            spec.name,
            number,
            state=end.state,
            end_reason=end,
            error=DRIVER_LOST,  # display text
            retired=end.retired,
        )
    if reaped:
        console.print(f"continuing {len(reaped)} trial(s) left running by a lost driver: {reaped}")
    orphans = continue_orphans(study)
    if orphans:
        console.print(
            f"continuing {len(orphans)} retired trial(s) that had no replacement: {orphans}"
        )
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
    searcher = OptunaSearcher(
        study,
        spec,
        driver_id=driver_id,
        recorded_epochs=functools.partial(store.recorded_epochs, spec.name),
    )
    store_callback = StoreCallback(store, searcher, spec.name)
    progress = ProgressCallback(
        searcher,
        metric=spec.metric,
        planned=searcher.plan.size - ostudy.counted_trials(study),
        console=console,
    )
    heartbeat = HeartbeatCallback(study, driver_id)
    # A worker that died (or a trial Ray retries) is one line on the terminal; what Ray and
    # Tune log about it (Tune's traceback of the failed trial, the raylet's report of the dead
    # worker) goes to the run's Ray output file (study.ray_session), the trial's error to its
    # error file and the store.
    faults = FaultLineCallback(searcher, console, details=_ray_output_file(spec, driver_id))
    tuner = _tuner(
        spec,
        driver_id,
        searcher,
        [store_callback, heartbeat, progress, faults],
        trainable,
        _scheduler(spec, searcher, study),
    )
    try:
        with (
            # On Ctrl-C Tune logs "Trials did not complete" and advises Tuner.restore(): wrong
            # advice even in the Ray output file (a study resumes by running its spec again,
            # which the CLI says).
            quiet_logger("ray.tune.tune"),
            # Its snapshot sync fails on a full disk with a traceback; the run says why it stops.
            # The periodic snapshot's copy runs in the background and the next one reports the
            # failure through Ray's syncer: the same fact, the same traceback. (A study resumes
            # from its own store, never from Tune's snapshot.)
            quiet_logger("ray.tune.execution.experiment_state"),
            quiet_logger("ray.train._internal.syncer"),
            # After an interrupted run it warns that a trial without a result has no metrics.
            quiet_logger("ray.tune.analysis.experiment_analysis"),
        ):
            tuner.fit()
    except KeyboardInterrupt:
        outcome.status = "interrupted"
    except Exception as error:
        # The disk under Tune's experiment directory or under the database filled: the run
        # stops as if interrupted, with the reason; anything else is a bug and propagates.
        # (Once a trial failed for a full disk, Tune's result grid cannot read back the error
        # it could not write, and raises EOFError after the run: that too is the full disk.)
        if not is_disk_full(error) and searcher.stop_reason is None:
            raise
        searcher.stop_reason = searcher.stop_reason or f"the disk is full ({disk_line(error)})"
    finally:
        progress.close()
        _finish_open_trials(spec, store, searcher, outcome, store_callback)


def _finish_open_trials(
    spec: StudySpec,
    store: Store,
    searcher: OptunaSearcher,
    outcome: StudyOutcome,
    store_callback: StoreCallback,
) -> None:
    """Retire what is still open (to be continued) and write the outcome's counts. On a full
    database disk the writes fail: the open trials then stay RUNNING for the next run's reaper,
    which continues them the same way."""
    left_open: list[int] = []
    try:
        # Tune's own SIGINT handler ends fit() without an exception: trials the run left open
        # are what tells an interrupted run from a finished one.
        left_open = searcher.finalize(
            f"{INTERRUPTED} ({searcher.stop_reason})" if searcher.stop_reason else INTERRUPTED
        )
        for number in searcher.retired():
            retired = searcher.outcome(number)
            end = retired.end if retired and retired.retired else TrialEnd.INTERRUPTED
            store.upsert_trial(
                spec.name,
                number,
                state=end.state,
                end_reason=end,
                error=retired.error if retired and retired.error else INTERRUPTED,
                retired=end.retired,
            )
    except Exception as error:
        if not is_disk_full(error):
            raise
        searcher.stop_reason = searcher.stop_reason or f"the disk is full ({disk_line(error)})"
    if left_open or outcome.stopped_by is not None or searcher.stop_reason is not None:
        outcome.status = "interrupted"
    outcome.stop_reason = searcher.stop_reason
    outcome.epochs_written = store_callback.epochs_written
    outcome.store_write_seconds = store_callback.write_seconds


def _check_disk(spec: StudySpec) -> None:
    """The checkpoint directory and an SQLite database's directory can be written and have
    room (study.disk), before Ray starts a trial."""
    from sqlalchemy.engine import make_url

    root = spec.checkpoint_path or str(Path.cwd() / "runs")
    if "://" not in root:
        require_space(Path(root).expanduser(), "checkpoint directory")
    assert spec.storage is not None
    url = make_url(normalize_url(spec.storage))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        require_space(Path(url.database).expanduser().absolute().parent, "database directory")


def _plan_done(spec: StudySpec, study: optuna.Study, console: Console) -> bool:
    """True (and says so) when the study already holds every configuration of its plan."""
    plan = StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points)
    stored = ostudy.trials(study)
    held = ostudy.counted(stored)
    done = held >= plan.size or (
        plan.exhaustive
        and not plan.remaining(stored)
        and not any(t.state == TrialState.WAITING for t in stored)
    )
    if done:
        console.print(
            f"study {spec.name!r} holds {held} configurations (its plan: {plan.size}); "
            "nothing to run"
        )
    return done


def _finish_study(store: Store, spec: StudySpec, outcome: StudyOutcome) -> None:
    """The study row's final status. On a full database disk it cannot be written: the row
    stays 'running' and its trials RUNNING, and the next run reaps and continues them."""
    try:
        store.finish_study(spec.name, outcome.status)
    except Exception as error:
        if not is_disk_full(error):
            raise
        outcome.status = "interrupted"
        outcome.stop_reason = outcome.stop_reason or f"the disk is full ({disk_line(error)})"


def _scheduler(spec: StudySpec, searcher: OptunaSearcher, study: optuna.Study) -> Any:
    """ASHA over configurations (study.scheduler), its rungs filled from the stored trials; or
    first-in-first-out when the spec asks for no early stopping."""
    from ray.tune.schedulers import FIFOScheduler

    if spec.scheduler.name != "asha":
        return FIFOScheduler()
    return ConfigurationASHA(
        searcher,
        grace_period=min(spec.scheduler.grace_period, spec.max_epochs),
        reduction_factor=spec.scheduler.reduction_factor,
        max_epochs=spec.max_epochs,
        stored=[t for t in ostudy.trials(study) if not ostudy.is_retired(t)],
    )


def _tuner(
    spec: StudySpec,
    driver_id: str,
    searcher: OptunaSearcher,
    callbacks: list,
    trainable: Any,
    scheduler: Any,
) -> Any:
    from ray import tune

    from trials.trainable import run_trial

    return tune.Tuner(
        tune.with_resources(
            trainable or run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
        ),
        tune_config=tune.TuneConfig(
            metric=METRIC,
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
            name=_experiment_name(spec, driver_id),
            storage_path=_checkpoint_root(spec),
            callbacks=callbacks,
            # The searcher's stop (a full disk, a point cut off again and again) ends every
            # running trial; they are retired and continued by the next run.
            stop=_SearcherStop(searcher),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            # Every checkpoint stays with Tune; the store callback deletes all but each run's
            # newest two (study.resume.CheckpointRetention). Tune's own num_to_keep would force
            # a snapshot of the whole run's state every other epoch of every trial: a cost per
            # trial that grows with the trials in the run (benchmarks/study_scale.py).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            verbose=0,
        ),
    )


class _SearcherStop(Stopper):
    """A Ray Tune stopper that ends every trial once the searcher has a stop reason."""

    def __init__(self, searcher: OptunaSearcher) -> None:
        self._searcher = searcher

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self._searcher.stop_reason is not None

    def stop_all(self) -> bool:
        return self._searcher.stop_reason is not None


def _checkpoint_root(spec: StudySpec) -> str:
    root = spec.checkpoint_path or str(Path.cwd() / "runs")
    if "://" in root:
        return root
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _experiment_name(spec: StudySpec, driver_id: str) -> str:
    """Tune's experiment directory of this run under the checkpoint path: the study's name and
    the driver's start time."""
    return f"{spec.name}-{driver_id.rsplit(':', 1)[-1]}"


def _ray_output_file(spec: StudySpec, driver_id: str) -> Path:
    """Where what Ray and Tune print on the driver goes in this run (study.ray_session): beside
    the run's trials, in its Tune experiment directory. A checkpoint path that is a URI
    (s3://...) has no local directory: the file goes under the system's temporary directory."""
    root = spec.checkpoint_path or str(Path.cwd() / "runs")
    if "://" in root:
        base = Path(tempfile.gettempdir()) / "zoneout-study"
    else:
        base = Path(root).expanduser().resolve()
    return base / _experiment_name(spec, driver_id) / RAY_OUTPUT_NAME


def _summarize(study: optuna.Study, outcome: StudyOutcome) -> None:
    outcome.counts = {state.name: n for state, n in ostudy.state_counts(study).items()}
    outcome.continued = continued_trials(study)
    best = ostudy.best_complete(study)
    if best:
        outcome.best_value = best[0].value
        outcome.best_params = dict(best[0].params)
        outcome.best_number = best[0].number
