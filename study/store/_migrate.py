"""Alembic, driven from code: no alembic.ini; the version table is ``zs_alembic_version``."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ._engine import create_engine_for, run_with_retry
from ._models import VERSION_TABLE

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Serialises concurrent upgrades of one PostgreSQL database (two drivers starting at once).
_PG_LOCK_KEY = 0x7A5F5354  # "zs_ST"
# Alembic's ``context`` / ``op`` are module-level proxies: one migration at a time per process.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for the store's migrations, built in code.

    With ``url``, ``sqlalchemy.url`` is set so Alembic commands that open their own connection
    (``command.revision(cfg, autogenerate=True)``) work; :func:`upgrade` passes a connection.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of the store."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade_engine(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the store's tables through ``engine`` (one transaction where the backend allows)."""
    cfg = alembic_config()

    def _run(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            # pysqlite runs DDL outside transactions; take the write lock up front so the
            # migration is atomic and concurrent upgraders wait (busy_timeout) in turn.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        with _ALEMBIC_LOCK:
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, revision)
            finally:
                cfg.attributes.pop("connection", None)

    run_with_retry(engine, _run, write=True)


def revision_of(engine: sa.Engine) -> str | None:
    def _read(conn: sa.Connection) -> str | None:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()

    return run_with_retry(engine, _read, write=False)


def upgrade(url: str, revision: str = "head") -> None:
    """Create or upgrade the store's tables in the database at ``url``. Idempotent."""
    engine = create_engine_for(url)
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The store's schema revision in the database at ``url``; ``None`` if never created."""
    engine = create_engine_for(url)
    try:
        return revision_of(engine)
    finally:
        engine.dispose()
