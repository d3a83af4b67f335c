"""Alembic environment of the zoneout-study store.

Run programmatically (see ``study.store._migrate``): the caller passes an open connection in
``config.attributes["connection"]``. Without one (e.g. ``alembic -c`` use by a developer),
``sqlalchemy.url`` from the config, else the default storage URL, is used.

Only ``zs_*`` tables are considered, and the version is kept in ``zs_alembic_version``, so
Optuna's tables and its ``alembic_version`` table in the same database are never touched.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from study.store._models import VERSION_TABLE, Base


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table":
        return bool(name) and str(name).startswith("zs_") and name != VERSION_TABLE
    return True


def _configure_kwargs() -> dict[str, Any]:
    return {
        "target_metadata": Base.metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    from study.store._engine import normalize_url
    from study.store._secrets import default_storage_url

    url = context.config.get_main_option("sqlalchemy.url") or default_storage_url()
    context.configure(
        url=normalize_url(url),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_kwargs(),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_with_connection(connection: Any) -> None:
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        **_configure_kwargs(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_with_connection(connection)
        return
    from study.store._engine import create_engine_for
    from study.store._secrets import default_storage_url

    url = context.config.get_main_option("sqlalchemy.url") or default_storage_url()
    engine = create_engine_for(url)
    try:
        with engine.begin() as conn:
            _run_with_connection(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
