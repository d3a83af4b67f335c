"""Databases that are not what they seem: every command learns what a database is before it
works on it, and refuses what it must not touch (exit 2, one line, the database byte-identical,
no file written anywhere: no -wal/-shm companions, no output directory, no new database).

The table ``CASES`` holds one builder per class (a damaged file, a newer schema, another
program's tables, bad URL options, ...); every case is tried with every command it applies to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from study.cli import app
from study.store import OPTUNA_TABLES, SCHEMA_REVISIONS, VERSION_TABLE, Store
from tests.reliability.conftest import fresh_pg_database
from tests.study.test_cli_errors import GOOD, make_store
from tests.support import one_line_error, pg_url

READ_COMMANDS: dict[str, list[str]] = {
    "list": ["list"],
    "status": ["status", "known"],
    "export": ["export", "known", "--out", "ex"],
    "report": ["report", "known", "--out", "rep", "--no-png"],
}
WRITE_COMMANDS: dict[str, list[str]] = {
    "db upgrade": ["db", "upgrade"],
    "run": ["run", "spec.yaml"],
}
ALL_COMMANDS = {**READ_COMMANDS, **WRITE_COMMANDS}


@dataclass(frozen=True)
class Case:
    """A database (built in the test's directory) and the refusal every command must give."""

    build: Callable[[Path], str]  # directory -> storage URL
    expected: str  # in the one-line message
    commands: tuple[str, ...] = tuple(ALL_COMMANDS)


_TEMPLATE: list[Path] = []


def _study_db(directory: Path) -> Path:
    """A copy of one study database (study 'known', Optuna's tables and the store's), settled:
    its WAL checkpointed into the main file and no -wal/-shm beside the copy."""
    if not _TEMPLATE:
        made = make_store(Path(tempfile.mkdtemp(prefix="zs-template-")), with_optuna=True)
        with contextlib.closing(sqlite3.connect(made)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _TEMPLATE.append(made)
    database = directory / "studies.db"
    shutil.copyfile(_TEMPLATE[0], database)
    return database


def _edit(database: Path, *statements: str) -> None:
    """Run ``statements`` and close the connection (which removes its -wal/-shm)."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        for statement in statements:
            connection.execute(statement)
        connection.commit()


def _damaged(directory: Path) -> str:
    database = _study_db(directory)
    data = bytearray(database.read_bytes())
    for page in range(3, len(data) // 4096):  # past the header page: sqlite_master and tables
        data[page * 4096 + 100 : page * 4096 + 400] = b"\xff" * 300
    database.write_bytes(bytes(data))
    return f"sqlite:///{database}"


def _truncated(directory: Path) -> str:
    database = _study_db(directory)
    database.write_bytes(database.read_bytes()[: 4096 * 3])
    return f"sqlite:///{database}"


def _not_sqlite(directory: Path) -> str:
    database = directory / "studies.db"
    database.write_text("name,value\nnot,a database\n", encoding="utf-8")
    return f"sqlite:///{database}"


def _edited_study_db(*statements: str) -> Callable[[Path], str]:
    """A builder: the study database with ``statements`` run on it."""

    def build(directory: Path) -> str:
        database = _study_db(directory)
        _edit(database, *statements)
        return f"sqlite:///{database}"

    return build


def _new_db(file_name: str, *statements: str) -> Callable[[Path], str]:
    """A builder: a new SQLite file ``file_name`` made by ``statements`` (another program's)."""

    def build(directory: Path) -> str:
        _edit(directory / file_name, *statements)
        return f"sqlite:///{directory / file_name}"

    return build


_newer_schema = _edited_study_db(f"UPDATE {VERSION_TABLE} SET version_num = '9001_from_the_future'")
# Another program's tables under the names Optuna uses: `studies` and `alembic_version`.
_foreign_tables = _new_db(
    "studies.db",
    "CREATE TABLE studies (id INTEGER PRIMARY KEY, title TEXT)",
    "CREATE TABLE alembic_version (version_num TEXT)",
    "INSERT INTO alembic_version VALUES ('a1b2c3')",
)
# Tables with Optuna's names and columns but no version_info: not Optuna's database either.
_optuna_names_only = _new_db(
    "studies.db",
    "CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)",
    "CREATE TABLE trials (trial_id INTEGER, number INTEGER, study_id INTEGER, state TEXT)",
)
_other_program = _new_db(
    "app.db",
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)",
    "INSERT INTO users (email) VALUES ('a@example.org')",
)
_no_revision = _edited_study_db(f"DELETE FROM {VERSION_TABLE}")


def _url_option(option: str) -> Callable[[Path], str]:
    def build(directory: Path) -> str:
        return f"sqlite:///{_study_db(directory)}?{option}"

    return build


def _question_mark_in_name(directory: Path) -> str:
    # SQLAlchemy drops an item without '=' after '?': the file would be `new`.
    return f"sqlite:///{directory / 'new'}?x.db"


CASES: dict[str, Case] = {
    "damaged pages": Case(_damaged, "is damaged"),
    "truncated file": Case(_truncated, "is damaged"),
    "not a SQLite file": Case(_not_sqlite, "is not a SQLite database"),
    "schema of a newer zoneout-study": Case(_newer_schema, "written by a newer zoneout-study"),
    "another program's `studies` and `alembic_version`": Case(
        _foreign_tables, "neither zoneout-study nor Optuna made"
    ),
    "Optuna's table names without Optuna": Case(
        _optuna_names_only, "without Optuna's version_info"
    ),
    "a SQLite file of another program": Case(_other_program, "another program's tables (users)"),
    "zoneout-study tables without a revision": Case(_no_revision, "no schema revision"),
    "URL option timeout=abc": Case(_url_option("timeout=abc"), "timeout='abc' should be"),
    "URL option check_same_thread=maybe": Case(
        _url_option("check_same_thread=maybe"), "check_same_thread='maybe' should be true or false"
    ),
    "URL option unknown": Case(_url_option("journal=wal"), "unknown SQLite option 'journal'"),
    "URL option uri=true on a plain path": Case(
        _url_option("uri=true&mode=rwc"), "uri=true needs a file: URI"
    ),
    "URL option detect_types beyond a C int": Case(
        _url_option("detect_types=99999999999999999999999"), "from 0 to 2147483647"
    ),
    "two schema revisions": Case(
        _edited_study_db(f"INSERT INTO {VERSION_TABLE} VALUES ('zz9999_future')"),
        "has 2 schema revisions",
    ),
    # The read commands read the store's tables only: Optuna's schema is checked by what uses
    # Optuna's tables (run, db upgrade).
    "Optuna tables of a newer Optuna": Case(
        _edited_study_db("UPDATE alembic_version SET version_num = 'v9.9.9.z'"),
        "of a schema Optuna",
        commands=tuple(WRITE_COMMANDS),
    ),
    "URL with '?' in the file name": Case(
        _question_mark_in_name, "'x.db' after '?' is not an option"
    ),
}


def _files(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with its content hash: -wal/-shm companions included (a
    refused database is never opened by the store, so none may be left behind)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "<dir>"
        for path in sorted(directory.rglob("*"))
    }


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """The test's directory as the working directory (relative outputs land there), holding a
    good spec for `run`."""
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump({**GOOD, "name": "known", "n_trials": 3}), encoding="utf-8"
    )
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, command) for case in sorted(CASES) for command in CASES[case].commands],
)
def test_a_database_that_is_not_what_it_seems_is_refused(
    in_tmp: Path, case: str, command: str, reliability_record: Any
) -> None:
    url = CASES[case].build(in_tmp)
    before = _files(in_tmp)
    result = CliRunner().invoke(app, [*ALL_COMMANDS[command], "--storage", url])
    message = one_line_error(result, single_line=True)
    assert CASES[case].expected in message, message
    assert _files(in_tmp) == before, "a refused command wrote or changed a file"
    if command == "run":  # one row per class (the other commands give the same line)
        reliability_record(
            f"Database: {case}",
            ", ".join(f"`{name}`" for name in CASES[case].commands) + " on it",
            f"exit 2 each, database byte-identical, no file written; "
            f"{message.replace(str(in_tmp), '<tmp>')[:170]}",
        )


