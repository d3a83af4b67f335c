"""What failed in a study and why: the few lines a terminal shows when no trial finished.

:func:`summarize_failures` reads the store's ``trials_frame`` (columns ``number``, ``state``,
``error``) into a :class:`FailureSummary`: trials by kind, the failed trials' reasons grouped
(most frequent first) and the first failed trial's whole error. :func:`render_lines` words it.

How a trial ended is a stored fact, never read from its error text (a sentence for people):
:func:`trial_ends` reads it (a :class:`study.plan.TrialEnd` per trial) from the frame's
``end_reason`` column, and derives it for rows and frames written before that column existed.
Trials the service retired itself, to be continued by the next run of the spec (cut off by
Ctrl-C, left running by a driver that died, cut off by the infrastructure:
:func:`retired_reasons`), are not failures: they are counted as interrupted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pandas as pd

from dashboards import Col, TrialState, retired_kinds
from study.plan import TrialEnd

__all__ = [
    "KINDS",
    "FailureGroup",
    "FailureSummary",
    "render_lines",
    "retired_reasons",
    "summarize_failures",
    "trial_ends",
]

#: How a trial ended, in the order the summary names them (other states follow, lower-cased).
KINDS = ("complete", "pruned", "failed", "interrupted", "running")
#: A reason longer than this is cut on the terminal (the store and `status` keep it whole).
REASON_CHARS = 200
#: Reasons shown before '... and N more reasons'.
MAX_GROUPS = 5
#: Trial numbers shown per reason before '... and N more'.
MAX_NUMBERS = 10
NO_REASON = "no reason recorded"
_KIND_OF_STATE = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}
# The name trials.trainable.TrialDiverged gives a diverged seed's error (study.score.failure_end);
# read only for a failed row without an end_reason (the searcher joins its failed seeds'
# reasons with '; '), as migration 0004 does. Not imported: trials.trainable loads torch.
_DIVERGED_NAME = "TrialDiverged"
_END_OF_STATE: dict[str, TrialEnd] = {
    TrialState.COMPLETE: TrialEnd.COMPLETE,
    TrialState.PRUNED: TrialEnd.PRUNED,
}


@dataclass(frozen=True)
class FailureGroup:
    """Failed trials that share one reason."""

    reason: str
    """The stored error on one line (whitespace collapsed), whole; 'no reason recorded'."""
    count: int
    trials: tuple[int, ...]
    """Their numbers, ascending."""


@dataclass(frozen=True)
class FailureSummary:
    """How a study's trials ended and why the failed ones failed."""

    total: int
    counts: Mapping[str, int]
    """Trials per kind: each of :data:`KINDS` (zeros included), then any other state."""
    groups: tuple[FailureGroup, ...]
    """The failed trials by reason: most trials first, then the earliest trial first."""
    first_number: int | None
    """The first failed trial (lowest number); None when none failed."""
    first_error: str | None
    """Its whole stored error, as stored (newlines kept); None when it recorded none."""

    @property
    def complete(self) -> int:
        return self.counts.get("complete", 0)

    @property
    def pruned(self) -> int:
        return self.counts.get("pruned", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def interrupted(self) -> int:
        return self.counts.get("interrupted", 0)

    def text(self) -> str:
        """'3 failed, 1 interrupted': the kinds that have trials, in :data:`KINDS` order."""
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n) or "no trials"


def _one_line(error: object) -> str:
    if not isinstance(error, str):
        error = "" if error is None or pd.isna(error) is True else str(error)
    return " ".join(error.split()) or NO_REASON


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _derived_end(state: str, retired: str | None, error: object) -> TrialEnd | None:
    """How a trial ended, for a row without an ``end_reason`` (written before it existed): by
    the rule migration 0004 fills the column with."""
    if retired is not None:
        try:
            return TrialEnd(retired)
        except ValueError:
            return TrialEnd.INTERRUPTED  # retired for a reason this version does not know
    if state == TrialState.FAIL:
        reasons = error.split("; ") if isinstance(error, str) else [""]
        diverged = all(_DIVERGED_NAME in reason for reason in reasons)  # every failed seed's
        return TrialEnd.DIVERGED if diverged else TrialEnd.FAILED
    return _END_OF_STATE.get(state)  # str keys: TrialState is a StrEnum


def trial_ends(trials: pd.DataFrame) -> pd.Series:
    """How each trial of ``trials`` ended (the store's ``trials_frame``, or a table
    `status --csv` wrote): a :class:`study.plan.TrialEnd`, None while it runs; indexed like
    ``trials``.

    Read from the ``end_reason`` column, the stored fact. A row without one (a frame from a
    database no run has upgraded yet, a CSV of an older version, a row written without it) is
    read by the rule migration 0004 fills the column with: its state and ``retired`` column
    (or, for a frame without that too, the error text the oldest versions wrote for a retired
    trial, read by :func:`dashboards.retired_kinds`); a failure each of whose seeds' reasons
    names ``TrialDiverged`` diverged (the migration also reads ``zs_runs``, which a trials
    frame lacks).
    """
    states = trials[Col.STATE].astype(str) if Col.STATE in trials else pd.Series("", trials.index)
    errors = (
        trials[Col.ERROR] if Col.ERROR in trials else pd.Series(None, trials.index, dtype=object)
    )
    stored = trials["end_reason"] if "end_reason" in trials else pd.Series(None, trials.index)
    retired = retired_kinds(trials)
    ends: list[TrialEnd | None] = []
    for value, state, why, error in zip(stored, states, retired, errors, strict=True):
        end = None
        if not _missing(value):
            try:
                end = TrialEnd(str(value))
            except ValueError:  # a value of a newer version: read the row as this one would
                end = None
        ends.append(end if end is not None else _derived_end(state, why, error))
    return pd.Series(ends, index=trials.index, dtype=object)


