"""Fixtures shared by the whole suite (helpers they use: tests/support.py).

* ``ray_local``: one local Ray instance (2 CPUs) started once, inside a short temp dir.
* ``own_ray_tmpdir``: a short RAY_TMPDIR for a test's own driver subprocess; every process
  naming it is killed at teardown.
* ``store_url``: a test runs on a fresh SQLite file and on a fresh PostgreSQL database.
  PostgreSQL: every test gets a database ``zs_test_<random>`` created through
  ``$ZONEOUT_TEST_PG_ADMIN_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
  and dropped WITH (FORCE) afterwards; CREATE / DROP DATABASE are retried for a while, as other
  tests restart the server on purpose. An unreachable server skips those tests locally and
  fails them when ``$CI`` is set: in CI the PostgreSQL promise is tested, never skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import (
    connect_pg_admin,
    create_database,
    driver_ray_tmpdir,
    drop_database,
    pg_url,
)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_tmpdir() -> Iterator[str]:
    # Short path: Ray's unix sockets live under it and must stay under 108 characters.
    path = tempfile.mkdtemp(prefix="zs-ray-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local(ray_tmpdir: str) -> Iterator[None]:
    """One local Ray for the in-process study tests (2 CPUs), shut down at the end."""
    import ray

    os.environ["RAY_TMPDIR"] = ray_tmpdir
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        _temp_dir=ray_tmpdir,
    )
    yield
    ray.shutdown()


@pytest.fixture
def own_ray_tmpdir() -> Iterator[str]:
    """RAY_TMPDIR for a driver subprocess that starts its own Ray; its processes die after."""
    with driver_ray_tmpdir() as path:
        yield path


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the PostgreSQL maintenance database (skip / fail if down)."""
    engine = connect_pg_admin()
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(pg_admin_engine: sa.Engine) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"zs_test_{uuid.uuid4().hex[:16]}"
    create_database(pg_admin_engine, name)
    try:
        yield pg_url(name)
    finally:
        drop_database(pg_admin_engine, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest) -> str:
    """An empty database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
