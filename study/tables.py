"""The CSV tables `status --csv` writes, read back and checked before a report or a comparison
uses them.

``zoneout-study status STUDY --csv FILE`` writes three tables: FILE (one row per trial),
FILE.epochs.csv (one row per trial, seed and epoch) and FILE.runs.csv (one row per trial and
seed: why the run ended). `report` and `compare` take FILE (a path ending in ``-trials.csv``) and
read its siblings beside it. Each table is checked here against what ``dashboards`` reads of it
(:data:`dashboards.TRIALS_FRAME`, ``EPOCHS_FRAME``, ``RUNS_FRAME``: the columns and the kind of
value in each), so that an empty, binary, truncated or hand-edited file is refused as one line
naming the file, the column and the row, instead of a pandas traceback deep inside a figure.

The epochs and runs tables may be absent: tables committed before the runs table existed have
none, and without epochs each trial is one run scored by its ``best_value`` (which the trials
table then must hold). A sibling that is there but is not a readable table is refused all the
same: it would otherwise be skipped without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import (
    EPOCHS_FRAME,
    RUNS_FRAME,
    TRIALS_FRAME,
    Col,
    ColumnSpec,
    FrameSpec,
    TrialState,
)
from study.errors import UserError
from trials.config import MAX_EPOCHS

__all__ = ["TableError", "Tables", "epochs_path", "read_tables", "runs_path"]

# How to get a good table again, the end of every message.
_REMEDY = "write the tables again with `zoneout-study status STUDY --csv FILE`"
# A value or column name quoted in a message is cut to this many characters.
_QUOTE_CHARS = 40
# Bytes looked at for a NUL, the sign of a binary file (CSV text never holds one).
_SNIFF_BYTES = 8192


class TableError(UserError, ValueError):
    """A CSV table given to `report` or `compare` is not the table `status --csv` writes; the
    message names the file and what is wrong in it."""


@dataclass(frozen=True)
class _Table:
    """What one of the three tables must hold, beyond the kinds :class:`FrameSpec` checks."""

    what: str
    frame: FrameSpec
    required: tuple[str, ...]
    """Columns `status --csv` always writes and `report`/`compare` read."""
    keys: tuple[str, ...]
    """Columns that identify a row: no cell of them may be empty."""
    bounds: tuple[tuple[str, int, int], ...] = ()
    """(column, lowest, highest) of integer columns with a range."""


_TRIALS = _Table("trials table", TRIALS_FRAME, (Col.NUMBER, Col.STATE), (Col.NUMBER, Col.STATE))
# ``seed``: optional in the frame contract, but the report groups the epochs by it.
_EPOCHS = _Table(
    "epochs table",
    EPOCHS_FRAME,
    (Col.NUMBER, Col.SEED, Col.EPOCH, Col.VALID_METRIC),
    (Col.NUMBER, Col.SEED, Col.EPOCH),
    # Epochs count from 1; the report lays the curves out over 1..the largest epoch.
    ((Col.EPOCH, 1, MAX_EPOCHS),),
)
_RUNS = _Table(
    "runs table", RUNS_FRAME, (Col.NUMBER, Col.SEED, Col.ENDED), (Col.NUMBER, Col.SEED, Col.ENDED)
)


@dataclass(frozen=True)
class Tables:
    """The three tables of one study; an absent sibling is ``pd.DataFrame()``."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    runs: pd.DataFrame


def epochs_path(trials_csv: Path) -> Path:
    """``x-trials.csv`` -> ``x-trials.epochs.csv`` (as `status --csv` names it)."""
    return trials_csv.with_suffix(".epochs.csv")


def runs_path(trials_csv: Path) -> Path:
    """``x-trials.csv`` -> ``x-trials.runs.csv`` (as `status --csv` names it)."""
    return trials_csv.with_suffix(".runs.csv")


def read_tables(trials_csv: Path) -> Tables:
    """The trials table ``trials_csv`` and its epochs and runs tables beside it, each checked;
    :class:`TableError` on the first that is not what `status --csv` writes."""
    trials = _read(trials_csv, _TRIALS, optional=False)
    epochs_csv = epochs_path(trials_csv)
    epochs = _read(epochs_csv, _EPOCHS, optional=True)
    runs = _read(runs_path(trials_csv), _RUNS, optional=True)
    if epochs.empty and len(trials) and Col.BEST_VALUE not in trials.columns:
        # Without epochs each trial is one run scored by its best_value (dashboards.study_runs).
        state = "has no row" if epochs_csv.is_file() else "is missing"
        raise TableError(
            f"{trials_csv}: lacks column {Col.BEST_VALUE!r}, which scores the trials when there "
            f"are no epochs ({epochs_csv.name} {state}); {_REMEDY}"
        )
    return Tables(trials, epochs, runs)


