"""Cache keys for files: a loader's in-process cache is invalidated when a file changes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["FileStamp", "stamp"]

FileStamp = tuple[tuple[str, int, int], ...]


def stamp(paths: Sequence[Path]) -> FileStamp:
    """``(resolved path, size, mtime_ns)`` of each file, in order."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)
