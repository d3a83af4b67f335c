"""What a storage URL holds, found out before anything is written to it.

Two uses, both before a command does its work: :func:`open_read_only` opens the store for a
command that only reads (it never creates a database or its tables and never migrates: a
mistyped SQLite path is "no such database", not a new empty one), and
:func:`check_writable_storage` says what `run` and `db upgrade` can tell about a database
before Ray starts. An SQLite file is looked at read-only (a raw ``sqlite3`` connection, its
header) before the store connects: the store's connections switch it to WAL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ._engine import create_engine_for, normalize_url
from ._errors import StoreError
from ._models import StudyRow
from ._secrets import mask_url
from ._store import Store

__all__ = [
    "SQLITE_HEADER",
    "check_backend",
    "check_writable_storage",
    "open_read_only",
    "require_study_tables",
    "sqlite_file",
    "sqlite_tables",
]

SQLITE_HEADER = b"SQLite format 3\x00"


def check_backend(url: str) -> None:
    """The store keeps SQLite and PostgreSQL; say so before any driver is looked for."""
    if make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {mask_url(url)}: use sqlite:///FILE.db or "
            "postgresql+psycopg://USER@HOST/DB"
        )


def sqlite_file(url: str) -> Path | str | None:
    """The file of a SQLite URL (relative to the working directory); '' for an in-memory
    database; None for another backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if "\x00" in database:
        raise StoreError(f"invalid storage URL {mask_url(url)!r}: a NUL character in the path")
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return ""
    if database.startswith("file:"):  # a URI filename (uri=true): strip scheme and query
        database = database[len("file:") :].split("?", 1)[0]
    path = Path(database)
    try:
        path.stat()
    except FileNotFoundError:
        pass  # read-only commands say "no such database"; `run` creates it
    except OSError as error:  # a name too long, a file where a directory should be, ...
        raise StoreError(f"--storage {mask_url(url)}: {error.strerror or error}") from None
    return path


def sqlite_tables(path: Path, shown: str) -> set[str]:
    """The tables of the SQLite file ``path``, read without writing to it; ``shown`` names the
    database in an error."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(row[0]) for row in rows}
    except sqlite3.DatabaseError as error:
        raise StoreError(f"cannot read {shown}: {error}") from None


def require_study_tables(tables: set[str], url: str) -> None:
    """``tables`` (a database's) hold zoneout-study's, else one line saying they do not."""
    if StudyRow.__tablename__ not in tables:
        raise StoreError(
            f"{mask_url(url)} holds no zoneout-study tables (a database made by another "
            "program, or one no study has run in)"
        )


def open_read_only(url: str) -> Store:
    """The store at ``url`` for a command that only reads: never creates a database or its
    tables and never migrates. The caller closes it."""
    url = normalize_url(url)
    check_backend(url)
    file = sqlite_file(url)
    if file == "":
        raise StoreError(f"no such database: {mask_url(url)} is an empty in-memory database")
    if isinstance(file, Path) and not file.is_file():
        where = f"{file} is a directory" if file.is_dir() else f"{file}"
        raise StoreError(
            f"no such database: {where} (--storage / ZONEOUT_STUDY_STORAGE; "
            "`zoneout-study run SPEC.yaml` creates it)"
        )
    # A SQLite file is looked at read-only first: the store's connections switch it to WAL.
    if isinstance(file, Path):
        require_study_tables(sqlite_tables(file, mask_url(url)), url)
    store = Store(url)
    if not isinstance(file, Path):
        try:
            try:
                tables = set(sa.inspect(store.engine).get_table_names())
            except sa.exc.DBAPIError as error:
                reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
                raise StoreError(f"cannot read {mask_url(url)}: {reason}") from None
            require_study_tables(tables, url)
        except BaseException:
            store.close()
            raise
    return store


def check_writable_storage(url: str) -> None:
    """What `run` (and `db upgrade`) can tell about the database before Ray starts: a URL of a
    supported backend; for SQLite a database file, or none yet, in a writable directory; for
    PostgreSQL a server that answers (connecting writes nothing)."""
    url = normalize_url(url)  # refuses a malformed URL, naming it without its password
    check_backend(url)
    file = sqlite_file(url)
    if file == "":
        raise StoreError(
            f"{mask_url(url)} is an in-memory database: the study would vanish with the "
            "process; give a file, e.g. sqlite:///studies.db"
        )
    if isinstance(file, Path):
        if file.exists() and not file.is_file():
            raise StoreError(f"--storage {mask_url(url)}: {file} is not a file")
        parent = file.absolute().parent
        if not parent.is_dir():
            raise StoreError(
                f"--storage {mask_url(url)}: directory {parent} does not exist (create it first)"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"--storage {mask_url(url)}: directory {parent} is not writable")
        if file.is_file() and file.stat().st_size > 0:
            with file.open("rb") as handle:
                if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                    raise StoreError(f"--storage {mask_url(url)}: {file} is not SQLite")
    else:
        create_engine_for(url).dispose()  # an unreachable server: StoreError, masked URL
