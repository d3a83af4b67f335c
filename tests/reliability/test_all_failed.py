"""A real study whose every trial fails ends cleanly: `zoneout-study run` and then
`zoneout-study report` as a user runs them (subprocesses, their own Ray), no traceback anywhere,
and the report is written with the table of the failed trials and why it has no figure."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from study.store import Store
from tests.support import UNCLIPPED_SGD_PTB_BASE, driver_env, kill_process_tree, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NAME = "all-failed"
REASON = "300,000 streams need at least 600,000 validation tokens"


def _cli() -> list[str]:
    """The installed console command beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("zoneout-study")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "study.cli"]


def test_a_study_whose_trials_all_fail_reports_what_failed(
    tmp_path: Path, own_ray_tmpdir: str, reliability_record: Any
) -> None:
    spec = write_spec(
        {
            "name": NAME,
            # 300,000 evaluation streams need 600,000 validation characters; PTB's has 393,042.
            # The base passes the driver's data check; what the searched value needs of the
            # data is found where the data is loaded, on the worker: every trial raises there
            # before its first epoch.
            "base": UNCLIPPED_SGD_PTB_BASE,
            "search": {
                "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5},
                "eval_streams": {"type": "categorical", "choices": [300_000]},
            },
            "sampler": {"name": "random", "seed": 0},
            "scheduler": {"name": "none"},
            "n_trials": 2,
            "max_concurrent_trials": 2,
            "failure": {"max_retries": 0},
            "checkpoint_path": str(tmp_path / "runs"),
        },
        tmp_path,
    )
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    env = driver_env(own_ray_tmpdir)
    started = time.monotonic()
    run = subprocess.run(
        [*_cli(), "run", str(spec), "--storage", url, "--report-dir", str(tmp_path / "run")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    run_seconds = time.monotonic() - started
    kill_process_tree(own_ray_tmpdir)
    run_output = run.stdout + run.stderr
    assert "Traceback" not in run_output, run_output[-4000:]
    # `run` ends the study, writes its report, says what failed and exits 3 (no traceback).
    assert run.returncode == 3, run_output[-4000:]
    assert "0 complete, 0 pruned, 2 failed" in run_output, run_output[-4000:]
    assert "2 of 2 trials failed: 2x 'trials.config.ConfigError:" in run.stderr, run.stderr[-4000:]
    assert "(trials 0, 1)" in run.stderr

    with Store(url) as store:
        trials = store.trials_frame(NAME)
    assert list(trials["state"]) == ["FAIL", "FAIL"]
    assert all(REASON in error for error in trials["error"])

    out = tmp_path / "report"
    started = time.monotonic()
    report = subprocess.run(
        [*_cli(), "report", NAME, "--storage", url, "--out", str(out), "--no-png"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report_seconds = time.monotonic() - started
    report_output = report.stdout + report.stderr
    assert report.returncode == 0, report_output[-4000:]
    assert "Traceback" not in report_output, report_output[-4000:]
    sentence = "No figure: no trial completed: 2 failed (see the table of trials)"
    assert sentence in " ".join(report_output.split()), report_output
    html = (out / f"{NAME}-report.html").read_text(encoding="utf-8")
    assert 'class="plotly-graph-div"' not in html
    assert sentence in html and "<h3>Trials that did not complete</h3>" in html
    assert html.count("<td>FAIL</td>") == 2 and html.count(REASON) >= 2
    # `run` wrote the same report at its end.
    assert sentence in (tmp_path / "run" / f"{NAME}-report.html").read_text(encoding="utf-8")

    reason = str(trials["error"].iloc[0])
    reliability_record(
        "No trial finishes",
        "a real PTB-char study whose every trial (2 of 2) raises on its worker before its "
        "first epoch (300,000 evaluation streams over PTB's 393,042 validation characters); "
        "failure.max_retries 0; `zoneout-study run`, then `zoneout-study report`",
        f"run: exit {run.returncode} in {run_seconds:.0f} s, no traceback, '0 complete, 0 "
        f"pruned, 2 failed'; report: exit 0 in {report_seconds:.1f} s, no traceback, HTML with "
        f"the table of both FAIL trials (reason {reason!r}) and 'No figure: no trial "
        "completed: 2 failed'; no figure, no PNG",
    )
