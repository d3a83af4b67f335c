"""The frame contract between study/ and dashboards/ (dashboards/_frame.py).

(a) the store's frames satisfy it, (b) every entry point that takes frames checks it and says
which frame lacks which column, (c) the files that read frames spell no column name and no trial
state as a string literal: they use ``Col``, ``PARAM_PREFIX`` and ``TrialState``.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dashboards as d
from dashboards import (
    EPOCHS_FRAME,
    PARAM_PREFIX,
    RUNS_FRAME,
    TRIALS_FRAME,
    Col,
    FrameContractError,
    TrialState,
)

ROOT = Path(__file__).resolve().parents[2]

#: The files whose frame columns and trial states must come from the contract (globs relative to
#: the repository root). Widen to "study/**/*.py" once study/ reads frames through it everywhere.
CONTRACT_FILES = ("dashboards/*.py", "study/**/*.py")
#: Where the names themselves are spelled, and where SQL column names are, not frame columns:
#: study/store/_models.py is the SQL schema (SQLAlchemy column definitions), and the migrations
#: under study/store/migrations/ are frozen history (a migration must not change when a
#: constant is renamed later), so both spell SQL column names as literals; so does
#: study/_optuna_trials.py, which reads Optuna's own tables (``param_value``...) in plain SQL.
CONTRACT_EXEMPT = (
    "dashboards/_frame.py",
    "study/store/_models.py",
    "study/_optuna_trials.py",
    *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("study/store/migrations/**/*.py")),
)
#: A line that spells one of the words for something other than a frame column says so.
NOT_A_COLUMN = "frame-contract: not a column"

LADDER_DB = ROOT / "docs" / "results" / "ptb-char" / "ladder" / "ladder.db"


# ------------------------------------------------------------------ (a) the store's frames
def _store_frames(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A study written through study.store the way the driver's callback writes one."""
    from study.store import RunRecord, Store

    url = f"sqlite:///{tmp_path / 'contract.db'}"
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    with Store.open(url) as store:
        store.register_study(
            "s", spec={}, versions={"python": "3"}, direction="minimize", metric="bpc"
        )
        for number, state in enumerate(states):
            params = {"zoneout_cell": 0.1 * number, "zoneout_hidden": 0.05}
            error = "boom" if state == TrialState.FAIL else None
            store.upsert_trial(
                "s",
                number,
                state=state.value,
                params=params,
                seed=number,
                best_value=1.5 + number,
                epochs=2,
                error=error,
            )
            for seed in (0, 1):
                for epoch in (1, 2):
                    store.record_epoch(
                        "s",
                        number,
                        epoch,
                        train_loss=1.0,
                        valid_loss=1.0,
                        valid_metric=1.6 - 0.1 * epoch,
                        tokens_per_second=1e4,
                        seconds=1.0,
                        seed=seed,
                    )
            ends = [RunRecord(seed, "budget", 2, 2, 1.4) for seed in (0, 1)]
            store.record_runs("s", number, ends)
        return store.trials_frame("s"), store.epochs_frame("s"), store.runs_frame("s")


def test_the_frames_the_store_writes_satisfy_the_contract(tmp_path: Path) -> None:
    trials, epochs, runs = _store_frames(tmp_path)
    assert len(trials) == 4 and len(epochs) == 16 and len(runs) == 8
    TRIALS_FRAME.check(trials)
    EPOCHS_FRAME.check(epochs)
    RUNS_FRAME.check(runs)
    # Every column the contract names is there (not only the required ones), and the states
    # and parameter columns read back as the contract spells them.
    for spec, frame in ((TRIALS_FRAME, trials), (EPOCHS_FRAME, epochs), (RUNS_FRAME, runs)):
        missing = [c.name for c in spec.columns if c.name not in frame.columns]
        assert not missing, f"{spec.name}: {missing}"
    assert set(trials[Col.STATE]) == {s.value for s in TrialState if s != TrialState.WAITING}
    assert {PARAM_PREFIX + "zoneout_cell", PARAM_PREFIX + "zoneout_hidden"} <= set(trials)


def test_the_committed_ladder_study_read_through_the_store_satisfies_it(tmp_path: Path) -> None:
    from study.store import Store

    assert LADDER_DB.is_file(), f"{LADDER_DB} is committed; it must be in the checkout"
    copy = tmp_path / "ladder.db"
    with (
        sqlite3.connect(f"file:{LADDER_DB}?mode=ro", uri=True) as src,
        sqlite3.connect(copy) as dst,
    ):
        src.backup(dst)
    with Store(f"sqlite:///{copy}") as store:
        for name in ("quickstart", "quickstart-promoted"):
            trials = store.trials_frame(name)
            epochs = store.epochs_frame(name)
            runs = store.runs_frame(name)
            assert len(trials) and len(epochs) and len(runs), name
            d._frame.check_frames(name, trials=trials, epochs=epochs, runs=runs)


# ------------------------------------------------------------------ (b) the entry check
def _frames(make_frames) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    return make_frames(6, seed=3)


