"""The SQL store of zoneout-study (SQLAlchemy 2.0 + Alembic).

Optuna (``RDBStorage``) and this store share one database URL. The store's tables are
prefixed ``zs_`` (``zs_studies``, ``zs_trials``, ``zs_epochs``, ``zs_runs``) and its Alembic
version lives in ``zs_alembic_version``, so Optuna's tables and ``alembic_version`` are never
touched.

The Ray Tune driver-side callback is the only writer; dashboards read through
:meth:`Store.studies_frame`, :meth:`Store.trials_frame` and :meth:`Store.epochs_frame`.

A new migration, from code (no alembic.ini)::

    from alembic import command
    from study.store import alembic_config
    command.revision(alembic_config(url), message="...", autogenerate=True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._engine import create_engine_for, normalize_url, retry_connect
from ._errors import StoreError
from ._models import SCHEMA_REVISIONS, VERSION_TABLE
from ._probe import (
    OPTUNA_TABLES,
    Access,
    DatabaseSchema,
    SchemaState,
    check_writable_storage,
    inspect_database,
    open_read_only,
)
from ._retry import retry_call
from ._secrets import default_storage_url, mask_url, resolve_storage_url, scrub_secrets
from ._store import TRIAL_FIELDS, RunRecord, Store

if TYPE_CHECKING:
    from ._migrate import alembic_config, current_revision, head_revision, upgrade

# Alembic loads only where the schema is looked at or changed (`run`, `db upgrade`): the read
# commands never migrate, and importing it costs them a good part of their start (PEP 562).
_MIGRATE = ("alembic_config", "current_revision", "head_revision", "upgrade")


def __getattr__(name: str) -> Any:
    if name not in _MIGRATE:
        raise AttributeError(f"module 'study.store' has no attribute {name!r}")
    value = getattr(importlib.import_module("._migrate", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    "OPTUNA_TABLES",
    "SCHEMA_REVISIONS",
    "TRIAL_FIELDS",
    "VERSION_TABLE",
    "Access",
    "DatabaseSchema",
    "RunRecord",
    "SchemaState",
    "Store",
    "StoreError",
    "alembic_config",
    "check_writable_storage",
    "create_engine_for",
    "current_revision",
    "default_storage_url",
    "head_revision",
    "inspect_database",
    "mask_url",
    "normalize_url",
    "open_read_only",
    "resolve_storage_url",
    "retry_call",
    "retry_connect",
    "scrub_secrets",
    "upgrade",
]
