"""The one retry loop of study/: call again after an error that a moment's wait can cure
(a PostgreSQL restart, SQLite's lock, two drivers creating Optuna's schema at once)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry_call"]

T = TypeVar("T")


def retry_call(
    call: Callable[[], T],
    *,
    retry_if: Callable[[BaseException], bool],
    seconds: float | None = None,
    attempts: int | None = None,
    first_delay: float = 0.25,
    max_delay: float = 2.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``call()``, again after each error ``retry_if`` accepts, with doubling sleeps from
    ``first_delay`` up to ``max_delay``, until it succeeds or ``seconds`` would be exceeded or
    ``attempts`` calls were made; then the last error is raised. Other errors pass at once."""
    if seconds is None and attempts is None:
        raise ValueError("retry_call needs a limit: seconds or attempts")
    deadline = None if seconds is None else time.monotonic() + seconds
    delay = first_delay
    made = 0
    while True:
        made += 1
        try:
            return call()
        except Exception as error:
            if not retry_if(error):
                raise
            if attempts is not None and made >= attempts:
                raise
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(error)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
