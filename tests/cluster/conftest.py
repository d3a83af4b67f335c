"""Fixtures for the cluster tests: a fresh PostgreSQL database per test.

The same contract as tests/study/conftest.py (``$ZONEOUT_TEST_PG_ADMIN_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; an unreachable server skips the test
locally and FAILS it when ``$CI`` is set), made robust to a server that restarts while the
suite runs (other tests restart PostgreSQL on purpose): the admin engine pings pooled
connections before use, and CREATE / DROP DATABASE are retried for a short while.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.study.conftest import PG_ADMIN_URL


def _retry(action: Callable[[], None], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            action()
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the PostgreSQL maintenance database (skip / fail if down)."""
    admin = make_url(PG_ADMIN_URL)
    engine = sa.create_engine(
        admin,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        msg = (
            f"PostgreSQL is not reachable at {admin.render_as_string(hide_password=True)} "
            f"({reason}); set ZONEOUT_TEST_PG_ADMIN_URL or start the server"
        )
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(pg_admin_engine: sa.Engine) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"zs_test_{uuid.uuid4().hex[:16]}"

    def execute(statement: str) -> Callable[[], None]:
        def run() -> None:
            with pg_admin_engine.connect() as conn:
                conn.execute(sa.text(statement))

        return run

    _retry(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _retry(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
