"""A trial's worker process killed with SIGKILL mid-epoch: Ray retries the trial, which resumes
from its last checkpoint at the next epoch; the store holds each epoch once. The terminal shows
one line for it (no traceback, no `(raylet)` line): Ray's report of it is in the run's Ray
output file."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from study.runner import RAY_OUTPUT_NAME, run_study
from study.spec import validate_spec
from study.store import Store, StoreError

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EPOCHS = 3


def _results(root: Path) -> list[dict[str, Any]]:
    """Every result Ray's JSON logger wrote for the study's trials (one line per report)."""
    rows = []
    for path in sorted(root.rglob("result.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _trial_actor_pids() -> list[int]:
    """Ray trial actors of this process's Ray (process title 'ray::ImplicitFunc...' or
    'ray::_Inner...'), found among our descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        title = _cmdline(pid)
        if title.startswith("ray::") and ("ImplicitFunc" in title or "_Inner" in title):
            found.append(pid)
        stack.extend(children.get(pid, []))
    return found


class _Killer(threading.Thread):
    """Waits until the store holds epoch 1 of trial 0, then SIGKILLs the worker running it."""

    def __init__(self, url: str, study: str, runs: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.study, self.runs = url, study, runs
        self.done = threading.Event()
        self.killed_pid: int | None = None
        self.title = ""
        self.epochs_at_kill: list[int] = []
        self.epoch1: dict[str, Any] = {}
        self.error: str | None = None

    def run(self) -> None:
        store = None
        deadline = time.monotonic() + 300
        try:
            while not self.done.is_set() and time.monotonic() < deadline:
                time.sleep(0.2)
                if store is None:
                    try:
                        store = Store(self.url)
                    except StoreError:
                        continue
                try:
                    epochs = store.epochs_frame(self.study)
                except StoreError:
                    continue  # the study is not registered yet
                mine = epochs[epochs["number"] == 0]
                if mine.empty:
                    continue
                # The worker that reported epoch 1 (Ray adds its pid to each result).
                pids = [r["pid"] for r in _results(self.runs) if r.get("epoch") == 1]
                candidates = pids[-1:] or _trial_actor_pids()
                if not candidates:
                    continue
                pid = candidates[0]
                self.title = _cmdline(pid)
                assert self.title.startswith("ray::"), self.title
                self.epochs_at_kill = sorted(int(e) for e in mine["epoch"])
                first = mine[mine["epoch"] == 1].iloc[0]
                self.epoch1 = {
                    "valid_metric": float(first["valid_metric"]),
                    "recorded_at": first["recorded_at"],
                }
                os.kill(pid, signal.SIGKILL)
                self.killed_pid = pid
                return
            self.error = "epoch 1 of trial 0 never reached the store"
        except Exception as error:  # reported by the test
            self.error = repr(error)
        finally:
            if store is not None:
                store.close()


def test_worker_sigkill_mid_epoch_resumes_from_its_checkpoint(
    ray_local: None,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    reliability_record: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    runs = tmp_path / "runs"
    spec = validate_spec(
        {
            "name": "worker-kill",
            "base": {
                "task": "ptb-char",
                "train_tokens": 60_000,
                "valid_tokens": 4_000,
                "hidden_size": 64,
                "bptt": 50,
                "batch_size": 16,
                "eval_batch_size": 16,
                # a few seconds per epoch here, so the kill lands inside epoch 2
                "max_batches_per_epoch": 80,
                "epochs": EPOCHS,
                "seed": 3,
            },
            "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
            "sampler": {"name": "random", "seed": 0},
            "scheduler": {"name": "none"},
            "n_trials": 1,
            "max_concurrent_trials": 1,
            "failure": {"max_retries": 2},
            "checkpoint_path": str(runs),
        }
    )
    killer = _Killer(url, spec.name, runs)
    killer.start()
    capfd.readouterr()  # what came before the run is not its terminal
    try:
        # The console a pipe gets (plain lines), on this process's stdout like Ray's output.
        outcome = run_study(spec, storage=url, console=Console(markup=False, width=400))
    finally:
        killer.done.set()
        killer.join(timeout=30)
    terminal = capfd.readouterr()
    assert killer.error is None, killer.error
    assert killer.killed_pid is not None
    assert outcome.status == "finished"

    # The terminal: the progress lines and one line for the dead worker, naming the run's Ray
    # output file, which holds what Ray and Tune said about it.
    text = terminal.out + terminal.err
    assert "Traceback" not in text and "(raylet)" not in text, text
    assert "\tWARNING " not in text and "\tERROR " not in text, text  # Ray's log records
    lines = [line for line in text.splitlines() if line.strip()]
    progress = [line for line in lines if line.startswith("trials ")]
    (ray_output,) = runs.glob(f"*/{RAY_OUTPUT_NAME}")
    (fault,) = [line for line in lines if line not in progress]
    assert fault.startswith(f"trial 0 seed 3: its Ray worker died (pid {killer.killed_pid}"), fault
    assert "Ray restarts it from its last checkpoint (retry 1 of 2)" in fault, fault
    assert fault.endswith(f"; details in {ray_output}"), fault
    assert 1 <= len(progress) <= 3, lines
    said = ray_output.read_text(encoding="utf-8")
    assert "(raylet) A worker died" in said and "ActorDiedError" in said, said[-3000:]

    # Optuna: COMPLETE with every epoch's intermediate value.
    (trial,) = optuna.load_study(study_name=spec.name, storage=url).get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1))

    # The store: one row per epoch; epoch 1 was not sent again (same values, same time).
    with Store(url) as store:
        epochs = store.epochs_frame(spec.name)
        row = store.trials_frame(spec.name).set_index("number").loc[0]
    assert row["state"] == "COMPLETE" and row["epochs"] == EPOCHS
    assert sorted(epochs["epoch"]) == list(range(1, EPOCHS + 1))
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    first = epochs[epochs["epoch"] == 1].iloc[0]
    assert first["valid_metric"] == killer.epoch1["valid_metric"]
    assert first["recorded_at"] == killer.epoch1["recorded_at"]
    for epoch, value in trial.intermediate_values.items():
        stored = float(epochs[epochs["epoch"] == epoch]["valid_metric"].iloc[0])
        assert stored == pytest.approx(value)

    # Ray's log of results: each epoch once, and a new worker took over after the kill at the
    # epoch after the last one the killed worker reported (not from epoch 1).
    # Ray may start a fresh result log when it restores a trial, so the log is a run of
    # consecutive epochs ending at the budget, each once, possibly without the killed worker's.
    results = _results(runs)
    sequence = [int(r["epoch"]) for r in results]
    assert sequence and sequence == list(range(sequence[0], EPOCHS + 1)), sequence
    pids = [r["pid"] for r in results]
    resumed = [r for r in results if r["pid"] != killer.killed_pid]
    assert resumed, results
    resumed_at = int(resumed[0]["epoch"])
    last_before = max(killer.epochs_at_kill)
    # The store lags the worker (the driver writes what the worker reported), so the killed
    # worker may have reported, with its checkpoint, an epoch after the last one the killer saw
    # stored. The new worker starts right after the killed worker's last report: from the log
    # when it still holds the killed worker's lines, else no earlier than after the stored one.
    killed_reports = [int(r["epoch"]) for r in results if r["pid"] == killer.killed_pid]
    if killed_reports:
        assert resumed_at == max(killed_reports) + 1, results
    else:
        assert last_before + 1 <= resumed_at <= EPOCHS, (resumed_at, last_before)
    assert resumed_at >= 2

    reliability_record(
        "Trial worker killed",
        f"SIGKILL to the trial's Ray worker ({killer.title.split()[0]}) after epoch "
        f"{last_before} was stored, while a later epoch ran; failure.max_retries 2",
        f"Ray restarted the trial in a new worker (pid {killer.killed_pid} -> "
        f"{pids[-1]}), which resumed at epoch {resumed_at} from its checkpoint; Optuna trial "
        f"COMPLETE with intermediate values for epochs {sorted(trial.intermediate_values)}; "
        f"store holds {len(epochs)} epoch rows, one per epoch, epoch 1 written once; the "
        f"terminal: {len(lines)} lines ({len(progress)} of progress), no traceback, no "
        f"(raylet) line, one for the kill: "
        f"{fault.replace(str(tmp_path), '<tmp>').split('; details')[0]!r}; Ray's report of it "
        f"in {RAY_OUTPUT_NAME} ({len(said.splitlines())} lines)",
    )
