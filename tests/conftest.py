"""Fixtures shared by the whole suite.

* ``ray_local``: one local Ray instance (2 CPUs) started once, inside a short temp dir.
* ``store_url``: a test runs on a fresh SQLite file and on a fresh PostgreSQL database.
  PostgreSQL: every test gets a database ``zs_test_<random>`` created through
  ``$ZONEOUT_TEST_PG_ADMIN_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
  and dropped WITH (FORCE) afterwards. An unreachable server skips those tests locally and
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
from sqlalchemy.engine import make_url

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


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


PG_ADMIN_URL = os.environ.get(
    "ZONEOUT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the PostgreSQL maintenance database (skip / fail if down)."""
    admin = make_url(PG_ADMIN_URL)
    # pool_pre_ping: a server restarted by a fault-injection test must not break teardown.
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
    with pg_admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
