"""`zoneout-study compare`: Table 1 across regularizers.

Each source is a stored study (by name) or the CSV tables `status --csv` wrote (a path ending in
``-trials.csv``; its spec is the ``<study>.yaml`` beside it when present). A source that searches
a categorical ``regularizer``/``method`` parameter is split by its values. Per method the
configuration is selected on validation only (best mean over seeds at the full budget); a study
that ran the unregularized point (every zoneout/dropout rate 0) also gives an "unregularized" row,
and zoneout/dropout methods are selected among their non-zero settings. The test metric of each
selected configuration is computed once: from the best checkpoint of each seed when the
checkpoints are on this machine, or by retraining (``--test retrain``, or ``auto-or-retrain``
for only the methods whose checkpoints are not here), and marked as such. A retrained seed must
reproduce the validation value the study stored; the table says so when it does not.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dashboards import (
    PARAM_PREFIX,
    Col,
    Comparison,
    MethodResult,
    MetricInfo,
    compare_methods,
    save_note_section,
    seed_interval,
    select_configuration,
    write_comparison,
)
from study import keys, optuna_study
from study.errors import UserError
from study.report import StudyFrames, load_study_frames, load_table_frames, two_scale_section

if TYPE_CHECKING:
    from trials.config import TrialConfig

__all__ = ["CompareError", "CompareResult", "HeldOutMetric", "compare_studies"]

_SPLIT_PARAMS = ("regularizer", "method")


class CompareError(UserError):
    """The sources or the baseline given to `compare` cannot make a Table 1."""


class HeldOutMetric(str, Enum):
    """How the test metric of a selected configuration is obtained."""

    AUTO = "auto"
    """From each seed's best checkpoint when all are on this machine; else not computed."""
    AUTO_OR_RETRAIN = "auto-or-retrain"
    """From the checkpoints when all are on this machine; else by retraining that method."""
    RETRAIN = "retrain"
    """Retrain each seed of the selected configuration (same config, same numbers on CPU)."""
    NONE = "none"


@dataclass(frozen=True)
class CompareResult:
    comparison: Comparison
    markdown: str
    paths: dict[str, Path]
    messages: list[str]


@dataclass(frozen=True)
class _Source:
    frames: StudyFrames
    storage_url: str | None
    label: str


def _is_table(source: str) -> bool:
    return source.endswith("-trials.csv")


def _load(source: str, storage_url: str | None) -> _Source:
    if _is_table(source):
        frames = load_table_frames(source)
        if frames.trials.empty:
            # A study with no trial yet: as a source of Table 1 it can only be a wrong file.
            raise CompareError(f"{source}: the table holds no trial (only its header line)")
        return _Source(frames, None, frames.name)
    if storage_url is None:
        raise CompareError("a stored study needs a storage URL")
    frames = load_study_frames(storage_url, source)
    return _Source(frames, storage_url, source)


def _method_name(params: list[str], fallback: str) -> str:
    if any("zoneout" in p for p in params):
        return "zoneout"
    if any("recurrent_dropout" in p for p in params):
        return "recurrent dropout"
    if any("dropout" in p for p in params):
        return "dropout"
    return fallback


def _rate_params(trials: pd.DataFrame) -> list[str]:
    return [
        c
        for c in trials.columns
        if c.startswith(PARAM_PREFIX)
        and ("zoneout" in c or "dropout" in c)
        and pd.api.types.is_numeric_dtype(trials[c])
    ]


def _methods_of(src: _Source) -> list[tuple[str, StudyFrames]]:
    """(method, frames restricted to it) for one source."""
    f = src.frames
    params = [c.removeprefix(PARAM_PREFIX) for c in f.trials.columns if c.startswith(PARAM_PREFIX)]
    split = next((p for p in params if p in _SPLIT_PARAMS), None)
    groups: list[tuple[str, pd.DataFrame]] = []
    if split is not None:
        for value, part in f.trials.groupby(PARAM_PREFIX + split):
            groups.append((str(value), part.drop(columns=[PARAM_PREFIX + split])))
    else:
        groups.append((_method_name(params, src.label), f.trials))
    out = []
    for name, part in groups:
        rates = _rate_params(part)
        if rates:
            zero = (part[rates].astype(float) == 0).all(axis=1)
            if zero.any():
                out.append(("unregularized", replace(f, trials=part[zero])))
            if (~zero).any():
                out.append((name, replace(f, trials=part[~zero])))
        else:
            out.append((name, replace(f, trials=part)))
    return out


