"""Orchestration overhead per trial, and the store's share of trial time.

Runs the same trivial trainable (it reports ``--epochs`` epochs of a made-up loss, sleeping
``--epoch-seconds`` each) two ways in one process:

* baseline: a plain ``optuna.study.optimize`` loop on the same SQLite storage kind;
* this service: ``study.runner.run_study`` (Ray Tune + the Optuna searcher + the store callback).

Prints seconds per trial for each, the difference (the overhead this service adds per trial,
target <= 0.5 s) and the store's write time as a fraction of total trial time (target < 1%).
Ray's start-up is timed separately and excluded from the per-trial numbers.

    .venv/bin/python benchmarks/study_overhead.py --trials 40 --epochs 5 --epoch-seconds 0.2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _trivial_loss(zoneout_cell: float, zoneout_hidden: float, epoch: int) -> float:
    return (zoneout_cell - 0.5) ** 2 + (zoneout_hidden - 0.1) ** 2 + 1.0 / epoch


def make_trainable(epochs: int, epoch_seconds: float) -> Any:
    def trivial_trainable(ray_config: dict[str, Any]) -> None:
        from ray import tune

        trial = ray_config["trial"]
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_seconds)
            loss = _trivial_loss(trial["zoneout_cell"], trial["zoneout_hidden"], epoch)
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
                }
            )

    return trivial_trainable


def baseline(url: str, trials: int, epochs: int, epoch_seconds: float) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="baseline", storage=url, direction="minimize")

    def objective(trial: optuna.Trial) -> float:
        zoneout_cell = trial.suggest_float("zoneout_cell", 0.0, 0.8)
        zoneout_hidden = trial.suggest_float("zoneout_hidden", 0.0, 0.5)
        loss = 0.0
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_seconds)
            loss = _trivial_loss(zoneout_cell, zoneout_hidden, epoch)
            trial.report(loss, epoch)
        return loss

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - started


def service(
    url: str, trials: int, epochs: int, epoch_seconds: float, workdir: Path
) -> tuple[float, float, float]:
    import ray
    from rich.console import Console

    from study.runner import run_study
    from study.spec import validate_spec

    spec = validate_spec(
        {
            "name": "service",
            "base": {"task": "digits", "epochs": epochs},
            "search": {
                "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.8},
                "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.5},
            },
            "sampler": {"name": "tpe", "seed": 0},
            "scheduler": {"name": "none"},
            "n_trials": trials,
            # One at a time, like the optimize loop: the difference is pure orchestration.
            "max_concurrent_trials": 1,
            "checkpoint_path": str(workdir / "runs"),
        }
    )
    ray_started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    ray_seconds = time.perf_counter() - ray_started
    started = time.perf_counter()
    outcome = run_study(
        spec,
        storage=url,
        trainable=make_trainable(epochs, epoch_seconds),
        console=Console(quiet=True),
    )
    wall = time.perf_counter() - started
    ray.shutdown()
    return wall, outcome.store_write_seconds, ray_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zs-bench-") as directory:
        workdir = Path(directory)
        base = baseline(
            f"sqlite:///{workdir / 'baseline.db'}", args.trials, args.epochs, args.epoch_seconds
        )
        wall, store_seconds, ray_seconds = service(
            f"sqlite:///{workdir / 'service.db'}",
            args.trials,
            args.epochs,
            args.epoch_seconds,
            workdir,
        )
    compute = args.trials * args.epochs * args.epoch_seconds
    per_base = base / args.trials
    per_service = wall / args.trials
    print(f"trials {args.trials}, epochs {args.epochs}, {args.epoch_seconds} s per epoch")
    print(f"{'':34}{'total s':>10}{'s/trial':>10}")
    print(f"{'optuna optimize loop (baseline)':34}{base:10.2f}{per_base:10.3f}")
    print(f"{'zoneout-study run_study':34}{wall:10.2f}{per_service:10.3f}")
    print(f"ray.init (excluded above): {ray_seconds:.2f} s")
    print(f"overhead per trial vs baseline: {per_service - per_base:+.3f} s (target <= 0.5 s)")
    print(
        f"store writes: {store_seconds:.2f} s = {100 * store_seconds / wall:.2f}% of study wall "
        f"time, {100 * store_seconds / compute:.2f}% of trial compute (target < 1%)"
    )
    print(f"ratio service/baseline: {wall / base:.2f}x")


if __name__ == "__main__":
    main()
