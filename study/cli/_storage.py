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


def check_writable(url: str) -> None:
    """The database at ``url`` is one `run` and `db upgrade` may change: the store's check
    (what the file or server holds, and that this user may write it), then, where Optuna's
    tables are there, Optuna's schema, before anything is changed or Ray starts."""
    from study.store import check_writable_storage

    if check_writable_storage(url).has_optuna_tables:
        from study.optuna_study import check_schema

        check_schema(url)


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


def require_study(store: Any, study_name: str, *, names_files: bool = False) -> None:
    """A study the store knows, else one line naming the studies it does know. ``names_files``:
    the command names files and directories after the study, so the name must be one `run`
    would accept: a database made elsewhere (a shared server, a file from someone else) can
    hold any name, '../../x' included, and the name must not lead out of the output directory."""
    from study.spec import STUDY_NAME
    from study.store import StoreError, mask_url
    from trials.config import shown

    def plain(name: str) -> str:  # a name `run` would accept as it is; any other quoted, cut
        return name if STUDY_NAME.match(name) and ".." not in name else shown(name)

    names = _study_names(store)
    if study_name not in names:
        there = ", ".join(plain(name) for name in names[:20]) if names else "none"
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        raise StoreError(
            f"no study named {shown(study_name)} in {mask_url(store.url)}; studies there: "
            f"{there}{more}"
        )
    if names_files and plain(study_name) != study_name:
        raise StoreError(
            f"study {shown(study_name)} in {mask_url(store.url)} has a name that is not a safe "
            "file name (it was stored by another program or client; `run` accepts 1-100 "
            "letters, digits, '_', '-', '.'): nothing written"
        )
