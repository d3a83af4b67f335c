"""Study scale: does a study's cost stay flat as it grows to 10,000 trials? (issue 25, item 5)

For each size N (``--sizes``) and each storage (``--storage``: SQLite, PostgreSQL or both),
in a fresh database:

1. **populate**: a study is made exactly as the service makes it (``study.runner.run_study``
   with ``n_trials=0``: the Optuna study, its attributes and spec identity, the ``zs_studies``
   row; nothing runs), then N finished trials are added quickly, without Ray, through the
   service's own writers: Optuna's public API (``optuna.trial.create_trial`` +
   ``Study.add_trials``) with the user attributes and intermediate values the searcher writes
   for a finished trial (study.searcher, study.keys), and the store rows the store callback
   writes (``Store.upsert_trial``, ``Store.record_epoch``, ``Store.record_runs``). Pruning is
   decided by the service's own rule (``study.scheduler.SuccessiveHalving``), so COMPLETE and
   PRUNED trials mix as under ASHA. The spec is TPE + ASHA (grace 1, rf 2) over zoneout_cell and
   zoneout_hidden, 5 epochs, one seed.
2. **start-up**: ``run_study`` on that study for ``--startup-trials`` (20) more trials of a
   trivial trainable (``--epochs`` epochs of ``--epoch-seconds`` sleep, a tiny checkpoint per
   epoch as the real trainable writes). Ray is started once in this process beforehand (its
   start-up is printed apart and excluded); reported: seconds from calling ``run_study`` to the
   first new trial's start (``zs_trials.started_at``) and to its first result (its first
   ``zs_epochs.recorded_at``), and seconds per trial over the run.
3. **read commands**: ``zoneout-study list``, ``status STUDY``, ``export STUDY --top 3`` and
   ``report STUDY`` (PNGs included, the default) each as a whole process, wall time, median of
   ``--repeats`` (3), on the study as it is after step 2 (N + 20 trials).
4. **trial load** (``--parts load``): every trial of the study read once, as a driver's first
   TPE ask and any full read do, through Optuna's own ``RDBStorage`` and through the service's
   (``study.optuna_study.load_study``, whose loader skips the ORM); alternated in this
   process, median of ``--repeats``, and the ratio.
5. **long run** (on the sizes in ``--run-sizes``; default the smallest): a fresh study
   populated to N, then ``--run-trials`` (1500) trials in ONE ``run_study`` call, one at a
   time (max_concurrent_trials 1). From the store's per-trial start/finish timestamps: seconds
   per trial over the first and the last ``--window`` (200) trials, and their ratio (target:
   last / first <= 1.2), with the in-trial time and the gap between trials apart.

Prints the machine (platform, CPUs, load average) first, one table per storage, then the long
runs. Everything it makes (a temporary directory with the SQLite files, Ray's files and the
reports; PostgreSQL databases ``zs_bench_scale_<pid>_*``) is removed at the end unless
``--keep``.

    .venv/bin/python benchmarks/study_scale.py --quick --storage sqlite      # a few minutes
    .venv/bin/python benchmarks/study_scale.py                                 # the full one
    .venv/bin/python benchmarks/study_scale.py --storage postgres --sizes 0,1000,10000 \\
        --run-trials 0                                  # start-up and read commands only
    .venv/bin/python benchmarks/study_scale.py --storage postgres --sizes 0 \\
        --parts run --run-trials 1500                   # only the long run

``--quick`` means ``--sizes 0,200 --run-trials 60 --repeats 1``. PostgreSQL is reached at
``--pg-url`` (default ``postgresql+psycopg://root@127.0.0.1:5432``; its ``postgres`` database is
used to create and drop the benchmark's databases). ``--profile`` also runs each read command
once under cProfile at the largest size and prints where its time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")

COMMANDS = ("list", "status", "export", "report")
LAYER_PATH = "cpu_extension"  # what the real trainable reports on this machine's CPU
# Synthetic trials' spacing in time (their started_at/finished_at only; nothing sleeps).
SYNTHETIC_GAP_S = 0.5


# --------------------------------------------------------------------- the trivial trainable
def _trivial_loss(zoneout_cell: float, zoneout_hidden: float, epoch: int) -> float:
    return (zoneout_cell - 0.5) ** 2 + (zoneout_hidden - 0.1) ** 2 + 1.0 / epoch


def make_trainable(epochs: int, epoch_seconds: float, checkpoints: bool) -> Any:
    """A trainable that reports ``epochs`` epochs of a made-up loss, sleeping ``epoch_seconds``
    each, with a tiny checkpoint per epoch (the real trainable checkpoints every epoch)."""

    def trivial_trainable(ray_config: dict[str, Any]) -> None:
        from ray import tune
        from ray.tune import Checkpoint

        trial = ray_config["trial"]
        work = Path(tempfile.mkdtemp(prefix="zs-scale-trial-"))
        try:
            for epoch in range(1, epochs + 1):
                time.sleep(epoch_seconds)
                loss = _trivial_loss(trial["zoneout_cell"], trial["zoneout_hidden"], epoch)
                checkpoint = None
                if checkpoints:
                    (work / "state.json").write_text(json.dumps({"epoch": epoch}))
                    checkpoint = Checkpoint.from_directory(str(work))
                tune.report(
                    {
                        "epoch": epoch,
                        "train_loss": loss,
                        "valid_loss": loss,
                        "valid_metric": loss,
                        "best_valid_metric": loss,
                        "tokens_per_second": 1.0,
                        "seconds": epoch_seconds,
                        "learning_rate": 0.001,
                        "node": platform.node(),
                        "layer_path": LAYER_PATH,
                        "layer_fallback": None,
                    },
                    checkpoint=checkpoint,
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return trivial_trainable


# --------------------------------------------------------------------- spec and databases
def make_spec(name: str, epochs: int, workdir: Path) -> Any:
    from study.spec import MAX_TRIALS, validate_spec

    return validate_spec(
        {
            "name": name,
            "base": {"task": "digits", "epochs": epochs},
            "search": {
                "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.8},
                "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.5},
            },
            "sampler": {"name": "tpe", "seed": 0},
            "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
            # Every run passes its own n_trials (run_study's argument, as `run --n-trials`), so
            # the stored spec identity never changes between runs.
            "n_trials": MAX_TRIALS,
            "max_concurrent_trials": 1,
            "checkpoint_path": str(workdir / "runs"),
        }
    )


class Databases:
    """Fresh databases, one per (storage, size, purpose); removed by :meth:`drop_all`."""

    def __init__(self, workdir: Path, pg_url: str, keep: bool) -> None:
        self.workdir = workdir
        self.pg_url = pg_url.rstrip("/")
        self.keep = keep
        self.made: list[tuple[str, str]] = []  # (storage kind, sqlite path or pg db name)

    def new(self, kind: str, tag: str) -> str:
        if kind == "sqlite":
            path = self.workdir / f"{tag}.db"
            self.made.append((kind, str(path)))
            return f"sqlite:///{path}"
        import sqlalchemy as sa

        db = f"zs_bench_scale_{os.getpid()}_{tag}".replace("-", "_").lower()
        admin = sa.create_engine(f"{self.pg_url}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
        finally:
            admin.dispose()
        self.made.append((kind, db))
        return f"{self.pg_url}/{db}"

    def drop_all(self) -> None:
        if self.keep:
            for kind, where in self.made:
                print(f"kept {kind} database: {where}")
            return
        names = [db for kind, db in self.made if kind == "postgres"]
        if not names:
            return
        import sqlalchemy as sa

        admin = sa.create_engine(f"{self.pg_url}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for db in names:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        finally:
            admin.dispose()


# --------------------------------------------------------------------- making a study
def create_study(url: str, spec: Any) -> None:
    """The study as the service makes it: run_study with nothing to run (n_trials=0) opens the
    Optuna study, sets its attributes and spec identity and registers the zs_studies row."""
    from rich.console import Console

    from study.runner import run_study

    outcome = run_study(spec, storage=url, n_trials=0, console=Console(quiet=True))
    assert outcome.opened, outcome


@dataclass
class Synthetic:
    """One finished trial as the service would have written it: the Optuna trial (with the
    searcher's user attributes and intermediate values) and the store callback's rows."""

    number: int
    frozen: Any  # optuna.trial.FrozenTrial
    trial_fields: dict[str, Any]  # Store.upsert_trial's keyword arguments
    curves: list[dict[int, float]]  # per seed: epoch -> validation metric
    runs: list[Any]  # study.store.RunRecord per seed


def synthesize(
    spec: Any, first: int, n: int, *, epoch_seconds: float, seed: int = 0
) -> list[Synthetic]:
    """``n`` finished trials numbered from ``first``: points drawn as a TPE study draws them
    (uniform for its first 10, then mostly near the best region), curves of the trivial
    trainable's loss with noise, pruned at ASHA's rungs by the service's own rule."""
    import optuna
    from optuna.trial import TrialState

    from study import keys
    from study.heartbeat import new_driver_id
    from study.plan import TrialEnd
    from study.scheduler import SuccessiveHalving
    from study.score import RunEnd, run_record, score, score_curve, seed_best
    from study.space import distributions

    rng = random.Random(seed)
    dists = distributions(spec)
    halving = SuccessiveHalving(
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        max_epochs=spec.max_epochs,
    )
    driver = new_driver_id()
    base = spec.base.to_dict()
    seeds = [spec.base.seed + index for index in range(spec.repeats)]
    node = platform.node()
    experiment = Path(spec.checkpoint_path or "runs") / f"{spec.name}-{driver.rsplit(':', 1)[-1]}"
    clock = time.time() - n * (spec.max_epochs * epoch_seconds + SYNTHETIC_GAP_S)
    out: list[Synthetic] = []
    for index in range(n):
        number = first + index
        if index < 10 or rng.random() < 0.3:
            params = {p: rng.uniform(d.low, d.high) for p, d in dists.items()}  # type: ignore[attr-defined]
        else:  # TPE's later suggestions: mostly around the best region
            params = {
                "zoneout_cell": min(0.8, max(0.0, rng.gauss(0.5, 0.12))),
                "zoneout_hidden": min(0.5, max(0.0, rng.gauss(0.1, 0.08))),
            }
        offset = _trivial_loss(params["zoneout_cell"], params["zoneout_hidden"], 1) - 1.0
        full = [
            {e: offset + 1.0 / e + rng.gauss(0.0, 0.01) for e in range(1, spec.max_epochs + 1)}
            for _ in seeds
        ]
        pruned_at = None
        full_score = score_curve(full, [False] * len(seeds))
        for rung in halving.rungs:
            if not halving.judge(number, rung, full_score[rung]):
                pruned_at = rung
                break
        last = pruned_at or spec.max_epochs
        curves = [{e: v for e, v in curve.items() if e <= last} for curve in full]
        intermediate = score_curve(curves, [False] * len(seeds))
        state = TrialState.PRUNED if pruned_at else TrialState.COMPLETE
        # Optuna gives a PRUNED trial told without a value its last intermediate value.
        value = intermediate[last] if pruned_at else score(curves)
        run_end = RunEnd.PRUNED if pruned_at else RunEnd.BUDGET
        ray_ids = [f"{number:05x}_{number * len(seeds) + i:05d}" for i in range(len(seeds))]
        checkpoints = [
            str(experiment / f"trivial_trainable_{rid}" / f"checkpoint_{last - 1:06d}")
            for rid in ray_ids
        ]
        # The searcher's user attributes of a finished trial, in the order it writes them
        # (study.searcher: since 2026-12-05 only what optuna-dashboard shows).
        attrs: dict[str, Any] = {
            keys.DRIVER: driver,
            keys.SEEDS: seeds,
            keys.RESUME_POINTS: [
                {
                    "seed": s,
                    "epoch": last,
                    "checkpoint": checkpoint,
                    "curve": [[e, v] for e, v in sorted(curve.items())],
                }
                for s, checkpoint, curve in zip(seeds, checkpoints, curves, strict=True)
            ],
        }
        if pruned_at:
            attrs[keys.PRUNED_AT] = pruned_at
        # Ray trial ids, nodes, epochs, layer paths and run ends are the store's (below).
        attrs[keys.CHECKPOINTS] = checkpoints
        attrs[keys.SEED_VALUES] = [seed_best(curve) for curve in curves]
        frozen = optuna.trial.create_trial(
            state=state,
            value=value,
            params=params,
            distributions=dists,
            user_attrs=attrs,
            intermediate_values=intermediate,
        )
        begin, finish = clock, clock + last * epoch_seconds
        clock = finish + SYNTHETIC_GAP_S
        # Optuna keeps naive local times (datetime.now()); whole microseconds as stored.
        frozen.datetime_start = datetime.fromtimestamp(begin)
        frozen.datetime_complete = datetime.fromtimestamp(finish)
        fields = dict(  # what the store callback writes over the trial's life, at its end
            ray_trial_id=",".join(ray_ids),
            params=params,
            seed=seeds[0],
            state=state,
            config={**base, **params, "seed": seeds[0]},
            started_at=datetime.fromtimestamp(begin, tz=timezone.utc),
            best_value=value,
            epochs=last,
            node=node,
            end_reason=TrialEnd.PRUNED if pruned_at else TrialEnd.COMPLETE,
            final_value=statistics.fmean(curve[last] for curve in curves),
            error=None,
            retired=None,
            checkpoint=",".join(checkpoints),
            wall_seconds=finish - begin,
            finished_at=datetime.fromtimestamp(finish, tz=timezone.utc),
        )
        runs = [
            run_record(s, curve, run_end, layer_path=LAYER_PATH)
            for s, curve in zip(seeds, curves, strict=True)
        ]
        out.append(Synthetic(number, frozen, fields, curves, runs))
    return out


def write_with_api(url: str, spec: Any, trials: list[Synthetic], epoch_seconds: float) -> None:
    """Through the public writers: Optuna's ``Study.add_trials`` and the Store's methods
    (one transaction per call, as the service makes them). About 0.1-0.2 s per trial on the
    busy 2-core machine, most of it Optuna's ORM (a query per attribute)."""
    from study import optuna_study as ostudy
    from study.store import Store

    study = ostudy.load_study(url, spec.name)
    study.add_trials([t.frozen for t in trials])
    _dispose(study)
    with Store(url) as store:
        for t in trials:
            store.upsert_trial(spec.name, t.number, **t.trial_fields)
            for s, curve in zip(_seeds(t), t.curves, strict=True):
                for epoch, loss in sorted(curve.items()):
                    store.record_epoch(
                        spec.name, t.number, epoch, seed=s, train_loss=loss, valid_loss=loss,
                        valid_metric=loss, tokens_per_second=1.0, seconds=epoch_seconds,
                    )  # fmt: skip
            store.record_runs(spec.name, t.number, t.runs)


def _seeds(t: Synthetic) -> list[int]:
    return [run.seed for run in t.runs]


def write_in_bulk(url: str, spec: Any, trials: list[Synthetic], epoch_seconds: float) -> None:
    """The same rows, one multi-row INSERT per table in one transaction per database, into
    Optuna's tables and the store's, both read from the database itself (reflected, as
    ``study.optuna_study.rewrite_finished_values`` names Optuna's): no private module of Optuna
    or of the store is imported. :func:`check_bulk` reads them back through the public
    readers."""
    import datetime as dt

    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json

    from study import optuna_study as ostudy
    from study.store import Store

    if not trials:
        return
    study = ostudy.load_study(url, spec.name)
    study_id = ostudy.study_id(study)
    _dispose(study)
    store = Store(url)
    meta = sa.MetaData()
    meta.reflect(
        store.engine,
        only=[
            "trials",
            "trial_params",
            "trial_values",
            "trial_intermediate_values",
            "trial_user_attributes",
            "zs_studies",
            "zs_trials",
            "zs_epochs",
            "zs_runs",
        ],
    )
    tables = meta.tables
    finite = finite_step = "FINITE"  # Optuna's value-type enums, stored by name
    # The store keeps UTC; SQLite holds the naive UTC wall time (study.store's UTCDateTime).
    now = dt.datetime.now(dt.timezone.utc)
    if store.engine.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    with store.engine.begin() as conn:
        conn.execute(
            tables["trials"].insert(),
            [
                {
                    "number": t.number,
                    "study_id": study_id,
                    "state": t.frozen.state.name,
                    "datetime_start": t.frozen.datetime_start,
                    "datetime_complete": t.frozen.datetime_complete,
                }
                for t in trials
            ],
        )
        trials_t = tables["trials"]
        ids = dict(
            conn.execute(
                sa.select(trials_t.c.number, trials_t.c.trial_id).where(
                    trials_t.c.study_id == study_id, trials_t.c.number >= trials[0].number
                )
            ).all()
        )
        params, values, steps, attrs = [], [], [], []
        for t in trials:
            trial_id = ids[t.number]
            f = t.frozen
            for name, value in f.params.items():
                dist = f.distributions[name]
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(value),
                        "distribution_json": distribution_to_json(dist),
                    }
                )
            values.append(
                {"trial_id": trial_id, "objective": 0, "value": f.value, "value_type": finite}
            )
            steps += [
                {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": value,
                    "intermediate_value_type": finite_step,
                }
                for step, value in f.intermediate_values.items()
            ]
            attrs += [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in f.user_attrs.items()
            ]
        conn.execute(tables["trial_params"].insert(), params)
        conn.execute(tables["trial_values"].insert(), values)
        conn.execute(tables["trial_intermediate_values"].insert(), steps)
        conn.execute(tables["trial_user_attributes"].insert(), attrs)
    studies_t, trials_zs = tables["zs_studies"], tables["zs_trials"]
    with store.engine.begin() as conn:
        sid = conn.execute(
            sa.select(studies_t.c.id).where(studies_t.c.name == spec.name)
        ).scalar_one()
        rows = []
        for t in trials:
            row = {
                key: _stored_time(value, store.engine.dialect.name)
                for key, value in t.trial_fields.items()
            }
            row["state"] = row["state"].name
            row["end_reason"] = row["end_reason"].value
            rows.append({"study_id": sid, "number": t.number, "updated_at": now, **row})
        conn.execute(trials_zs.insert(), rows)
        ids = dict(
            conn.execute(
                sa.select(trials_zs.c.number, trials_zs.c.id).where(
                    trials_zs.c.study_id == sid, trials_zs.c.number >= trials[0].number
                )
            ).all()
        )
        epochs, runs = [], []
        for t in trials:
            for s, curve in zip(_seeds(t), t.curves, strict=True):
                epochs += [
                    {
                        "trial_id": ids[t.number],
                        "seed": s,
                        "epoch": epoch,
                        "train_loss": loss,
                        "valid_loss": loss,
                        "valid_metric": loss,
                        "tokens_per_second": 1.0,
                        "seconds": epoch_seconds,
                        "recorded_at": now,
                    }
                    for epoch, loss in sorted(curve.items())
                ]
            runs += [
                {
                    "trial_id": ids[t.number],
                    "seed": r.seed,
                    "ended": r.ended,
                    "epochs": r.epochs,
                    "best_epoch": r.best_epoch,
                    "best_value": r.best_value,
                    "layer_path": r.layer_path,
                    "layer_fallback": r.layer_fallback,
                }
                for r in t.runs
            ]
        conn.execute(tables["zs_epochs"].insert(), epochs)
        conn.execute(tables["zs_runs"].insert(), runs)
    store.close()


