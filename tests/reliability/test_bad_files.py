"""Bad files are refused before use: the CSV tables `report` and `compare` read (what
`status --csv` writes) and the checkpoints `train --checkpoint-dir` resumes from.

Every case ends with exit status 2, one line starting 'error:' and no traceback, the input files
byte for byte what they were and nothing written anywhere under the test's directory, which is
also the working directory and the temporary directory (so a default output or a temporary
copy would show). A checkpoint made with another config is refused naming the fields that
differ; a resume that only extends the budget or runs elsewhere still resumes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from study.cli import app
from tests.study.test_cli_errors import make_store
from tests.support import one_line_error
from trials.checkpoints import FINGERPRINT_KEY, CheckpointError
from trials.config import load_config
from trials.train import BEST_MODEL_FILE, CHECKPOINT_FILE, train

TRIALS = "known-trials.csv"
EPOCHS = "known-trials.epochs.csv"
RUNS = "known-trials.runs.csv"
SPEC = "known.yaml"
COMMANDS = ("report", "compare")


def _state(directory: Path) -> dict[str, bytes]:
    """Every file's bytes and every directory under ``directory`` (SQLite's -wal/-shm files
    left out: they come and go with connections)."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(directory.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture
def confined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` as the working, temporary and cache directory of the command."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("ZONEOUT_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # train() sets them from the config
    yield
    torch.set_num_threads(threads)


def _shown(message: str, root: Path) -> str:
    return message.replace(str(root), "<tmp>")


# ------------------------------------------------------------------ the CSV tables
@pytest.fixture(scope="module")
def good_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three tables `status known --csv` writes for make_store's study, with one epoch and
    one run per finished trial: a report and a Table 1 come out of them."""
    from study.store import RunRecord, Store

    directory = tmp_path_factory.mktemp("good-tables")
    database = make_store(directory)
    with Store.open(f"sqlite:///{database}") as store:
        for number, value in ((0, 0.5), (1, 0.4)):
            store.record_epoch(
                "known",
                number,
                1,
                train_loss=1.0,
                valid_loss=1.0,
                valid_metric=value,
                tokens_per_second=1.0,
                seconds=1.0,
                seed=0,
            )
            store.record_runs("known", number, [RunRecord(0, "completed", 1, 1, value)])
    tables = directory / "tables"
    result = CliRunner().invoke(
        app,
        ["status", "known", "--storage", f"sqlite:///{database}", "--csv", str(tables / TRIALS)],
    )
    assert result.exit_code == 0, result.output
    return tables


Edit = Callable[[Path], None]


def _text(name: str, content: str | bytes) -> Edit:
    def edit(directory: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (directory / name).write_bytes(data)

    return edit


def _sub(name: str, old: str, new: str) -> Edit:
    def edit(directory: Path) -> None:
        path = directory / name
        text = path.read_text(encoding="utf-8")
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def _drop(name: str, column: str) -> Edit:
    def edit(directory: Path) -> None:
        path = directory / name
        pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)

    return edit


def _header_only(name: str) -> Edit:
    def edit(directory: Path) -> None:
        path = directory / name
        path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")

    return edit


def _remove(name: str) -> Edit:
    return lambda directory: (directory / name).unlink()


def _directory(name: str) -> Edit:
    def edit(directory: Path) -> None:
        (directory / name).unlink()
        (directory / name).mkdir()

    return edit


BINARY = bytes(range(256)) * 4
HUGE = "X" * 200_000

# name -> (edits, fragments of the one-line message: the same for both commands, or per command)
TABLE_CASES: dict[str, tuple[tuple[Edit, ...], tuple[str, ...] | dict[str, tuple[str, ...]]]] = {
    "empty trials table": ((_text(TRIALS, ""),), (TRIALS, "the file is empty")),
    "trials table without 'state'": ((_drop(TRIALS, "state"),), (TRIALS, "lacks column 'state'")),
    "trials table without 'number'": (
        (_drop(TRIALS, "number"),),
        (TRIALS, "lacks column 'number'"),
    ),
    "binary trials table": ((_text(TRIALS, BINARY),), (TRIALS, "binary data")),
    "trials table not UTF-8": (
        (_text(TRIALS, b"study,number,state\nknown,0,COMPLETE\xff\xfe\n"),),
        (TRIALS, "not UTF-8 text"),
    ),
    "trials table with a ragged row": (
        (_sub(TRIALS, "known,1,COMPLETE,", "known,1,COMPLETE,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,"),),
        (TRIALS, "not a CSV table (Expected 19 fields"),
    ),
    "text in best_value": (
        (_sub(TRIALS, ",0.5,0.5,", ",abc,0.5,"),),
        (TRIALS, "column 'best_value' holds 'abc' in data row 1", "expected numbers"),
    ),
    "a state that is not a trial state": (
        (_sub(TRIALS, "COMPLETE", "DONE"),),
        (TRIALS, "column 'state' holds 'DONE'", "COMPLETE, PRUNED, FAIL"),
    ),
    "a 200 000-character state": (
        (_sub(TRIALS, "COMPLETE", HUGE),),
        (TRIALS, "column 'state' holds 'XXXXXXXX", "…"),
    ),
    "a trial number that is not whole": (
        (_sub(TRIALS, "known,1,COMPLETE", "known,0.5,COMPLETE"),),
        (TRIALS, "column 'number' holds 0.5 in data row 2", "whole numbers"),
    ),
    "an empty trial number": (
        (_sub(TRIALS, "known,1,COMPLETE", "known,,COMPLETE"),),
        (TRIALS, "column 'number' is empty in data row 2"),
    ),
    "trials table is a directory": (
        (_directory(TRIALS),),
        {"report": (TRIALS, "is a directory"), "compare": (TRIALS, "is a directory")},
    ),
    "no trials table": ((_remove(TRIALS),), ("no such table", TRIALS)),
    "empty epochs table": ((_text(EPOCHS, ""),), (EPOCHS, "the file is empty")),
    "binary epochs table": ((_text(EPOCHS, BINARY),), (EPOCHS, "binary data")),
    "epochs table without 'valid_metric'": (
        (_drop(EPOCHS, "valid_metric"),),
        (EPOCHS, "lacks column 'valid_metric'"),
    ),
    "text in valid_metric": (
        (_sub(EPOCHS, ",1.0,0.5,", ",1.0,abc,"),),
        (EPOCHS, "column 'valid_metric' holds 'abc'"),
    ),
    "epoch 0": ((_sub(EPOCHS, "known,0,0,1,", "known,0,0,0,"),), (EPOCHS, "'epoch' holds 0")),
    "epochs table is a directory": ((_directory(EPOCHS),), (EPOCHS, "is a directory")),
    "no epochs table and no best_value": (
        (_remove(EPOCHS), _drop(TRIALS, "best_value")),
        (TRIALS, "lacks column 'best_value'", f"{EPOCHS} is missing"),
    ),
    "header-only epochs table and no best_value": (
        (_header_only(EPOCHS), _drop(TRIALS, "best_value")),
        (TRIALS, "lacks column 'best_value'", f"{EPOCHS} has no row"),
    ),
    "empty runs table": ((_text(RUNS, ""),), (RUNS, "the file is empty")),
    "binary runs table": ((_text(RUNS, BINARY),), (RUNS, "binary data")),
    "runs table without 'ended'": ((_drop(RUNS, "ended"),), (RUNS, "lacks column 'ended'")),
    "malformed spec beside the table": ((_text(SPEC, "name: [1,\n"),), (SPEC, "malformed YAML")),
}
# A table with a header and no trial is a study with no trial yet: `report` writes its report
# (test below); `compare` has nothing to take from it.
COMPARE_ONLY: dict[str, tuple[tuple[Edit, ...], tuple[str, ...]]] = {
    "header-only trials table": ((_header_only(TRIALS),), (TRIALS, "holds no trial")),
}


def _table_args(command: str, directory: Path, out: Path) -> list[str]:
    table = str(directory / TRIALS)
    if command == "report":
        return ["report", table, "--no-png", "--out", str(out)]
    return ["compare", table, "--no-png", "--test", "none", "--out", str(out)]


def _refused_table(
    name: str,
    command: str,
    edits: tuple[Edit, ...],
    expected: tuple[str, ...],
    root: Path,
    good_tables: Path,
) -> str:
    tables = root / "tables"
    shutil.copytree(good_tables, tables)
    for edit in edits:
        edit(tables)
    before = _state(root)
    out = root / "reports" / "out"
    result = CliRunner().invoke(app, _table_args(command, tables, out))
    message = one_line_error(result)
    assert all(text in message for text in expected), message
    assert len(message) < 600, message  # a huge cell is cut, never echoed
    assert _state(root) == before, f"{name}: files changed or written"
    return message


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_a_bad_table_is_refused(
    case: str, command: str, confined: Path, good_tables: Path, reliability_record: Any
) -> None:
    edits, expected = TABLE_CASES[case]
    fragments = expected[command] if isinstance(expected, dict) else expected
    message = _refused_table(case, command, edits, fragments, confined, good_tables)
    reliability_record(
        f"Bad CSV table ({command}): {case}",
        f"`zoneout-study {command}` on the `status --csv` tables with {case}",
        f"exit 2, files unchanged, nothing written; {_shown(message, confined)[:200]}",
    )


@pytest.mark.parametrize("case", sorted(COMPARE_ONLY))
def test_a_table_without_trials_is_refused_by_compare(
    case: str, confined: Path, good_tables: Path, reliability_record: Any
) -> None:
    edits, expected = COMPARE_ONLY[case]
    message = _refused_table(case, "compare", edits, expected, confined, good_tables)
    reliability_record(
        f"Bad CSV table (compare): {case}",
        f"`zoneout-study compare` on the `status --csv` tables with {case}",
        f"exit 2, files unchanged, nothing written; {_shown(message, confined)[:200]}",
    )


def test_a_header_only_trials_table_is_reported_as_a_study_without_trials(
    confined: Path, good_tables: Path
) -> None:
    tables = confined / "tables"
    shutil.copytree(good_tables, tables)
    _header_only(TRIALS)(tables)
    before = _state(confined)
    out = confined / "out"
    result = CliRunner().invoke(app, _table_args("report", tables, out))
    assert result.exit_code == 0, result.output
    assert "no trial yet" in result.output
    after = _state(confined)
    assert {k: after[k] for k in before} == before
    new = set(after) - set(before)
    assert new and all((confined / path).is_relative_to(out) for path in new), new


def test_the_good_tables_are_accepted(confined: Path, good_tables: Path) -> None:
    """Guards the cases above: the tables they edit give a report and a Table 1."""
    for command in COMMANDS:
        result = CliRunner().invoke(app, _table_args(command, good_tables, confined / command))
        assert result.exit_code == 0, result.output


def test_any_bytes_as_the_trials_table_are_refused(
    good_tables: Path, reliability_record: Any
) -> None:
    messages: list[str] = []

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,  # the same examples in every run
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.binary(max_size=400))
    def refused(data: bytes) -> None:
        previous = Path.cwd()
        with tempfile.TemporaryDirectory(prefix="zs-bad-table-") as name:
            os.chdir(name)
            try:
                edits = (_text(TRIALS, data),)
                messages.append(
                    _refused_table("bytes", "report", edits, (TRIALS,), Path(name), good_tables)
                )
            finally:
                os.chdir(previous)

    refused()
    reasons = sorted({m.split(f"{TRIALS}: ")[-1].split(";")[0][:60] for m in messages})
    reliability_record(
        "Bad CSV table (report): arbitrary bytes",
        f"`zoneout-study report` on a trials table of generated bytes ({len(messages)} examples, "
        "hypothesis)",
        f"exit 2 each, files unchanged, nothing written; {'; '.join(reasons)[:240]}",
    )


# ------------------------------------------------------------------ checkpoints
CONFIG = "task: digits\nhidden_size: 8\nmax_batches_per_epoch: 1\nepochs: 1\nthreads: 1\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config file and the checkpoint directory one epoch of it wrote."""
    directory = tmp_path_factory.mktemp("trained")
    (directory / "config.yaml").write_text(CONFIG, encoding="utf-8")
    threads = torch.get_num_threads()
    try:
        train(load_config(directory / "config.yaml"), checkpoint_dir=directory / "ckpt")
    finally:
        torch.set_num_threads(threads)
    assert (directory / "ckpt" / BEST_MODEL_FILE).is_file()
    return directory


def _saved(path: Path) -> dict[str, Any]:
    saved: dict[str, Any] = torch.load(path, weights_only=False)
    return saved


def _without(*keys: str) -> Edit:
    """The checkpoint as an older version wrote it: without ``keys``."""

    def edit(directory: Path) -> None:
        saved = _saved(directory / CHECKPOINT_FILE)
        for key in keys:
            del saved[key]
        torch.save(saved, directory / CHECKPOINT_FILE)

    return edit


def _truncated(directory: Path) -> None:
    path = directory / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _saved_object(value: Any) -> Edit:
    return lambda directory: torch.save(value, directory / CHECKPOINT_FILE)


class _RunsCode:
    """Unpickled, this creates ``marker``: what a checkpoint someone else planted in a shared
    checkpoint directory could do with any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _planted(directory: Path) -> None:
    torch.save(
        {"epoch": 1, "model": _RunsCode(directory.parent / "ran")}, directory / CHECKPOINT_FILE
    )


# name -> (edits of the checkpoint directory, `train` arguments, fragments of the message)
CHECKPOINT_CASES: dict[str, tuple[tuple[Edit, ...], tuple[str, ...], tuple[str, ...]]] = {
    "another zoneout_cell": (
        (),
        ("--set", "zoneout_cell=0.5"),
        (CHECKPOINT_FILE, "another config", "zoneout_cell: checkpoint 0.0, this config 0.5"),
    ),
    "another hidden_size and learning_rate": (
        (),
        ("--set", "hidden_size=16", "--set", "learning_rate=0.1"),
        ("hidden_size: checkpoint 8, this config 16", "learning_rate: checkpoint 0.002"),
    ),
    "six fields changed": (
        (),
        tuple(
            part
            for change in (
                "hidden_size=9",
                "zoneout_cell=0.1",
                "zoneout_hidden=0.1",
                "dropout=0.1",
                "seed=3",
                "batch_size=7",
            )
            for part in ("--set", change)
        ),
        ("hidden_size: checkpoint 8, this config 9", "; and 2 more"),
    ),
    "another config, checkpoint without a fingerprint": (
        (_without(FINGERPRINT_KEY),),
        ("--set", "zoneout_cell=0.5"),
        (CHECKPOINT_FILE, "zoneout_cell: checkpoint 0.0, this config 0.5"),
    ),
    "another hidden_size, checkpoint without a config": (
        (_without(FINGERPRINT_KEY, "config"),),
        ("--set", "hidden_size=16", "--epochs", "2"),
        (CHECKPOINT_FILE, "does not fit", "size mismatch", "[32, 1]"),
    ),
    "truncated checkpoint": ((_truncated,), (), (CHECKPOINT_FILE, "not a readable checkpoint")),
    "garbage checkpoint": (
        (_text(CHECKPOINT_FILE, b"garbage"),),
        (),
        (CHECKPOINT_FILE, "not a readable checkpoint"),
    ),
    "empty checkpoint": (
        (_text(CHECKPOINT_FILE, b""),),
        (),
        (CHECKPOINT_FILE, "not a readable checkpoint"),
    ),
    "checkpoint is a directory": (
        (_directory(CHECKPOINT_FILE),),
        (),
        (CHECKPOINT_FILE, "is a directory"),
    ),
    "a saved list, not a checkpoint": (
        (_saved_object([1, 2]),),
        (),
        (CHECKPOINT_FILE, "not a training checkpoint (it holds a list)"),
    ),
    "a saved dict without the states": (
        (_saved_object({"epoch": 1}),),
        (),
        (CHECKPOINT_FILE, "not a training checkpoint", "'optimizer'"),
    ),
    "a pickle that runs code when loaded": (
        (_planted,),
        (),
        (CHECKPOINT_FILE, "not a readable checkpoint", "Weights only load failed"),
    ),
    "garbage best model": (
        (_text(BEST_MODEL_FILE, BINARY),),
        ("--epochs", "2"),
        (BEST_MODEL_FILE, "not a readable checkpoint"),
    ),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_a_checkpoint_that_cannot_resume_is_refused(
    case: str, confined: Path, trained: Path, reliability_record: Any
) -> None:
    edits, args, expected = CHECKPOINT_CASES[case]
    shutil.copy(trained / "config.yaml", confined / "config.yaml")
    checkpoints = confined / "ckpt"
    shutil.copytree(trained / "ckpt", checkpoints)
    for edit in edits:
        edit(checkpoints)
    before = _state(confined)
    result = CliRunner().invoke(
        app, ["train", "config.yaml", "--checkpoint-dir", str(checkpoints), *args]
    )
    message = one_line_error(result)
    assert all(text in message for text in expected), message
    assert len(message) < 600, message
    assert _state(confined) == before, f"{case}: files changed or written"
    reliability_record(
        f"Bad checkpoint: {case}",
        f"`zoneout-study train --checkpoint-dir` {' '.join(args)} on a checkpoint with {case}",
        f"exit 2, checkpoint unchanged, nothing written; {_shown(message, confined)[:200]}",
    )


def test_train_itself_refuses_another_config(
    confined: Path, trained: Path, reliability_record: Any
) -> None:
    """The check is in train() (a Ray trial resumes through it), not only in the command."""
    checkpoints = confined / "ckpt"
    shutil.copytree(trained / "ckpt", checkpoints)
    before = _state(confined)
    config = load_config(trained / "config.yaml", ["zoneout_hidden=0.25", "epochs=2"])
    with pytest.raises(CheckpointError) as refused:
        train(config, checkpoint_dir=checkpoints)
    assert "zoneout_hidden: checkpoint 0.0, this config 0.25" in str(refused.value)
    assert _state(confined) == before
    reliability_record(
        "Bad checkpoint: another config, through train()",
        "`trials.train.train` (as a Ray trial calls it) with zoneout_hidden 0.25 on a checkpoint "
        "made with 0",
        f"CheckpointError before any epoch, files unchanged; "
        f"{_shown(str(refused.value), confined)[:160]}",
    )


@pytest.mark.parametrize(
    ("changes", "old_checkpoint"),
    [
        (("--epochs", "2"), False),
        (("--epochs", "2", "--set", "threads=2", "--set", "patience=3"), False),
        (("--epochs", "2", "--set", "threads=2", "--set", "eval_batch_size=64"), True),
    ],
    ids=["larger budget", "threads and patience", "old checkpoint, same config"],
)
def test_a_legitimate_resume_still_resumes(
    changes: tuple[str, ...], old_checkpoint: bool, confined: Path, trained: Path
) -> None:
    checkpoints = confined / "ckpt"
    shutil.copytree(trained / "ckpt", checkpoints)
    if old_checkpoint:  # its stored config is compared instead
        _without(FINGERPRINT_KEY)(checkpoints)
    result = CliRunner().invoke(
        app, ["train", str(trained / "config.yaml"), "--checkpoint-dir", str(checkpoints), *changes]
    )
    assert result.exit_code == 0, result.output
    saved = _saved(checkpoints / CHECKPOINT_FILE)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert saved[FINGERPRINT_KEY] == _saved(trained / "ckpt" / CHECKPOINT_FILE)[FINGERPRINT_KEY]
