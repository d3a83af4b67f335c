"""The ORM-free trial loader (study._optuna_trials) returns exactly Optuna's trials: every field,
every selection ``_CachedStorage`` asks for, every kind of value, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from study._optuna_trials import FastTrialsRDBStorage
from study.store import normalize_url

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {
    "zoneout_cell": FloatDistribution(0.0, 1.0),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "step": FloatDistribution(0.0, 0.5, step=0.05),
    "layers": IntDistribution(1, 4),
    "hidden": IntDistribution(16, 1024, log=True),
    "cell": CategoricalDistribution(["lstm", "gru", None, 0.5, True]),
}


def _fill(url: str) -> None:
    """Trials in every state, with every kind of value and attribute Optuna stores."""
    sampler = optuna.samplers.RandomSampler(seed=3)
    study = optuna.create_study(study_name="s", storage=url, sampler=sampler)
    other = optuna.create_study(study_name="other", storage=url, directions=["minimize"] * 2)
    values = [0.5, math.inf, -math.inf, 1e-300, 3.0]
    for index in range(30):
        trial = study.ask(SPACE)
        trial.set_user_attr("seeds", [1, 2, 3])
        trial.set_user_attr("nested", {"a": [None, 1.5, "x"], "index": index})
        trial.set_user_attr("text", 'é\n"quoted"')
        for step, value in enumerate([1.0, math.nan, math.inf, -math.inf, 0.25][: index % 6]):
            trial.report(value, step + 1)
        kind = index % 5
        if kind == 0:
            study.tell(trial, values[index % len(values)])
        elif kind == 1:
            study.tell(trial, state=TrialState.PRUNED)
        elif kind == 2:
            study.tell(trial, state=TrialState.FAIL)
        elif kind == 3:
            pass  # left RUNNING
        else:
            study.tell(trial, 1.0 + index)
        o = other.ask()
        o.suggest_float("x", -1, 1)
        other.tell(o, [index * 0.5, -math.inf if index % 3 == 0 else 2.0])
    study.enqueue_trial({"zoneout_cell": 0.25, "layers": 2}, user_attrs={"requeued_from": 3})
    study.enqueue_trial({"zoneout_cell": 0.5})
    optuna.create_study(study_name="empty", storage=url)


@pytest.fixture
def filled(store_url: str) -> Iterator[tuple[optuna.storages.RDBStorage, FastTrialsRDBStorage]]:
    url = normalize_url(store_url)
    _fill(url)
    optuna_own, fast = optuna.storages.RDBStorage(url), FastTrialsRDBStorage(url)
    yield optuna_own, fast
    for storage in (optuna_own, fast):
        storage.engine.dispose()


def _same(expected: list[FrozenTrial], got: list[FrozenTrial]) -> None:
    assert [t.number for t in got] == [t.number for t in expected]
    for want, have in zip(expected, got, strict=True):
        # FrozenTrial.__eq__ compares every field; NaN intermediate values are compared apart
        # (NaN != NaN), so compare their repr where they are.
        assert repr(have.intermediate_values) == repr(want.intermediate_values)
        assert have.distributions == want.distributions
        assert list(have.params) == list(want.params)
        for key in ("number", "state", "values", "params", "user_attrs", "system_attrs"):
            assert getattr(have, key) == getattr(want, key), (want.number, key)
        assert have.datetime_start == want.datetime_start
        assert have.datetime_complete == want.datetime_complete
        assert have._trial_id == want._trial_id


SELECTIONS = [
    pytest.param(None, set(), -1, id="everything"),
    pytest.param((TrialState.COMPLETE,), set(), -1, id="complete"),
    pytest.param((TrialState.COMPLETE, TrialState.PRUNED), set(), -1, id="tpe-states"),
    pytest.param((TrialState.WAITING,), set(), -1, id="waiting"),
    pytest.param(None, set(), 12, id="newer-than"),
    pytest.param(None, {4, 9, 14, 40}, 12, id="unfinished-again-plus-newer"),
    pytest.param((TrialState.RUNNING,), {4, 9}, 12, id="running-again"),
    pytest.param(None, {4}, 10_000, id="none-newer"),
]


@pytest.mark.parametrize(("states", "included", "greater_than"), SELECTIONS)
def test_every_selection_loads_optunas_trials(
    filled: tuple[optuna.storages.RDBStorage, FastTrialsRDBStorage],
    states: tuple[TrialState, ...] | None,
    included: set[int],
    greater_than: int,
) -> None:
    optuna_own, fast = filled
    for name in ("s", "other", "empty"):
        study_id = optuna_own.get_study_id_from_name(name)
        expected = optuna_own._get_trials(study_id, states, included, greater_than)
        got = fast._get_trials(study_id, states, included, greater_than)
        _same(expected, got)
        if name == "s" and states is None and greater_than == -1:
            assert len(got) == 32
            assert {t.state for t in got} == set(TrialState)  # every state is covered


def test_an_unknown_study_is_a_key_error_as_in_optuna(
    filled: tuple[optuna.storages.RDBStorage, FastTrialsRDBStorage],
) -> None:
    optuna_own, fast = filled
    with pytest.raises(KeyError):
        optuna_own._get_trials(999, None, set(), -1)
    with pytest.raises(KeyError):
        fast._get_trials(999, None, set(), -1)


def test_a_study_through_the_cached_storage_reads_the_same_before_and_after_asks(
    filled: tuple[optuna.storages.RDBStorage, FastTrialsRDBStorage],
) -> None:
    """The public path: load_study wraps the storage in Optuna's cache, which reads every trial
    once and then only the unfinished and newer ones. TPE asks through the fast storage take
    the queued trials and sample one more; both storages then read the same study."""
    optuna_own, fast = filled
    own = optuna.load_study(study_name="s", storage=optuna_own)
    study = optuna.load_study(
        study_name="s", storage=fast, sampler=optuna.samplers.TPESampler(seed=1)
    )
    _same(own.get_trials(), study.get_trials())
    asked = [study.ask(SPACE) for _ in range(3)]
    assert [t.params["zoneout_cell"] for t in asked[:2]] == [0.25, 0.5]  # the queued ones
    study.tell(asked[0], 0.125)
    study.tell(asked[2], state=TrialState.PRUNED)
    _same(own.get_trials(), study.get_trials())
    assert study.best_value == own.best_value


def test_the_collector_is_left_as_it_was(
    filled: tuple[optuna.storages.RDBStorage, FastTrialsRDBStorage],
) -> None:
    import gc

    _, fast = filled
    study_id = fast.get_study_id_from_name("s")
    assert gc.isenabled()
    fast._get_trials(study_id, None, set(), -1)
    assert gc.isenabled()
    gc.disable()
    try:
        fast._get_trials(study_id, None, set(), -1)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(KeyError):
        fast._get_trials(999, None, set(), -1)
    assert gc.isenabled()  # an error inside restores it too
