"""Export a study's best configurations as re-runnable trial configs.

Each file is a complete `TrialConfig` (what `zoneout-study train` takes unchanged) plus a
``_study`` block of provenance that the loader ignores: study, trial number, metric and value,
package versions, the masked storage URL. Never a password.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dashboards import Col
from study import keys
from study.errors import UserError
from study.store import Store, StoreError, mask_url, scrub_secrets
from trials.config import TrialConfig

__all__ = ["ExportError", "best_configs", "export_best"]


class ExportError(UserError, ValueError):
    """Nothing to export, or an unknown study."""


@dataclass(frozen=True)
class _Ranked:
    """One of the best trials, as the store keeps it."""

    number: int
    value: float  # its score (study.score): zs_trials.best_value, Optuna's value
    params: dict[str, Any]
    seeds: list[int]
    seed_values: list[float | None] | None  # each seed's score (zs_runs), None if unrecorded
    config: Any  # the config it ran (zs_trials.config), None if unrecorded


def _ranked(store: Store, study_name: str, spec: dict[str, Any], top: int) -> list[_Ranked]:
    """The ``top`` COMPLETE trials by score, best first: ranked by the database (ORDER BY ...
    LIMIT, the ranking ``study.optuna_study.best_complete`` gives), then only their rows read.
    A study's size costs nothing here."""
    numbers = store.ranked_complete(study_name, top)
    if not numbers:
        return []
    rows = store.trials_frame(study_name, numbers=numbers).to_dict("records")
    trials = {int(row[Col.NUMBER]): row for row in rows}
    runs: dict[int, list[tuple[int, float | None]]] = {}
    for run in store.runs_frame(study_name, numbers=numbers).to_dict("records"):
        value = run[Col.BEST_VALUE]
        best = None if value is None or math.isnan(value) else float(value)
        runs.setdefault(int(run[Col.NUMBER]), []).append((int(run[Col.SEED]), best))
    base_seed = int((spec.get("base") or {}).get("seed") or 0)  # frame-contract: not a column
    planned = [base_seed + index for index in range(int(spec.get("repeats") or 1))]
    ranked = []
    for number in numbers:
        row = trials[number]
        recorded = runs.get(number)
        ranked.append(
            _Ranked(
                number=number,
                value=float(row[Col.BEST_VALUE]),
                params=dict(row.get("params") or {}),
                # The seeds its runs ran (zs_runs); a database without them: the spec's, as the
                # searcher gave them (base seed, base seed + 1, ...).
                seeds=[seed for seed, _ in recorded] if recorded else planned,
                seed_values=[value for _, value in recorded] if recorded else None,
                config=row.get("config"),
            )
        )
    return ranked


def _source_trials(store: Store, study_name: str, numbers: list[int]) -> dict[int, Any]:
    """A promoted study's trials' source trials (``keys.SOURCE_TRIAL``, Optuna's user attributes:
    the store does not keep them). A promoted study holds its promotion's configurations (the
    top K and the named points, and retired trials' replacements): reading its Optuna trials
    costs no more than its promotion."""
    from study import optuna_study as ostudy

    wanted = set(numbers)
    study = ostudy.load_study(store.url, study_name)
    return {
        trial.number: trial.user_attrs.get(keys.SOURCE_TRIAL)
        for trial in ostudy.trials(study)
        if trial.number in wanted
    }


def best_configs(
    store: Store, study_name: str, *, top: int = 1
) -> list[tuple[TrialConfig, dict[str, Any]]]:
    """The ``top`` COMPLETE trials by value, as (config, provenance), best first."""
    try:
        spec = store.study_spec(study_name)
    except StoreError as error:  # an unknown study; anything else is a bug, not bad input
        raise ExportError(f"no study named {study_name!r} in {mask_url(store.url)}") from error
    complete = _ranked(store, study_name, spec, top)
    if not complete:
        raise ExportError(f"study {study_name!r} has no COMPLETE trial to export yet")
    base = dict(spec.get("base") or {})
    _refuse_foreign_trials(study_name, base, complete)
    # The study row is the one place the metric (and the versions) are read from.
    study_row = store.studies_frame().set_index("name").loc[study_name]
    promotion = (spec.get("promote") or {}).get("study")  # frame-contract: not a column
    sources = _source_trials(store, study_name, [t.number for t in complete]) if promotion else {}
    results = []
    for rank, trial in enumerate(complete, start=1):
        seeds = trial.seeds
        config = TrialConfig.model_validate(
            {
                **base,
                **trial.params,
                "seed": seeds[0],  # frame-contract: not a column (a TrialConfig key)
            }
        )
        if config.threads is None:
            # The trial ran with torch threads = the CPUs Ray gave it; the same thread count
            # makes the floating-point reductions, and so the numbers, the same.
            cpus = float((spec.get("resources") or {}).get("cpu", 1))
            config = config.model_copy(update={"threads": max(1, int(cpus))})
        provenance: dict[str, Any] = {
            "study": study_name,  # frame-contract: not a column (a key of the provenance file)
            "rank": rank,
            "trial_number": trial.number,
            "metric": study_row["metric"],
            "value": trial.value,
            "seeds": seeds,
            "seed_values": trial.seed_values,
            "score": "mean over seeds of each seed's best validation value",
            "params": dict(trial.params),
            "storage": mask_url(store.url),
            "package_versions": study_row["versions"],
        }
        if promotion:
            # A promoted study (study.ladder): the small-scale trial this configuration came from.
            provenance["promoted_from"] = {
                "study": promotion,  # frame-contract: not a column (a key of the provenance file)
                "trial": sources.get(trial.number),
            }
        results.append((config, scrub_secrets(provenance)))
    return results


# Fields of a trial config that say where or how fast it ran, not what it computed.
_RUN_ONLY_FIELDS = frozenset({"threads", "data_dir", "device"})


def _refuse_foreign_trials(study_name: str, base: dict[str, Any], trials: list[_Ranked]) -> None:
    """An exported file must retrain its trial: refuse trials whose stored config is not the
    study's spec with the trial's parameters (a study rerun under its name with another spec,
    before such reruns were refused), naming each trial and field."""
    problems = []
    for trial in trials:
        ran = trial.config
        if not isinstance(ran, dict):
            continue
        expected = {**base, **trial.params}
        differing = sorted(
            key
            for key in set(expected) & set(ran)
            if key not in _RUN_ONLY_FIELDS
            and key != "seed"  # frame-contract: not a column (a TrialConfig key)
            and ran[key] != expected[key]
        )
        if differing:
            shown = ", ".join(f"{k} {ran[k]!r} (spec: {expected[k]!r})" for k in differing[:4])
            problems.append(f"trial {trial.number} ran {shown}")
    if problems:
        raise ExportError(
            f"study {study_name!r} holds trials that its spec did not make, so an export would "
            f"not retrain them: {'; '.join(problems)}. Rerun the spec under a new name"
        )


def export_best(
    store: Store,
    study_name: str,
    *,
    top: int = 1,
    fmt: Literal["yaml", "json"] = "yaml",
    out_dir: Path | str = ".",
) -> list[Path]:
    """Write the best configurations to ``out_dir``; returns the paths written."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for config, provenance in best_configs(store, study_name, top=top):
        data: dict[str, Any] = {**config.to_dict(), "_study": provenance}
        name = f"{study_name}-rank{provenance['rank']}-trial{provenance['trial_number']}.{fmt}"
        path = directory / name
        if fmt == "yaml":
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        else:
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
