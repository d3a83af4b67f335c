"""Per-seed runs of a study and the epoch a figure is read at.

The store keeps one row per Optuna trial (a configuration) and one row per (trial, seed, epoch).
Every analysis here works on *runs* (one configuration, one seed) read at an epoch ``k``: the
run's best validation value up to epoch ``k``, for every run that reached ``k`` or converged
before it (its ``patience`` ran out: it keeps its best). A configuration's score at ``k`` is the
mean of its runs' values there: the service's one score (README, "The score").
``k`` = the full budget is the default; a study whose scheduler (ASHA)
stopped most runs early is read at the deepest epoch that enough configurations reached, and
every figure says which epoch it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, config_key, param_columns
from ._frame import Col, TrialState

__all__ = ["CONVERGED", "EpochChoice", "StudyRuns", "pick_epoch", "study_runs"]

#: The ``ended`` value of a run that stopped because its patience ran out.
CONVERGED = "converged"

# Trials whose runs are analysed: FAIL and RUNNING ones have no trustworthy value.
_SCORED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class EpochChoice:
    """The epoch a figure reads every run at, and why."""

    epoch: int
    max_epochs: int
    n_configs: int
    """Configurations with at least one run that reached ``epoch``."""
    n_runs: int

    @property
    def full_budget(self) -> bool:
        return self.epoch >= self.max_epochs

    @property
    def label(self) -> str:
        """'full budget (epoch 4)' or 'at epoch 2 of 9 (best up to epoch 2)'."""
        if self.full_budget:
            return f"full budget (epoch {self.epoch})"
        return f"at epoch {self.epoch} of {self.max_epochs} (best up to epoch {self.epoch})"


@dataclass(frozen=True)
class StudyRuns:
    """Every scored run of a study, by epoch."""

    runs: pd.DataFrame
    """One row per run: ``number``, ``seed``, ``state``, ``config``, ``reached``, ``ended`` (why
    the run ended: converged, budget, pruned, ...; None when the store does not say),
    ``param_*``."""
    best_by_epoch: pd.DataFrame
    """Rows: runs (same order as ``runs``); columns 1..max_epochs: best value up to that epoch
    (NaN after the run stopped)."""
    params: list[str]
    max_epochs: int

    def at(self, epoch: int) -> pd.DataFrame:
        """Runs that reached ``epoch`` with ``value`` = their best up to it."""
        col = min(max(int(epoch), 1), self.max_epochs)
        values = self.best_by_epoch[col] if col in self.best_by_epoch else pd.Series(dtype=float)
        out = self.runs.assign(value=values.to_numpy() if len(values) else np.nan)
        return out[np.isfinite(out["value"].to_numpy(dtype=float))].reset_index(drop=True)

    def read_at(self, epoch: int) -> pd.Series:
        """Which runs have a value at ``epoch``: they reached it, or converged before it."""
        return (self.runs["reached"] >= epoch) | (self.runs[Col.ENDED] == CONVERGED)

    def at_budget(self) -> pd.DataFrame:
        """:meth:`at` the full budget, of the runs that trained it all or converged before."""
        at = self.at(self.max_epochs)
        return at[(at["reached"] >= self.max_epochs) | (at[Col.ENDED] == CONVERGED)]

    def counts(self) -> pd.DataFrame:
        """Per epoch: configurations and runs that reached it (or converged before it)."""
        rows = []
        for k in range(1, self.max_epochs + 1):
            reached = self.runs[self.read_at(k)]
            rows.append((k, reached["config"].nunique(), len(reached)))
        return pd.DataFrame(rows, columns=[Col.EPOCH, "n_configs", "n_runs"])


def study_runs(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    max_epochs: int,
    value: str = Col.BEST_VALUE,
    ends: pd.DataFrame | None = None,
) -> StudyRuns:
    """Runs of the COMPLETE and PRUNED trials, from the per-epoch frame.

    ``ends``: the store's runs frame (``number``, ``seed``, ``ended``); a run that ended
    ``converged`` keeps its best value at every later epoch.

    Without per-epoch rows (a frame from elsewhere), each trial row is one run at the full budget
    with ``value`` (its ``seed`` column, else seed 0).
    """
    states = (
        trials[Col.STATE].astype(str)
        if Col.STATE in trials
        else pd.Series(TrialState.COMPLETE, trials.index)
    )
    t = trials[states.isin(_SCORED_STATES)].drop_duplicates(Col.NUMBER)
    pcols = [PARAM_PREFIX + p for p in param_columns(t)]
    meta = t[[Col.NUMBER, *pcols]].assign(state=states[t.index].to_numpy())
    meta = meta.assign(config=config_key(meta).to_numpy())
    max_epochs = max(int(max_epochs), 1)
    if len(epochs) and {Col.NUMBER, Col.EPOCH, Col.VALID_METRIC} <= set(epochs.columns):
        e = epochs[epochs[Col.NUMBER].isin(meta[Col.NUMBER])]
        e = e.assign(seed=e.get(Col.SEED, 0))
        e = e[np.isfinite(pd.to_numeric(e[Col.VALID_METRIC], errors="coerce").to_numpy(float))]
        wide = e.pivot_table(
            index=[Col.NUMBER, Col.SEED], columns=Col.EPOCH, values=Col.VALID_METRIC, aggfunc="last"
        )
        wide = wide.reindex(columns=range(1, max_epochs + 1))
        reached = wide.notna().to_numpy()
        # Last epoch with a value (a run stops, it does not skip epochs).
        last = np.where(reached.any(axis=1), max_epochs - np.argmax(reached[:, ::-1], axis=1), 0)
        # Best so far; after a run stops, it has no value at that epoch.
        best = wide.ffill(axis=1).cummin(axis=1)
        cols = np.arange(1, max_epochs + 1)
        best = best.where(cols[None, :] <= last[:, None])
        runs = wide.index.to_frame(index=False).assign(reached=last)
    else:
        seeds = t[Col.SEED] if Col.SEED in t else pd.Series(0, t.index)
        runs = pd.DataFrame(
            {Col.NUMBER: t[Col.NUMBER].to_numpy(), Col.SEED: seeds.fillna(0).to_numpy()}
        )
        runs["reached"] = max_epochs
        column = t[value] if value in t else pd.Series(np.nan, t.index)
        vals = pd.to_numeric(column, errors="coerce").to_numpy(float)
        best = pd.DataFrame(
            np.tile(vals[:, None], (1, max_epochs)), columns=range(1, max_epochs + 1)
        )
    runs = runs.merge(meta, on=Col.NUMBER, how="left")
    runs[Col.ENDED] = _ended(runs, ends)
    converged = (runs[Col.ENDED] == CONVERGED).to_numpy()
    if converged.any():
        # Early stopping keeps the best epoch's checkpoint: the run's score stands from then on.
        best.loc[converged] = best.loc[converged].ffill(axis=1).to_numpy()
    keep = (runs["reached"] > 0).to_numpy()
    runs = runs[keep].reset_index(drop=True)
    best = best[keep].reset_index(drop=True)
    best.columns = [int(c) for c in best.columns]
    return StudyRuns(runs, best, [p[len(PARAM_PREFIX) :] for p in pcols], max_epochs)


def _ended(runs: pd.DataFrame, ends: pd.DataFrame | None) -> pd.Series:
    """Why each run ended, from the store's runs frame (None where it does not say)."""
    if ends is None or ends.empty or not {Col.NUMBER, Col.SEED, Col.ENDED} <= set(ends.columns):
        return pd.Series([None] * len(runs), index=runs.index, dtype=object)
    key = ends.assign(number=ends[Col.NUMBER].astype(int), seed=ends[Col.SEED].astype(int))
    lookup = key.drop_duplicates([Col.NUMBER, Col.SEED]).set_index([Col.NUMBER, Col.SEED])[
        Col.ENDED
    ]
    index = pd.MultiIndex.from_arrays([runs[Col.NUMBER].astype(int), runs[Col.SEED].astype(int)])
    values = lookup.reindex(index).to_numpy(dtype=object)
    return pd.Series(
        [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
        index=runs.index,
        dtype=object,
    )


def pick_epoch(study: StudyRuns, need_configs: int) -> EpochChoice:
    """The full budget when ``need_configs`` configurations reached it, else the deepest epoch
    that many reached, else the deepest epoch with the most configurations."""
    counts = study.counts()
    if counts.empty or counts["n_configs"].max() == 0:
        return EpochChoice(study.max_epochs, study.max_epochs, 0, 0)
    enough = counts[counts["n_configs"] >= need_configs]
    if len(enough):
        row = enough.iloc[-1]
    else:
        most = counts[counts["n_configs"] == counts["n_configs"].max()]
        row = most.iloc[-1]
    return EpochChoice(
        int(row[Col.EPOCH]), study.max_epochs, int(row["n_configs"]), int(row["n_runs"])
    )
