"""Parameter importance from the study's own Optuna trials and distributions.

The evaluator is PED-ANOVA, the one optuna-dashboard's importance panel uses, on the real study
(its search-space distributions, its objective: the mean over seeds of each configuration's
last-epoch value), so the report's numbers are the panel's numbers. Unlike the panel, the report
refuses below :data:`IMPORTANCE_MIN_COMPLETE` complete trials: PED-ANOVA compares the best 10%
of the trials with all of them, and with fewer than 20 trials the best 10% is one or two points.

A computed importance can be kept in a cache directory (:func:`cached_importance`,
:func:`keep_importance`), keyed by exactly what PED-ANOVA reads: every complete trial's
parameters, distributions and value, the evaluator and Optuna's version. A report of a study
whose complete trials did not change then reads it back instead of building the study again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "EVALUATOR",
    "IMPORTANCE_MIN_COMPLETE",
    "ParamImportance",
    "cached_importance",
    "importance_key",
    "keep_importance",
    "parameter_importance",
]

IMPORTANCE_MIN_COMPLETE = 20
EVALUATOR = "PED-ANOVA"


@dataclass(frozen=True)
class ParamImportance:
    """Importances (summing to 1), most important first; empty with a reason when refused."""

    importances: dict[str, float]
    evaluator: str
    n_complete: int
    reason: str | None = None

    @property
    def most_important(self) -> str | None:
        return next(iter(self.importances), None)


def parameter_importance(
    source: optuna.Study | list[FrozenTrial] | None,
    *,
    min_complete: int = IMPORTANCE_MIN_COMPLETE,
) -> ParamImportance:
    """PED-ANOVA importances of the COMPLETE trials of ``source`` (an Optuna study, or its
    trials), or a reason why not: no study given, or fewer than ``min_complete`` complete trials.
    """
    if source is None:
        return ParamImportance({}, EVALUATOR, 0, "no Optuna study was given to read it from")
    complete = _complete(source)
    n = len(complete)
    if n < min_complete:
        return ParamImportance(
            {},
            EVALUATOR,
            n,
            f"needs at least {min_complete} complete trials, the study has {n}",
        )
    if isinstance(source, optuna.Study):
        study = source
    else:  # an in-memory study of those trials, made quietly (Optuna logs every new study)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(direction="minimize")
        finally:
            optuna.logging.set_verbosity(verbosity)
        study.add_trials(complete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        except (ValueError, RuntimeError) as exc:
            return ParamImportance({}, EVALUATOR, n, f"PED-ANOVA failed: {exc}")
    return ParamImportance({k: float(v) for k, v in imp.items()}, EVALUATOR, n)


def _complete(source: optuna.Study | list[FrozenTrial]) -> list[FrozenTrial]:
    trials = source.get_trials(deepcopy=False) if isinstance(source, optuna.Study) else source
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def importance_key(
    source: optuna.Study | list[FrozenTrial] | None,
    *,
    min_complete: int = IMPORTANCE_MIN_COMPLETE,
) -> str | None:
    """A digest of everything :func:`parameter_importance` reads from ``source`` (each complete
    trial's parameters, their distributions and its value, in trial order), the evaluator,
    the minimum and Optuna's version; None without a source."""
    if source is None:
        return None
    digest = hashlib.sha256(f"{EVALUATOR}|{min_complete}|optuna {optuna.__version__}".encode())
    for t in _complete(source):
        digest.update(repr((t.value, sorted(t.params.items()))).encode())
        digest.update(repr(sorted(t.distributions.items())).encode())
    return digest.hexdigest()


#: Importances a cache directory keeps at most; the least recently written go first.
CACHE_KEEP = 256


def _cache_file(cache_dir: str | os.PathLike[str], key: str) -> Path:
    return Path(cache_dir) / f"importance-{key[:40]}.json"


def _prune(directory: Path) -> None:
    kept = sorted(directory.glob("importance-*.json"), key=lambda p: p.stat().st_mtime)
    for old in kept[: max(0, len(kept) - CACHE_KEEP)]:
        old.unlink(missing_ok=True)


def cached_importance(cache_dir: str | os.PathLike[str], key: str) -> ParamImportance | None:
    """The importance kept under ``key`` in ``cache_dir``, or None (none kept, or unreadable)."""
    try:
        data = json.loads(_cache_file(cache_dir, key).read_text(encoding="utf-8"))
        if data["key"] != key:
            return None
        importances = {str(k): float(v) for k, v in data["importances"].items()}
        return ParamImportance(importances, str(data["evaluator"]), int(data["n_complete"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def keep_importance(cache_dir: str | os.PathLike[str], key: str, imp: ParamImportance) -> None:
    """Keep a computed importance (not a refusal) in ``cache_dir`` under ``key``; best effort:
    a cache that cannot be written is skipped (the next report computes it again)."""
    if not imp.importances or imp.reason is not None:
        return
    record = {
        "key": key,
        "evaluator": imp.evaluator,
        "n_complete": imp.n_complete,
        "importances": imp.importances,
    }
    try:
        directory = Path(cache_dir)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".importance-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
            os.replace(tmp, _cache_file(directory, key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(directory)
    except OSError:
        pass
