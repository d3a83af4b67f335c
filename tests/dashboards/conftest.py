"""Synthetic store frames from a known response: loss = (z_c-0.5)^2 + 0.3 (z_h-0.1)^2 + noise.

Tests get the generator through the ``make_frames`` fixture (no sys.path tricks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

BASE = 1.3


def true_loss(zc: np.ndarray, zh: np.ndarray) -> np.ndarray:
    return BASE + (zc - 0.5) ** 2 + 0.3 * (zh - 0.1) ** 2


def synthetic_frames(
    n_configs: int = 60,
    n_seeds: int = 1,
    *,
    max_epochs: int = 9,
    noise: float = 0.01,
    prune_frac: float = 0.0,
    rungs: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``trials`` and ``epochs`` frames with the store's columns.

    z_c ~ U(0, 1), z_h ~ U(0, 0.5), an irrelevant U(0, 1) parameter, a log-uniform learning rate
    with no effect and a categorical cell type with no effect. The worst ``prune_frac`` of the
    configurations are PRUNED at a random rung.
    """
    rng = np.random.default_rng(seed)
    zc = rng.uniform(0, 1, n_configs)
    zh = rng.uniform(0, 0.5, n_configs)
    irr = rng.uniform(0, 1, n_configs)
    lr = 10 ** rng.uniform(-4, -2, n_configs)
    cell = rng.choice(["lstm", "gru"], n_configs)
    truth = true_loss(zc, zh)
    n_prune = int(prune_frac * n_configs)
    pruned_cfg = np.zeros(n_configs, dtype=bool)
    if n_prune:
        pruned_cfg[np.argsort(truth)[-n_prune:]] = True
    rows, erows = [], []
    number = 0
    for i in range(n_configs):
        for s in range(n_seeds):
            final = truth[i] + rng.normal(0, noise)
            reached = int(rng.choice(rungs)) if pruned_cfg[i] else max_epochs
            ep = np.arange(1, reached + 1)
            curve = final + 0.8 * np.exp(-(ep - 1) / 2.0) - 0.8 * np.exp(-(max_epochs - 1) / 2.0)
            rows.append(
                dict(
                    number=number,
                    state="PRUNED" if pruned_cfg[i] else "COMPLETE",
                    param_zoneout_cell=zc[i],
                    param_zoneout_hidden=zh[i],
                    param_irrelevant=irr[i],
                    param_learning_rate=lr[i],
                    param_cell=cell[i],
                    seed=s,
                    best_value=float(curve.min()),
                    final_value=float(curve[-1]),
                    epochs=reached,
                    error=None,
                )
            )
            for e, v in zip(ep, curve, strict=True):
                erows.append(
                    dict(number=number, seed=s, epoch=int(e), train_loss=v * 0.69 - 0.05,
                         valid_loss=v * 0.69, valid_metric=v, tokens_per_second=1e4,
                         seconds=float(e))
                )  # fmt: skip
            number += 1
    return pd.DataFrame(rows), pd.DataFrame(erows)


@pytest.fixture(scope="session")
def make_frames():  # type: ignore[no-untyped-def]
    """The generator itself, for tests that need other sizes."""
    return synthetic_frames


@pytest.fixture(scope="session")
def study_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A realistic small study: 30 configs x 2 seeds, 30% pruned by ASHA (grace 1, rf 3, 9
    epochs -> rungs 1, 3), one FAIL and one RUNNING trial."""
    trials, epochs = synthetic_frames(30, 2, prune_frac=0.3, rungs=(1, 3), seed=2)
    extra = trials.iloc[:2].copy()
    extra["number"] = [len(trials), len(trials) + 1]
    extra["state"] = ["FAIL", "RUNNING"]
    extra["best_value"] = np.nan
    extra["final_value"] = np.nan
    extra["epochs"] = [0, 2]
    extra["error"] = ["CUDA out of memory", None]
    running = epochs[epochs["number"] == 0].head(2).assign(number=len(trials) + 1)
    return pd.concat([trials, extra], ignore_index=True), pd.concat(
        [epochs, running], ignore_index=True
    )


def grid_frames(
    zc_values: tuple[float, ...] = (0.0, 0.25, 0.5),
    zh_values: tuple[float, ...] = (0.0, 0.05),
    n_seeds: int = 2,
    *,
    max_epochs: int = 4,
    seed_sd: float = 0.05,
    noise: float = 0.005,
    rng: np.random.Generator | int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A grid study as the store keeps it: one trial row per grid point, one epoch row per
    (trial, seed, epoch). A seed shifts every configuration by the same amount (its data order
    and initialisation), so differences paired by seed cancel it; the truth is
    :func:`true_loss` at the end of training."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seed_effect = gen.normal(0, seed_sd, n_seeds)
    rows, erows = [], []
    number = 0
    for zc in zc_values:
        for zh in zh_values:
            truth = float(true_loss(np.array(zc), np.array(zh)))
            for s in range(n_seeds):
                final = truth + seed_effect[s] + gen.normal(0, noise)
                ep = np.arange(1, max_epochs + 1)
                curve = final + 0.5 * (max_epochs - ep) / max_epochs
                for e, v in zip(ep, curve, strict=True):
                    erows.append(dict(number=number, seed=s, epoch=int(e), valid_metric=float(v)))
            rows.append(
                dict(number=number, state="COMPLETE", param_zoneout_cell=zc,
                     param_zoneout_hidden=zh, best_value=np.nan, epochs=max_epochs)
            )  # fmt: skip
            number += 1
    return pd.DataFrame(rows), pd.DataFrame(erows)


@pytest.fixture(scope="session")
def make_grid():  # type: ignore[no-untyped-def]
    return grid_frames
