"""A driver cut off mid-trial (SIGKILL to its process group, or Ctrl-C); the same command run
again continues each seed of the cut-off trial from its last checkpoint, exactly.

Synchronised on what the driver stored (a resume point per seed in the Optuna trial, written
after each checkpoint), never on sleeps. Each case checks: the replacement continues at the epoch
after the checkpoint (its stored rows up to it are the cut-off trial's, untouched; later ones were
written by the second driver), its numbers equal an uninterrupted run's (same seed, one thread),
its intermediate values continue the cut-off trial's, each epoch is stored once, and the plan
ends with n_trials COMPLETE trials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from study import keys
from study import optuna_study as ostudy
from study.reaper import DRIVER_LOST
from study.runner import INTERRUPTED
from study.store import Store
from tests.reliability.conftest import record_external
from tests.support import (
    TINY_PTB_BASE,
    assert_one_score,
    driver_env,
    kill_process_tree,
    tiny_ptb_spec,
    write_spec,
)
from trials.config import TrialConfig
from trials.train import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]
EPOCHS = 4
N_TRIALS = 2


# Epochs of a few seconds on 2 cores: long enough to cut a trial between two checkpoints.
BASE = {
    **TINY_PTB_BASE,
    "train_tokens": 40_000,
    "valid_tokens": 4_000,
    "max_batches_per_epoch": 40,
    "epochs": EPOCHS,
}


def _spec(tmp_path: Path, name: str, repeats: int) -> Path:
    """2 configurations of 4 epochs, one at a time (its seeds side by side)."""
    data = tiny_ptb_spec(
        name,
        tmp_path,
        base=BASE,
        n_trials=N_TRIALS,
        repeats=repeats,
        max_concurrent_trials=1 if repeats == 1 else 2,
    )
    return write_spec(data, tmp_path)


def _assert_newest_two_checkpoints_kept(runs: Path) -> None:
    """Each seed's Ray run keeps its newest two checkpoints (study.resume.CheckpointRetention),
    older ones deleted. A run of the cut driver (a Tune experiment directory before the last,
    each driver making its own) may keep one more: its trainable can write a checkpoint whose
    result the driver, stopped by Ctrl-C or SIGKILL, never handles, so the oldest stays."""
    kept = {d: sorted(d.glob("checkpoint_*")) for d in runs.glob("*/*") if d.is_dir()}
    kept = {d: c for d, c in kept.items() if c}
    assert kept, f"no checkpoints under {runs}"
    # An experiment directory is named after the study and its driver's start time.
    last = max((d.parent for d in kept), key=lambda exp: int(exp.name.rsplit("-", 1)[-1]))
    too_many = {
        f"{d.parent.name}/{d.name[:40]}": len(c)
        for d, c in kept.items()
        if len(c) > (2 if d.parent == last else 3)
    }
    assert not too_many, too_many
    # The check bites: some run checkpointed more often than it keeps (4 epochs, one each).
    assert any(c[-1].name > "checkpoint_000001" for c in kept.values())


def _trials(url: str, name: str) -> list[FrozenTrial]:
    try:
        return ostudy.trials(ostudy.load_study(url, name))
    except KeyError:  # the driver has not created the study yet
        return []


def _wait_for_study(url: str, name: str, driver: subprocess.Popen[bytes]) -> optuna.Study:
    """The study once the driver has created it (opened with the service's own retry of the
    schema race: the driver may be creating Optuna's tables at this very moment)."""
    while True:
        assert driver.poll() is None, "the driver ended before it created the study"
        try:
            return ostudy.load_study(url, name)
        except KeyError:
            time.sleep(0.5)


def _cut_point(trials: list[FrozenTrial], repeats: int) -> bool:
    """A trial is running with a checkpoint recorded for every seed, and at least one seed has
    two epochs to go (seeds need not keep pace on a busy machine)."""
    for trial in trials:
        points = trial.user_attrs.get(keys.RESUME_POINTS) or []
        if (
            trial.state == TrialState.RUNNING
            and len(points) == repeats
            and all(points)
            and min(point["epoch"] for point in points) <= EPOCHS - 2
        ):
            return True
    return False


def _cut_driver(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    how: signal.Signals,
    url: str,
    name: str,
    repeats: int,
) -> None:
    driver = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        study = _wait_for_study(url, name, driver)
        while not _cut_point(ostudy.trials(study), repeats):
            assert driver.poll() is None, "the driver finished before it could be cut off"
            assert time.monotonic() < deadline, "no checkpoint was recorded in time"
            time.sleep(0.2)
        # Like a terminal's Ctrl-C, the signal goes to the whole process group.
        os.killpg(driver.pid, how)
        if how == signal.SIGINT:
            # The driver retires its open trials and exits 130, the Ctrl-C convention.
            assert driver.wait(timeout=120) == 130, "Ctrl-C did not stop the driver cleanly"
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        kill_process_tree(env["RAY_TMPDIR"])


def _uninterrupted(config: dict[str, Any]) -> list[float]:
    """Validation metric per epoch of the same config, run in one go on one thread (the
    thread count the trial ran with: one CPU per trial)."""
    threads = torch.get_num_threads()
    try:
        result = train(
            TrialConfig.model_validate({**config, "threads": 1}),
            evaluate_test=False,
        )
    finally:
        torch.set_num_threads(threads)
    return [epoch.valid_metric for epoch in result.epochs]


CASES = [
    pytest.param("sqlite", signal.SIGKILL, 1, id="sqlite-sigkill-1seed"),
    pytest.param("sqlite", signal.SIGINT, 2, id="sqlite-ctrl-c-2seeds"),
    pytest.param("postgres", signal.SIGKILL, 2, id="postgres-sigkill-2seeds"),
]


@pytest.mark.parametrize(("backend", "how", "repeats"), CASES)
def test_cut_off_trial_continues_from_its_checkpoint(
    backend: str,
    how: signal.Signals,
    repeats: int,
    tmp_path: Path,
    own_ray_tmpdir: str,
    request: pytest.FixtureRequest,
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'resume.db'}"
    )
    name = "resume"
    spec_path = _spec(tmp_path, name, repeats)
    # The URL travels in the environment, as the README advises on shared machines.
    env = driver_env(own_ray_tmpdir, ZONEOUT_STUDY_STORAGE=url)
    command = [*CLI, "run", str(spec_path), "--no-report"]

    _cut_driver(command, tmp_path, env, how, url, name, repeats)
    # SIGKILL leaves the open trials RUNNING (the next driver reaps them); Ctrl-C retires them
    # itself. With two seeds, a seed of the next configuration may have started already.
    open_then = [
        t.number
        for t in _trials(url, name)
        if t.state == TrialState.RUNNING
        or (t.state == TrialState.FAIL and t.user_attrs.get(keys.REQUEUED))
    ]
    assert open_then

    second_started = time.time()
    resumed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    kill_process_tree(own_ray_tmpdir)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]

    trials = {t.number: t for t in _trials(url, name)}
    store = Store(url)
    try:
        epochs = store.epochs_frame(name)
        trial_rows = store.trials_frame(name).set_index("number")
    finally:
        store.close()
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    reason = INTERRUPTED if how == signal.SIGINT else DRIVER_LOST
    continued = []
    for number in open_then:
        lost = trials[number]
        assert lost.state == TrialState.FAIL and lost.user_attrs[keys.REQUEUED]
        assert lost.user_attrs[keys.FAIL_REASON] == reason
        assert trial_rows.loc[number, "state"] == "FAIL"
        continued.append(_check_replacement(lost, trials, epochs, trial_rows, second_started))
    # The cut came with every seed of some trial between two checkpoints.
    assert any(all(cut) and min(cut) < EPOCHS for cut in continued)

    # Each trial's value is the one score, continued trials too (their carried epochs count).
    assert_one_score(url, name)
    _assert_newest_two_checkpoints_kept(tmp_path / "runs")
    # n_trials respected: the retired trial does not count, every counted trial COMPLETE.
    counted = [t for t in trials.values() if not t.user_attrs.get(keys.REQUEUED)]
    assert len(counted) == N_TRIALS
    assert all(t.state == TrialState.COMPLETE for t in counted)

    signal_name = "SIGKILL to" if how == signal.SIGKILL else "SIGINT (Ctrl-C) to"
    record_external(
        request.node.nodeid,
        f"Driver cut off ({'Ctrl-C' if how == signal.SIGINT else 'killed'}, {backend}, "
        f"{repeats} seed{'s' if repeats > 1 else ''})",
        f"{signal_name} the `zoneout-study run` process group once every seed of a running "
        f"{EPOCHS}-epoch trial had a checkpoint recorded; the same command run again",
        f"trial(s) {open_then} retired ({reason!r}) with checkpoints at epochs {continued} "
        "(per seed); each replacement continued every seed at the epoch after its checkpoint "
        "(earlier epochs carried, not re-run"
        + (
            "; a seed without a checkpoint (0) started fresh, reason recorded"
            if any(0 in cut for cut in continued)
            else ""
        )
        + ") and ended with the validation numbers of an uninterrupted run, bit for bit; every "
        f"epoch stored once; {N_TRIALS}/{N_TRIALS} counted trials COMPLETE",
    )


