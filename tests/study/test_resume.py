"""A driver killed with SIGKILL mid-study; the same command resumes and completes the plan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study.reaper import DRIVER_LOST
from study.store import Store
from tests.support import TINY_PTB_BASE, driver_env, kill_process_tree, tiny_ptb_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]


def _spec(tmp_path: Path, name: str) -> Path:
    """4 trials, 2 at a time, 3 epochs each: longer trials than tests/study/test_runner.py's,
    so that the driver can be killed with one trial COMPLETE and another RUNNING."""
    base = {
        **TINY_PTB_BASE,
        "train_tokens": 40_000,
        "valid_tokens": 4_000,
        "max_batches_per_epoch": 12,
        "epochs": 3,
        "seed": 0,  # TrialConfig's default
    }
    return write_spec(tiny_ptb_spec(name, tmp_path, base=base), tmp_path)


def test_killed_driver_is_resumed_by_running_the_spec_again(
    tmp_path: Path, own_ray_tmpdir: str
) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    spec_path = _spec(tmp_path, "resume")
    env = driver_env(own_ray_tmpdir)
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
        kill_process_tree(own_ray_tmpdir)

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
