"""The store rows of the trials the service retires say why (``zs_trials.retired``), written by
each of the three writers: the store callback (a trial the infrastructure cut off), the reaper
step of the runner (a lost driver) and the end of the runner's Tune step (Ctrl-C). Driven the
way Ray Tune's controller drives them, without a Ray cluster. Every writer stores how the trial
ended (``zs_trials.end_reason``, a ``study.plan.TrialEnd``), and rewording the sentences it
shows (``error``) changes nothing of what a trial is read as."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from rich.console import Console

from study.callbacks import StoreCallback
from study.failures import retired_reasons, summarize_failures, trial_ends
from study.optuna_study import open_study
from study.plan import TrialEnd
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


def _ends(store: Store, name: str) -> dict[int, str | None]:
    """The stored end_reason of each trial, by number."""
    frame = store.trials_frame(name)
    return {
        int(row.number): None if _missing(row.end_reason) else row.end_reason
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
        ends = _ends(store, spec.name)
        frame = store.trials_frame(spec.name)
    assert ends == {0: "complete", 1: "infrastructure", 2: "failed"}
    assert list(trial_ends(frame)) == [TrialEnd.COMPLETE, TrialEnd.INFRASTRUCTURE, TrialEnd.FAILED]
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
        ends = _ends(store, spec.name)
    assert ends == {0: "driver_lost"}
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
        ends = _ends(store, spec.name)
    assert ends == {1: "interrupted"}
    assert outcome.status == "interrupted"
    assert rows[1] == ("FAIL", INTERRUPTED, "interrupted")


def test_a_diverged_configuration_is_stored_as_diverged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=1)
    study = open_study(url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    with _store(url, spec) as store:
        callback = StoreCallback(store, searcher, spec.name)
        config = searcher.suggest("a")
        assert isinstance(config, dict)
        error_file = tmp_path / "a.txt"
        reason = "trials.trainable.TrialDiverged: training loss became nan"
        error_file.write_text(f"Failure # 1\nTraceback ...\n{reason}\n", encoding="utf-8")
        trial = SimpleNamespace(trial_id="a", config=config, error_file=str(error_file))
        _report(searcher, "a", 1)
        searcher.on_trial_complete("a", error=True)
        callback.on_trial_error(0, [], trial)
        assert _ends(store, spec.name) == {0: "diverged"}
        assert _rows(store, spec.name) == {0: ("FAIL", reason, None)}
        summary = summarize_failures(store.trials_frame(spec.name))
    assert (summary.failed, summary.interrupted) == (1, 0)


@pytest.mark.parametrize("writer", ["ctrl-c", "reaper", "infrastructure"])
def test_a_reworded_sentence_does_not_change_what_a_trial_is_read_as(
    tmp_path: Path, monkeypatch: Any, writer: str
) -> None:
    """The sentences a retired trial shows are display text: worded anew, the stored rows say
    something else in ``error`` and the trials are read exactly as before."""
    from study import reaper, runner, searcher

    monkeypatch.setattr(runner, "INTERRUPTED", "Stopped by you; resumes on the next run")
    monkeypatch.setattr(searcher, "INTERRUPTED", "Stopped by you; resumes on the next run")
    monkeypatch.setattr(runner, "DRIVER_LOST", "Its driver vanished")
    monkeypatch.setattr(reaper, "DRIVER_LOST", "Its driver vanished")
    monkeypatch.setattr(searcher, "CUT_OFF_PREFIX", "The machine let it down: ")
    if writer == "ctrl-c":
        url, number, expected = _ctrl_c(tmp_path, monkeypatch), 1, TrialEnd.INTERRUPTED
    elif writer == "reaper":
        url, number, expected = _lost_driver(tmp_path), 0, TrialEnd.DRIVER_LOST
    else:
        url, number, expected = _cut_by_infrastructure(tmp_path), 0, TrialEnd.INFRASTRUCTURE
    with Store(url) as store:
        frame = store.trials_frame("retired")
    row = frame.index[frame["number"] == number][0]
    error = str(frame.loc[row, "error"])
    assert not error.startswith((INTERRUPTED, DRIVER_LOST, CUT_OFF_PREFIX))  # reworded
    assert error != DRIVER_LOST
    assert trial_ends(frame).loc[row] == expected
    assert expected.retired is not None
    assert retired_reasons(frame).loc[row] == expected.retired.value
    summary = summarize_failures(frame)
    assert (summary.interrupted, summary.failed) == (1, 0)
    # Without the fact (a frame of an older version), the old sentences no longer match.
    older = frame.drop(columns=["end_reason", "retired"])
    assert summarize_failures(older).interrupted == 0


def _ctrl_c(tmp_path: Path, monkeypatch: Any) -> str:
    from study import runner

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=2)
    study = open_study(url, spec.name, build_sampler(spec))

    class Tuner:
        def __init__(self, searcher: OptunaSearcher) -> None:
            self.searcher = searcher

        def fit(self) -> None:
            for trial_id in ("a", "b"):
                self.searcher.suggest(trial_id)
            self.searcher.on_trial_complete("a", result=_report(self.searcher, "a", 4))
            _report(self.searcher, "b", 1)
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_tuner", lambda spec, driver, searcher, *_: Tuner(searcher))
    outcome = runner.StudyOutcome(name=spec.name, storage="-", status="finished")
    with _store(url, spec) as store:
        runner._tune(study, store, spec, "me:1:1", Console(file=io.StringIO()), None, outcome)
    return url


def _lost_driver(tmp_path: Path) -> str:
    from study.runner import _reap

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=2)
    study = open_study(url, spec.name, build_sampler(spec))
    dead = OptunaSearcher(study, spec, driver_id=f"{socket.gethostname()}:999999999:1")
    dead.suggest("a")
    with _store(url, spec) as store:
        assert _reap(study, store, spec, "me:1:1", Console(file=io.StringIO())) == [0]
    return url


def _cut_by_infrastructure(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(n_trials=1)
    study = open_study(url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    with _store(url, spec) as store:
        callback = StoreCallback(store, searcher, spec.name)
        config = searcher.suggest("a")
        assert isinstance(config, dict)
        error_file = tmp_path / "a.txt"
        reason = "ray.exceptions.RayActorError: The actor died unexpectedly"
        error_file.write_text(f"Failure # 1\nTraceback ...\n{reason}\n", encoding="utf-8")
        trial = SimpleNamespace(trial_id="a", config=config, error_file=str(error_file))
        _report(searcher, "a", 1)
        searcher.on_trial_complete("a", error=True)
        callback.on_trial_error(0, [], trial)
    return url
