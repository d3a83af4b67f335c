"""The store rows of the trials the service retires say why (``zs_trials.retired``), written by
each of the three writers: the store callback (a trial the infrastructure cut off), the reaper
step of the runner (a lost driver) and the end of the runner's Tune step (Ctrl-C). Driven the
way Ray Tune's controller drives them, without a Ray cluster."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
from rich.console import Console

from study.callbacks import StoreCallback
from study.failures import summarize_failures
from study.optuna_study import open_study
from study.reaper import DRIVER_LOST
from study.searcher import CUT_OFF_PREFIX, INTERRUPTED, OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec
from study.store import Store

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(n_trials: int) -> Any:
    return validate_spec(
        {
            "name": "retired",
            "base": {"task": "digits", "hidden_size": 8, "epochs": 4, "seed": 10},
            "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
            "n_trials": n_trials,
            "sampler": {"name": "random", "seed": 0},
            "scheduler": {"name": "none"},
        }
    )


def _store(url: str, spec: Any) -> Store:
    store = Store.open(url)
    store.register_study(spec.name, spec={}, versions={}, direction="minimize", metric="error")
    return store


def _rows(store: Store, name: str) -> dict[int, tuple[str, str | None, str | None]]:
    frame = store.trials_frame(name)
    return {
        int(row.number): (
            row.state,
            None if _missing(row.error) else row.error,
            None if _missing(row.retired) else row.retired,
        )
        for row in frame.itertuples()
    }


def _missing(value: Any) -> bool:
    return value is None or value != value  # None, or NaN as pandas makes it


def _report(searcher: OptunaSearcher, trial_id: str, epochs: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for epoch in range(1, epochs + 1):
        result = {"epoch": epoch, "valid_metric": 1.0 / epoch, "node": "node-a"}
        searcher.on_trial_result(trial_id, result)
    return result


def test_the_store_callback_writes_why_the_infrastructure_cut_a_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=3)
    study = open_study(url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    with _store(url, spec) as store:
        callback = StoreCallback(store, searcher, spec.name)
        trials = {}
        for trial_id in ("a", "b", "c"):
            config = searcher.suggest(trial_id)
            assert isinstance(config, dict)
            trials[trial_id] = SimpleNamespace(trial_id=trial_id, config=config, error_file=None)
        searcher.on_trial_complete("a", result=_report(searcher, "a", 4))
        callback.on_trial_complete(0, [], trials["a"])
        # Ray tells the searcher of an error first, then the callbacks (which read the reason).
        for trial_id, reason in (
            ("b", "ray.exceptions.RayActorError: The actor died unexpectedly"),
            ("c", "ValueError: 2000 tokens are too few for batch size 4000"),
        ):
            error_file = tmp_path / f"{trial_id}.txt"
            error_file.write_text(f"Failure # 1\nTraceback ...\n{reason}\n", encoding="utf-8")
            trials[trial_id].error_file = str(error_file)
            _report(searcher, trial_id, 1)
            searcher.on_trial_complete(trial_id, error=True)
            callback.on_trial_error(0, [], trials[trial_id])
        rows = _rows(store, spec.name)
        frame = store.trials_frame(spec.name)
    assert rows[0] == ("COMPLETE", None, None)
    state, error, retired = rows[1]
    assert (state, retired) == ("FAIL", "infrastructure")
    assert error is not None and error.startswith(CUT_OFF_PREFIX)
    assert rows[2] == ("FAIL", "ValueError: 2000 tokens are too few for batch size 4000", None)
    summary = summarize_failures(frame)
    assert (summary.complete, summary.failed, summary.interrupted) == (1, 1, 1)


def test_the_reaper_step_stores_a_lost_drivers_trial_as_driver_lost(tmp_path: Path) -> None:
    from study.runner import _reap

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=2)
    study = open_study(url, spec.name, build_sampler(spec))
    dead = OptunaSearcher(study, spec, driver_id=f"{socket.gethostname()}:999999999:1")
    dead.suggest("a")  # trial 0, RUNNING, its driver gone
    with _store(url, spec) as store:
        reaped = _reap(study, store, spec, "me:1:1", Console(file=io.StringIO()))
        rows = _rows(store, spec.name)
    assert reaped == [0]
    assert rows == {0: ("FAIL", DRIVER_LOST, "driver_lost")}


def test_the_end_of_the_tune_step_stores_trials_cut_by_ctrl_c_as_interrupted(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from study import runner

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=2)
    study = open_study(url, spec.name, build_sampler(spec))

    class Tuner:
        """Tune's fit: trial 0 finishes, trial 1 runs an epoch, then Ctrl-C."""

        def __init__(self, searcher: OptunaSearcher, callbacks: list) -> None:
            self.searcher, self.store_callback = searcher, callbacks[0]

        def fit(self) -> None:
            for trial_id in ("a", "b"):
                self.searcher.suggest(trial_id)
            self.searcher.on_trial_complete("a", result=_report(self.searcher, "a", 4))
            _report(self.searcher, "b", 1)
            raise KeyboardInterrupt

    def tuner(spec: Any, driver_id: str, searcher: Any, callbacks: list, *_: Any) -> Tuner:
        return Tuner(searcher, callbacks)

    monkeypatch.setattr(runner, "_tuner", tuner)
    outcome = runner.StudyOutcome(name=spec.name, storage="-", status="finished")
    with _store(url, spec) as store:
        runner._tune(study, store, spec, "me:1:1", Console(file=io.StringIO()), None, outcome)
        rows = _rows(store, spec.name)
    assert outcome.status == "interrupted"
    assert rows[1] == ("FAIL", INTERRUPTED, "interrupted")