def _stored_time(value: Any, dialect: str) -> Any:
    """A datetime as the store keeps it: naive UTC wall time on SQLite, aware elsewhere."""
    from datetime import datetime, timezone

    if isinstance(value, datetime) and dialect == "sqlite":
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def check_bulk(url: str, spec: Any, api: list[Synthetic], bulk: list[Synthetic]) -> list[str]:
    """Read both parts back through the public readers (Optuna's ``get_trials``, the Store's
    frames): every bulk trial must equal what was built, field by field, and have the same
    shape as the trials the public writers wrote (types of every store column)."""
    from study import optuna_study as ostudy
    from study.store import Store

    problems: list[str] = []
    study = ostudy.load_study(url, spec.name)
    stored = {t.number: t for t in ostudy.trials(study)}
    _dispose(study)
    for t in api + bulk:
        got, want = stored.get(t.number), t.frozen
        if got is None:
            problems.append(f"trial {t.number} missing")
            continue
        for attr in ("state", "value", "params", "distributions", "user_attrs",
                     "intermediate_values", "datetime_start", "datetime_complete"):  # fmt: skip
            if getattr(got, attr) != getattr(want, attr):
                problems.append(f"trial {t.number}: {attr} differs")
        if len(problems) > 5:
            return problems
    with Store(url) as store:
        frames = {
            "trials": store.trials_frame(spec.name),
            "epochs": store.epochs_frame(spec.name),
            "runs": store.runs_frame(spec.name),
        }
    cut = bulk[0].number if bulk else None
    for label, frame in frames.items():
        if cut is None or not api:
            break
        a, b = frame[frame["number"] < cut], frame[frame["number"] >= cut]
        for column in frame.columns:
            if column in ("updated_at", "recorded_at", "number"):
                continue
            kinds_a = {type(v).__name__ for v in a[column].dropna()}
            kinds_b = {type(v).__name__ for v in b[column].dropna()}
            if a[column].notna().any() != b[column].notna().any() or kinds_a != kinds_b:
                problems.append(f"zs_{label}.{column}: API rows {kinds_a}, bulk rows {kinds_b}")
    expected = sum(len(c) for t in api + bulk for c in t.curves)
    if len(frames["epochs"]) != expected:
        problems.append(f"zs_epochs: {len(frames['epochs'])} rows, expected {expected}")
    return problems


