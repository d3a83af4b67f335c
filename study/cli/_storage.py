"""The ``--storage`` option: the database URL it names, the store opened on it (read-only for
the commands that only read, never created), and a study required to be there. What a URL holds
is the store's to find out (:mod:`study.store`); the commands only ask."""

from __future__ import annotations

from typing import Any

import typer

from study.cli._base import close_at_exit


def storage_option() -> Any:
    return typer.Option(
        "--storage",
        help="SQLAlchemy URL (default: $ZONEOUT_STUDY_STORAGE or sqlite:///zoneout-studies.db)",
    )


def resolve_storage(storage: str | None) -> str:
    from study.store import default_storage_url

    return storage or default_storage_url()


def open_store(storage: str | None) -> Any:
    """The store for a command that only reads: never creates a database or its tables (a
    mistyped SQLite path is 'no such database', not a new empty one) and never migrates. It is
    closed when the command ends."""
    from study.store import open_read_only

    store = open_read_only(resolve_storage(storage))
    close_at_exit(store.close)
    return store


def _study_names(store: Any) -> list[str]:
    return [str(name) for name in store.studies_frame()["name"]]


def require_study(store: Any, study_name: str) -> None:
    """A study the store knows, else one line naming the studies it does know."""
    from study.store import StoreError, mask_url

    names = _study_names(store)
    if study_name not in names:
        there = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none"
        raise StoreError(
            f"no study named {study_name!r} in {mask_url(store.url)}; studies there: {there}"
        )