def _deny_writes_as_the_kernel_would(monkeypatch: pytest.MonkeyPatch, files: set[Path]) -> None:
    """Root may write a 0444 file (the kernel skips the mode bits for it): where the tests run as
    root, os.access answers for ``files`` as it would for their owner without root."""
    if os.geteuid() != 0:
        return
    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(path).absolute() in files and mode & os.W_OK:
            return bool(Path(path).stat().st_mode & stat.S_IWUSR)
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_a_read_only_database_file(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, reliability_record: Any
) -> None:
    database = _study_db(in_tmp)
    database.chmod(0o444)
    _deny_writes_as_the_kernel_would(monkeypatch, {database.absolute()})
    url = f"sqlite:///{database}"
    before = _files(in_tmp)
    messages = []
    for command in WRITE_COMMANDS.values():
        result = CliRunner().invoke(app, [*command, "--storage", url])
        messages.append(one_line_error(result, single_line=True))
        assert "read-only for this user" in messages[-1], messages[-1]
        assert _files(in_tmp) == before
    # Reading needs no write: the read commands work on it and leave it as it was.
    result = CliRunner().invoke(app, ["status", "known", "--storage", url])
    assert result.exit_code == 0, result.output
    assert _files(in_tmp) == before
    reliability_record(
        "Database: read-only file",
        "`run` and `db upgrade` on a 0444 database file (`status` on it too)",
        "exit 2 before Ray starts, nothing written; `status` reads it; "
        + messages[0].replace(str(in_tmp), "<tmp>")[:150],
    )