def _trial_configs(
    frames: StudyFrames, params: dict[str, object], seeds: list[int]
) -> list[TrialConfig]:
    from trials.config import TrialConfig

    assert frames.spec is not None
    base = frames.spec.base.to_dict()
    if base.get("threads") is None:
        # The study's trials ran with torch threads = the CPUs Ray gave each; the same thread
        # count makes the floating-point reductions, and so the numbers, the same (as export).
        base["threads"] = max(1, int(frames.spec.resources.cpu))
    seed = "seed"  # frame-contract: not a column (the TrialConfig field)
    return [TrialConfig.model_validate({**base, **params, seed: s}) for s in seeds]


def _checkpoints(src: _Source, numbers: tuple[int, ...]) -> list[str] | None:
    """Each seed's last checkpoint of the selected trial (Optuna user attribute), if stored."""
    if src.storage_url is None or len(numbers) != 1:
        return None
    study = optuna_study.load_study(src.storage_url, src.frames.name)
    trial = next((t for t in optuna_study.trials(study) if t.number == numbers[0]), None)
    paths = trial.user_attrs.get(keys.CHECKPOINTS) if trial is not None else None
    return [str(p) for p in paths] if paths else None


def _test_metric(src: _Source, row: MethodResult, mode: HeldOutMetric) -> MethodResult:
    if mode is HeldOutMetric.NONE:
        return replace(row, test_source="not computed (--test none)")
    if src.frames.spec is None:
        return replace(row, test_source="not computed: the study's spec is not available")
    seeds = [int(s) for s in row.valid_by_seed.index]
    configs = _trial_configs(src.frames, dict(row.config), seeds)
    if mode in (HeldOutMetric.AUTO, HeldOutMetric.AUTO_OR_RETRAIN):
        ckpts = _checkpoints(src, row.trial_numbers)
        if ckpts and len(ckpts) == len(configs) and all(Path(p).is_dir() for p in ckpts):
            values = [_test_from_checkpoint(c, p) for c, p in zip(configs, ckpts, strict=True)]
            source = f"best checkpoint of each of {len(values)} seeds"
            return _with_test(row, seeds, values, source)
        if mode is HeldOutMetric.AUTO:
            return replace(row, test_source="not computed: no checkpoints here (--test retrain)")
    values, mismatch = [], 0.0
    for seed, (test, valid) in zip(seeds, _retrain(configs), strict=True):
        values.append(test)
        mismatch = max(mismatch, abs(valid - float(row.valid_by_seed.loc[seed])))
    source = f"retrained, {len(values)} seeds, best epoch on validation"
    if mismatch > 1e-9 * max(1.0, abs(float(row.valid.mean))):
        source += f"; its validation differs from the study's by up to {mismatch:.2g}"
    else:
        source += "; validation reproduced exactly"
    return _with_test(row, seeds, values, source)


def _with_test(
    row: MethodResult, seeds: list[int], values: list[float], source: str
) -> MethodResult:
    by_seed = pd.Series(values, index=seeds, dtype=float)
    return replace(row, test=seed_interval(by_seed), test_by_seed=by_seed, test_source=source)


def _test_from_checkpoint(config: TrialConfig, checkpoint: str) -> float:
    """The test metric of the best model saved in a finished run's checkpoint, which is copied
    first: resuming must not write into the study's checkpoints."""
    from trials.checkpoints import check_resumable
    from trials.train import train

    check_resumable(Path(checkpoint), config)  # a refusal names the study's file, not the copy
    with tempfile.TemporaryDirectory(prefix="zoneout-test-") as work:
        shutil.copytree(checkpoint, work, dirs_exist_ok=True)
        return train(config, checkpoint_dir=work, resume=True).test_metric