def populate(
    url: str, spec: Any, n: int, *, epoch_seconds: float, api_trials: int, seed: int = 0
) -> float:
    """Add ``n`` finished trials to the study of ``spec``: the first ``api_trials`` through the
    public writers, the rest in bulk, then checked (:func:`check_bulk`). Returns the seconds."""
    from study import optuna_study as ostudy

    if n <= 0:
        return 0.0
    started = time.perf_counter()
    study = ostudy.load_study(url, spec.name)
    first = len(ostudy.trials(study))
    _dispose(study)
    trials = synthesize(spec, first, n, epoch_seconds=epoch_seconds, seed=seed)
    api, bulk = trials[:api_trials], trials[api_trials:]
    t_api = time.perf_counter()
    write_with_api(url, spec, api, epoch_seconds)
    t_api = time.perf_counter() - t_api
    t_bulk = time.perf_counter()
    write_in_bulk(url, spec, bulk, epoch_seconds)
    t_bulk = time.perf_counter() - t_bulk
    problems = check_bulk(url, spec, api, bulk)
    total = time.perf_counter() - started
    pruned = sum(1 for t in trials if t.frozen.state.name == "PRUNED")
    print(
        f"    populated {n} trials ({pruned} pruned) in {total:.1f} s: {len(api)} through "
        f"add_trials + Store methods {t_api:.1f} s, {len(bulk)} in bulk {t_bulk:.1f} s; "
        + ("read back: as built" if not problems else "READ BACK DIFFERS: " + "; ".join(problems)),
        flush=True,
    )
    return total


