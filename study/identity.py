"""A study's identity is its spec: what a rerun under the same name may change, and what not.

The first run of a study stores, in the Optuna study, two parts of its spec:

* the **identity**: the base trial config, the search space, the listed points, the metric, the
  direction, the sampler's kind, the number of seeds and what it promotes from where. A rerun
  whose identity differs is not
  the same study: its trials could not be compared with the stored ones (a digits error rate
  ranked as BPC, an export that retrains a config no trial ran). It is refused, naming the
  fields; the way on is a new study name.
* the **plan settings**: ``n_trials``, the scheduler, the sampler's seed and options, the
  failure policy. Changing them changes what the study goes on to run, not what the stored
  trials mean: a rerun that changes them is refused unless the user says so
  (``--accept-change``), and each accepted change is recorded with the time (``keys.SPEC_CHANGES``).

Where and how it runs (storage, Ray address, checkpoint path, resources, concurrency, the
description, the base's ``threads`` and ``data_dir``) may change freely: a study moves from a
laptop to a cluster. ``--n-trials`` on the command line caps one run and is no change at all.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trials.config import TrialConfig
from trials.tasks import metric_for_task

__all__ = ["SpecChange", "SpecSnapshot", "change_record", "differences", "snapshot_of"]

# Base fields that say where or how fast a trial runs, not what it computes.
_RUN_ONLY_BASE_FIELDS = frozenset({"threads", "data_dir"})


@dataclass(frozen=True)
class SpecChange:
    """One field (dotted path) whose stored and given values differ."""

    field: str
    stored: Any
    given: Any

    def describe(self) -> str:
        return f"{self.field}: stored {_short(self.stored)}, this spec {_short(self.given)}"


@dataclass(frozen=True)
class SpecSnapshot:
    identity: dict[str, Any]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"identity": self.identity, "settings": self.settings}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpecSnapshot:
        identity = dict(data["identity"])
        # Stored by an older program: a base field added since then has the default it had.
        identity["base"] = _jsonable(_identity_base(identity.get("base") or {}))
        return cls(identity=identity, settings=dict(data["settings"]))


def snapshot_of(spec: Mapping[str, Any]) -> SpecSnapshot:
    """The identity and plan settings of a spec given as its JSON dump (``model_dump(mode=
    'json')``): the same function reads a live spec and a snapshot stored by an older run."""
    base = _identity_base(spec.get("base") or {})
    sampler = spec.get("sampler") or {}
    identity = {
        "base": base,
        "search": spec.get("search") or {},
        "points": spec.get("points") or [],
        "metric": metric_for_task(base.get("task", "")) if base.get("task") else None,
        "direction": "minimize",
        "sampler": sampler.get("name", "tpe"),
        "repeats": spec.get("repeats", 1),
        # A promoted study is its source and what it promotes (study.ladder).
        "promote": spec.get("promote"),
    }
    settings = {
        "n_trials": spec.get("n_trials"),
        "scheduler": spec.get("scheduler") or {},
        "sampler_seed": sampler.get("seed"),  # frame-contract: not a column
        "sampler_options": sampler.get("options") or {},
        "failure": spec.get("failure") or {},
    }
    return SpecSnapshot(identity=_jsonable(identity), settings=_jsonable(settings))


def differences(
    stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str = ""
) -> list[SpecChange]:
    """Every leaf that differs between two snapshots' parts, as dotted paths."""
    changes: list[SpecChange] = []
    for key in sorted(set(stored) | set(given), key=str):
        path = f"{prefix}{key}"
        old, new = stored.get(key, _MISSING), given.get(key, _MISSING)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += differences(old, new, prefix=f"{path}.")
        elif old != new:
            changes.append(
                SpecChange(path, None if old is _MISSING else old, None if new is _MISSING else new)
            )
    return changes


def change_record(changes: list[SpecChange], driver_id: str) -> dict[str, Any]:
    """What ``keys.SPEC_CHANGES`` keeps for one accepted change."""
    return {
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "driver": driver_id,
        "changes": [{"field": c.field, "stored": c.stored, "given": c.given} for c in changes],
    }


class _Missing:
    def __repr__(self) -> str:
        return "absent"


_MISSING: Any = _Missing()


def _identity_base(base: Mapping[str, Any]) -> dict[str, Any]:
    """The base fields that say what a trial computes, every TrialConfig field present."""
    return {k: v for k, v in _full_base(base).items() if k not in _RUN_ONLY_BASE_FIELDS}


def _full_base(base: Mapping[str, Any]) -> dict[str, Any]:
    """The base with every TrialConfig field: a snapshot written before a field existed has its
    default, so a newer program does not see a change nobody made."""
    full = {}
    for name, field in TrialConfig.model_fields.items():
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        full[name] = base.get(name, default)
    for name, value in base.items():  # a field this program no longer knows stays visible
        full.setdefault(name, value)
    return full


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
