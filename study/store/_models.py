"""ORM models of the store's tables (``zs_*``; Optuna owns the unprefixed names)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "SCHEMA_REVISIONS",
    "VERSION_TABLE",
    "Base",
    "EpochRow",
    "RunRow",
    "StudyRow",
    "TrialRow",
    "UTCDateTime",
    "utcnow",
]

VERSION_TABLE = "zs_alembic_version"
# Every schema revision this program ships, oldest first (the migrations' own chain, which a test
# checks this against): the read commands tell an older or newer database without loading
# Alembic.
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON everywhere; JSONB on PostgreSQL (queryable, compact). Values are sanitised before
# binding (non-finite floats -> null) because strict JSON has no NaN.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# 64-bit ids where rows can be many; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class UTCDateTime(TypeDecorator[_dt.datetime]):
    """Timezone-aware UTC datetimes on every backend.

    Naive values are taken to be UTC. SQLite stores the UTC wall time; PostgreSQL stores
    ``timestamptz``. Values always come back aware, in UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, _dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = (
            value.replace(tzinfo=_dt.timezone.utc)
            if value.tzinfo is None
            else value.astimezone(_dt.timezone.utc)
        )
        if dialect.name == "sqlite":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_dt.timezone.utc)
        return value.astimezone(_dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class StudyRow(Base):
    __tablename__ = "zs_studies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    direction: Mapped[str] = mapped_column(sa.String(16))
    metric: Mapped[str] = mapped_column(sa.String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    versions: Mapped[dict[str, str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime())
    optuna_study_id: Mapped[int | None] = mapped_column(sa.Integer)


class TrialRow(Base):
    __tablename__ = "zs_trials"
    __table_args__ = (sa.UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("zs_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    ray_trial_id: Mapped[str | None] = mapped_column(sa.String(255))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    seed: Mapped[int | None] = mapped_column(sa.BigInteger)
    state: Mapped[str] = mapped_column(sa.String(16))
    best_value: Mapped[float | None] = mapped_column(sa.Float)
    final_value: Mapped[float | None] = mapped_column(sa.Float)
    epochs: Mapped[int | None] = mapped_column(sa.Integer)
    wall_seconds: Mapped[float | None] = mapped_column(sa.Float)
    node: Mapped[str | None] = mapped_column(sa.String(255))
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Why the service retired the trial (a study.plan.Retired value: 'interrupted',
    # 'driver_lost', 'infrastructure'): FAIL, not counted, continued by a replacement. NULL
    # for every other trial.
    retired: Mapped[str | None] = mapped_column(sa.String(32))
    # Why the trial ended (a study.plan.TrialEnd value: 'complete', 'pruned', 'failed',
    # 'diverged', 'interrupted', 'driver_lost', 'infrastructure'), written with its final
    # state; NULL while it runs. The one fact readers take how a trial ended from: ``error``
    # is display text. For a retired trial ``retired`` holds the same value (migration 0004).
    end_reason: Mapped[str | None] = mapped_column(sa.String(32))
    checkpoint: Mapped[str | None] = mapped_column(sa.Text)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    started_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime())


class EpochRow(Base):
    __tablename__ = "zs_epochs"
    __table_args__ = (sa.UniqueConstraint("trial_id", "seed", "epoch"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trial_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("zs_trials.id", ondelete="CASCADE"))
    # NOT NULL so that the unique key works on every backend (NULLs are distinct in
    # unique constraints); record_epoch stores seed=None as 0.
    seed: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    epoch: Mapped[int] = mapped_column(sa.Integer)
    train_loss: Mapped[float | None] = mapped_column(sa.Float)
    valid_loss: Mapped[float | None] = mapped_column(sa.Float)
    valid_metric: Mapped[float | None] = mapped_column(sa.Float)
    tokens_per_second: Mapped[float | None] = mapped_column(sa.Float)
    seconds: Mapped[float | None] = mapped_column(sa.Float)
    recorded_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    """One seed's run of a trial and why it ended (a ``study.score.RunEnd`` value)."""

    __tablename__ = "zs_runs"
    __table_args__ = (sa.UniqueConstraint("trial_id", "seed"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trial_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("zs_trials.id", ondelete="CASCADE"))
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    ended: Mapped[str] = mapped_column(sa.String(16))
    epochs: Mapped[int | None] = mapped_column(sa.Integer)  # the last epoch it ran
    best_epoch: Mapped[int | None] = mapped_column(sa.Integer)
    best_value: Mapped[float | None] = mapped_column(sa.Float)  # its score (study.score)
    # The recurrent layer's path the run took (a trials.zoneout.LayerPath value, then
    # " (eval <path>)" when evaluation took another) and why it fell back from the preferred
    # path; NULL when it ran it, and for runs written before migration 0005.
    layer_path: Mapped[str | None] = mapped_column(sa.String(64))
    layer_fallback: Mapped[str | None] = mapped_column(sa.Text)