def _read(path: Path, table: _Table, *, optional: bool) -> pd.DataFrame:
    try:
        if optional and not path.exists() and not path.is_symlink():
            return pd.DataFrame()
        if path.is_dir():
            raise TableError(f"{path}: is a directory, not the {table.what}; {_REMEDY}")
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        nul = head.find(b"\0")
        if nul >= 0:
            raise TableError(
                f"{path}: binary data (a NUL byte at offset {nul}), not the CSV {table.what}; "
                f"{_REMEDY}"
            )
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise TableError(f"{path}: no such file; {_REMEDY}") from None
    except OSError as error:
        raise TableError(f"{path}: cannot read ({error.strerror or error})") from None
    except pd.errors.EmptyDataError:
        raise TableError(
            f"{path}: the file is empty; the {table.what} starts with a header line naming "
            f"its columns; {_REMEDY}"
        ) from None
    except UnicodeDecodeError:
        raise TableError(f"{path}: not UTF-8 text, not the CSV {table.what}; {_REMEDY}") from None
    except pd.errors.ParserError as error:
        # "Error tokenizing data. C error: Expected 19 fields in line 5, saw 23": the last part.
        detail = " ".join(str(error).split()).rpartition("error: ")[2] or "unparsable"
        raise TableError(f"{path}: not a CSV table ({_cut(detail, 80)}); {_REMEDY}") from None
    _check(path, frame, table)
    return frame


def _check(path: Path, frame: pd.DataFrame, table: _Table) -> None:
    columns = [str(c) for c in frame.columns]
    missing = [c for c in table.required if c not in columns]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise TableError(
            f"{path}: lacks column{s} {', '.join(map(repr, missing))}; the {table.what} has "
            f"{', '.join(table.required)} (its header here: {_names(columns)}); {_REMEDY}"
        )
    for name in table.keys:
        empty = frame.index[frame[name].isna()]
        if len(empty):
            raise TableError(
                f"{path}: column {name!r} is empty in data row {int(empty[0]) + 1}; every row "
                f"of the {table.what} needs one; {_REMEDY}"
            )
    for spec in table.frame.columns:
        if spec.name not in columns:
            continue
        bad = _bad_cell(spec, frame[spec.name])
        if bad is not None:
            row, value = bad
            raise TableError(
                f"{path}: column {spec.name!r} holds {_quote(value)} in data row {row}; expected "
                f"{_expected(spec)}; {_REMEDY}"
            )
        problem = spec.problem(frame[spec.name])  # anything else the frame contract refuses
        if problem is not None:
            raise TableError(
                f"{path}: column {spec.name!r} {_cut(problem, 80)}; expected {_expected(spec)}"
            )
    for name, low, high in table.bounds:
        values = frame[name].dropna()
        outside = values[(values < low) | (values > high)]
        if len(outside):
            raise TableError(
                f"{path}: column {name!r} holds {_quote(outside.iloc[0])} in data "
                f"row {int(outside.index[0]) + 1}; expected {low} to {high}; {_REMEDY}"
            )


def _bad_cell(spec: ColumnSpec, column: pd.Series) -> tuple[int, object] | None:
    """(1-based row, value) of the first non-empty cell that is not of ``spec``'s kind."""
    values = column.dropna()
    if spec.kind == "state":  # frame-contract: not a column (a Kind)
        bad = values[~values.astype(str).isin([state.value for state in TrialState])]
    elif spec.kind in ("number", "integer"):  # frame-contract: not a column (Kinds)
        if pd.api.types.is_bool_dtype(column):
            bad = values
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna()]
            if bad.empty and spec.kind == "integer":
                as_float = numbers.to_numpy(dtype=float)
                whole = np.isfinite(as_float) & (as_float == np.round(as_float))
                bad = values[~whole]
    else:
        return None
    if bad.empty:
        return None
    return int(bad.index[0]) + 1, bad.iloc[0]


def _expected(spec: ColumnSpec) -> str:
    if spec.kind == "state":  # frame-contract: not a column (a Kind)
        return "a trial state (" + ", ".join(state.value for state in TrialState) + ")"
    kinds = {
        "integer": "whole numbers",
        "number": "numbers",  # frame-contract: not a column (a Kind)
        "text": "text",
    }
    return kinds[spec.kind]


def _quote(value: object, most: int = _QUOTE_CHARS) -> str:
    """``repr`` of a value for a message, cut: a cell or a header may be megabytes long."""
    return _cut(repr(value) if isinstance(value, str) else str(value), most)


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _names(columns: list[str], most: int = 8) -> str:
    shown = ", ".join(_quote(c, 24) for c in columns[:most]) or "no column"
    return shown + (f" and {len(columns) - most} more" if len(columns) > most else "")
