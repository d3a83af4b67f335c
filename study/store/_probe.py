"""What a storage URL holds, found out before anything is written to it.

Every command learns what the database is before it works on it (:func:`inspect_database`):

* nothing yet (no file, or no tables): only `run` and `db upgrade` create the store;
* a zoneout-study database of this program's schema, or of an older one (the read commands read
  what it has; `run` and `db upgrade` upgrade it);
* anything else, refused in one line before a byte is written: a damaged SQLite file, a schema
  from a newer zoneout-study, tables with the store's or Optuna's names that neither made (another
  program's database), a SQLite file of another program, or a file the command cannot read
  (or, for `run`, write).

:func:`open_read_only` opens the store for a command that only reads: it never creates a
database or its tables, never migrates, and its SQLite connections refuse writes
(``query_only``) and leave the journal mode alone. An SQLite file is looked at through a raw
read-only ``sqlite3`` connection first: the store's own connections switch a file to WAL.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sqlite3
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ._engine import create_engine_for, normalize_url
from ._errors import StoreError
from ._models import SCHEMA_REVISIONS, VERSION_TABLE, Base
from ._secrets import mask_url
from ._store import Store

__all__ = [
    "OPTUNA_TABLES",
    "SQLITE_HEADER",
    "Access",
    "DatabaseSchema",
    "SchemaState",
    "check_backend",
    "check_writable_storage",
    "inspect_database",
    "open_read_only",
    "sqlite_file",
]

SQLITE_HEADER = b"SQLite format 3\x00"

# Optuna's tables (RDBStorage, schema v3+) with the columns every version of them has: a table
# of one of these names without them was made by another program.
OPTUNA_TABLES: Mapping[str, frozenset[str]] = {
    "studies": frozenset({"study_id", "study_name"}),
    "version_info": frozenset({"version_info_id", "schema_version", "library_version"}),
    "study_directions": frozenset({"study_direction_id", "study_id"}),
    "study_user_attributes": frozenset({"study_user_attribute_id", "study_id"}),
    "study_system_attributes": frozenset({"study_system_attribute_id", "study_id"}),
    "trials": frozenset(
        {"trial_id", "study_id"} | {"number", "state"}  # frame-contract: not a column
    ),
    "trial_user_attributes": frozenset({"trial_user_attribute_id", "trial_id"}),
    "trial_system_attributes": frozenset({"trial_system_attribute_id", "trial_id"}),
    "trial_params": frozenset({"param_id", "trial_id"}),  # frame-contract: not a column
    "trial_values": frozenset({"trial_value_id", "trial_id"}),
    "trial_intermediate_values": frozenset({"trial_intermediate_value_id", "trial_id"}),
    "trial_heartbeats": frozenset({"trial_heartbeat_id", "trial_id"}),
    "alembic_version": frozenset({"version_num"}),
}
# The store's tables with their primary keys (present at every revision that has the table).
STORE_TABLES: Mapping[str, frozenset[str]] = {
    **{
        name: frozenset(column.name for column in table.primary_key.columns)
        for name, table in Base.metadata.tables.items()
    },
    VERSION_TABLE: frozenset({"version_num"}),
}


class Access(enum.Enum):
    """What a command needs of the database."""

    READ = "read"  # list, status, export, report, dashboard
    WRITE = "write"  # run, db upgrade: may create or upgrade the schema


class SchemaState(enum.Enum):
    NONE = "none"  # no file yet, or a database without the store's tables
    OLDER = "older"  # the store's tables at an older revision
    CURRENT = "current"  # the store's tables at this program's revision


@dataclass(frozen=True)
class DatabaseSchema:
    state: SchemaState
    revision: str | None
    # Optuna's tables are there: their schema is Optuna's to check (study.optuna_study).
    has_optuna_tables: bool = False


@dataclass(frozen=True)
class _Catalog:
    """A database's tables with their columns, and the store's schema revision there."""

    columns: Mapping[str, frozenset[str]]
    revision: str | None


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


def _sqlite_catalog(path: Path, shown: str) -> _Catalog:
    """The catalog of the SQLite file ``path``, read without writing to it, after SQLite's
    ``quick_check`` of every page; ``shown`` names the database in an error."""
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {shown}: permission denied on {path}")
    if path.stat().st_size:
        with path.open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StoreError(f"{shown}: {path} is not a SQLite database")
    # Read-write mode (when allowed) with query_only, like the store's own readers: the last
    # connection to close removes the -wal/-shm files it made, which a mode=ro one leaves behind.
    mode = "rw" if os.access(path, os.W_OK) else "ro"
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
            # A damaged page can hold bytes that are not UTF-8: shown, not raised.
            connection.text_factory = lambda raw: raw.decode("utf-8", "replace")
            connection.execute("PRAGMA query_only = ON")
            # quick_check reads every page (tens of ms per 10 MB): a damaged file is refused
            # here instead of failing half-way through a command, or being written into.
            verdict = [str(row[0]) for row in connection.execute("PRAGMA quick_check(3)")]
            if verdict != ["ok"]:
                raise StoreError(
                    f"{shown} is damaged (SQLite quick_check: {verdict[0][:120]}): restore it "
                    f"from a backup (`sqlite3 {path} .recover` may save its rows)"
                )
            tables = [
                str(row[0])
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            columns = {
                table: frozenset(
                    str(row[1])
                    for row in connection.execute("SELECT * FROM pragma_table_info(?)", (table,))
                )
                for table in tables
            }
            revisions: list[str] = []
            if VERSION_TABLE in columns and "version_num" in columns[VERSION_TABLE]:
                rows = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")
                revisions = [str(row[0]) for row in rows]
    except (sqlite3.DatabaseError, UnicodeDecodeError) as error:
        # A damaged schema page makes SQLite's own error text undecodable: still damage.
        reason = "unreadable schema" if isinstance(error, UnicodeDecodeError) else str(error)
        raise StoreError(
            f"{shown} is damaged or not a database ({reason[:120]}): restore it from a backup"
        ) from None
    return _Catalog(columns, _one_revision(revisions, shown))


def _one_revision(revisions: list[str], shown: str) -> str | None:
    """The store's schema revision from its version table's rows: none, or exactly one."""
    if len(revisions) > 1:
        listed = ", ".join(repr(revision[:40]) for revision in revisions[:4])
        raise StoreError(
            f"{shown} has {len(revisions)} schema revisions in {VERSION_TABLE} ({listed}), "
            "where zoneout-study writes one: another program changed it; give zoneout-study a "
            "database of its own (--storage)"
        )
    return revisions[0] if revisions else None


def _server_catalog(engine: sa.Engine, shown: str) -> _Catalog:
    """The catalog of a server database (PostgreSQL), read through ``engine``."""
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_table_names())
        columns = {
            table: frozenset(column["name"] for column in inspector.get_columns(table))
            for table in names & (set(OPTUNA_TABLES) | set(STORE_TABLES))
        }
        columns.update({table: frozenset() for table in names - set(columns)})
        revisions: list[str] = []
        if "version_num" in columns.get(VERSION_TABLE, frozenset()):
            with engine.connect() as connection:
                rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
                revisions = [str(row[0]) for row in rows]
    except sa.exc.DBAPIError as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise StoreError(f"cannot read {shown}: {reason[:200]}") from None
    return _Catalog(columns, _one_revision(revisions, shown))


def _listed(names: set[str]) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:6]) + (f" and {len(ordered) - 6} more" if len(ordered) > 6 else "")


def _classify(catalog: _Catalog, shown: str, *, own_file: bool) -> DatabaseSchema:
    """What ``catalog`` is; a refusal (StoreError) for anything this program must not touch.
    ``own_file``: the database is a file of its own (SQLite), where any other program's table
    means the wrong file; a server database may hold other applications' tables beside ours."""
    other_program = "give zoneout-study a database of its own (--storage)"
    tables = set(catalog.columns)
    for table, needed in {**OPTUNA_TABLES, **STORE_TABLES}.items():
        if table in tables and not needed <= catalog.columns[table]:
            raise StoreError(
                f"{shown} has a table {table!r} that neither zoneout-study nor Optuna made (it "
                f"lacks {_listed(set(needed - catalog.columns[table]))}): another program's "
                f"database; {other_program}"
            )
    optuna = tables & set(OPTUNA_TABLES)
    if optuna and "version_info" not in tables:
        raise StoreError(
            f"{shown} has tables named like Optuna's ({_listed(optuna)}) without Optuna's "
            f"version_info: another program's database; {other_program}"
        )
    ours = tables & set(STORE_TABLES)
    others = {table for table in tables - optuna - ours if not table.startswith("sqlite_")}
    if own_file and others and not ours:
        raise StoreError(
            f"{shown} holds another program's tables ({_listed(others)}); {other_program}"
        )
    if catalog.revision is None:
        if ours - {VERSION_TABLE}:
            raise StoreError(
                f"{shown} has zoneout-study tables but no schema revision in {VERSION_TABLE} "
                f"(a set-up that was cut off, or another program); {other_program}"
            )
        return DatabaseSchema(SchemaState.NONE, None, has_optuna_tables=bool(optuna))
    if catalog.revision not in SCHEMA_REVISIONS:
        raise StoreError(
            f"{shown} was written by a newer zoneout-study (schema revision "
            f"{catalog.revision[:40]!r}; this one knows up to {SCHEMA_REVISIONS[-1]}): upgrade "
            "zoneout-study to read or run it"
        )
    current = catalog.revision == SCHEMA_REVISIONS[-1]
    state = SchemaState.CURRENT if current else SchemaState.OLDER
    return DatabaseSchema(state, catalog.revision, has_optuna_tables=bool(optuna))


