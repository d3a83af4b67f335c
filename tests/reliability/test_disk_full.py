"""Disk full, for real: checkpoints and the SQLite database on a small tmpfs that is filled while
the study runs; and the check before the first trial.

Needs root to mount a tmpfs (this machine and CI run as root). Without it the tests skip locally
and fail in CI, where the promise is tested, never skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from study import optuna_study as ostudy
from study.disk import DiskSpaceError
from study.resume import unreadable_reason
from study.runner import run_study
from study.spec import validate_spec
from study.store import Store
from tests.support import TINY_PTB_BASE, driver_env, kill_process_tree, tiny_ptb_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]
NAME = "diskfull"
BASE = {**TINY_PTB_BASE, "train_tokens": 40_000, "max_batches_per_epoch": 30, "epochs": 3}


@contextlib.contextmanager
def _tmpfs(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs here ({mounted.stderr.strip()}); run as root"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Write until the file system is full; the file is returned to be removed later."""
    filler = directory / "filler.bin"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), filler.open("ab") as handle:
        while True:  # the last partial block
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


def _epochs(url: str) -> int:
    try:
        with Store(url) as store:
            return len(store.epochs_frame(NAME))
    except Exception:
        return 0


def _spec(tmp_path: Path, checkpoints: Path) -> Path:
    data = tiny_ptb_spec(
        NAME,
        tmp_path,
        base=BASE,
        search={"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.25, 0.5]}},
        sampler={"name": "grid"},
        n_trials=3,
        checkpoint_path=str(checkpoints),
    )
    return write_spec(data, tmp_path)


def test_too_little_space_is_refused_before_any_trial(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", 1) as small:
        spec = validate_spec(tiny_ptb_spec(NAME, tmp_path, checkpoint_path=str(small / "runs")))
        url = f"sqlite:///{tmp_path / 'd.db'}"
        with pytest.raises(DiskSpaceError, match=r"checkpoint directory .* MiB free"):
            run_study(spec, storage=url)
    assert not (tmp_path / "d.db").exists()


def _drive_until_full(
    command: list[str], env: dict[str, str], cwd: Path, url: str, full: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    driver = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while _epochs(url) < 1:
        assert driver.poll() is None, "the driver ended before its first epoch"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    filled_at = time.monotonic()
    _fill(full)
    out, err = driver.communicate(timeout=300)
    return subprocess.CompletedProcess(command, driver.returncode, out, err), filled_at


def _check_finished_exactly_once(url: str) -> list[Any]:
    study = ostudy.load_study(url, NAME)
    trials = ostudy.trials(study)
    held = [t for t in trials if not ostudy.is_retired(t)]
    assert sorted(t.params["zoneout_cell"] for t in held) == [0.0, 0.25, 0.5]
    assert all(t.state == TrialState.COMPLETE for t in held), [(t.number, t.state) for t in held]
    with Store(url) as store:
        epochs = store.epochs_frame(NAME)
    for trial in held:
        rows = epochs[epochs["number"] == trial.number]
        assert sorted(rows["epoch"]) == [1, 2, 3], (trial.number, list(rows["epoch"]))
    return trials


@pytest.mark.parametrize("where", ["checkpoints", "database"])
def test_disk_full_mid_study_stops_cleanly_and_resumes(
    where: str,
    tmp_path: Path,
    own_ray_tmpdir: str,
    reliability_record: Any,
) -> None:
    with _tmpfs(tmp_path / "fs", 32) as fs:
        checkpoints = fs / "runs" if where == "checkpoints" else tmp_path / "runs"
        db = fs / "d.db" if where == "database" else tmp_path / "d.db"
        url = f"sqlite:///{db}"
        spec_path = _spec(tmp_path, checkpoints)
        env = driver_env(own_ray_tmpdir, ZONEOUT_STUDY_STORAGE=url, ZONEOUT_MIN_FREE_MB="4")
        command = [*CLI, "run", str(spec_path), "--no-report"]
        started = time.monotonic()
        try:
            first, filled_at = _drive_until_full(command, env, tmp_path, url, fs)
        finally:
            kill_process_tree(own_ray_tmpdir)
        output = first.stdout + first.stderr
        stopped_after = time.monotonic() - filled_at
        assert "Traceback" not in output, output[-4000:]
        assert first.returncode == 75, output[-4000:]
        assert "disk is full" in output, output[-4000:]
        assert "interrupted; resume with: zoneout-study run" in output
        reason = next(line for line in output.splitlines() if "disk is full" in line)
        (fs / "filler.bin").unlink()

        # Nothing half-written: every resume point the study recorded is a complete checkpoint.
        study = ostudy.load_study(url, NAME)
        for trial in ostudy.trials(study):
            for point in trial.user_attrs.get("resume_points") or []:
                if point:
                    assert unreadable_reason(point["checkpoint"]) is None

        second = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        kill_process_tree(own_ray_tmpdir)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        trials = _check_finished_exactly_once(url)
        retired = [t.number for t in trials if ostudy.is_retired(t)]
        with Store(url) as store:
            status = store.studies_frame().set_index("name").loc[NAME, "status"]
        assert status == "finished"
    reliability_record(
        f"Disk full ({'checkpoint directory' if where == 'checkpoints' else 'SQLite database'})",
        f"the {where} on a 32 MiB tmpfs, filled with a file after the first epoch was stored; "
        "3-point grid, 2 seeds in flight",
        f"driver exit 75 {stopped_after:.0f} s after the fill, no traceback, one line: "
        f"'{reason.strip()[:160]}'; every recorded resume point a complete checkpoint; after "
        f"the file was removed the rerun exit 0, the 3 points COMPLETE once each with epochs "
        f"1-3 stored once (retired and continued: {retired}); "
        f"{time.monotonic() - started:.0f} s in all",
    )
