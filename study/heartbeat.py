"""The driver's heartbeat: who is driving a study, and whether that driver still lives.

Optuna's own heartbeat does not cover ask/tell, so a killed driver would leave its trials
RUNNING forever. Each driver has an id (``host:pid:start``), stamps it on the trials it asks,
and beats into the study's system attributes while Tune runs; the reaper asks
:func:`driver_alive` before it retires a trial.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import optuna
from ray.tune import Callback

from study import optuna_study as ostudy

__all__ = [
    "STALE_AFTER_SECONDS",
    "HeartbeatCallback",
    "driver_alive",
    "new_driver_id",
    "other_live_drivers",
]

# A driver on another host whose last beat is older than this is taken for dead.
STALE_AFTER_SECONDS = 120.0
BEAT_EVERY_SECONDS = 10.0


def new_driver_id() -> str:
    """host:pid:start-time, so a reaper on the same host can tell whether the driver lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_alive(
    study: optuna.Study, driver_id: str | None, *, stale_after: float = STALE_AFTER_SECONDS
) -> bool:
    """On this host: its process exists. Elsewhere: its heartbeat is recent."""
    if not driver_id:
        return False
    host, _, rest = driver_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return int(pid_text) != os.getpid() and _process_exists(int(pid_text))
    last = ostudy.heartbeats(study).get(driver_id)
    return last is not None and time.time() - last < stale_after


def other_live_drivers(
    study: optuna.Study, driver_id: str, *, stale_after: float = STALE_AFTER_SECONDS
) -> list[str]:
    """Drivers other than ``driver_id`` whose heartbeat on this study is recent."""
    now = time.time()
    return [
        other
        for other, last in ostudy.heartbeats(study).items()
        if other != driver_id and now - last < stale_after
    ]


class HeartbeatCallback(Callback):
    """Beats ``driver_id`` into the study at most every ``every`` seconds while Tune runs."""

    def __init__(
        self, study: optuna.Study, driver_id: str, *, every: float = BEAT_EVERY_SECONDS
    ) -> None:
        self._study: optuna.Study | None = study
        self._driver_id = driver_id
        self._every = every
        self._last = 0.0

    # Tune pickles its callbacks into the experiment directory; the live study (whose storage
    # holds the database URL, password included) must not go with them.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None}

    def beat(self) -> None:
        if self._study is not None:
            ostudy.record_heartbeat(self._study, self._driver_id)
            self._last = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last > self._every:
            self.beat()
