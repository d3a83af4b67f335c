"""Load: many short trials at the highest concurrency this machine allows, while
optuna-dashboard and `zoneout-study status` read the same SQLite database; every trial and epoch
is accounted for and no reader or writer sees "database is locked"."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from dashboards import serve_dashboard
from study.runner import run_study
from study.spec import validate_spec
from study.store import Store, StoreError
from tests.support import free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N_TRIALS = int(os.environ.get("ZONEOUT_RELIABILITY_LOAD_TRIALS", "120"))
CONCURRENCY = 4  # 0.5 CPU each on the session's 2-CPU Ray


class _Readers(threading.Thread):
    """Polls optuna-dashboard's study API and runs `zoneout-study status` until stopped."""

    def __init__(self, url: str, name: str, base_url: str, study_id: int) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.base_url, self.study_id = url, name, base_url, study_id
        self.stop = threading.Event()
        self.requests = 0
        self.max_trials_seen = 0
        self.status_runs: list[tuple[int, float]] = []
        self.failures: list[str] = []

    def _poll_dashboard(self) -> None:
        self.requests += 1
        try:
            with urllib.request.urlopen(
                f"{self.base_url}/api/studies/{self.study_id}", timeout=60
            ) as response:
                body = response.read()
                if response.status != 200:
                    self.failures.append(f"dashboard HTTP {response.status}")
                    return
            self.max_trials_seen = max(self.max_trials_seen, len(json.loads(body)["trials"]))
        except (urllib.error.URLError, OSError, ValueError) as error:
            detail = ""
            if isinstance(error, urllib.error.HTTPError):
                detail = error.read().decode(errors="replace")[:300]
            self.failures.append(f"dashboard request failed: {error!r} {detail}")

    def _run_status(self) -> None:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "study.cli", "status", self.name, "--storage", self.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.status_runs.append((result.returncode, time.monotonic() - started))
        output = result.stdout + result.stderr
        if result.returncode != 0 or "locked" in output.lower():
            self.failures.append(f"status exit {result.returncode}: {output[-500:]}")

    def run(self) -> None:
        has_trials = False
        while not self.stop.is_set():
            self._poll_dashboard()
            if not has_trials:  # `status` refuses a study without trials (exit 2)
                try:
                    with Store(self.url) as store:
                        has_trials = not store.trials_frame(self.name).empty
                except StoreError:
                    pass
            if has_trials:
                self._run_status()
            self.stop.wait(3.0)


def test_many_short_trials_with_concurrent_readers(
    ray_local: None, tmp_path: Path, capfd: pytest.CaptureFixture[str], reliability_record: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}"
    spec = validate_spec(
        {
            "name": "load",
            "base": {
                "task": "digits",
                "hidden_size": 4,
                "epochs": 1,
                "max_batches_per_epoch": 1,
                "batch_size": 16,
                "eval_batch_size": 512,
            },
            "search": {
                "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5},
                "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.5},
            },
            "sampler": {"name": "random", "seed": 0},
            "scheduler": {"name": "none"},
            "n_trials": N_TRIALS,
            "max_concurrent_trials": CONCURRENCY,
            "resources": {"cpu": 0.5},
            "failure": {"max_retries": 0},
            "checkpoint_path": str(tmp_path / "runs"),
        }
    )
    # The study exists before the driver starts, so the dashboard has an id to poll.
    study_id = optuna.create_study(
        study_name=spec.name, storage=url, direction="minimize"
    )._study_id
    out = io.StringIO()
    with serve_dashboard(url, port=free_port(), timeout=90) as server:  # type: ignore[union-attr]
        readers = _Readers(url, spec.name, server.url, study_id)
        readers.start()
        try:
            outcome = run_study(spec, storage=url, console=Console(file=out, width=120))
        finally:
            readers.stop.set()
            readers.join(timeout=180)
        # Once more after the last write; optuna-dashboard refreshes its in-memory trial cache
        # on its own schedule, so give it a little time to show the final trials.
        deadline = time.monotonic() + 30
        while readers.max_trials_seen < N_TRIALS and time.monotonic() < deadline:
            readers._poll_dashboard()
            time.sleep(1.0)
    captured = capfd.readouterr()
    driver_output = out.getvalue() + captured.out + captured.err
    assert "locked" not in driver_output.lower(), driver_output[-2000:]
    assert not readers.failures, readers.failures[:5]
    assert readers.status_runs and readers.requests >= 2
    assert readers.max_trials_seen == N_TRIALS

    assert outcome.status == "finished"
    trials = optuna.load_study(study_name=spec.name, storage=url).get_trials()
    states = [t.state for t in trials]
    assert len(trials) == N_TRIALS
    assert states.count(TrialState.COMPLETE) == N_TRIALS, {s.name: states.count(s) for s in states}
    assert all(sorted(t.intermediate_values) == [1] for t in trials)
    with Store(url) as store:
        frame = store.trials_frame(spec.name)
        epochs = store.epochs_frame(spec.name)
    assert len(frame) == N_TRIALS and frame["number"].is_unique
    assert sorted(frame["number"]) == sorted(t.number for t in trials)
    assert (frame["state"] == "COMPLETE").all(), frame["state"].value_counts().to_dict()
    assert len(epochs) == N_TRIALS
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    assert outcome.epochs_written == N_TRIALS

    status_seconds = sorted(seconds for _, seconds in readers.status_runs)
    reliability_record(
        "Load, with concurrent readers",
        f"{N_TRIALS} one-batch digits trials, {CONCURRENCY} at a time (0.5 CPU each on a "
        "2-CPU Ray), SQLite; meanwhile optuna-dashboard polled /api/studies/<id> and "
        "`zoneout-study status` ran in a loop",
        f"{N_TRIALS}/{N_TRIALS} Optuna trials COMPLETE, none RUNNING; store {len(frame)} "
        f"trials and {len(epochs)} epochs, no duplicates; study took "
        f"{outcome.wall_seconds:.0f} s ({outcome.store_write_seconds:.1f} s in store "
        f"writes); {readers.requests} dashboard requests and {len(readers.status_runs)} "
        f"`status` runs (exit 0 each, median {status_seconds[len(status_seconds) // 2]:.1f} s), "
        "no request failed, no 'database is locked' anywhere",
    )
