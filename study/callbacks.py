"""Driver-side Ray Tune callbacks: the store writer (the live display is study/progress.py)
and the one line a trial's fault gets on the terminal.

`StoreCallback` is the only writer of the service's own tables (zs_*). It runs in the driver,
so workers never need database credentials. `FaultLineCallback` says a trial Ray retries, or
whose worker died, in one line naming the file with the details (Ray's own report of it goes to
the run's Ray output file: study.ray_session).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray.tune import Callback
from rich.console import Console

from study.resume import CheckpointRetention, checkpoint_location
from study.searcher import STUDY_KEY, OptunaSearcher
from study.store import Store, mask_url

__all__ = ["FaultLineCallback", "StoreCallback"]

# Where Ray's report of a dead worker says which process it was and how it ended.
_PID = re.compile(r"\bpid: (\d+)")
_EXIT_TYPE = re.compile(r"Worker exit type: (\w+)")
# A reason longer than this is cut on the terminal's fault line (the store keeps 500).
_LINE_REASON_CHARS = 160


def _pickled_error(trial: Any) -> BaseException | None:
    """The exception of the trial's last failure, as Tune pickled it (its error.pkl); None
    when there is none or it cannot be read back."""
    path = getattr(trial, "pickled_error_file", None)
    if not path or not Path(path).exists():
        return None
    try:
        from ray import cloudpickle

        with open(path, "rb") as file:
            error = cloudpickle.load(file)
    except Exception:  # a file Tune was still writing, a class this process cannot load
        return None
    return error if isinstance(error, BaseException) else None


def _ray_system_error(error: BaseException | None) -> bool:
    """Ray's own error for a trial its worker, node or memory failed (ActorDiedError,
    OutOfMemoryError, ...), as opposed to the trial's code raising (RayTaskError, which
    carries the code's exception and traceback)."""
    from ray.exceptions import RayError, RayTaskError

    return isinstance(error, RayError) and not isinstance(error, RayTaskError)


def error_reason(trial: Any) -> str:
    """The last exception line of a Ray trial's error file (e.g. 'TrialDiverged: ...').

    Ray writes its own errors (a worker that died: ActorDiedError) into the file as their
    message only, without the exception's name; the name is put in front, as a raised
    exception's line has it, so that study.faults tells the infrastructure's failure from the
    configuration's."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).exists():
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "Failure #", "^", "~")):
            # Ray prefixes the worker's exception with its own wrapper lines; keep the cause.
            error = _pickled_error(trial)
            if error is not None and _ray_system_error(error):
                name = f"{type(error).__module__}.{type(error).__qualname__}"
                line = line if line.startswith(name) else f"{name}: {line}"
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


class FaultLineCallback(Callback):
    """One line on ``console`` when Ray retries a failed trial, and when a trial's worker died
    (or Ray's memory monitor, a lost node...) with no retry left: which trial and seed, what
    happened, and ``details``, the run's Ray output file (study.ray_session), which holds
    Tune's traceback of the failure and the raylet's report of a dead worker. A trial's own
    error with no retry left gets no line: the progress display counts it, the store and the
    end of the run say why."""

    def __init__(self, searcher: OptunaSearcher, console: Console, details: Path) -> None:
        self._searcher = searcher
        self._console: Console | None = console
        self._details = details

    # Tune pickles its callbacks into the experiment directory: no console there.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_console": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        retry = f"retry {trial.num_failures} of {trial.max_failures}"
        start = "its last checkpoint" if getattr(trial, "checkpoint", None) else "the start"
        then = f"Ray restarts it from {start} ({retry})"
        self._say(trial, _pickled_error(trial), then)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _pickled_error(trial)
        if _ray_system_error(error):
            self._say(trial, error, f"no retry left (failure.max_retries: {trial.max_failures})")

    def _say(self, trial: Any, error: BaseException | None, then: str) -> None:
        if self._console is None:
            return
        line = f"{self._who(trial)}: {_what(trial, error)}; {then}; details in {self._details}"
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _who(self, trial: Any) -> str:
        slot = self._searcher.slot_of(trial.trial_id)
        if slot is None:
            return f"Ray trial {trial.trial_id}"
        number, seed_index = slot
        return f"trial {number} seed {self._searcher.configuration(number).seeds[seed_index]}"


def _what(trial: Any, error: BaseException | None) -> str:
    """What failed the trial, in a few words: its worker died (with its pid and Ray's exit
    type), another of Ray's errors by name, or the trial's own error line."""
    from ray.exceptions import RayActorError

    text = str(error) if error is not None else ""
    if isinstance(error, RayActorError):
        pid, exit_type = _PID.search(text), _EXIT_TYPE.search(text)
        facts = [f"pid {pid.group(1)}" if pid else "", exit_type.group(1) if exit_type else ""]
        known = ", ".join(fact for fact in facts if fact)
        return "its Ray worker died" + (f" ({known})" if known else "")
    if _ray_system_error(error):
        return f"Ray ended it ({type(error).__name__})"
    reason = " ".join(error_reason(trial).split())
    if len(reason) > _LINE_REASON_CHARS:
        reason = reason[: _LINE_REASON_CHARS - 3].rstrip() + "..."
    return f"it failed ({reason})"
