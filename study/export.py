"""Export a study's best configurations as re-runnable trial configs.

Each file is a complete `TrialConfig` (what `zoneout-study train` takes unchanged) plus a
``_study`` block of provenance that the loader ignores: study, trial number, metric and value,
package versions, the masked storage URL. Never a password.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml

from dashboards import Col
from study import keys
from study import optuna_study as ostudy
from study.errors import UserError
from study.store import Store, StoreError, mask_url, scrub_secrets
from trials.config import TrialConfig

__all__ = ["ExportError", "best_configs", "export_best"]


class ExportError(UserError, ValueError):
    """Nothing to export, or an unknown study."""


def best_configs(
    store: Store, study_name: str, *, top: int = 1
) -> list[tuple[TrialConfig, dict[str, Any]]]:
    """The ``top`` COMPLETE trials by value, as (config, provenance), best first."""
    try:
        spec = store.study_spec(study_name)
    except StoreError as error:  # an unknown study; anything else is a bug, not bad input
        raise ExportError(f"no study named {study_name!r} in {mask_url(store.url)}") from error
    complete = ostudy.best_complete(ostudy.load_study(store.url, study_name), top=top)
    if not complete:
        raise ExportError(f"study {study_name!r} has no COMPLETE trial to export yet")
    base = dict(spec.get("base") or {})
    _refuse_foreign_trials(store, study_name, base, complete)
    # The study row is the one place the metric (and the versions) are read from.
    study_row = store.studies_frame().set_index("name").loc[study_name]
    results = []
    for rank, trial in enumerate(complete, start=1):
        seeds = trial.user_attrs.get(keys.SEEDS) or [
            base.get("seed", 0)  # frame-contract: not a column (a TrialConfig key)
        ]
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
            "seed_values": trial.user_attrs.get(keys.SEED_VALUES),
            "score": "mean over seeds of each seed's best validation value",
            "params": dict(trial.params),
            "storage": mask_url(store.url),
            "package_versions": study_row["versions"],
        }
        promotion = (spec.get("promote") or {}).get("study")  # frame-contract: not a column
        if promotion:
            # A promoted study (study.ladder): the small-scale trial this configuration came from.
            provenance["promoted_from"] = {
                "study": promotion,  # frame-contract: not a column (a key of the provenance file)
                "trial": trial.user_attrs.get(keys.SOURCE_TRIAL),
            }
        results.append((config, scrub_secrets(provenance)))
    return results


# Fields of a trial config that say where or how fast it ran, not what it computed.
_RUN_ONLY_FIELDS = frozenset({"threads", "data_dir", "device"})


def _refuse_foreign_trials(
    store: Store, study_name: str, base: dict[str, Any], trials: list[Any]
) -> None:
    """An exported file must retrain its trial: refuse trials whose stored config is not the
    study's spec with the trial's parameters (a study rerun under its name with another spec,
    before such reruns were refused), naming each trial and field."""
    frame = store.trials_frame(study_name)
    if "config" not in frame:
        return
    configs = dict(zip(frame[Col.NUMBER], frame["config"], strict=True))
    problems = []
    for trial in trials:
        ran = configs.get(trial.number)
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
