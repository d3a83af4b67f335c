"""Scale check of the dashboards: analysis + HTML report for 10,000 trials x 20 epochs.

The analysis reads importance from a real (in-memory) Optuna study holding the same trials on
their search-space distributions, as the service does. Compares, in the same run, with Optuna's
``plot_slice`` + ``plot_contour`` on that study. Prints the times and the ratio; the target is
a report under 10 s.

    PYTHONPATH=. .venv/bin/python benchmarks/report_scale.py [--trials 10000] [--epochs 20] [--png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import optuna
import pandas as pd

import dashboards as d

T = TypeVar("T")


def synthetic(n: int, max_epochs: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """loss = 1.3 + (z_c-0.5)^2 + 0.3 (z_h-0.1)^2 + noise; ASHA(grace 1, rf 3) stops 60%."""
    rng = np.random.default_rng(seed)
    zc, zh = rng.uniform(0, 1, n), rng.uniform(0, 0.5, n)
    lr = 10 ** rng.uniform(-4, -2, n)
    final = 1.3 + (zc - 0.5) ** 2 + 0.3 * (zh - 0.1) ** 2 + rng.normal(0, 0.01, n)
    rungs = [3**k for k in range(max_epochs) if 3**k < max_epochs]  # ASHA's, grace 1, rf 3
    reached = np.full(n, max_epochs)
    order = np.argsort(final)
    worst = order[int(0.4 * n) :]
    reached[worst] = rng.choice(rungs, size=len(worst))
    state = np.where(reached < max_epochs, d.TrialState.PRUNED.value, d.TrialState.COMPLETE.value)
    ep = np.arange(1, max_epochs + 1)
    curves = (
        final[:, None] + 0.8 * np.exp(-(ep[None, :] - 1) / 4) - 0.8 * np.exp(-(max_epochs - 1) / 4)
    )
    alive = ep[None, :] <= reached[:, None]
    best = np.where(alive, curves, np.inf).min(axis=1)
    last = curves[np.arange(n), reached - 1]
    trials = pd.DataFrame(
        {
            "number": np.arange(n),
            "state": state,
            "param_zoneout_cell": zc,
            "param_zoneout_hidden": zh,
            "param_learning_rate": lr,
            "seed": np.zeros(n, dtype=int),
            "best_value": best,
            "final_value": last,
            "epochs": reached,
            "error": None,
        }
    )
    num, e = np.nonzero(alive)
    v = curves[num, e]
    epochs = pd.DataFrame(
        {
            "number": num,
            "seed": 0,
            "epoch": e + 1,
            "train_loss": v * 0.69,
            "valid_loss": v * 0.69,
            "valid_metric": v,
            "tokens_per_second": 1e4,
            "seconds": (e + 1) * 30.0,
        }
    )
    return trials, epochs


def optuna_study(trials: pd.DataFrame) -> optuna.Study:
    """The trials as Optuna keeps them: the spec's distributions, COMPLETE/PRUNED states."""
    dists = {
        "zoneout_cell": optuna.distributions.FloatDistribution(0.0, 1.0),
        "zoneout_hidden": optuna.distributions.FloatDistribution(0.0, 0.5),
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    }
    made = []
    for row in trials.itertuples():
        complete = row.state == d.TrialState.COMPLETE
        made.append(
            optuna.trial.create_trial(
                params={n: float(getattr(row, f"param_{n}")) for n in dists},
                distributions=dists,
                value=float(row.final_value) if complete else None,
                state=optuna.trial.TrialState.COMPLETE
                if complete
                else optuna.trial.TrialState.PRUNED,
            )
        )
    study = optuna.create_study(study_name="scale", direction="minimize")
    study.add_trials(made)
    return study


def timed(label: str, fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"  {label:<46s} {dt:8.2f} s")
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--png", action="store_true", help="also time the PNG export (Chromium)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{args.trials} trials x {args.epochs} epochs, {os.cpu_count()} CPUs")
    (trials, epochs), _ = timed("synthetic frames", lambda: synthetic(args.trials, args.epochs))
    print(f"  ({len(epochs)} epoch rows, {(trials['state'] == 'PRUNED').sum()} pruned)")

    study, _ = timed("in-memory Optuna study (not timed below)", lambda: optuna_study(trials))

    print("dashboards:")
    a, _ = timed(
        "analyze (runs, table, GP, surface, marginals, importance)",
        lambda: d.analyze(
            trials, epochs, metric="bpc", max_epochs=args.epochs, grace_period=1,
            reduction_factor=3, study_name="scale", study=study,
        ),
    )  # fmt: skip
    figs, _ = timed("report_figures (plotly figures, inside the next)", lambda: d.report_figures(a))
    with tempfile.TemporaryDirectory() as tmp:
        report_kwargs = dict(
            study_name="scale", metric="bpc", max_epochs=args.epochs, out_dir=tmp,
            grace_period=1, reduction_factor=3, study=study,
        )  # fmt: skip
        result, ours = timed(
            "build_report: analysis + figures + HTML (no PNG)",
            lambda: d.build_report(trials, epochs, png=False, **report_kwargs),
        )
        html = result.html_path.read_text(encoding="utf-8")
        total = "TOTAL analysis + report (no PNG)"
        print(f"  {total:<46s} {ours:8.2f} s   HTML {len(html) / 1e6:.1f} MB")
        for name, m in a.marginals.items():
            curve = m.curve.method if m.curve is not None else f"none ({m.curve_reason})"
            print(f"    marginal {name}: {curve}; {m.epoch_label}")
        if a.surface is not None and a.surface.gp is not None:
            print(f"    surface: {a.surface.gp.method}; {a.surface.epoch_label}")
        print(f"    importance: {a.importance.importances or a.importance.reason}")
        if args.png:
            _, with_png = timed(
                f"build_report with the PNG export of {len(figs)} figures",
                lambda: d.build_report(trials, epochs, png=True, **report_kwargs),
            )
            print(f"    PNG export: {with_png - ours:.2f} s of it")

    print("optuna.visualization baseline:")
    params = ["zoneout_cell", "zoneout_hidden"]
    _, t_slice = timed("plot_slice", lambda: optuna.visualization.plot_slice(study))
    _, t_contour = timed(
        "plot_contour(zoneout_cell, zoneout_hidden)",
        lambda: optuna.visualization.plot_contour(study, params=params),
    )
    base = t_slice + t_contour
    print(f"  {'TOTAL plot_slice + plot_contour':<46s} {base:8.2f} s")
    print(f"ratio (dashboards analysis+report) / (optuna slice+contour): {ours / base:.2f}")


if __name__ == "__main__":
    main()