def _check_sqlite_writable(file: Path, shown: str) -> None:
    """`run` needs to write the file, its -wal/-shm companions and (for those) its directory."""
    parent = file.absolute().parent
    if not parent.is_dir():
        raise StoreError(f"--storage {shown}: directory {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"--storage {shown}: directory {parent} is not writable")
    for path in (file, file.with_name(file.name + "-wal"), file.with_name(file.name + "-shm")):
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(
                f"--storage {shown}: {path} is read-only for this user; make it writable "
                "(chmod u+w) or copy the database"
            )


def _check_server_writable(engine: sa.Engine, catalog: _Catalog, shown: str) -> None:
    """`run` needs to create the tables that are missing and to write those that exist."""
    if engine.dialect.name != "postgresql":
        return
    tables = sorted(set(catalog.columns) & ({*OPTUNA_TABLES, *STORE_TABLES}))
    checks = (
        ["has_schema_privilege(current_schema(), 'CREATE')"]
        if len(tables) < len({*OPTUNA_TABLES, *STORE_TABLES})
        else []
    )
    checks += [f"has_table_privilege('{table}', 'INSERT, UPDATE')" for table in tables]
    needed = "create or write the study tables"
    with engine.connect() as connection:
        allowed = bool(connection.execute(sa.text("SELECT " + " AND ".join(checks))).scalar())
    if not allowed:
        raise StoreError(
            f"--storage {shown}: this database user may not {needed}; grant it, or use a user "
            "that may"
        )


def inspect_database(url: str, access: Access) -> DatabaseSchema:
    """What the database at ``url`` holds, checked for what ``access`` needs; a refusal
    (StoreError, one line) for a database this program must not read or write. Writes
    nothing and creates nothing."""
    url = normalize_url(url)  # refuses a malformed URL, naming it without its password
    check_backend(url)
    shown = mask_url(url)
    file = sqlite_file(url)
    if file == "":
        if access is Access.WRITE:
            raise StoreError(
                f"{shown} is an in-memory database: the study would vanish with the process; "
                "give a file, e.g. sqlite:///studies.db"
            )
        raise StoreError(f"no such database: {shown} is an empty in-memory database")
    if isinstance(file, Path):
        if file.exists() and not file.is_file():
            raise StoreError(f"--storage {shown}: {file} is a directory, not a database file")
        if access is Access.WRITE:
            _check_sqlite_writable(file, shown)
        if not file.exists():
            if access is Access.READ:
                raise StoreError(
                    f"no such database: {file} (--storage / ZONEOUT_STUDY_STORAGE; "
                    "`zoneout-study run SPEC.yaml` creates it)"
                )
            return DatabaseSchema(SchemaState.NONE, None)
        return _classify(_sqlite_catalog(file, shown), shown, own_file=True)
    engine = create_engine_for(url)  # an unreachable server: StoreError, masked URL
    try:
        catalog = _server_catalog(engine, shown)
        schema = _classify(catalog, shown, own_file=False)
        if access is Access.WRITE:
            _check_server_writable(engine, catalog, shown)
    finally:
        engine.dispose()
    return schema


def open_read_only(url: str) -> Store:
    """The store at ``url`` for a command that only reads: never creates a database or its
    tables and never migrates; its SQLite connections refuse writes. The caller closes it."""
    schema = inspect_database(url, Access.READ)
    if schema.state is SchemaState.NONE:
        raise StoreError(
            f"{mask_url(normalize_url(url))} holds no zoneout-study tables (a database no study "
            "has run in yet)"
        )
    return Store(url, read_only=True)


def check_writable_storage(url: str) -> DatabaseSchema:
    """What `run` (and `db upgrade`) can tell about the database before Ray starts: one this
    program may create, upgrade or write, by a user who may write it."""
    return inspect_database(url, Access.WRITE)
