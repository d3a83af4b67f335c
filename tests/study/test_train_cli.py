"""`zoneout-study train CONFIG.yaml`: a real short run, overrides, and one-line config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from study.cli import app
from trials.train import CHECKPOINT_FILE

CONSOLE_SCRIPT = Path(sys.executable).with_name("zoneout-study")

GOOD = """\
task: digits
hidden_size: 8
batch_size: 64
eval_batch_size: 512
learning_rate: 0.02
max_batches_per_epoch: 3
epochs: 2
threads: 1
"""


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_trains_and_prints_the_table_and_test_metric(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path / "good.yaml", GOOD)
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    for header in ("epoch", "train loss", "valid loss", "valid error", "tokens/s"):
        assert header in out
    table_rows = [line for line in out.splitlines() if line.strip().startswith("│")]
    assert len(table_rows) == 2  # one row per epoch
    assert "best epoch" in out and "test error" in out
    assert "sklearn" in out  # the data source is named


def test_set_and_epochs_override_the_file(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path / "good.yaml", GOOD)
    checkpoints = tmp_path / "ckpt"
    result = runner.invoke(
        app,
        [
            "train",
            str(config),
            "--set",
            "hidden_size=12",
            "--set",
            "zoneout_cell=0.25",
            "--epochs",
            "3",
            "--device",
            "cpu",
            "--checkpoint-dir",
            str(checkpoints),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = torch.load(checkpoints / CHECKPOINT_FILE, weights_only=False)
    assert saved["epoch"] == 3
    assert saved["config"]["hidden_size"] == 12
    assert saved["config"]["zoneout_cell"] == 0.25
    assert saved["config"]["epochs"] == 3
    assert saved["model"]["decoder.weight"].shape == (10, 12)
    rows = [line for line in result.output.splitlines() if line.strip().startswith("│")]
    assert len(rows) == 3


@pytest.mark.parametrize(
    ("text", "extra", "fragment"),
    [
        ("task: digits\nzonout_cell: 0.3\n", [], "zoneout_cell"),
        ("task: digits\nhidden_size: [16\n", [], "line 3"),
        ("task: digits\nzoneout_cell: 1.5\n", [], "zoneout_cell"),
        (GOOD, ["--set", "zoneout_hidden=1.5"], "zoneout_hidden"),
        (GOOD, ["--set", "hiden_size=4"], "hidden_size"),
    ],
    ids=["unknown-key", "malformed", "rate", "set-rate", "set-unknown"],
)
def test_bad_config_exits_2_with_one_line(
    runner: CliRunner, tmp_path: Path, text: str, extra: list[str], fragment: str
) -> None:
    config = write(tmp_path / "bad.yaml", text)
    result = runner.invoke(app, ["train", str(config), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_missing_config_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


@pytest.mark.skipif(
    not CONSOLE_SCRIPT.exists() and not os.environ.get("CI"),
    reason="console script not installed (in CI a missing script fails the test)",
)
def test_console_script_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    config = write(tmp_path / "bad.yaml", "task: digits\nzonout_cell: 0.3\n")
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), "train", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout.strip() == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "unknown key 'zonout_cell'" in lines[0] and "'zoneout_cell'" in lines[0]
    assert "Traceback" not in completed.stderr