def test_read_commands_leave_a_good_database_as_they_found_it(
    in_tmp: Path, reliability_record: Any
) -> None:
    database = _study_db(in_tmp)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    for name, command in READ_COMMANDS.items():
        result = CliRunner().invoke(app, [*command, "--storage", f"sqlite:///{database}"])
        assert result.exit_code == 0, (name, result.output)
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before, name
        leftovers = [p.name for p in in_tmp.iterdir() if p.name.endswith(("-wal", "-shm"))]
        assert leftovers == [], (name, leftovers)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["ex", "rep", "spec.yaml", "studies.db"]
    reliability_record(
        "Read commands on a good database",
        "`list`, `status`, `export`, `report` on a study database",
        "exit 0 each; the database file byte-identical, no -wal/-shm left; only ex/ and rep/ "
        "written",
    )


def test_a_rollback_journal_database_is_not_switched_to_wal_by_a_reader(in_tmp: Path) -> None:
    database = _study_db(in_tmp)
    _edit(database, "PRAGMA journal_mode = DELETE")
    before = database.read_bytes()
    result = CliRunner().invoke(app, ["status", "known", "--storage", f"sqlite:///{database}"])
    assert result.exit_code == 0, result.output
    assert database.read_bytes() == before  # bytes 18-19 of the header say the journal mode


@pytest.mark.parametrize("command", ["export", "report"])
def test_a_stored_name_that_would_leave_the_output_directory(
    in_tmp: Path, command: str, reliability_record: Any
) -> None:
    database = _study_db(in_tmp)
    _edit(database, "UPDATE zs_studies SET name = '../../escaped' WHERE name = 'known'")
    work = in_tmp / "work" / "sub"
    work.mkdir(parents=True)
    before = _files(in_tmp)
    arguments = [command, "../../escaped", "--storage", f"sqlite:///{database}"]
    result = CliRunner().invoke(app, [*arguments, "--out", str(work / "out")])
    message = one_line_error(result, single_line=True)
    assert "not a safe file name" in message, message
    assert _files(in_tmp) == before
    if command == "report":  # without --out: reports/<name>
        result = CliRunner().invoke(app, arguments)
        assert "not a safe file name" in one_line_error(result, single_line=True)
        assert _files(in_tmp) == before
    reliability_record(
        f"Stored study name '../../escaped' ({command})",
        f"`{command} ../../escaped --out work/sub/out` on a database that holds that name",
        f"exit 2, nothing written inside or outside work/; {message[:140]}",
    )


def test_schema_revisions_are_the_migrations_chain() -> None:
    from alembic.script import ScriptDirectory

    from study.store import alembic_config

    chain = [
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    ]
    assert tuple(reversed(chain)) == SCHEMA_REVISIONS


