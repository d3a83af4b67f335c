"""Export a study's best configurations as re-runnable trial configs.

Each file is a complete `TrialConfig` (what `zoneout-study train` takes unchanged) plus a
``_study`` block of provenance that the loader ignores: study, trial number, metric and value,
package versions, the masked storage URL. Never a password.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml
from optuna.trial import TrialState

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
    study = optuna.load_study(study_name=study_name, storage=store.url)
    complete = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trial.value is not None
    ]
    if not complete:
        raise ExportError(f"study {study_name!r} has no COMPLETE trial to export yet")
    complete.sort(key=lambda trial: trial.value)  # type: ignore[arg-type,return-value]
    base = dict(spec.get("base") or {})
    versions = store.studies_frame().set_index("name").get("versions")
    results = []
    for rank, trial in enumerate(complete[:top], start=1):
        seeds = trial.user_attrs.get("seeds") or [base.get("seed", 0)]
        config = TrialConfig.model_validate({**base, **trial.params, "seed": seeds[0]})
        if config.threads is None:
            # The trial ran with torch threads = the CPUs Ray gave it; the same thread count
            # makes the floating-point reductions, and so the numbers, the same.
            cpus = float((spec.get("resources") or {}).get("cpu", 1))
            config = config.model_copy(update={"threads": max(1, int(cpus))})
        provenance: dict[str, Any] = {
            "study": study_name,
            "rank": rank,
            "trial_number": trial.number,
            "metric": spec.get("metric") or study.user_attrs.get("metric"),
            "value": trial.value,
            "seeds": seeds,
            "seed_values": trial.user_attrs.get("seed_values"),
            "params": dict(trial.params),
            "storage": mask_url(store.url),
            "package_versions": (versions.get(study_name) if versions is not None else None),
        }
        results.append((config, scrub_secrets(provenance)))
    return results


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
