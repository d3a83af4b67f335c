"""The query options of a SQLite storage URL, checked before SQLAlchemy sees them.

SQLAlchemy's pysqlite dialect converts its own options (``timeout``, ``check_same_thread``, ...)
with ``float()`` / ``asbool()`` and raises a bare ``ValueError`` from deep inside
``create_engine``; an option it does not know is passed on silently, so ``sqlite:///new?x.db``
names a file ``new`` with an option ``x.db``. Each option is checked here against what the
dialect and SQLite document, and a refusal names the option and what it accepts.
PostgreSQL options go to libpq, which names a bad one itself when the store connects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from sqlalchemy.engine import URL

from ._errors import StoreError
from ._secrets import mask_url

__all__ = ["check_url_options"]

_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})


def _boolean(value: str) -> str | None:
    if value.lower() in _TRUE | _FALSE:
        return None
    return "true or false"


def _seconds(value: str) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return "a number of seconds"
    return None if math.isfinite(number) and number >= 0 else "a finite number of seconds >= 0"


def _count(value: str) -> str | None:
    # SQLite's C API takes an int: a larger number would overflow inside the driver.
    fits = value.isascii() and value.isdigit() and int(value) < 2**31
    return None if fits else "a whole number from 0 to 2147483647"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else "one of " + ", ".join(choices)

    return check


# The options SQLAlchemy's pysqlite dialect reads from the URL (its create_connect_args).
_DIALECT_OPTIONS: Mapping[str, Callable[[str], str | None]] = {
    "timeout": _seconds,
    "check_same_thread": _boolean,
    "uri": _boolean,
    "cached_statements": _count,
    "detect_types": _count,
    "isolation_level": _one_of("SERIALIZABLE", "READ UNCOMMITTED", "AUTOCOMMIT"),
}
# With uri=true the rest become SQLite URI parameters (https://sqlite.org/uri.html).
_URI_OPTIONS: Mapping[str, Callable[[str], str | None]] = {
    "mode": _one_of("ro", "rw", "rwc", "memory"),
    "cache": _one_of("shared", "private"),
    "vfs": lambda value: None if value else "a VFS name",
    "immutable": _one_of("0", "1"),
    "nolock": _one_of("0", "1"),
    "psow": _one_of("0", "1"),
}


def check_url_options(url: URL, text: str) -> None:
    """Refuse a URL option that SQLAlchemy or SQLite would misread, naming it. ``text`` is the
    URL as given: SQLAlchemy drops a query item without ``=`` from ``url.query`` silently."""
    _, mark, query = text.partition("?")
    for item in query.split("&") if mark and query else ():
        if "=" not in item:
            raise StoreError(
                f"invalid storage URL {mask_url(text)!r}: {item[:40]!r} after '?' is not an "
                "option (name=value); a '?' in a file name is written %3F"
            )
    if url.get_backend_name() != "sqlite":
        return
    as_uri = str(url.query.get("uri", "false")).lower() in _TRUE
    if as_uri and not (url.database or "").startswith("file:"):
        # SQLAlchemy appends the other options to the path and SQLite, seeing no file: URI,
        # would create a file named e.g. "studies.db?mode=ro".
        raise StoreError(
            "invalid storage URL: uri=true needs a file: URI as the database, e.g. "
            "sqlite:///file:studies.db?uri=true&mode=ro"
        )
    for key, raw in url.query.items():
        values = (raw,) if isinstance(raw, str) else tuple(raw)
        check = _DIALECT_OPTIONS.get(key) or (_URI_OPTIONS.get(key) if as_uri else None)
        if check is None:
            known = sorted(_DIALECT_OPTIONS) + (sorted(_URI_OPTIONS) if as_uri else [])
            raise StoreError(
                f"invalid storage URL {mask_url(url.render_as_string(hide_password=False))!r}: "
                f"unknown SQLite option {key[:40]!r} (known: {', '.join(known)}); a '?' in a "
                "file name is written %3F"
            )
        if len(values) != 1:
            raise StoreError(f"invalid storage URL: SQLite option {key!r} is given twice")
        wanted = check(values[0])
        if wanted is not None:
            raise StoreError(
                f"invalid storage URL: SQLite option {key}={values[0][:40]!r} should be {wanted}"
            )
