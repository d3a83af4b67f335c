"""The lines `run` prints at the end of a study: the best configuration, its seed-paired
difference to the unregularized one, and whether that one overfit within the budget."""

from __future__ import annotations

import pandas as pd

from dashboards import Col, analyze, headline
from tests.dashboards.conftest import grid_frames


def _overfit_baseline(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The (0, 0) trial's runs best at epoch 2 of 4, then worse by 0.1, 0.2 and 0.3."""
    base = trials.loc[
        (trials["param_zoneout_cell"] == 0) & (trials["param_zoneout_hidden"] == 0), Col.NUMBER
    ].item()
    out = epochs.copy()
    rows = out[Col.NUMBER] == base
    low = out.loc[rows, Col.VALID_METRIC].min()
    for seed, rise in ((0, 0.1), (1, 0.2), (2, 0.3)):
        run = rows & (out[Col.SEED] == seed)
        shape = {1: low + 0.5, 2: low, 3: low + rise / 2, 4: low + rise}
        out.loc[run, Col.VALID_METRIC] = out.loc[run, Col.EPOCH].map(shape)
    return out


def test_best_difference_and_an_overfitting_baseline() -> None:
    trials, epochs = grid_frames(n_seeds=3)
    epochs = _overfit_baseline(epochs, trials)
    lines = headline(analyze(trials, epochs, metric="bpc", max_epochs=4))
    assert lines[0].startswith("best configuration: ")
    assert "(95% Student-t, n = 3) bits per character, read at full budget (epoch 4)" in lines[0]
    assert lines[1].startswith("  minus the unregularized configuration")
    assert "paired by seed" in lines[1]
    assert lines[2] == (
        "  the baseline's runs were best at epochs 2, 2, 2 of 4 and 0.1000-0.3000 worse at their "
        "last: it overfits within the budget"
    )


def test_a_baseline_still_improving_is_not_called_overfit() -> None:
    trials, epochs = grid_frames(n_seeds=2)  # every curve falls to its last epoch
    lines = headline(analyze(trials, epochs, metric="bpc", max_epochs=4))
    assert lines[-1] == (
        "  the baseline's runs were best at epochs 4, 4 of 4: not all overfit within the budget"
    )


def test_no_baseline_no_difference() -> None:
    trials, epochs = grid_frames(zc_values=(0.25, 0.5), zh_values=(0.05,), n_seeds=2)
    lines = headline(analyze(trials, epochs, metric="bpc", max_epochs=4))
    assert len(lines) == 1 and lines[0].startswith("best configuration: ")