def _dispose(study: Any) -> None:
    """Close an Optuna study's connections (its storage's engine)."""
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


# --------------------------------------------------------------------- timing runs
@dataclass
class RunTiming:
    trials: int
    wall: float
    to_start: float | None  # run_study call -> first new trial's started_at
    to_result: float | None  # run_study call -> first new trial's first epoch row
    per_trial: float | None  # (last finished - first started) / trials
    rows: Any = None  # the new trials' rows (number, started_at, finished_at, wall_seconds)
    states: dict[str, int] = field(default_factory=dict)


def timed_run(url: str, spec: Any, more: int, trainable: Any) -> RunTiming:
    """``run_study`` for ``more`` new trials; the store's timestamps say when they ran."""
    from rich.console import Console

    from study import optuna_study as ostudy
    from study.runner import run_study
    from study.store import Store

    study = ostudy.load_study(url, spec.name)
    first_new = len(ostudy.trials(study))
    counted = ostudy.counted_trials(study)
    _dispose(study)
    called = time.time()
    outcome = run_study(
        spec, storage=url, n_trials=counted + more, trainable=trainable, console=Console(quiet=True)
    )
    wall = time.time() - called
    if outcome.status != "finished":
        print(f"    run_study ended {outcome.status}: {outcome.stop_reason}", flush=True)
    with Store(url) as store:
        trials = store.trials_frame(spec.name)
        epochs = store.epochs_frame(spec.name)
    trials = trials[trials["number"] >= first_new].sort_values("number")
    timing = RunTiming(trials=len(trials), wall=wall, to_start=None, to_result=None, per_trial=None)
    timing.states = trials["state"].value_counts().to_dict()
    if trials.empty:
        return timing
    started = trials.dropna(subset=["started_at"])
    if len(started) < len(trials):
        # A trial that stepped back (a point another trial holds, beyond the budget) never
        # started: it is not the first trial of the run.
        print(f"    {len(trials) - len(started)} new trial(s) never started", flush=True)
    if started.empty:
        return timing
    first = started.iloc[0]
    timing.to_start = first["started_at"].timestamp() - called
    first_epochs = epochs[epochs["number"] == first["number"]]
    if not first_epochs.empty:
        timing.to_result = first_epochs["recorded_at"].min().timestamp() - called
    span = trials["finished_at"].max().timestamp() - trials["started_at"].min().timestamp()
    timing.per_trial = span / len(trials)
    timing.rows = trials[["number", "started_at", "finished_at", "wall_seconds"]].reset_index(
        drop=True
    )
    return timing


