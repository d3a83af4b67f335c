"""A driver killed with SIGKILL mid-study; the same command resumes and completes the plan."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from study.reaper import DRIVER_LOST
from study.store import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]


def _spec(tmp_path: Path, name: str) -> Path:
    spec = {
        "name": name,
        "base": {
            "task": "ptb-char",
            "train_tokens": 40_000,
            "valid_tokens": 4_000,
            "hidden_size": 16,
            "bptt": 40,
            "batch_size": 16,
            "eval_batch_size": 16,
            "max_batches_per_epoch": 12,
            "epochs": 3,
        },
        "search": {
            "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.7},
            "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.3},
        },
        "sampler": {"name": "random", "seed": 0},
        "scheduler": {"name": "none"},
        "n_trials": 4,
        "max_concurrent_trials": 2,
        "checkpoint_path": str(tmp_path / "runs"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _kill_processes_under(marker: str) -> None:
    """SIGKILL every process whose command line mentions ``marker`` (this test's Ray)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def own_ray_tmpdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="zs-kill-", dir="/tmp")
    yield path
    _kill_processes_under(path)
    shutil.rmtree(path, ignore_errors=True)


def test_killed_driver_is_resumed_by_running_the_spec_again(
    tmp_path: Path, own_ray_tmpdir: str
) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    spec_path = _spec(tmp_path, "resume")
    env = {**os.environ, "RAY_TMPDIR": own_ray_tmpdir, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [*CLI, "run", str(spec_path), "--storage", url, "--no-report"]
    driver = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 480
    killed_at: dict[int, TrialState] = {}
    try:
        while time.monotonic() < deadline:
            time.sleep(1.0)
            assert driver.poll() is None, "the driver finished before it could be killed"
            try:
                trials = optuna.load_study(study_name="resume", storage=url).get_trials()
            except KeyError:
                continue
            states = [t.state for t in trials]
            if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                killed_at = {t.number: t.state for t in trials}
                os.killpg(driver.pid, signal.SIGKILL)
                break
        else:
            pytest.fail("no trial completed within the time limit")
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        _kill_processes_under(own_ray_tmpdir)

    running_then = [n for n, s in killed_at.items() if s == TrialState.RUNNING]
    complete_then = [n for n, s in killed_at.items() if s == TrialState.COMPLETE]
    assert running_then and complete_then

    resumed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "left running by a lost driver" in resumed.stdout

    study = optuna.load_study(study_name="resume", storage=url)
    trials = {t.number: t for t in study.get_trials()}
    for number in complete_then:  # finished results survive the crash untouched
        assert trials[number].state == TrialState.COMPLETE
    for number in running_then:  # lost trials: FAIL with the reason, parameters re-run
        lost = trials[number]
        assert lost.state == TrialState.FAIL
        assert lost.user_attrs["fail_reason"] == DRIVER_LOST
        reruns = [t for t in trials.values() if t.user_attrs.get("requeued_from") == number]
        assert len(reruns) == 1
        assert reruns[0].params == lost.params
        assert reruns[0].state == TrialState.COMPLETE
    # The plan completes: n_trials trials that count, all COMPLETE.
    counted = [t for t in trials.values() if not t.user_attrs.get("requeued")]
    assert len(counted) == 4
    assert all(t.state == TrialState.COMPLETE for t in counted)

    store = Store(url)
    frame = store.trials_frame("resume").set_index("number")
    for number in running_then:
        assert frame.loc[number, "state"] == "FAIL"
        assert frame.loc[number, "error"] == DRIVER_LOST
    epochs = store.epochs_frame("resume")
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    for trial in counted:
        assert len(epochs[epochs["number"] == trial.number]) == 3
    store.close()
