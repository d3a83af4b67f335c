"""Bad input: exit status 2, one clear line, no traceback, nothing written to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from study.cli import app

GOOD: dict[str, Any] = {
    "name": "bad-input",
    "base": {"task": "digits", "hidden_size": 8, "epochs": 1, "max_batches_per_epoch": 1},
    "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
    "n_trials": 1,
}


def _write(tmp_path: Path, data: Any, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _assert_one_line_error(result: Any, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    output = result.output.strip()
    assert output.startswith("error:"), output
    assert "Traceback" not in output
    flat = " ".join(output.split())
    for text in expected:
        assert text in flat, flat


CASES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "malformed yaml": ("name: x\nsearch: [1, 2\n", ("malformed YAML", "line")),
    "unknown key": ({**GOOD, "n_trails": 2}, ("unknown key 'n_trails'", "'n_trials'")),
    "rate outside [0, 1]": (
        {**GOOD, "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 1.2}}},
        ("zoneout_cell is a rate",),
    ),
    "empty range": (
        {**GOOD, "search": {"zoneout_hidden": {"type": "float", "low": 0.3, "high": 0.3}}},
        ("empty or inverted range",),
    ),
    "inverted range": (
        {**GOOD, "search": {"zoneout_hidden": {"type": "float", "low": 0.3, "high": 0.1}}},
        ("empty or inverted range",),
    ),
    "grid with a non-grid space": (
        {**GOOD, "sampler": {"name": "grid"}},
        ("sampler 'grid' needs a finite grid",),
    ),
    "unknown task": ({**GOOD, "base": {"task": "imagenet"}}, ("base.task",)),
    "escaping study name": ({**GOOD, "name": "../../etc"}, ("study name",)),
    "missing data": (
        {**GOOD, "base": {"task": "text-char", "text_path": "/nonexistent/text8"}},
        ("text corpus not found", "/nonexistent"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    data, expected = CASES[case]
    database = tmp_path / "store.db"
    result = _run(
        tmp_path, "run", str(_write(tmp_path, data)), "--storage", f"sqlite:///{database}"
    )
    _assert_one_line_error(result, *expected)
    assert not database.exists()


def test_missing_spec_file(tmp_path: Path) -> None:
    result = _run(tmp_path, "run", str(tmp_path / "absent.yaml"))
    _assert_one_line_error(result, "no such file")


def test_unreachable_database_names_it_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://zoneout:s3cret-pw@127.0.0.1:1/studies"
    result = _run(tmp_path, "status", "--storage", url)
    _assert_one_line_error(result, "127.0.0.1:1")
    assert "s3cret-pw" not in result.output


@pytest.mark.ray
def test_impossible_resources_exit_2_before_the_store(tmp_path: Path, ray_local: None) -> None:
    database = tmp_path / "store.db"
    spec = _write(tmp_path, {**GOOD, "resources": {"cpu": 64}})
    result = _run(tmp_path, "run", str(spec), "--storage", f"sqlite:///{database}")
    _assert_one_line_error(result, "resources.cpu is 64", "largest Ray node")
    assert not database.exists()


def test_bad_trial_config_for_train_exits_2(tmp_path: Path) -> None:
    config = _write(tmp_path, {"task": "digits", "zoneout_cell": 1.5}, "config.yaml")
    result = _run(tmp_path, "train", str(config))
    _assert_one_line_error(result, "zoneout_cell")


def test_export_of_an_unknown_study_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "export", "nope", "--storage", f"sqlite:///{tmp_path / 's.db'}")
    _assert_one_line_error(result, "nope")