def retired_reasons(trials: pd.DataFrame) -> pd.Series:
    """Why the service retired each trial of ``trials`` (a :class:`study.plan.Retired` value:
    'interrupted', 'driver_lost', 'infrastructure'), None for a trial it did not retire;
    indexed like ``trials``. :func:`trial_ends`' ``retired``: the stored fact, never the error
    text."""
    kinds = [
        end.retired.value if end is not None and end.retired is not None else None
        for end in trial_ends(trials)
    ]
    return pd.Series(kinds, index=trials.index, dtype=object)


def summarize_failures(trials: pd.DataFrame, *, continued: Collection[int] = ()) -> FailureSummary:
    """Summarize ``trials`` (``Store.trials_frame(study)``; one row per trial number).

    A trial the service retired (:func:`trial_ends`: Ctrl-C, a lost driver, the
    infrastructure) is interrupted, not failed. ``continued``: the numbers of retired trials
    a replacement has already continued (``study.reaper.continued_trials``; only the Optuna
    study records which trial replaces which): they are left out, their rest is their
    replacement's row, and "interrupted" counts only what the next run still continues.
    """
    if Col.NUMBER in trials:
        trials = trials.drop_duplicates(Col.NUMBER, keep="last").sort_values(Col.NUMBER)
        if continued:
            retired = retired_reasons(trials).notna()
            trials = trials[~(retired & trials[Col.NUMBER].isin(list(continued)))]
    n = len(trials)
    numbers = (
        trials[Col.NUMBER] if Col.NUMBER in trials else pd.Series(range(n), index=trials.index)
    )
    states = (
        trials[Col.STATE]
        if Col.STATE in trials
        else pd.Series(TrialState.COMPLETE.value, index=trials.index)
    )
    errors = (
        trials[Col.ERROR] if Col.ERROR in trials else pd.Series(None, trials.index, dtype=object)
    )
    retired = retired_reasons(trials.assign(**{Col.STATE: states}))
    counts = dict.fromkeys(KINDS, 0)
    by_reason: dict[str, list[int]] = {}
    first: tuple[int, str | None] | None = None
    for number, state, error, why in zip(numbers, states.astype(str), errors, retired, strict=True):
        kind = "interrupted" if why is not None else _KIND_OF_STATE.get(state, state.lower())
        counts[kind] = counts.get(kind, 0) + 1
        if kind != "failed":
            continue
        number = int(number)
        by_reason.setdefault(_one_line(error), []).append(number)
        if first is None or number < first[0]:
            whole = error.strip() if isinstance(error, str) else ""
            first = (number, whole or None)
    groups = tuple(
        sorted(
            (
                FailureGroup(reason, len(nums), tuple(sorted(nums)))
                for reason, nums in by_reason.items()
            ),
            key=lambda g: (-g.count, g.trials[0]),
        )
    )
    return FailureSummary(
        total=n,
        counts=counts,
        groups=groups,
        first_number=first[0] if first else None,
        first_error=first[1] if first else None,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 1)].rstrip() + "..."


def _numbers(trials: tuple[int, ...], limit: int = MAX_NUMBERS) -> str:
    shown = ", ".join(str(n) for n in trials[:limit])
    more = f" and {len(trials) - limit} more" if len(trials) > limit else ""
    return f"trial{'s' if len(trials) > 1 else ''} {shown}{more}"


def _group_line(group: FailureGroup, limit: int) -> str:
    return f"{group.count}x '{_cut(group.reason, limit)}' ({_numbers(group.trials)})"


def render_lines(
    summary: FailureSummary, *, max_groups: int = MAX_GROUPS, limit: int = REASON_CHARS
) -> list[str]:
    """The lines a terminal shows, e.g. ``3 of 3 trials failed: 3x 'ValueError: ...' (trials
    0, 1, 2)``: one line per reason (at most ``max_groups``, then '... and N more reasons'),
    each cut to ``limit`` characters, and the first failed trial's whole error when a line
    had to cut or fold it. Plain text: print it without markup (reasons hold brackets)."""
    others = [
        f"{n} {kind}"
        + (" (the next run of the spec continues them)" if kind == "interrupted" else "")
        for kind, n in summary.counts.items()
        if n and kind != "failed"
    ]
    if summary.total == 0:
        return ["the study has no trials"]
    if not summary.failed:
        return [f"no trial failed: {', '.join(others)}"]
    head = f"{summary.failed} of {summary.total} trials failed"
    if others:
        head += f" ({', '.join(others)})"
    groups = summary.groups
    if len(groups) == 1:
        lines = [f"{head}: {_group_line(groups[0], limit)}"]
    else:
        lines = [f"{head}, for {len(groups)} reasons:"]
        lines += [f"  {_group_line(g, limit)}" for g in groups[:max_groups]]
        if len(groups) > max_groups:
            rest = len(groups) - max_groups
            lines.append(f"  ... and {rest} more reason{'s' if rest > 1 else ''}")
    first = summary.first_error
    if first is not None:
        one_line = " ".join(first.split())
        shown = {g.reason for g in groups[:max_groups]}
        if one_line not in shown or len(one_line) > limit or "\n" in first:
            lines.append(f"first failure, trial {summary.first_number}: {first}")
    return lines