def windows(rows: Any, window: int) -> dict[str, tuple[float, float, float]]:
    """Seconds per trial, mean in-trial seconds and mean gap between trials over the first and
    the last ``window`` trials of a run."""
    start = rows["started_at"].map(lambda t: t.timestamp()).to_numpy()
    finish = rows["finished_at"].map(lambda t: t.timestamp()).to_numpy()
    out = {}
    for label, sl in (("first", slice(0, window)), ("last", slice(len(rows) - window, None))):
        s, f = start[sl], finish[sl]
        per = (f.max() - s.min()) / len(s)
        inside = float((f - s).mean())
        gaps = s[1:] - f[:-1]
        out[label] = (per, inside, float(gaps.mean()) if len(gaps) else float("nan"))
    return out


def faithfulness(url: str, name: str, synthetic_before: int) -> list[str]:
    """Where the synthetic trials' user attributes and store rows differ in shape from the
    real trials a run added (per state): the keys one has and the other lacks."""
    from study import optuna_study as ostudy
    from study.store import Store

    study = ostudy.load_study(url, name)
    trials = ostudy.trials(study)
    _dispose(study)
    notes = []
    for state in ("COMPLETE", "PRUNED"):
        fake = [t for t in trials if t.number < synthetic_before and t.state.name == state]
        real = [t for t in trials if t.number >= synthetic_before and t.state.name == state]
        if not fake or not real:
            continue
        fake_keys = set().union(*(t.user_attrs for t in fake))
        real_keys = set().union(*(t.user_attrs for t in real))
        if fake_keys != real_keys:
            notes.append(
                f"{state} user_attrs: synthetic only {sorted(fake_keys - real_keys)}, "
                f"real only {sorted(real_keys - fake_keys)}"
            )
    with Store(url) as store:
        frame = store.trials_frame(name)
    fake = frame[frame["number"] < synthetic_before]
    real = frame[frame["number"] >= synthetic_before]
    if not fake.empty and not real.empty:
        fake_cols = {c for c in frame.columns if fake[c].notna().any()}
        real_cols = {c for c in frame.columns if real[c].notna().any()}
        if fake_cols != real_cols:
            notes.append(
                f"zs_trials columns set: synthetic only {sorted(fake_cols - real_cols)}, "
                f"real only {sorted(real_cols - fake_cols)}"
            )
    return notes