def _retrain(configs: list[TrialConfig]) -> list[tuple[float, float]]:
    """(test metric, best validation metric) of each config trained afresh, the seeds in
    parallel processes when the cores allow (each config keeps its own thread count, so the
    numbers are those of a lone run)."""
    cores = os.cpu_count() or 1
    threads = max((c.threads or cores) for c in configs)  # None: torch takes every core
    workers = min(len(configs), max(1, cores // threads))
    if workers == 1:
        return [_train_for_test(c) for c in configs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_train_for_test, configs))


def _train_for_test(config: TrialConfig) -> tuple[float, float]:
    from trials.train import train

    result = train(config, evaluate_test=True)
    return result.test_metric, result.best_valid_metric


def compare_studies(
    sources: list[str],
    *,
    storage_url: str | None,
    out_dir: Path,
    baseline: str | None = None,
    test: HeldOutMetric = HeldOutMetric.AUTO,
    png: bool = True,
    save_note: bool = True,
) -> CompareResult:
    """Table 1 of ``sources``; written to ``out_dir`` and saved as a note into each stored
    Optuna study. ``baseline``: a method name, a source, or ``SOURCE:TRIAL`` (that trial's
    configuration); default: the unregularized row when there is one, else the first method."""
    loaded = [_load(s, storage_url) for s in sources]
    rows: list[MethodResult] = []
    srcs: list[_Source] = []
    for src in loaded:
        for method, frames in _methods_of(src):
            row = select_configuration(
                frames.trials,
                frames.epochs,
                method=method,
                source=src.label,
                max_epochs=frames.max_epochs,
                ends=frames.runs,
            )
            if row is None:
                continue
            if any(r.method == method for r in rows):
                row = replace(row, method=f"{method} ({src.label})")
            rows.append(row)
            srcs.append(replace(src, frames=frames))
    if not rows:
        raise CompareError("no source has a configuration that reached its full budget")
    base_name = _baseline(baseline, rows, loaded, srcs)
    rows = [_test_metric(s, r, test) for s, r in zip(srcs, rows, strict=True)]
    metric = loaded[0].frames.metric
    comp = compare_methods(rows, baseline=base_name, metric=MetricInfo.of(metric))
    name = "compare-" + "-vs-".join(s.label for s in loaded)
    paths, messages = write_comparison(comp, out_dir, name, png=png, sections=_ladders(loaded))
    markdown = paths["markdown"].read_text(encoding="utf-8")
    if save_note:
        for src in loaded:
            if src.storage_url is not None:
                _save_note(src.storage_url, src.frames.name, markdown)
                messages.append(f"Table 1 saved as the note of Optuna study {src.frames.name!r}")
    return CompareResult(comp, markdown, paths, messages)


def _ladders(loaded: list[_Source]) -> list[tuple[str, dict[str, Any]]]:
    """The two-scale section of each promoted study compared with the study it promoted from
    (study.ladder): how well the small scale ranked the configurations."""
    by_name = {src.frames.name: src.frames for src in loaded}
    sections = []
    for src in loaded:
        spec = src.frames.spec
        if spec is not None and spec.promote is not None and spec.promote.study in by_name:
            sections.append(two_scale_section(src.frames, by_name[spec.promote.study]))
    return sections


def _baseline(
    baseline: str | None, rows: list[MethodResult], loaded: list[_Source], srcs: list[_Source]
) -> str:
    names = [r.method for r in rows]
    if baseline is None:
        return "unregularized" if "unregularized" in names else names[0]
    if baseline in names:
        return baseline
    for r in rows:
        if r.source == baseline:
            return r.method
    source, _, number = baseline.rpartition(":")
    if number.isdigit():
        src = next((s for s in loaded if s.label == (source or loaded[0].label)), None)
        if src is not None:
            part = src.frames.trials[src.frames.trials[Col.NUMBER] == int(number)]
            row = select_configuration(
                part,
                src.frames.epochs,
                method=f"trial {number}",
                source=src.label,
                max_epochs=src.frames.max_epochs,
                ends=src.frames.runs,
            )
            if row is not None:
                rows.append(row)
                srcs.append(replace(src, frames=replace(src.frames, trials=part)))
                return row.method
    raise CompareError(
        f"--baseline {baseline!r} names no method, source or SOURCE:TRIAL here "
        f"(methods: {', '.join(names)})"
    )


def _save_note(storage_url: str, study_name: str, markdown: str) -> None:
    """The table as a note of the study: optuna-dashboard shows it on the study page."""
    save_note_section(optuna_study.load_study(storage_url, study_name), markdown)
