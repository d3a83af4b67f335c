"""Whose fault a failed run is: the configuration's, or the infrastructure's.

A trial that fails because of its configuration (it diverged, its batch does not fit its data,
its code raised) has a result: FAIL, and it counts towards the study's budget. A trial cut off by
what it ran on (its worker or node died, Ray's memory monitor killed it, the disk filled, the
database went away) says nothing about its configuration: the service retires it and continues
it from its checkpoints, and it does not count. The reason text is all the driver gets from Ray
(the last line of the trial's error file), so the classes are recognised by the exception names
Ray and the operating system use there.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = ["Fault", "classify"]


class Fault(str, Enum):
    TRIAL = "trial"  # the configuration's own failure: counts
    INFRASTRUCTURE = "infrastructure"  # continue it; the run goes on
    INTERRUPTED = "interrupted"  # Ctrl-C reached the worker too (a terminal's process group)
    DISK_FULL = "disk_full"  # continue it later; the run stops (every next trial would fail too)


# Ray's exceptions for a trial whose process or node went away (ray.exceptions), and the
# memory monitor's kill; the errno names and messages of a full or read-only file system.
_INFRASTRUCTURE = re.compile(
    r"\b(RayActorError|ActorDiedError|ActorUnavailableError|WorkerCrashedError|NodeDiedError"
    r"|OutOfMemoryError|ObjectLostError|OwnerDiedError|RaySystemError|LocalRayletDiedError"
    r"|TaskUnschedulableError|ActorUnschedulableError)\b"
)
_DISK_FULL = re.compile(
    r"(ENOSPC|No space left on device|\[Errno 28\]|database or disk is full|EDQUOT"
    r"|Disk quota exceeded|\[Errno 122\])",
    re.IGNORECASE,
)


_INTERRUPTED = re.compile(r"^\s*(KeyboardInterrupt|ray\.exceptions\.TaskCancelledError)\b")


def classify(reason: str | None) -> Fault:
    """The class of a failed trial's reason (the last line of its error)."""
    text = reason or ""
    if _INTERRUPTED.search(text):
        return Fault.INTERRUPTED
    if _DISK_FULL.search(text):
        return Fault.DISK_FULL
    if _INFRASTRUCTURE.search(text):
        return Fault.INFRASTRUCTURE
    return Fault.TRIAL