def test_analyze_names_the_frame_and_the_missing_column(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = _frames(make_frames)
    with pytest.raises(FrameContractError) as raised:
        d.analyze(trials.drop(columns=[Col.NUMBER]), epochs, metric="bpc", max_epochs=9)
    message = str(raised.value)
    assert message.startswith("the trials frame handed to dashboards.analyze lacks column 'number'")
    assert "expected 'number'" in message and "Store.trials_frame" in message
    assert "'state'" in message  # what it has instead

    renamed = epochs.rename(columns={Col.VALID_METRIC: "valid_bpc"})
    with pytest.raises(
        FrameContractError,
        match=r"the epochs frame handed to dashboards\.analyze "
        r"lacks column 'valid_metric': expected 'number', 'epoch', 'valid_metric'",
    ):
        d.analyze(trials, renamed, metric="bpc", max_epochs=9)

    ends = pd.DataFrame({Col.NUMBER: [0], Col.SEED: [0], "end": ["budget"]})
    with pytest.raises(FrameContractError, match=r"the runs frame .* lacks column 'ended'"):
        d.analyze(trials, epochs, metric="bpc", max_epochs=9, ends=ends)


def test_the_check_names_a_column_of_the_wrong_kind(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = _frames(make_frames)
    bad = trials.assign(state=["DONE"] * len(trials))
    with pytest.raises(FrameContractError, match=r"column 'state' holds 'DONE'; expected trial"):
        d.analyze(bad, epochs, metric="bpc", max_epochs=9)
    half = epochs.assign(epoch=epochs[Col.EPOCH] + 0.5)
    with pytest.raises(FrameContractError, match=r"column 'epoch' has dtype float64 with values"):
        d.analyze(trials, half, metric="bpc", max_epochs=9)


def test_absent_frames_and_csv_dtypes_pass(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, _ = _frames(make_frames)
    # No epochs and no runs table at all; a CSV round trip (a seed with an empty cell is float).
    d.analyze(trials, pd.DataFrame(), metric="bpc", max_epochs=9, ends=pd.DataFrame())
    trials.loc[0, Col.SEED] = np.nan
    trials.to_csv(tmp_path / "t.csv", index=False)
    TRIALS_FRAME.check(pd.read_csv(tmp_path / "t.csv"))


def test_every_entry_point_that_takes_frames_checks_them(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = _frames(make_frames)
    no_number = trials.drop(columns=[Col.NUMBER])
    calls = {
        "dashboards.build_report": lambda: d.build_report(
            no_number,
            epochs,
            study_name="s",
            metric="bpc",
            max_epochs=9,
            out_dir=tmp_path,
            png=False,
        ),
        "dashboards.select_configuration": lambda: d.select_configuration(
            no_number, epochs, method="m", source="s", max_epochs=9
        ),
        "dashboards.retired_kinds": lambda: d.retired_kinds(no_number),
        "dashboards.promotion_section (small)": lambda: d.promotion_section(
            d.ScaleFrames("small", no_number, epochs, None, 9),
            d.ScaleFrames("large", trials, epochs, None, 9),
            params=["zoneout_cell"],
            metric=d.MetricInfo.of("bpc"),
        ),
    }
    for where, call in calls.items():
        with pytest.raises(
            FrameContractError, match=re.escape(f"the trials frame handed to {where}")
        ):
            call()


def test_metric_labels_come_from_trials() -> None:
    from trials.tasks import METRIC_LABELS, METRIC_UNITS

    for metric in ("bpc", "perplexity", "error"):
        info = d.MetricInfo.of(metric)
        assert info.unit == METRIC_UNITS[metric]
        assert info.title == f"validation {METRIC_LABELS[metric]}"
    assert d.MetricInfo.of("bpc").axis_title == "validation BPC (bits per character)"


# ------------------------------------------------------------------ (c) no literals
def _contract_files() -> list[Path]:
    files = {p for pattern in CONTRACT_FILES for p in ROOT.glob(pattern)}
    return sorted(p for p in files if p.relative_to(ROOT).as_posix() not in CONTRACT_EXEMPT)


def _literal(words: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted(map(re.escape, words)))
    return re.compile(rf"""(?<![\w])[rbfuRBFU]{{0,2}}(["'])({alternatives})\1""")


def test_no_column_name_or_state_is_spelled_as_a_literal() -> None:
    columns = {v for k, v in vars(Col).items() if k.isupper()}
    columns |= {c.name for spec in (TRIALS_FRAME, EPOCHS_FRAME, RUNS_FRAME) for c in spec.columns}
    states = {s.value for s in TrialState}
    patterns = {
        "column name": _literal(columns),
        "trial state": _literal(states),
        "parameter column": re.compile(
            rf"""(?<![\w])[rbfuRBFU]{{0,2}}(["']){PARAM_PREFIX}[^"']*\1"""
        ),
    }
    files = _contract_files()
    # A function or constant named param_... (in an __all__) is not a column.
    names = set()
    for path in [*files, *(ROOT / p for p in CONTRACT_EXEMPT)]:
        names |= set(re.findall(rf"^(?:def |class )?({PARAM_PREFIX}\w*)\b", path.read_text(), re.M))
    assert len(files) > 10 and all(p.is_file() for p in files)
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if NOT_A_COLUMN in line:
                continue
            for what, pattern in patterns.items():
                for m in pattern.finditer(line):
                    if m.group(0).strip("'\"rbfuRBFU") in names:
                        continue
                    where = f"{path.relative_to(ROOT)}:{number}"
                    found.append(f"{where}: {what} {m.group(0)} (use dashboards._frame's names)")
    assert not found, "\n".join(found)