# --------------------------------------------------------------------- read commands
def cli_path() -> str:
    here = Path(sys.executable).parent / "zoneout-study"
    return str(here) if here.exists() else (shutil.which("zoneout-study") or "zoneout-study")


def command_line(command: str, url: str, name: str, out: Path) -> list[str]:
    cli = cli_path()
    if command == "list":
        return [cli, "list", "--storage", url]
    if command == "status":
        return [cli, "status", name, "--storage", url]
    if command == "export":
        return [cli, "export", name, "--top", "3", "--out", str(out), "--storage", url]
    return [cli, "report", name, "--out", str(out), "--storage", url]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ZONEOUT_STUDY_STORAGE", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def time_command(
    command: str, url: str, name: str, workdir: Path, repeats: int
) -> tuple[float | None, list[float], str]:
    """Median wall seconds of the command as a whole process; '' or what went wrong."""
    times: list[float] = []
    problem = ""
    for attempt in range(repeats):
        out = workdir / f"out-{command}-{attempt}"
        started = time.perf_counter()
        done = subprocess.run(
            command_line(command, url, name, out),
            cwd=workdir,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        times.append(time.perf_counter() - started)
        shutil.rmtree(out, ignore_errors=True)
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-1:])[:200]
            problem = f"exit {done.returncode}: {tail}"
    return (statistics.median(times) if times else None), times, problem


def profile_command(command: str, url: str, name: str, workdir: Path) -> None:
    """The command once under cProfile: the top of its cumulative times."""
    import pstats

    out = workdir / f"prof-{command}"
    stats_file = workdir / f"prof-{command}.pstats"
    argv = command_line(command, url, name, out)[1:]
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "study.cli", *argv],
        cwd=workdir,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shutil.rmtree(out, ignore_errors=True)
    if not stats_file.exists():
        print(f"  (no profile of {command})")
        return
    stats = pstats.Stats(str(stats_file)).stats  # (file, line, function) -> (.., cumtime, ..)
    total = max(entry[3] for entry in stats.values())
    body = sum(
        entry[3]
        for (path, _, function), entry in stats.items()
        if path.endswith("study/cli/_base.py") and function == "wrapper"
    )
    top = sorted(
        (
            (entry[3], f"{Path(path).parent.name}/{Path(path).name}:{function}")
            for (path, _, function), entry in stats.items()
            if ("/study/" in path or "/dashboards/" in path)
            and function not in ("<module>", "wrapper", "main")
            and "/cli/" not in path
        ),
        reverse=True,
    )[:6]
    print(
        f"    cProfile `{command}`: {total:.1f} s in all, {total - body:.1f} s before the command "
        f"runs (imports), {body:.1f} s in it; its top: "
        + ", ".join(f"{name} {seconds:.1f} s" for seconds, name in top),
        flush=True,
    )


