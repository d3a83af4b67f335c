"""Engine construction for SQLite and PostgreSQL, connection checks and a small retry helper."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from ._errors import StoreError
from ._retry import retry_call
from ._secrets import mask_url, to_json_safe
from ._url_options import check_url_options

__all__ = [
    "create_engine_for",
    "normalize_url",
    "retry_connect",
    "run_with_retry",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
_LOCKED_RETRIES = 5
# How long a new connection to a server that was reachable keeps being retried (a restart).
RECONNECT_SECONDS = 60.0

T = TypeVar("T")


def _parse(url: str) -> URL:
    text = url.strip() if isinstance(url, str) else url
    if not isinstance(text, str) or not text:
        raise StoreError(f"invalid storage URL {mask_url(str(url))!r}: expected an SQLAlchemy URL")
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"invalid storage URL {mask_url(text)!r}: {_first_line(exc)} "
            "(expected e.g. sqlite:///studies.db or postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.host and "@" in parsed.host:
        # user:p@ss@host: SQLAlchemy ends the password at the first '@' and takes the rest of
        # it for the host, which every later message would print.
        raise StoreError(
            f"invalid storage URL {mask_url(text)!r}: more than one '@' before the host; an "
            "'@' in the user name or password is written %40"
        )
    check_url_options(parsed, text)
    return parsed


def normalize_url(url: str) -> str:
    """The URL the store actually connects to, as a string (password kept).

    ``postgres://`` and ``postgresql://`` without a driver become ``postgresql+psycopg://``
    (psycopg 3). Pass the same string to Optuna so both use the same driver.
    """
    return _parse(url).render_as_string(hide_password=False)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line


def _redact(message: str, url: URL) -> str:
    if url.password:
        message = message.replace(str(url.password), "***")
    return message


def _json_serializer(value: Any) -> str:
    # strict JSON: NaN / inf become null (PostgreSQL rejects NaN in json / jsonb)
    return json.dumps(to_json_safe(value), allow_nan=False, separators=(",", ":"))


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    # A reading command leaves the file as it found it: no switch to WAL (a header write), and
    # query_only turns any write that slipped in into an error instead of a change.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
        # locked" at once there instead of waiting out busy_timeout: drivers (or threads)
        # opening a fresh file together would fail. Wait for the lock like busy_timeout would.
        retry_call(
            lambda: cursor.execute("PRAGMA journal_mode = WAL"),
            retry_if=lambda error: "locked" in str(error),
            seconds=SQLITE_BUSY_TIMEOUT_MS / 1000,
            first_delay=0.05,
            max_delay=0.5,
        )
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster
    finally:
        cursor.close()


def _hint(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "check that the directory exists and is writable"
    host = url.host or "localhost"
    port = url.port or 5432
    return (
        f"check that the server is running and reachable at {host}:{port}, that database "
        f"{url.database!r} exists and that the user and password are right "
        "(--storage / ZONEOUT_STUDY_STORAGE)"
    )


def create_engine_for(url: str, *, check: bool = True, read_only: bool = False) -> sa.Engine:
    """Create an engine configured for the store and (by default) check that it connects.

    SQLite: WAL journal, ``busy_timeout`` of 30 s, foreign keys on (set on every connection).
    PostgreSQL: psycopg 3 driver, ``pool_pre_ping=True``, 10 s connect timeout.
    An unreachable database raises :class:`StoreError` naming the masked URL and what to check.
    ``read_only`` (SQLite): the journal mode is left as it is and writes are refused.
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": _json_serializer}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        if "application_name" not in parsed.query:
            connect_args["application_name"] = "zoneout-study"
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
    except (ArgumentError, ImportError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"cannot create an engine for {mask_url(str(parsed))}: "
            f"{_redact(_first_line(exc), parsed)} (check the driver in the URL is installed)"
        ) from None
    if backend == "sqlite":
        on_connect = _sqlite_on_connect_read_only if read_only else _sqlite_on_connect
        event.listen(engine, "connect", on_connect)
    if check:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except DBAPIError as exc:
            engine.dispose()
            reason = _redact(_first_line(exc), parsed)
            raise StoreError(
                f"cannot connect to database {mask_url(str(parsed))}: {reason}; {_hint(parsed)}"
            ) from None
        retry_connect(engine)
    return engine