def _check_replacement(
    lost: FrozenTrial,
    trials: dict[int, FrozenTrial],
    epochs: pd.DataFrame,
    trial_rows: pd.DataFrame,
    second_started: float,
) -> list[int]:
    """The replacement of ``lost`` continued each seed from its checkpoint, exactly; returns
    the epochs of those checkpoints (0 for a seed that had none)."""
    seeds = lost.user_attrs[keys.SEEDS]
    points = lost.user_attrs.get(keys.RESUME_POINTS) or [None] * len(seeds)
    cut_epochs = [point["epoch"] if point else 0 for point in points]
    (replacement,) = [
        t for t in trials.values() if t.user_attrs.get(keys.REQUEUED_FROM) == lost.number
    ]
    assert replacement.state == TrialState.COMPLETE
    assert trial_rows.loc[replacement.number, "state"] == "COMPLETE"
    assert replacement.params == lost.params
    assert replacement.user_attrs[keys.RESUMED_FROM] == {"trial": lost.number, "epochs": cut_epochs}
    skipped = replacement.user_attrs[keys.RESUME_SKIPPED]
    for cut_epoch, why in zip(cut_epochs, skipped, strict=True):
        assert (why is None) == (cut_epoch > 0), skipped
    # Intermediate values: the cut-off trial's, then the replacement's own, one per epoch.
    assert sorted(replacement.intermediate_values) == list(range(1, EPOCHS + 1))
    for epoch, value in lost.intermediate_values.items():
        assert replacement.intermediate_values[epoch] == value
    finals = []
    for seed, cut_epoch in zip(seeds, cut_epochs, strict=True):
        mine = epochs[(epochs["number"] == replacement.number) & (epochs["seed"] == seed)]
        theirs = epochs[(epochs["number"] == lost.number) & (epochs["seed"] == seed)]
        assert list(mine["epoch"]) == list(range(1, EPOCHS + 1))  # each epoch once
        mine = mine.set_index("epoch")
        theirs = theirs.set_index("epoch")
        for epoch in range(1, cut_epoch + 1):
            # Carried over from the cut-off trial, not trained again: the same row, written
            # by the first driver (a re-run epoch would have rewritten it).
            assert mine.loc[epoch, "recorded_at"] == theirs.loc[epoch, "recorded_at"]
            assert mine.loc[epoch, "valid_metric"] == theirs.loc[epoch, "valid_metric"]
        for epoch in range(cut_epoch + 1, EPOCHS + 1):
            assert mine.loc[epoch, "recorded_at"].timestamp() >= second_started
        # Exact: the numbers of the same config trained without interruption.
        config = {**BASE, **replacement.params, "seed": seed}
        assert list(mine["valid_metric"]) == _uninterrupted(config)
        finals.append(float(mine.loc[EPOCHS, "valid_metric"]))
    assert replacement.value == pytest.approx(sum(finals) / len(finals), rel=1e-12)
    return cut_epochs