# --------------------------------------------------------------------- one storage
def time_trial_load(url: str, name: str, repeats: int) -> tuple[float, float]:
    """Seconds to read every trial of ``name`` through Optuna's own storage and through the
    service's, alternated (this machine is shared: both see the same noise); medians. The two
    must read the same trials."""
    import optuna

    from study import optuna_study as ostudy

    def optunas() -> optuna.Study:
        return optuna.load_study(study_name=name, storage=url)

    def ours() -> optuna.Study:
        return ostudy.load_study(url, name)

    times: dict[str, list[float]] = {"optuna": [], "ours": []}
    read: dict[str, list[Any]] = {}
    for _ in range(max(repeats, 1)):
        for label, opener in (("optuna", optunas), ("ours", ours)):
            study = opener()
            started = time.perf_counter()
            trials = study.get_trials(deepcopy=False)
            times[label].append(time.perf_counter() - started)
            read[label] = [(t.number, t.state, t.values, t.params) for t in trials]
            _dispose(study)
    if read["optuna"] != read["ours"]:
        raise AssertionError("the service's storage read other trials than Optuna's")
    return statistics.median(times["optuna"]), statistics.median(times["ours"])


@dataclass
class SizeRow:
    size: int
    populate: float = 0.0
    startup: RunTiming | None = None
    read_trials: int | None = None
    reads: dict[str, tuple[float | None, list[float], str]] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trial_load: tuple[float, float] | None = None  # Optuna's storage, the service's (s)


def one_storage(kind: str, args: argparse.Namespace, workdir: Path, dbs: Databases) -> None:
    trainable = make_trainable(args.epochs, args.epoch_seconds, not args.no_checkpoints)
    rows: list[SizeRow] = []
    parts = set(args.parts)
    for size in args.sizes if parts & {"startup", "reads", "load"} else []:
        print(f"  {kind}, N={size}:", flush=True)
        row = SizeRow(size=size)
        url = dbs.new(kind, f"scale-{size}")
        spec = make_spec(f"scale-{size}", args.epochs, workdir / f"{kind}-{size}")
        create_study(url, spec)
        row.populate = populate(
            url, spec, size, epoch_seconds=args.epoch_seconds, api_trials=args.api_trials
        )
        if "load" in parts:
            row.trial_load = time_trial_load(url, spec.name, args.repeats)
            optuna_s, ours_s = row.trial_load
            print(
                f"    trial load: Optuna's storage {optuna_s:.2f} s, the service's "
                f"{ours_s:.2f} s ({optuna_s / max(ours_s, 1e-9):.1f}x faster)",
                flush=True,
            )
        if "startup" in parts:
            row.startup = timed_run(url, spec, args.startup_trials, trainable)
            s = row.startup
            print(
                f"    start-up: first trial started {_fmt(s.to_start)} s, first result "
                f"{_fmt(s.to_result)} s after run_study was called; {s.trials} trials "
                f"{_fmt(s.per_trial, 3)} s/trial {s.states}",
                flush=True,
            )
            for note in faithfulness(url, spec.name, size) if size else []:
                print(f"    shape differs: {note}", flush=True)
        if "reads" in parts:
            row.read_trials = size + (row.startup.trials if row.startup else 0)
            for command in args.commands:
                row.reads[command] = time_command(command, url, spec.name, workdir, args.repeats)
                median, times, problem = row.reads[command]
                print(
                    f"    {command}: {_fmt(median)} s ({', '.join(_fmt(t) for t in times)})"
                    + (f" FAILED {problem}" if problem else ""),
                    flush=True,
                )
            if args.profile and size == max(args.sizes):
                for command in args.commands:
                    try:
                        profile_command(command, url, spec.name, workdir)
                    except Exception as error:  # a profile is extra: never lose the run
                        print(f"    (profile of {command} failed: {error!r})", flush=True)
        row.load = os.getloadavg()
        rows.append(row)
    if rows:
        print_table(kind, rows, args)
    if "run" in parts and args.run_trials > 0:
        for size in args.run_sizes:
            run_long(kind, size, args, workdir, dbs, trainable)


