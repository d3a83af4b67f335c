"""Driver-side Ray Tune callback: the store writer (the live display is study/progress.py).

`StoreCallback` is the only writer of the service's own tables (zs_*). It runs in the driver,
so workers never need database credentials.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray.tune import Callback

from study.resume import CheckpointRetention, checkpoint_location
from study.searcher import STUDY_KEY, OptunaSearcher
from study.store import Store, mask_url

__all__ = ["StoreCallback"]


def error_reason(trial: Any) -> str:
    """The last exception line of a Ray trial's error file (e.g. 'TrialDiverged: ...')."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).exists():
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "Failure #", "^", "~")):
            # Ray prefixes the worker's exception with its own wrapper lines; keep the cause.
            return line[:500]
    return "the trial raised an error (no error file)"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class StoreCallback(Callback):
    """Writes every trial and every epoch into the store, idempotently."""

    def __init__(self, store: Store, searcher: OptunaSearcher, study_name: str) -> None:
        self._store = store
        self._searcher = searcher
        self._study = study_name
        self._started: dict[int, float] = {}
        self._carried: set[int] = set()
        # The newest two checkpoints of each seed's run: the one a replacement continues from is
        # never deleted before the next one has been recorded (study.resume).
        self._retention = CheckpointRetention(keep=2)
        self.epochs_written = 0
        self.write_seconds = 0.0

    # Tune pickles its configuration (callbacks included) into the experiment directory. Keep
    # neither the live engine nor the password there: a study resumes by running its spec
    # again, never by restoring a Tune experiment, so the pickled copy never writes.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = mask_url(self._store.url)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _slot(self, trial: Any) -> tuple[int, int] | None:
        info = trial.config.get(STUDY_KEY) if isinstance(trial.config, dict) else None
        if info and info.get("name") == self._study:
            return int(info["number"]), int(info["seed_index"])  # frame-contract: not a column
        return self._searcher.slot_of(trial.trial_id)

    def _timed(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.write_seconds += time.perf_counter() - started

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        slot = self._slot(trial)
        if slot is None:
            return
        number, _seed_index = slot
        self._started.setdefault(number, time.time())
        configuration = self._searcher.configuration(number)
        self._timed(
            self._store.upsert_trial,
            self._study,
            number,
            ray_trial_id=",".join(configuration.ray_trial_ids),
            params=configuration.params,
            seed=configuration.seeds[0],
            state=TrialState.RUNNING,
            config=trial.config.get("trial"),
            started_at=datetime.fromtimestamp(self._started[number], tz=timezone.utc),
        )
        if configuration.replaces is not None and number not in self._carried:
            self._carried.add(number)
            # The replacement continues the retired trial's checkpoints: each seed's stored
            # curve starts with the epochs that trial ran (copied, not re-run). A seed that had
            # finished before the cut runs no Ray trial, so all seeds are copied at once.
            for run in configuration.runs:
                if run.carried_epochs:
                    self._timed(
                        self._store.carry_epochs,
                        self._study,
                        from_number=configuration.replaces,
                        to_number=number,
                        seed=run.seed,
                        through_epoch=run.carried_epochs,
                    )

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        slot = self._slot(trial)
        if slot is None or "epoch" not in result:  # frame-contract: not a column (Ray's result key)
            return
        number, seed_index = slot
        configuration = self._searcher.configuration(number)
        self._timed(
            self._store.record_epoch,
            self._study,
            number,
            int(result["epoch"]),  # frame-contract: not a column (Ray's result key)
            seed=configuration.seeds[seed_index],
            train_loss=_finite(result.get("train_loss")),
            valid_loss=_finite(result.get("valid_loss")),
            valid_metric=_finite(result.get("valid_metric")),  # frame-contract: not a column
            tokens_per_second=_finite(result.get("tokens_per_second")),
            seconds=_finite(result.get("seconds")),
        )
        self.epochs_written += 1
        self._timed(
            self._store.upsert_trial,
            self._study,
            number,
            best_value=_finite(configuration.score),
            epochs=configuration.max_epoch,
            node=",".join(configuration.nodes) or None,
        )

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        # Before the searcher tells Optuna, so the trial's user_attrs name its checkpoint. Tune
        # updates the trial's last result before it saves the checkpoint that came with it.
        result = getattr(trial, "last_result", None)
        self._searcher.record_checkpoint(
            trial.trial_id,
            checkpoint_location(checkpoint),
            result if isinstance(result, dict) else None,
        )
        self._retention.keep(trial.trial_id, checkpoint)

    def _finish(self, trial: Any) -> None:
        slot = self._slot(trial)
        if slot is None:
            return
        number, _ = slot
        outcome = self._searcher.outcome(number)
        if outcome is None:  # other seeds of this configuration are still running
            return
        started = self._started.get(number)
        self._timed(
            self._store.upsert_trial,
            self._study,
            number,
            state=outcome.state,
            end_reason=outcome.end,
            final_value=_finite(outcome.final_value),
            best_value=_finite(outcome.value),
            epochs=outcome.epochs,
            error=outcome.error,
            retired=outcome.retired,
            node=",".join(outcome.nodes) or None,
            checkpoint=",".join(c for c in outcome.checkpoints if c) or None,
            wall_seconds=(time.time() - started) if started else None,
            finished_at=datetime.now(timezone.utc),
        )
        self._timed(self._store.record_runs, self._study, number, outcome.runs)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._retention.forget(trial.trial_id)
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._searcher.set_error_reason(trial.trial_id, error_reason(trial))
        self._retention.forget(trial.trial_id)
        self._finish(trial)