class _Outages:
    """When each database this process connects to (by its masked URL) stopped answering.

    An outage is said once when it starts and once when it ends, however many connections (the
    store's engine, Optuna's) and attempts wait on it meanwhile. Measured when each attempt
    said it: a 40 s stop of the PostgreSQL server during a run printed 23 "unreachable ...
    retrying" lines, and a tester's 110 s outage 59."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}

    def failed(self, where: str, reason: str, seconds: float) -> None:
        with self._lock:
            if where in self._since:
                return
            self._since[where] = time.monotonic()
        log.warning(
            "database %s unreachable (%s); retrying the connection until it answers (up to "
            "%.0f s at a time)",
            where,
            reason,
            seconds,
        )

    def answered(self, where: str) -> None:
        with self._lock:
            since = self._since.pop(where, None)
        if since is not None:
            log.warning("database %s reachable again after %.0f s", where, time.monotonic() - since)


_OUTAGES = _Outages()


def retry_connect(engine: sa.Engine, *, seconds: float = RECONNECT_SECONDS) -> None:
    """Retry new PostgreSQL connections for up to ``seconds`` (no-op on other databases).

    ``pool_pre_ping`` replaces a pooled connection that a server restart killed, but the
    replacement is opened at once and fails while the server is still shutting down or
    starting up ("the database system is shutting down"). Attach this to an engine only once
    the database has been reached, so a wrong URL still fails fast. An outage is logged once
    when it starts and once when it ends (with its duration), not per attempt.
    """
    if engine.dialect.name != "postgresql":
        return
    url = engine.url
    where = mask_url(str(url))

    def _warn(exc: BaseException) -> None:
        _OUTAGES.failed(where, _redact(_first_line(exc), url), seconds)

    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        connection = retry_call(
            lambda: dialect.connect(*cargs, **cparams),
            retry_if=lambda exc: isinstance(exc, dialect.loaded_dbapi.OperationalError),
            seconds=seconds,
            on_retry=_warn,
        )
        _OUTAGES.answered(where)
        return connection

    event.listen(engine, "do_connect", _connect)


def _is_locked(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def run_with_retry(engine: sa.Engine, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
    """Run ``fn(connection)`` in a transaction (``write``) or a plain connection.

    Retried once when the connection turned out to be dead (e.g. a PostgreSQL restart that
    ``pool_pre_ping`` could not catch) and a few times on SQLite's ``database is locked``
    (the 30 s busy timeout already waits inside SQLite; this is a last resort).
    The store's writes are idempotent upserts, so re-running one is safe. An
    ``OperationalError`` that persists is raised as :class:`StoreError`.
    """
    invalidated_retried = False

    def _attempt() -> T:
        if write:
            with engine.begin() as conn:
                return fn(conn)
        with engine.connect() as conn:
            return fn(conn)

    def _retry_if(exc: BaseException) -> bool:
        nonlocal invalidated_retried
        if not isinstance(exc, DBAPIError):
            return False
        if exc.connection_invalidated and not invalidated_retried:
            invalidated_retried = True
            log.warning("store: database connection was lost; retrying once")
            return True
        return _is_locked(exc)

    try:
        return retry_call(
            _attempt,
            retry_if=_retry_if,
            attempts=_LOCKED_RETRIES + 2,
            first_delay=0.05,
            max_delay=0.4,
        )
    except OperationalError as exc:
        raise StoreError(
            f"database error on {mask_url(str(engine.url))}: "
            f"{_redact(_first_line(exc), engine.url)}"
        ) from exc