def run_long(
    kind: str, size: int, args: argparse.Namespace, workdir: Path, dbs: Databases, trainable: Any
) -> None:
    print(f"  {kind}, long run on a study of N={size}: {args.run_trials} trials", flush=True)
    url = dbs.new(kind, f"run-{size}")
    spec = make_spec(f"run-{size}", args.epochs, workdir / f"{kind}-run-{size}")
    create_study(url, spec)
    populate(url, spec, size, epoch_seconds=args.epoch_seconds, api_trials=args.api_trials)
    load_before = os.getloadavg()
    timing = timed_run(url, spec, args.run_trials, trainable)
    load_after = os.getloadavg()
    if timing.rows is None or len(timing.rows) < 2:
        print("    no trials ran", flush=True)
        return
    window = min(args.window, max(1, len(timing.rows) // 3))
    w = windows(timing.rows, window)
    (first, first_in, first_gap), (last, last_in, last_gap) = w["first"], w["last"]
    print(f"\nlong run, {kind}, study of N={size} at the start:", flush=True)
    print(
        f"  {timing.trials} trials in one run_study call, {timing.wall:.0f} s wall "
        f"({timing.states}); start-up {_fmt(timing.to_start)} s; load average "
        f"{_load(load_before)} before, {_load(load_after)} after"
    )
    print("  | window | s/trial | in-trial s | gap between trials s |")
    print("  |---|--:|--:|--:|")
    print(f"  | first {window} | {first:.3f} | {first_in:.3f} | {first_gap:.3f} |")
    print(f"  | last {window} | {last:.3f} | {last_in:.3f} | {last_gap:.3f} |")
    print(f"  ratio last/first: {last / first:.2f} (target <= 1.2)", flush=True)
    # Where the growth is, by 10 slices of the run.
    n = len(timing.rows)
    slices = 10 if n >= 50 else 1
    per = []
    for k in range(slices):
        part = timing.rows.iloc[k * n // slices : (k + 1) * n // slices]
        span = part["finished_at"].max().timestamp() - part["started_at"].min().timestamp()
        per.append(span / len(part))
    print(f"  s/trial by tenth of the run: {', '.join(f'{p:.2f}' for p in per)}", flush=True)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _load(load: tuple[float, ...]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def print_table(kind: str, rows: list[SizeRow], args: argparse.Namespace) -> None:
    print(
        f"\n{kind}: start-up ({args.startup_trials} trials of {args.epochs} x "
        f"{args.epoch_seconds} s) and read commands (median of {args.repeats}, s)"
    )
    head = ["N", "populate s", "trial load Optuna / ours s", "to 1st trial s"]
    head += ["to 1st result s", "s/trial"]
    head += ["trials at reads", *args.commands, "load 1/5/15"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("--:" for _ in head) + "|")
    for row in rows:
        s = row.startup
        cells = [
            f"{row.size:,}",
            f"{row.populate:.0f}",
            " / ".join(_fmt(t) for t in row.trial_load) if row.trial_load else "-",
            _fmt(s.to_start if s else None),
            _fmt(s.to_result if s else None),
            _fmt(s.per_trial if s else None),
            f"{row.read_trials:,}" if row.read_trials is not None else "-",
        ]
        for command in args.commands:
            median, _, problem = row.reads.get(command, (None, [], ""))
            cells.append(_fmt(median) + (" (failed)" if problem else ""))
        cells.append(_load(row.load))
        print("| " + " | ".join(cells) + " |")
    base = rows[0]
    for row in rows[1:]:
        ratios = []
        if base.startup and row.startup and base.startup.to_result and row.startup.to_result:
            ratios.append(f"start-up {row.startup.to_result / base.startup.to_result:.2f}x")
        for command in args.commands:
            a = base.reads.get(command, (None,))[0]
            b = row.reads.get(command, (None,))[0]
            if a and b:
                ratios.append(f"{command} {b / a:.2f}x")
        print(f"  N={row.size:,} vs N={base.size:,}: " + ", ".join(ratios))
    print(flush=True)


# --------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--sizes", default="0,1000,10000", help="study sizes N, comma-separated")
    parser.add_argument("--run-trials", type=int, default=1500, help="trials of the long run")
    parser.add_argument(
        "--run-sizes", default=None, help="sizes to do the long run on (default: the smallest)"
    )
    parser.add_argument("--window", type=int, default=200, help="trials per window of the run")
    parser.add_argument("--startup-trials", type=int, default=20)
    parser.add_argument(
        "--api-trials",
        type=int,
        default=20,
        help="of the N trials, how many go through add_trials + the Store's methods (the "
        "rest in bulk, checked against them)",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read command")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument(
        "--parts", default="startup,reads,run", help="any of load, startup, reads, run"
    )
    parser.add_argument("--pg-url", default="postgresql+psycopg://root@127.0.0.1:5432")
    parser.add_argument("--no-checkpoints", action="store_true", help="trainable saves none")
    parser.add_argument("--profile", action="store_true", help="cProfile each read command")
    parser.add_argument("--keep", action="store_true", help="keep the databases and files")
    parser.add_argument("--quick", action="store_true", help="--sizes 0,200 --run-trials 60")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.run_trials, args.repeats = "0,200", 60, 1
    args.sizes = _ints(args.sizes)
    args.run_sizes = _ints(args.run_sizes) if args.run_sizes else [min(args.sizes)]
    storages = args.storage.replace("both", "sqlite,postgres").split(",")
    args.storage = [s.strip() for s in storages if s.strip()]
    for kind in args.storage:
        if kind not in ("sqlite", "postgres"):
            parser.error(f"--storage: sqlite or postgres, not {kind!r}")
    args.commands = [c for c in args.commands.split(",") if c]
    args.parts = [p for p in args.parts.split(",") if p]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="zs-scale-"))
    # Ray's files (and sockets) under our own directory: never another Ray's /tmp/ray.
    os.environ["RAY_TMPDIR"] = str(workdir / "ray")
    (workdir / "ray").mkdir()
    from study.runner import package_versions

    print(f"study_scale.py {' '.join(sys.argv[1:])}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {_load(os.getloadavg())}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()))
    print(
        f"sizes {args.sizes}, storages {args.storage}, parts {args.parts}, long run "
        f"{args.run_trials} trials on N={args.run_sizes}, epochs {args.epochs} x "
        f"{args.epoch_seconds} s, checkpoints {'off' if args.no_checkpoints else 'on'}",
        flush=True,
    )
    dbs = Databases(workdir, args.pg_url, args.keep)
    import ray

    try:
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        print(f"ray.init: {time.perf_counter() - started:.2f} s (excluded from every number)")
        for kind in args.storage:
            one_storage(kind, args, workdir, dbs)
    finally:
        ray.shutdown()
        dbs.drop_all()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"done; load average {_load(os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
