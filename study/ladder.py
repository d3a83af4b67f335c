"""The scale ladder: a study that runs another study's best configurations on a larger base.

Researchers search small (fewer epochs, less data, a smaller model) and then train big. A spec
with ``promote: {study: SMALL, top: K, points: [...]}`` runs, on its own base and with its own
seeds, the K configurations of SMALL with the best score (study.score) plus the named points
(the unregularized one, the paper's). The promotion is resolved once, by the study's first run,
and stored in the study (``keys.PROMOTED_FROM``): a rerun continues the same configurations even
if SMALL has grown since. Each trial records the source trial its configuration came from
(``keys.SOURCE_TRIAL``); export carries both. ``report`` then says how well the small scale
predicted the large (dashboards.scale_agreement).

:func:`promotion_spec` writes such a spec from a finished study (``zoneout-study promote``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from study import keys
from study import optuna_study as ostudy
from study.errors import UserError
from study.plan import point_key
from study.rescore import needs_rescore
from study.spec import StudySpec
from trials.config import TrialConfig

__all__ = ["LadderError", "PromotedPoint", "Promotion", "promoted_spec", "promotion_spec"]


class LadderError(UserError):
    """A promotion that cannot be resolved: no such source study, another search space, ..."""


@dataclass(frozen=True)
class PromotedPoint:
    """One configuration a promoted study runs, and where it came from."""

    params: dict[str, Any]
    source_trial: int | None  # the source study's trial with these parameters, if it ran them
    source_value: float | None  # that trial's score at the small scale
    why: str  # 'top 1', 'top 2', ..., or 'named'


@dataclass(frozen=True)
class Promotion:
    """What a promoted study runs, resolved from its source once."""

    source: str
    top: int
    points: list[PromotedPoint]

    def to_json(self) -> dict[str, Any]:
        return {
            "study": self.source,  # frame-contract: not a column (the promote key)
            "top": self.top,
            "points": [
                {
                    "params": p.params,
                    "source_trial": p.source_trial,
                    "source_value": p.source_value,
                    "why": p.why,
                }
                for p in self.points
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Promotion:
        return cls(
            source=str(data["study"]),  # frame-contract: not a column (the promote key)
            top=int(data["top"]),
            points=[
                PromotedPoint(
                    params=dict(p["params"]),
                    source_trial=p.get("source_trial"),
                    source_value=p.get("source_value"),
                    why=str(p.get("why", "")),
                )
                for p in data["points"]
            ],
        )

    def line(self) -> str:
        """What the study runs, in one line for the terminal."""
        top = sum(1 for p in self.points if p.why != "named")
        named = len(self.points) - top
        return (
            f"promoted from study {self.source!r}: its top {top} configurations by score"
            + (f" and {named} named point(s)" if named else "")
            + ", each with this study's seeds"
        )

    def source_trials(self, names: Sequence[str]) -> dict[tuple[Any, ...], int]:
        """Point key -> source trial number, for the promoted points the source ran."""
        return {
            point_key(p.params, names): p.source_trial
            for p in self.points
            if p.source_trial is not None
        }


def resolve(spec: StudySpec, url: str) -> Promotion:
    """The configurations ``spec.promote`` names, read from its source study in ``url``."""
    assert spec.promote is not None
    promote = spec.promote
    try:
        source = ostudy.load_study(url, promote.study)
    except KeyError:
        raise LadderError(
            f"promote.study: no study named {promote.study!r} in this storage; run it first "
            "(`zoneout-study list` shows the studies)"
        ) from None
    if needs_rescore(source):
        raise LadderError(
            f"promote.study: study {promote.study!r} holds values of an older definition; run "
            "`zoneout-study db upgrade` first so its configurations are ranked by the score"
        )
    ranked = ostudy.best_complete(source, top=ostudy.counted_trials(source) or 1)
    names = tuple(spec.search)
    other = {name for trial in ranked for name in trial.params} - set(names)
    missing = set(names) - {name for trial in ranked for name in trial.params}
    if ranked and (other or missing):
        raise LadderError(
            f"promote.study: study {promote.study!r} searched "
            f"{', '.join(sorted(ranked[0].params))}; this spec searches {', '.join(names)}: "
            "a promoted study searches the same parameters"
        )
    points: list[PromotedPoint] = []
    seen: set[tuple[Any, ...]] = set()
    for trial in ranked:
        if len(points) == promote.top:
            break
        key = point_key(trial.params, names)
        if key in seen:
            continue  # the same configuration run twice: promoted once
        seen.add(key)
        points.append(
            PromotedPoint(dict(trial.params), trial.number, trial.value, f"top {len(points) + 1}")
        )
    if len(points) < promote.top:
        raise LadderError(
            f"promote.top: study {promote.study!r} has {len(points)} complete configurations, "
            f"fewer than top {promote.top}; lower top or let it finish"
        )
    by_key = {point_key(t.params, names): t for t in reversed(ranked)}  # the best of repeats
    for params in promote.points:
        key = point_key(params, names)
        if key in seen:
            continue  # already among the top K
        seen.add(key)
        ran = by_key.get(key)
        points.append(
            PromotedPoint(
                dict(params),
                ran.number if ran else None,
                ran.value if ran else None,
                "named",
            )
        )
    spec.check_points([p.params for p in points], "promote (resolved)")
    return Promotion(promote.study, promote.top, points)


def promoted_spec(spec: StudySpec, study: optuna.Study, url: str) -> tuple[StudySpec, Promotion]:
    """``spec`` with its plan set to the promoted configurations (``points`` and ``n_trials``),
    resolved by the first run and stored in ``study``; later runs read the stored ones."""
    stored = ostudy.study_attrs(study).get(keys.PROMOTED_FROM)
    if stored is not None:
        promotion = Promotion.from_json(stored)
    else:
        promotion = resolve(spec, url)
        ostudy.set_study_attrs(study, {keys.PROMOTED_FROM: promotion.to_json()})
    points = [p.params for p in promotion.points]
    return spec.model_copy(update={"points": points, "n_trials": len(points)}), promotion


def promotion_spec(
    source_spec: Mapping[str, Any],
    *,
    source: str,
    name: str,
    top: int,
    points: Sequence[Mapping[str, Any]],
    base_updates: Mapping[str, Any],
    repeats: int | None,
) -> dict[str, Any]:
    """A promoted study's spec (as a dict for YAML) from the source's stored spec: the
    source's base with ``base_updates``, its search space, and ``promote``."""
    base = {**dict(source_spec.get("base") or {}), **dict(base_updates)}
    spec: dict[str, Any] = {
        "name": name,
        "description": f"the top {top} of {source}, promoted to a larger base",
        "base": _without_defaults(base),
        "search": source_spec.get("search") or {},
        "promote": {
            "study": source,  # frame-contract: not a column (the promote key)
            "top": top,
            "points": [dict(p) for p in points],
        },
        "repeats": repeats if repeats is not None else source_spec.get("repeats", 1),
        "max_concurrent_trials": source_spec.get("max_concurrent_trials", 2),
        "sampler": {"name": (source_spec.get("sampler") or {}).get("name", "tpe")},
        "scheduler": {"name": "none"},
    }
    for key in ("resources", "checkpoint_path"):
        if source_spec.get(key) is not None:
            spec[key] = source_spec[key]
    return spec


def _without_defaults(base: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a stored base that differ from TrialConfig's defaults (the task always):
    the written spec shows what the study chose, not every field it inherited."""
    fields = TrialConfig.model_fields
    kept = {}
    for key, value in base.items():
        field = fields.get(key)
        inherited = (
            key != "task"
            and field is not None
            and not field.is_required()
            and value == field.get_default(call_default_factory=True)
        )
        if not inherited:
            kept[key] = value
    return kept
