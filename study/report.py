"""The report of a study: read the store's frames, hand them to :mod:`dashboards`, and (on
request: `run` does, `report --save-to-study` does) save the figures and the summary note into
the Optuna study so optuna-dashboard shows them. Also the same report from the CSV tables
`status --csv` writes (how the committed results under docs/results/ are regenerated).

The store holds every fact the report reads, importance's input included: each complete
trial's searched parameters (``zs_trials.params``, which the searcher asked Optuna for on the
spec's distributions) and its score (``zs_trials.best_value``, the value the searcher told
Optuna). So a report reads no Optuna trial; the Optuna study is opened only to save into it, or
for importance where the store's rows cannot stand in for it (a spec snapshot the current
schema refuses, a complete trial without its score). A computed importance is kept in a cache
directory (:func:`default_cache_dir`), keyed by those trials, so the next report of the same
trials reads it back.

A study with no complete trial (every trial failed, say) gets the report all the same: the
table of its trials with their reasons, and why there is no figure (the result's messages say
it too). Trials the service retired itself (Ctrl-C, a lost driver, the infrastructure: the
``retired`` column of the trials frame) show as interrupted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from dashboards import (
    Col,
    MetricInfo,
    PngRenderer,
    ReportResult,
    ScaleFrames,
    TrialState,
    build_report,
    param_column,
    promotion_section,
    save_figures_to_study,
    select_configuration,
)
from study import optuna_study
from study.space import distributions
from study.spec import StudySpec, load_spec
from study.store import StoreError
from study.tables import read_tables
from trials.tasks import metric_for_task

__all__ = [
    "BEST",
    "Baseline",
    "StudyFrames",
    "complete_trials",
    "default_cache_dir",
    "load_study_frames",
    "load_table_frames",
    "optuna_study_from_tables",
    "write_study_report",
    "write_table_report",
]


@dataclass(frozen=True)
class StudyFrames:
    """What dashboards needs of one study."""

    name: str
    trials: pd.DataFrame
    epochs: pd.DataFrame
    metric: str
    max_epochs: int
    grace_period: int | None
    reduction_factor: float | None
    spec: StudySpec | None
    runs: pd.DataFrame  # the store's runs frame: why each (trial, seed) run ended


def _scheduler(spec: StudySpec | None) -> tuple[int | None, float | None]:
    if spec is None or spec.scheduler.name != "asha":
        return None, None
    return int(spec.scheduler.grace_period), float(spec.scheduler.reduction_factor)


def _study_to_save_into(storage_url: str, study_name: str) -> optuna.Study:
    """The Optuna study the figures are saved into; one line where another client deleted
    it (the store's records, which the report reads, remain)."""
    try:
        return optuna_study.load_study(storage_url, study_name)
    except KeyError:
        raise StoreError(
            f"study {study_name!r} is not in Optuna's tables (deleted by another client, "
            "e.g. optuna-dashboard or optuna.delete_study): the report can be written without "
            "--save-to-study, which needs it"
        ) from None


def load_study_frames(storage_url: str, study_name: str) -> StudyFrames:
    """The store's frames of ``study_name`` and its spec snapshot."""
    from study.spec import validate_spec
    from study.store import Store

    store = Store(storage_url)
    try:
        trials = store.trials_frame(study_name)
        epochs = store.epochs_frame(study_name)
        runs = store.runs_frame(study_name)
        raw = store.study_spec(study_name)
    finally:
        store.close()
    try:
        spec: StudySpec | None = validate_spec(raw, f"study {study_name!r}")
    except Exception:  # a snapshot the current schema refuses (older version): read it as data
        spec = None
    if spec is not None:
        metric, max_epochs = spec.metric, spec.max_epochs
        grace, factor = _scheduler(spec)
    else:
        base = raw.get("base") or {}
        metric = metric_for_task(str(base.get("task", "ptb-char")))
        seen = int(epochs[Col.EPOCH].max()) if len(epochs) else 1
        max_epochs = int(base.get("epochs") or seen)  # frame-contract: not a column
        scheduler = raw.get("scheduler") or {}
        asha = scheduler.get("name", "asha") == "asha"
        grace = int(scheduler.get("grace_period", 1)) if asha else None
        factor = float(scheduler.get("reduction_factor", 2.0)) if asha else None
    return StudyFrames(study_name, trials, epochs, metric, max_epochs, grace, factor, spec, runs)


def load_table_frames(
    trials_csv: str | os.PathLike[str], spec_path: str | os.PathLike[str] | None = None
) -> StudyFrames:
    """Frames from ``<study>-trials.csv`` and its ``.epochs.csv`` and ``.runs.csv`` siblings
    (`status --csv`), each checked first (:func:`study.tables.read_tables`: a table that is not
    what `status --csv` writes is a TableError naming the file); the spec is ``spec_path``, else
    ``<study>.yaml`` beside the table when there is one."""
    path = Path(trials_csv)
    if spec_path is None:
        beside = path.with_name(path.name.removesuffix("-trials.csv") + ".yaml")
        spec_path = beside if beside.is_file() else None
    tables = read_tables(path)
    trials, epochs, runs = tables.trials, tables.epochs, tables.runs
    spec = load_spec(spec_path) if spec_path is not None else None
    name = str(trials[Col.STUDY].iloc[0]) if Col.STUDY in trials and len(trials) else path.stem
    metric = spec.metric if spec else "bpc"
    max_epochs = spec.max_epochs if spec else int(epochs[Col.EPOCH].max() if len(epochs) else 1)
    grace, factor = _scheduler(spec)
    return StudyFrames(name, trials, epochs, metric, max_epochs, grace, factor, spec, runs)


def optuna_study_from_tables(frames: StudyFrames) -> optuna.Study | None:
    """An in-memory Optuna study with the trials of committed tables, on the spec's own
    distributions and the searcher's objective (the score: study.score).

    With :func:`complete_trials`, the Optuna calls of study/ outside study/optuna_study.py:
    both build trials in memory from tables, which that module (the owner of the store's
    studies) has no call for."""
    if frames.spec is None or frames.epochs.empty:
        return None
    dists = distributions(frames.spec)
    best = frames.epochs.groupby([Col.NUMBER, Col.SEED])[Col.VALID_METRIC].min()
    objective = best.groupby(level=Col.NUMBER).mean()
    study = optuna.create_study(direction="minimize")
    made = []
    for _, row in frames.trials.iterrows():
        state = str(row[Col.STATE])
        params = {n: row[param_column(n)] for n in dists if param_column(n) in row}
        params = {n: (v.item() if hasattr(v, "item") else v) for n, v in params.items()}
        if state == TrialState.COMPLETE and row[Col.NUMBER] in objective.index:
            made.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions={n: dists[n] for n in params},
                    value=float(objective[row[Col.NUMBER]]),
                )
            )
    study.add_trials(made)
    return study


