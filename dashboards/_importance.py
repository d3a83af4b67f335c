"""Parameter importance from the study's own Optuna trials and distributions.

The evaluator is PED-ANOVA, the one optuna-dashboard's importance panel uses, on the real study
(its search-space distributions, its objective: the mean over seeds of each configuration's
last-epoch value), so the report's numbers are the panel's numbers. Unlike the panel, the report
refuses below :data:`IMPORTANCE_MIN_COMPLETE` complete trials: PED-ANOVA compares the best 10%
of the trials with all of them, and with fewer than 20 trials the best 10% is one or two points.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["EVALUATOR", "IMPORTANCE_MIN_COMPLETE", "ParamImportance", "parameter_importance"]

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
    trials = source.get_trials(deepcopy=False) if isinstance(source, optuna.Study) else source
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
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
    else:
        study = optuna.create_study(direction="minimize")
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