def test_optuna_tables_are_optunas(tmp_path: Path) -> None:
    """The key columns the probe expects of Optuna's tables are those Optuna creates."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    database = tmp_path / "optuna.db"
    optuna.create_study(storage=f"sqlite:///{database}")
    with sqlite3.connect(database) as connection:
        made = {
            table: {str(row[1]) for row in connection.execute(f"PRAGMA table_info({table})")}
            for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert set(made) == set(OPTUNA_TABLES)
    for table, columns in OPTUNA_TABLES.items():
        assert columns <= made[table], table


# ------------------------------------------------------------------ PostgreSQL
@pytest.fixture
def pg_database() -> Iterator[tuple[sa.Engine, str]]:
    with fresh_pg_database() as (_admin, name):
        engine = sa.create_engine(pg_url(name))
        try:
            yield engine, pg_url(name)
        finally:
            engine.dispose()


def _pg_dump(engine: sa.Engine) -> list[Any]:
    with engine.connect() as connection:
        tables = sorted(sa.inspect(connection).get_table_names())
        return [
            (table, sorted(map(tuple, connection.execute(sa.text(f'SELECT * FROM "{table}"')))))
            for table in tables
        ]


@pytest.mark.parametrize("fault", ["newer schema", "foreign tables"])
def test_postgres_database_that_is_not_what_it_seems(
    pg_database: tuple[sa.Engine, str], fault: str, in_tmp: Path, reliability_record: Any
) -> None:
    engine, url = pg_database
    if fault == "newer schema":
        with Store.open(url):
            pass
        with engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9001_next'"))
        expected = "written by a newer zoneout-study"
    else:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE studies (id INTEGER, title TEXT)"))
            connection.execute(sa.text("CREATE TABLE alembic_version (version_num TEXT)"))
        expected = "neither zoneout-study nor Optuna made"
    before = _pg_dump(engine)
    files = _files(in_tmp)
    messages = []
    for command in ALL_COMMANDS.values():
        result = CliRunner().invoke(app, [*command, "--storage", url])
        messages.append(one_line_error(result, single_line=True))
        assert expected in messages[-1], messages[-1]
    assert _pg_dump(engine) == before and _files(in_tmp) == files
    reliability_record(
        f"PostgreSQL database: {fault}",
        "`run`, `db upgrade`, `list`, `status`, `export`, `report` on it",
        f"exit 2 each, tables and rows unchanged; {messages[-1][:150]}",
    )


# ------------------------------------------------------------------ deleted elsewhere
@pytest.mark.ray
def test_a_study_deleted_through_another_client(
    ray_local: None, in_tmp: Path, reliability_record: Any
) -> None:
    url = f"sqlite:///{in_tmp / 'studies.db'}"
    spec = in_tmp / "spec.yaml"
    first = CliRunner().invoke(app, ["run", str(spec), "--storage", url, "--no-report"])
    assert first.exit_code == 0, first.output
    optuna.delete_study(study_name="known", storage=url)
    with sqlite3.connect(in_tmp / "studies.db") as connection:
        before = list(connection.iterdump())
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", url, "--no-report"])
    message = one_line_error(result, single_line=True)
    assert "deleted from Optuna's tables" in message, message
    with sqlite3.connect(in_tmp / "studies.db") as connection:
        assert list(connection.iterdump()) == before
    # What the store recorded is still read; saving figures into the study is refused.
    for command in (["status", "known"], ["export", "known", "--out", "ex"]):
        listed = CliRunner().invoke(app, [*command, "--storage", url])
        assert listed.exit_code == 0, listed.output
    saved = CliRunner().invoke(
        app, ["report", "known", "--storage", url, "--out", "rep", "--save-to-study"]
    )
    assert "not in Optuna's tables" in one_line_error(saved, single_line=True)
    assert not (in_tmp / "rep").exists()
    reliability_record(
        "Study deleted through another client",
        "`optuna.delete_study` on a finished study, then `run` of its spec",
        "exit 2, no new Optuna study, rows unchanged; status/export still read it; "
        + message[:120],
    )


@pytest.mark.ray
def test_a_refused_run_leaves_no_checkpoint_directory(ray_local: None, in_tmp: Path) -> None:
    spec = in_tmp / "big.yaml"
    spec.write_text(
        yaml.safe_dump({**GOOD, "name": "big", "resources": {"cpu": 64}}), encoding="utf-8"
    )
    url = f"sqlite:///{in_tmp / 'studies.db'}"
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", url, "--no-report"])
    assert "64" in one_line_error(result, single_line=True)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["big.yaml", "spec.yaml"]


def test_a_password_with_an_unencoded_at_is_refused_whole() -> None:
    result = CliRunner().invoke(
        app, ["list", "--storage", "postgresql://postgres:p@ss-word@127.0.0.1/x"]
    )
    message = one_line_error(result, single_line=True)
    assert "written %40" in message and "ss-word" not in message, message


def test_names_from_a_database_reach_the_terminal_as_text(in_tmp: Path) -> None:
    database = _study_db(in_tmp)
    _edit(
        database,
        "UPDATE zs_studies SET name = '[red]x[/red]' || char(27) || '[2J' || char(10) || 'y'",
    )
    result = CliRunner().invoke(app, ["list", "--storage", f"sqlite:///{database}"])
    assert result.exit_code == 0, result.output
    # Written out, not acted on (the table may fold the cell between the two).
    assert r"\x1b[" in result.output and r"2J\ny" in result.output
    assert chr(27) not in result.output and "\ny" not in result.output
    assert "[red]x[/red]" in result.output  # not read as markup either


def test_an_error_line_stays_short_whatever_it_quotes(in_tmp: Path) -> None:
    long_name = "x" * 5000
    result = CliRunner().invoke(app, ["list", "--storage", f"sqlite:///{long_name}.db"])
    message = one_line_error(result, single_line=True)
    assert len(message) < 1100, len(message)
