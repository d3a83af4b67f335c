"""The study's progress display: a live bar on a terminal (a pseudo-terminal here), plain lines
through a pipe; both with the trials done, the states, the best value and an ETA."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from study.progress import ProgressDisplay, ProgressSnapshot, format_eta

ROOT = Path(__file__).resolve().parents[2]

# A study of 3 trials driven with synthetic events; the clock advances 10 s per event.
DRIVER = """
from rich.console import Console
from study.progress import ProgressDisplay, ProgressSnapshot

now = [0.0]
display = ProgressDisplay(planned=3, metric="bpc", console=Console(), clock=lambda: now[0])
display.start()
for snapshot in (
    ProgressSnapshot(running=2),
    ProgressSnapshot(complete=1, running=2, best=1.5),
    ProgressSnapshot(complete=1, pruned=1, running=1, best=1.5),
    ProgressSnapshot(complete=2, pruned=1, best=1.25),
):
    now[0] += 10.0
    display.update(snapshot)
display.stop()
print("live" if display.live else "plain")
"""


def _environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    }
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color")
    return env


def _run_in_pty() -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_environment(),
        cwd=ROOT,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_a_terminal_sees_the_progress_bar() -> None:
    output = _run_in_pty()
    assert "live" in output
    assert "\x1b[" in output  # drawn with terminal control sequences, redrawn in place
    assert "━" in output  # the bar
    # The last frame: 3 of 3 done, the states, the best value so far, the ETA.
    assert "3/3" in output and "0 running, 1 pruned, 0 failed" in output
    assert "best bpc 1.2500" in output and "ETA 0s" in output


def test_a_pipe_sees_plain_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DRIVER],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines == [
        "trials 0/3: 0 complete, 2 running, 0 pruned, 0 failed; best bpc -; ETA -",
        "trials 1/3: 1 complete, 2 running, 0 pruned, 0 failed; best bpc 1.5000; ETA 40s",
        "trials 2/3: 1 complete, 1 running, 1 pruned, 0 failed; best bpc 1.5000; ETA 15s",
        "trials 3/3: 2 complete, 0 running, 1 pruned, 0 failed; best bpc 1.2500; ETA 0s",
        "plain",
    ], result.stdout
    assert "\x1b[" not in result.stdout and "━" not in result.stdout


def test_eta_is_mean_time_per_finished_trial_times_trials_left() -> None:
    now = [0.0]
    display = ProgressDisplay(planned=10, metric="bpc", clock=lambda: now[0])
    display.start()
    assert display.eta_seconds(ProgressSnapshot(running=2)) is None
    now[0] = 120.0
    assert display.eta_seconds(ProgressSnapshot(complete=3, pruned=1)) == 120.0 / 4 * 6
    assert format_eta(None) == "-"
    assert [format_eta(s) for s in (0.4, 59, 61, 3725)] == ["0s", "59s", "1m01s", "1h02m"]


def test_tune_steps_refresh_the_display_at_its_own_pace(monkeypatch: Any) -> None:
    """Tune's step loop runs many times a second and each refresh counts every configuration
    of the run: steps refresh at most every 0.25 s, a trial's end at once."""
    from study import progress

    now = [100.0]
    refreshes = []
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    callback = progress.ProgressCallback(object(), metric="bpc", console=None)
    monkeypatch.setattr(callback, "_refresh", lambda: refreshes.append(now[0]))
    for _ in range(1000):  # 1,000 steps in 1 s
        now[0] += 0.001
        callback.on_step_end(0, [])
    assert 4 <= len(refreshes) <= 5
    callback.on_trial_complete(0, [], None)
    assert refreshes[-1] == now[0]
