"""Disk space, checked before a study starts and recognised when it runs out.

A study writes checkpoints (every epoch of every seed) under its checkpoint path and, on SQLite,
every trial and epoch into the database file. Both are checked before Ray starts a trial: the
directory must exist or be creatable, be writable (a file is written and removed), and have at
least ``ZONEOUT_MIN_FREE_MB`` MiB free (default 64: a few hundred checkpoints of the models this
service trains on a laptop; a cluster's shared storage is checked the same way when it is
mounted, and not at all when it is a URI such as s3://). When the space runs out mid-study the
failing trial's error or the database's names ENOSPC: the run stops, its open trials are retired
to be continued, and the next run of the spec continues them once space is freed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from study.errors import UserError

__all__ = [
    "DiskFullError",
    "DiskSpaceError",
    "disk_line",
    "is_disk_full",
    "min_free_bytes",
    "require_space",
]

MIN_FREE_ENV = "ZONEOUT_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 64.0


class DiskSpaceError(UserError, OSError):
    """A directory the study writes to cannot be written, or has too little space (before any
    trial ran)."""


class DiskFullError(UserError, OSError):
    """The disk filled while the study ran; running the spec again after freeing space
    continues it."""


def min_free_bytes() -> int:
    raw = os.environ.get(MIN_FREE_ENV, "")
    try:
        megabytes = float(raw) if raw else DEFAULT_MIN_FREE_MB
    except ValueError:
        raise DiskSpaceError(f"{MIN_FREE_ENV}={raw!r} is not a number of MiB") from None
    return max(0, int(megabytes * 1024 * 1024))


def require_space(directory: Path, what: str) -> None:
    """``directory`` (created if missing) is writable and has ``min_free_bytes()`` free."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".zoneout-write-check-"):
            pass
    except OSError as error:
        raise DiskSpaceError(
            f"{what} {directory} cannot be written ({error.strerror or error}); choose another "
            "directory or fix its permissions"
        ) from None
    free = shutil.disk_usage(directory).free
    needed = min_free_bytes()
    if free < needed:
        raise DiskSpaceError(
            f"{what} {directory} has {free / 2**20:.1f} MiB free; a study needs at least "
            f"{needed / 2**20:.0f} MiB there ({MIN_FREE_ENV}): free space or choose another "
            "directory"
        )


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC or a disk quota, from the operating system, SQLite or a driver wrapping them."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current)
        # SQLite says "database or disk is full" (sqlite3.OperationalError, wrapped by
        # SQLAlchemy); the text is matched so that only the store knows sqlite3.
        if "No space left on device" in text or "disk is full" in text:
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


_FULL_WORDS = ("No space left on device", "disk is full", "Disk quota exceeded", "ENOSPC")


def disk_line(error: BaseException) -> str:
    """The one line of an error (or of what it wraps) that says the disk is full."""
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for line in str(current).splitlines():
            if any(word in line for word in _FULL_WORDS):
                return line.strip()[:300]
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    text = str(error).strip()
    return text.splitlines()[-1][:300] if text else type(error).__name__
