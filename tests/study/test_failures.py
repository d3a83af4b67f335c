"""summarize_failures / render_lines: what a terminal says about a study whose trials failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.failures import (
    MAX_GROUPS,
    REASON_CHARS,
    FailureGroup,
    render_lines,
    summarize_failures,
)
from study.plan import Retired
from study.reaper import DRIVER_LOST
from study.searcher import CUT_OFF_PREFIX, INTERRUPTED

ROOT = Path(__file__).resolve().parents[2]
BATCH = "ValueError: 2000 tokens are too few for batch size 4000; use a smaller batch_size"


def _frame(
    rows: list[tuple[int, str, object]], retired: list[object] | None = None
) -> pd.DataFrame:
    """A trials frame with the store's columns that matter here (number, state, error,
    retired: none retired unless ``retired`` says, one value per row)."""
    frame = pd.DataFrame(rows, columns=["number", "state", "error"])
    frame["number"] = frame["number"].astype("Int64")  # as Store.trials_frame types it
    frame["retired"] = pd.Series(retired or [None] * len(frame), index=frame.index, dtype=object)
    frame["param_zoneout_cell"] = np.linspace(0, 0.5, len(frame))
    return frame


def test_every_trial_failed_for_one_reason() -> None:
    summary = summarize_failures(_frame([(n, "FAIL", BATCH) for n in range(3)]))
    assert summary.total == 3 and summary.failed == 3 and summary.complete == 0
    assert summary.counts == {
        "complete": 0,
        "pruned": 0,
        "failed": 3,
        "interrupted": 0,
        "running": 0,
    }
    assert summary.groups == (FailureGroup(BATCH, 3, (0, 1, 2)),)
    assert (summary.first_number, summary.first_error) == (0, BATCH)
    assert render_lines(summary) == [f"3 of 3 trials failed: 3x '{BATCH}' (trials 0, 1, 2)"]


def test_reasons_are_grouped_most_frequent_first_then_earliest() -> None:
    rows = [
        (0, "FAIL", "TrialDiverged: loss is nan at epoch 2"),
        (1, "FAIL", BATCH),
        (2, "COMPLETE", None),
        (3, "FAIL", BATCH + "\n"),  # the same reason once whitespace is folded
        (4, "PRUNED", None),
        (5, "FAIL", "OSError: disk"),
    ]
    summary = summarize_failures(_frame(rows))
    assert [(g.reason, g.count, g.trials) for g in summary.groups] == [
        (BATCH, 2, (1, 3)),
        ("TrialDiverged: loss is nan at epoch 2", 1, (0,)),
        ("OSError: disk", 1, (5,)),
    ]
    assert summary.first_number == 0
    lines = render_lines(summary)
    assert lines[0] == "4 of 6 trials failed (1 complete, 1 pruned), for 3 reasons:"
    assert lines[1] == f"  2x '{BATCH}' (trials 1, 3)"
    assert lines[2] == "  1x 'TrialDiverged: loss is nan at epoch 2' (trial 0)"
    assert len(lines) == 4  # the first failure's reason is shown whole already


def test_service_retired_trials_are_interrupted_not_failed() -> None:
    rows = [
        (0, "FAIL", INTERRUPTED),
        (1, "FAIL", DRIVER_LOST),
        (2, "FAIL", BATCH),
        (3, "FAIL", f"{CUT_OFF_PREFIX}RayActorError: the actor died"),
    ]
    retired = [Retired.INTERRUPTED.value, Retired.DRIVER_LOST.value, None, "infrastructure"]
    summary = summarize_failures(_frame(rows, retired))
    assert summary.failed == 1 and summary.interrupted == 3
    assert summary.groups == (FailureGroup(BATCH, 1, (2,)),)
    assert (summary.first_number, summary.first_error) == (2, BATCH)
    (line,) = render_lines(summary)
    assert line.startswith("1 of 4 trials failed (3 interrupted (the next run of the spec")
    assert line.endswith(f": 1x '{BATCH}' (trial 2)")

    only = summarize_failures(
        _frame([(0, "FAIL", INTERRUPTED), (1, "RUNNING", None)], ["interrupted", None])
    )
    assert only.failed == 0 and only.groups == () and only.first_number is None
    assert render_lines(only) == [
        "no trial failed: 1 interrupted (the next run of the spec continues them), 1 running"
    ]


def test_the_retired_column_decides_not_the_error_text() -> None:
    # The text the service writes for a retired trial, on a trial it did not retire (NULL, or
    # NaN as an empty CSV cell reads): a failure like any other.
    rows = [(0, "FAIL", INTERRUPTED), (1, "FAIL", DRIVER_LOST), (2, "FAIL", "disk full")]
    summary = summarize_failures(_frame(rows, [None, float("nan"), "infrastructure"]))
    assert summary.failed == 2 and summary.interrupted == 1
    assert [g.trials for g in summary.groups] == [(0,), (1,)]


def test_a_table_of_an_older_version_is_read_by_its_error_text() -> None:
    # `status --csv` of a version before the `retired` column: the text it wrote then decides.
    rows = [
        (0, "FAIL", "interrupted: the driver stopped before the trial finished"),
        (1, "FAIL", "interrupted: the driver stopped before the trial finished (disk full)"),
        (2, "FAIL", "driver lost"),
        (3, "FAIL", "cut off by the infrastructure: RayActorError: the actor died"),
        (4, "FAIL", BATCH),
        (5, "RUNNING", "driver lost"),
    ]
    summary = summarize_failures(_frame(rows).drop(columns="retired"))
    assert summary.interrupted == 4 and summary.failed == 1 and summary.first_number == 4
    assert summary.counts["running"] == 1


def test_long_reasons_are_cut_and_the_first_error_is_shown_whole() -> None:
    long = "RuntimeError: " + "x" * 400
    summary = summarize_failures(_frame([(0, "FAIL", long), (1, "FAIL", long)]))
    assert summary.groups[0].reason == long  # the data keeps it whole
    head, first = render_lines(summary)
    assert head.startswith("2 of 2 trials failed: 2x 'RuntimeError: xxx")
    assert "..." in head and len(head) < REASON_CHARS + 80
    assert first == f"first failure, trial 0: {long}"


def test_a_multi_line_first_error_is_printed_as_stored() -> None:
    error = "Traceback-free\n  but folded over two lines"
    lines = render_lines(summarize_failures(_frame([(4, "FAIL", error)])))
    assert (
        lines[0] == "1 of 1 trials failed: 1x 'Traceback-free but folded over two lines' (trial 4)"
    )
    assert lines[1] == f"first failure, trial 4: {error}"


def test_at_most_five_reasons_then_how_many_more() -> None:
    rows = [(n, "FAIL", f"ValueError: reason {n}") for n in range(8)]
    lines = render_lines(summarize_failures(_frame(rows)))
    assert lines[0] == "8 of 8 trials failed, for 8 reasons:"
    assert lines[1 : 1 + MAX_GROUPS] == [
        f"  1x 'ValueError: reason {n}' (trial {n})" for n in range(MAX_GROUPS)
    ]
    assert lines[1 + MAX_GROUPS] == "  ... and 3 more reasons"
    assert len(lines) == 2 + MAX_GROUPS


def test_many_trials_of_one_reason_name_ten_and_count_the_rest() -> None:
    (line,) = render_lines(summarize_failures(_frame([(n, "FAIL", BATCH) for n in range(25)])))
    assert line.endswith("(trials 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more)")


def test_missing_reasons_and_odd_frames() -> None:
    rows = [(2, "FAIL", None), (1, "FAIL", float("nan")), (0, "FAIL", "  ")]
    summary = summarize_failures(_frame(rows))
    assert summary.groups == (FailureGroup("no reason recorded", 3, (0, 1, 2)),)
    assert (summary.first_number, summary.first_error) == (0, None)
    assert render_lines(summary) == [
        "3 of 3 trials failed: 3x 'no reason recorded' (trials 0, 1, 2)"
    ]

    empty = summarize_failures(_frame([]))
    assert (
        empty.total == 0
        and empty.groups == ()
        and render_lines(empty) == ["the study has no trials"]
    )
    no_error_column = summarize_failures(
        pd.DataFrame({"number": [0, 1], "state": ["FAIL", "COMPLETE"]}),
    )
    assert no_error_column.groups == (FailureGroup("no reason recorded", 1, (0,)),)
    # A row seen twice (a re-read) is one trial: its last state counts.
    twice = _frame([(0, "RUNNING", None), (0, "FAIL", BATCH)])
    assert summarize_failures(twice).total == 1


def test_summary_of_a_real_store_frame(tmp_path: Path) -> None:
    from study.store import Store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        store.register_study(
            "s", spec={"name": "s"}, versions={}, direction="minimize", metric="bpc"
        )
        for number in range(3):
            store.upsert_trial("s", number, state="FAIL", error=BATCH, params={"zoneout_cell": 0.1})
        store.upsert_trial("s", 3, state="FAIL", error=INTERRUPTED, retired="interrupted")
        frame = store.trials_frame("s")
    summary = summarize_failures(frame)
    assert summary.failed == 3 and summary.interrupted == 1
    assert render_lines(summary)[0].startswith("3 of 4 trials failed (1 interrupted")


def test_importing_it_does_not_import_the_runner() -> None:
    code = "import sys, study.failures; assert 'study.runner' not in sys.modules, 'runner'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("state", ["COMPLETE", "PRUNED"])
def test_a_finished_study_says_nothing_failed(state: str) -> None:
    summary = summarize_failures(_frame([(0, state, None), (1, state, None)]))
    assert summary.failed == 0
    assert render_lines(summary) == [f"no trial failed: 2 {state.lower()}"]


def test_how_a_trial_ended_is_the_stored_fact_not_its_sentence() -> None:
    """``end_reason`` decides; the error text is display only. A row without one (an older
    frame, a CSV's empty cell) is read by the rule migration 0004 fills the column with."""
    from study.failures import retired_reasons, trial_ends
    from study.plan import TrialEnd

    frame = _frame(
        [
            (0, "FAIL", "Stopped; the next run continues it"),  # any wording
            (1, "FAIL", INTERRUPTED),  # yesterday's sentence, but the fact says failed
            (2, "FAIL", "Its driver vanished"),
            (3, "FAIL", "trials.trainable.TrialDiverged: loss became nan"),
            (4, "COMPLETE", None),
            (5, "RUNNING", None),
            (6, "FAIL", "ValueError: bad"),
        ],
        retired=["interrupted", None, "driver_lost", None, None, None, None],
    )
    frame["end_reason"] = [
        "interrupted",
        "failed",
        "driver_lost",
        "diverged",
        "complete",
        None,
        np.nan,
    ]
    ends = list(trial_ends(frame))
    assert ends == [
        TrialEnd.INTERRUPTED,
        TrialEnd.FAILED,
        TrialEnd.DRIVER_LOST,
        TrialEnd.DIVERGED,
        TrialEnd.COMPLETE,
        None,
        TrialEnd.FAILED,  # no fact: derived from its state
    ]
    assert list(retired_reasons(frame)) == ["interrupted", None, "driver_lost", *[None] * 4]
    summary = summarize_failures(frame)
    assert (summary.interrupted, summary.failed, summary.complete) == (2, 3, 1)
    assert TrialEnd.INTERRUPTED.retired == Retired.INTERRUPTED
    assert TrialEnd.DIVERGED.retired is None and not TrialEnd.SURPLUS.counts
    assert {end.state.name for end in TrialEnd} == {"COMPLETE", "PRUNED", "FAIL"}


def test_the_exceptions_join_the_hierarchy() -> None:
    from study.errors import UserError, ZoneoutError
    from study.ray_session import RaySessionError
    from trials.task_loops import Diverged
    from trials.trainable import TrialDiverged

    assert issubclass(RaySessionError, UserError) and issubclass(RaySessionError, RuntimeError)
    assert issubclass(Diverged, ZoneoutError) and not issubclass(Diverged, UserError)
    # One idea: the worker's exception is the training loop's, under the name the error keeps.
    assert issubclass(TrialDiverged, Diverged) and issubclass(TrialDiverged, RuntimeError)
    assert f"{TrialDiverged.__module__}.{TrialDiverged.__qualname__}" == (
        "trials.trainable.TrialDiverged"
    )
