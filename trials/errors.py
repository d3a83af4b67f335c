"""The root of every zoneout-study exception, defined here because ``trials`` imports nothing
from ``study``: errors raised by trials (a bad config, missing data) and by the service share
one hierarchy, which ``study.errors`` re-exports.

- :class:`ZoneoutError`: anything the project raises on purpose.
- :class:`UserError`: the input is wrong (a config, a spec, a path, a database URL, missing
  data) and the message says what to change. The command line prints such an error as one line
  and exits 2; any other exception is a bug and keeps its traceback (exit 1).

Below ``ZoneoutError`` but not a user's mistake: ``trials.task_loops.Diverged`` (a run whose
loss became non-finite) and its subclass ``trials.trainable.TrialDiverged`` (the same, raised
on a Ray worker).
"""

from __future__ import annotations

__all__ = ["UserError", "ZoneoutError"]


class ZoneoutError(Exception):
    """Base of the exceptions zoneout-study raises on purpose."""


class UserError(ZoneoutError):
    """Wrong input; the message is one line that names the input and what is allowed."""