_CACHE_ENV = "ZONEOUT_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where reports keep what they computed (importance): ``$ZONEOUT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/zoneout-study``, else ``~/.cache/zoneout-study``."""
    given = os.environ.get(_CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoneout-study"


def _external(dist: BaseDistribution, value: Any) -> Any:
    """A parameter value as Optuna gives it back (``FrozenTrial.params``) on ``dist``; None
    when the stored value cannot be one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[dist.choices.index(value)] if value in dist.choices else None
    if isinstance(dist, IntDistribution):
        return int(value) if float(value).is_integer() else None
    return float(value)


def complete_trials(frames: StudyFrames) -> list[FrozenTrial] | None:
    """The study's COMPLETE trials as its Optuna study holds them (in trial order: parameters
    on the spec's distributions, the ones the searcher asks with, and the value the searcher
    told: the store's ``best_value``), read from the store's trials frame; None where the frame
    cannot stand in for them (no spec, a complete trial without its score or a parameter, a
    value outside its distribution)."""
    if frames.spec is None or Col.BEST_VALUE not in frames.trials:
        return None
    dists = distributions(frames.spec)
    trials = frames.trials
    complete = trials[trials[Col.STATE].astype(str) == TrialState.COMPLETE]
    if complete.empty:
        return []
    columns = [param_column(name) for name in dists]
    if any(column not in complete for column in columns):
        return None
    made = []
    values = complete[Col.BEST_VALUE].tolist()
    for value, *stored in zip(values, *(complete[c].tolist() for c in columns), strict=True):
        params = {n: _external(d, v) for (n, d), v in zip(dists.items(), stored, strict=True)}
        if value is None or not math.isfinite(value) or None in params.values():
            return None
        try:
            made.append(
                optuna.trial.create_trial(params=params, distributions=dists, value=float(value))
            )
        except ValueError:  # outside its distribution: Optuna's own rows tell
            return None
    return made


BEST = "best"
"""A baseline: the configuration with the best validation mean at the full budget, so the
report's paired differences say which other configurations can be told apart from it."""

Baseline = int | Literal["best"] | None
"""A trial number (its configuration), BEST, or None (the unregularized configuration)."""


def _report(
    frames: StudyFrames,
    out_dir: str | os.PathLike[str],
    *,
    study: optuna.Study | list[FrozenTrial] | None,
    png: bool,
    baseline_trial: Baseline,
    source: StudyFrames | None = None,
    importance_cache: str | os.PathLike[str] | None = None,
    renderer: PngRenderer | None = None,
) -> ReportResult:
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    trials = frames.trials[frames.trials[Col.STATE].astype(str).isin(states)]
    # Epochs of a trial still running (a report during a study) go with their trial: without
    # its row the figures could not tell a run in progress from one that ended.
    epochs = frames.epochs
    if Col.NUMBER in epochs:
        epochs = epochs[epochs[Col.NUMBER].isin(trials[Col.NUMBER])]
    if baseline_trial == BEST:
        best = select_configuration(
            trials,
            epochs,
            method=BEST,
            source=frames.name,
            max_epochs=frames.max_epochs,
            ends=frames.runs,
        )
        baseline_trial = best.trial_numbers[0] if best is not None else None
    return build_report(
        trials,
        epochs,
        study_name=frames.name,
        metric=frames.metric,
        direction="minimize",
        max_epochs=frames.max_epochs,
        out_dir=out_dir,
        grace_period=frames.grace_period,
        reduction_factor=frames.reduction_factor,
        png=png,
        study=study,
        baseline_trial=baseline_trial,
        ends=frames.runs,
        importance_cache=importance_cache,
        renderer=renderer,
        **_promotion(frames, source),
    )


def _promotion(frames: StudyFrames, source: StudyFrames | None) -> dict[str, Any]:
    """The two-scale section of a promoted study, as build_report arguments."""
    if source is None or frames.spec is None:
        return {}
    markdown, figures = two_scale_section(frames, source)
    return {"extra_markdown": markdown, "extra_figures": figures}


def two_scale_section(frames: StudyFrames, source: StudyFrames) -> tuple[str, dict[str, go.Figure]]:
    """Markdown and figure of a promoted study (``frames``, study.ladder) against the study it
    promoted from (``source``): the configurations' scores at both scales, how well the small
    scale ranked them."""
    assert frames.spec is not None

    def scale(f: StudyFrames) -> ScaleFrames:
        # The figure and section count the seeds themselves.
        return ScaleFrames(
            f"{f.name} ({f.max_epochs} epochs)",
            f.trials,
            f.epochs,
            f.runs,
            f.max_epochs,
        )

    markdown, figures, _ = promotion_section(
        scale(source),
        scale(frames),
        params=list(frames.spec.search),
        metric=MetricInfo.of(frames.metric),
    )
    return markdown, figures


def write_study_report(
    storage_url: str,
    study_name: str,
    out_dir: str | os.PathLike[str],
    *,
    png: bool = True,
    save_to_optuna: bool = True,
    baseline_trial: Baseline = None,
    importance_cache: str | os.PathLike[str] | None = None,
    renderer: PngRenderer | None = None,
) -> ReportResult:
    """Write ``<study>-report.html`` (+ PNGs, summary) for a stored study into ``out_dir`` and,
    with ``save_to_optuna``, save the figures and summary into the Optuna study
    (optuna-dashboard); without it nothing is written into the database. ``renderer``: a PNG
    session the caller started before (dashboards.start_png_renderer) and closes.

    A study with nothing to draw still gets its HTML (the table of its trials and why there is
    no figure) and its summary; ``messages`` says why there is no figure. ``importance_cache``:
    a directory where the computed importance is kept (see :func:`default_cache_dir`)."""
    frames = load_study_frames(storage_url, study_name)
    study = _study_to_save_into(storage_url, study_name) if save_to_optuna else None
    trials = complete_trials(frames)  # importance's input, from the store
    if trials is None and study is None:
        try:  # the store cannot stand in: the real study's trials, as before
            study = optuna_study.load_study(storage_url, study_name)
        except KeyError:
            study = None
    promote = frames.spec.promote if frames.spec is not None else None
    source = load_study_frames(storage_url, promote.study) if promote is not None else None
    result = _report(
        frames,
        out_dir,
        study=trials if trials is not None else study,
        png=png,
        baseline_trial=baseline_trial,
        source=source,
        importance_cache=importance_cache,
        renderer=renderer,
    )
    if save_to_optuna and study is not None and result.analysis is not None:
        save_figures_to_study(study, result.figures, result.analysis.summary_markdown)
        saved = "figures and summary" if result.figures else "summary (no figure)"
        result.messages.append(
            f"{saved} saved into the Optuna study {study_name!r} (optuna-dashboard)"
        )
    return result


def write_table_report(
    trials_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    spec_path: str | os.PathLike[str] | None = None,
    png: bool = True,
    baseline_trial: Baseline = None,
) -> ReportResult:
    """The same report from committed tables; importance from the spec's distributions."""
    frames = load_table_frames(trials_csv, spec_path)
    study = optuna_study_from_tables(frames)
    return _report(frames, out_dir, study=study, png=png, baseline_trial=baseline_trial)
