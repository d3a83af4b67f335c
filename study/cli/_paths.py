"""Paths checked up front: an input file by its size and encoding before it is parsed, an
output file or directory writable (or creatable) before anything is written, and directories a
refused command created removed again."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from study.errors import PathError

MAX_CONFIG_BYTES = 256 * 1024  # a trial config is a few hundred bytes


def check_input_file(path: Path, what: str, max_bytes: int) -> None:
    """An existing regular file no larger than ``max_bytes``, refused by size before parsing."""
    try:
        if not path.exists() and not path.is_symlink():
            raise PathError(f"{path}: no such file")
        if path.is_dir():
            raise PathError(f"{path}: is a directory; expected a {what} (a YAML file)")
        size = path.stat().st_size
    except OSError as error:
        raise PathError(f"{path}: cannot read ({error.strerror})") from None
    if size > max_bytes:
        raise PathError(f"{path}: {size:,} bytes; a {what} may be at most {max_bytes:,} bytes")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise PathError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise PathError(f"{path}: cannot read ({error.strerror})") from None


def _first_missing(path: Path) -> tuple[Path | None, Path]:
    """(the outermost directory ``path`` would create, or None; the nearest existing ancestor)."""
    path = path.absolute()
    missing: Path | None = None
    current = path
    while not current.exists() and not current.is_symlink():
        missing = current
        current = current.parent
    return missing, current


def _check_writable_ancestor(path: Path, option: str, existing: Path) -> None:
    if not existing.is_dir():
        raise PathError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{option} {path}: {existing} is not writable")


@contextlib.contextmanager
def _path_errors(path: Path, option: str) -> Iterator[None]:
    """An OSError while looking at a path (a name too long, a loop of links) is bad input."""
    try:
        yield
    except OSError as error:
        raise PathError(f"{option} {path}: {error.strerror or error}") from None


def check_output_dir(path: Path, option: str) -> None:
    """``path`` is a writable directory or can be made one; nothing is created here."""
    with _path_errors(path, option):
        _check_output_dir(path, option)


def _check_output_dir(path: Path, option: str) -> None:
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise PathError(f"{option} {path}: exists and is not a directory")
        _check_writable_ancestor(path, option, path)
        return
    _, existing = _first_missing(path)
    _check_writable_ancestor(path, option, existing)


def check_output_file(path: Path, option: str) -> None:
    """``path`` is a writable file (new or existing) in a directory that exists or can be made."""
    with _path_errors(path, option):
        _check_output_file(path, option)


def _check_output_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise PathError(f"{option} {path}: is a directory; give a file name (e.g. trials.csv)")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise PathError(f"{option} {path}: is not writable")
        return
    _, existing = _first_missing(path.parent)
    _check_writable_ancestor(path, option, existing)


@contextlib.contextmanager
def written_or_removed(path: Path) -> Iterator[None]:
    """Directories created under ``path`` while the block runs are removed again (if empty) when
    it fails, so a refused command leaves nothing behind."""
    missing, _ = _first_missing(path)
    try:
        yield
    except BaseException:
        if missing is not None and missing.is_dir():
            created = sorted(
                (p for p in missing.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            )
            for directory in [*created, missing]:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only empty ones: files someone wrote stay
        raise
