"""What failed in a study and why: the few lines a terminal shows when no trial finished.

:func:`summarize_failures` reads the store's ``trials_frame`` (columns ``number``, ``state``,
``error``) into a :class:`FailureSummary`: trials by kind, the failed trials' reasons grouped
(most frequent first) and the first failed trial's whole error. :func:`render_lines` words it.

Trials the service retired itself, to be continued by the next run of the spec (cut off by
Ctrl-C, left running by a driver that died, cut off by the infrastructure: the ``retired``
column of the trials frame, read by :func:`dashboards.retired_kinds`), are not failures: they
are counted as interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from dashboards import retired_kinds

__all__ = [
    "KINDS",
    "FailureGroup",
    "FailureSummary",
    "render_lines",
    "summarize_failures",
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
_KIND_OF_STATE = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


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


def summarize_failures(trials: pd.DataFrame) -> FailureSummary:
    """Summarize ``trials`` (``Store.trials_frame(study)``; one row per trial number).

    A trial the service retired (its ``retired`` column: Ctrl-C, a lost driver, the
    infrastructure; see :func:`dashboards.retired_kinds`) is interrupted, not failed.
    """
    if "number" in trials:
        trials = trials.drop_duplicates("number", keep="last").sort_values("number")
    n = len(trials)
    numbers = trials["number"] if "number" in trials else pd.Series(range(n), index=trials.index)
    states = trials["state"] if "state" in trials else pd.Series("COMPLETE", index=trials.index)
    errors = trials["error"] if "error" in trials else pd.Series(None, trials.index, dtype=object)
    retired = retired_kinds(trials)
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
