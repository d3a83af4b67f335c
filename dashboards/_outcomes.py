"""How each trial ended, as data: the counts the summary states and the table of the trials that
did not finish (number, state, epochs, reason).

A study with no complete trial still gets a report: this table, and the reason it has no figure
(or fewer). Which failures the service made itself (a trial cut off by Ctrl-C, by a lost driver
or by the infrastructure, to be continued by the next run) is a fact of the trials frame: its
``retired`` column (:func:`retired_kinds`, also what the service's terminal summaries read).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._frame import TRIALS_FRAME, Col, TrialState

__all__ = [
    "OUTCOME_KINDS",
    "REASON_CHARS",
    "RETIRED_KINDS",
    "TrialOutcomes",
    "retired_kinds",
    "short_reason",
    "trial_outcomes",
]

#: How a trial ended, in the order the summary names them.
OUTCOME_KINDS = ("complete", "pruned", "failed", "interrupted", "running")
#: A reason longer than this is cut (the full text stays in the store and in `status`).
REASON_CHARS = 200
_TABLE_COLUMNS = [Col.NUMBER, Col.STATE, Col.EPOCHS, "reason"]
_KIND_OF_STATE = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}
#: Why the service retired a trial: the values of the trials frame's ``retired`` column (the
#: store's ``zs_trials.retired``, a ``study.plan.Retired`` value). A retired trial is FAIL, does
#: not count towards the plan, and a replacement continues it from its last checkpoint.
RETIRED_KINDS = ("interrupted", "driver_lost", "infrastructure")
# The errors older versions wrote for the trials they retired, before the trials frame had the
# ``retired`` column; read only from a frame without it (a `status --csv` table of such a
# version, a database no run has upgraded yet). Frozen copies of study.searcher.INTERRUPTED
# (possibly followed by ' (reason)'), study.reaper.DRIVER_LOST and study.searcher.CUT_OFF_PREFIX
# as they were then; the store's migration 0002 backfills old databases by the same rule.
_LEGACY_INTERRUPTED = "interrupted: the driver stopped before the trial finished"
_LEGACY_DRIVER_LOST = "driver lost"
_LEGACY_CUT_OFF_PREFIX = "cut off by the infrastructure: "


def _legacy_retired(state: str, error: object) -> str | None:
    if state != TrialState.FAIL or not isinstance(error, str):
        return None
    if error.startswith(_LEGACY_INTERRUPTED):
        return "interrupted"
    if error == _LEGACY_DRIVER_LOST:
        return "driver_lost"
    if error.startswith(_LEGACY_CUT_OFF_PREFIX):
        return "infrastructure"
    return None


def retired_kinds(trials: pd.DataFrame) -> pd.Series:
    """Why the service retired each trial of ``trials`` (the store's ``trials_frame``, or a
    table `status --csv` wrote): one of :data:`RETIRED_KINDS`, None for a trial it did not
    retire; indexed like ``trials``.

    Read from the ``retired`` column, where a missing value (None, NaN: an empty CSV cell) is a
    trial not retired. A frame without the column, from an older version, is read by the rule
    that version used: a FAIL row whose error is the text it wrote for a retired trial."""
    TRIALS_FRAME.check(trials, where="dashboards.retired_kinds")
    if Col.RETIRED in trials:
        kinds = [None if _missing(value) else str(value) for value in trials[Col.RETIRED]]
    else:
        states = (
            trials[Col.STATE].astype(str) if Col.STATE in trials else pd.Series("", trials.index)
        )
        errors = trials[Col.ERROR] if Col.ERROR in trials else pd.Series(None, trials.index)
        kinds = [_legacy_retired(s, e) for s, e in zip(states, errors, strict=True)]
    return pd.Series(kinds, index=trials.index, dtype=object)


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def short_reason(error: object, limit: int = REASON_CHARS) -> str:
    """``error`` on one line (whitespace collapsed), cut to ``limit`` characters with '...';
    'no reason recorded' when there is none."""
    if not isinstance(error, str):
        error = "" if error is None or pd.isna(error) is True else str(error)
    text = " ".join(error.split())
    if not text:
        return "no reason recorded"
    return text if len(text) <= limit else text[: max(limit - 3, 1)].rstrip() + "..."


@dataclass(frozen=True)
class TrialOutcomes:
    """The trials of a study by how they ended."""

    counts: dict[str, int]
    """Trials per kind: every one of :data:`OUTCOME_KINDS` (zeros included), then any other
    state, lower-cased."""
    table: pd.DataFrame
    """Columns ``number``, ``state``, ``epochs`` (reached; NA when unknown), ``reason`` (one
    line, cut to :data:`REASON_CHARS`), ordered by number: every FAIL trial, and when no trial
    completed every trial (so a study that produced nothing says, per trial, why)."""
    first_failure: tuple[int, str | None] | None = None
    """The first failed trial (lowest number; interrupted ones are not failures) and its whole
    stored error, uncut (None when it recorded none); None when no trial failed."""

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def complete(self) -> int:
        return self.counts.get("complete", 0)

    def text(self) -> str:
        """'3 failed, 1 interrupted' (kinds with a count, in order), or 'none'."""
        parts = [f"{n} {kind}" for kind, n in self.counts.items() if n]
        return ", ".join(parts) or "none"


def _epochs(value: object) -> int | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else int(number)


def trial_outcomes(trials: pd.DataFrame) -> TrialOutcomes:
    """Count ``trials`` (the store's ``trials_frame``) by how they ended and list the ones that
    did not finish. A trial the service retired (:func:`retired_kinds`) is 'interrupted', not
    'failed': the run cut it off and the next run continues it."""
    counts = dict.fromkeys(OUTCOME_KINDS, 0)
    if Col.NUMBER in trials:
        trials = trials.drop_duplicates(Col.NUMBER)
    states = (
        trials[Col.STATE].astype(str)
        if Col.STATE in trials
        else pd.Series(TrialState.COMPLETE, trials.index)
    )
    errors = (
        trials[Col.ERROR] if Col.ERROR in trials else pd.Series(None, trials.index, dtype=object)
    )
    kinds = []
    for state, retired in zip(states, retired_kinds(trials), strict=True):
        kind = "interrupted" if retired is not None else _KIND_OF_STATE.get(state, state.lower())
        counts[kind] = counts.get(kind, 0) + 1
        kinds.append(kind)
    none_complete = counts["complete"] == 0
    rows = []
    first: tuple[int, str | None] | None = None
    numbers = trials[Col.NUMBER] if Col.NUMBER in trials else pd.Series(range(len(trials)))
    reached = trials[Col.EPOCHS] if Col.EPOCHS in trials else pd.Series(None, trials.index)
    for number, state, kind, error, epochs in zip(
        numbers, states, kinds, errors, reached, strict=True
    ):
        if state != TrialState.FAIL and not none_complete:
            continue
        done = _epochs(epochs)
        if kind == "interrupted":
            reason = short_reason(error) + " (the next run of the spec continues it)"
        elif state == TrialState.FAIL:
            reason = short_reason(error)
            if first is None or int(number) < first[0]:
                full = error.strip() if isinstance(error, str) else ""
                first = (int(number), full or None)
        elif state == TrialState.PRUNED:
            reason = "stopped early by the scheduler" + (
                f" after epoch {done}" if done is not None else ""
            )
        else:
            reason = f"{state.lower()}: no result yet"
        rows.append((int(number), state, done, reason))
    table = pd.DataFrame(rows, columns=_TABLE_COLUMNS).astype({Col.NUMBER: int})
    table[Col.EPOCHS] = table[Col.EPOCHS].astype("Int64")
    table = table.sort_values(Col.NUMBER, kind="stable").reset_index(drop=True)
    return TrialOutcomes(counts, table, first)
