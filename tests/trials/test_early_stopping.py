"""Early stopping: ``patience`` and ``min_delta`` end a run whose validation metric flattened.

The real digits loop trains (one batch an epoch, so weights and RNG states are real and resume
must reproduce them), but its validation metric is scripted per epoch, so each test knows on
which epoch the run must stop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

import trials.train as train_module
from tests.trials.test_train import digits_config
from trials.config import ConfigError, TrialConfig, validate_config
from trials.task_loops import Split, TaskLoop
from trials.tasks import TaskData, load_task
from trials.train import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    EpochResult,
    epochs_without_improvement,
    train,
)

# Falls, flattens (2.199 is 0.001 below 2.2), then rises: with min_delta 0 epoch 4 is a real
# improvement, with min_delta 0.01 it is not (but it is still the best epoch).
SCRIPT = [3.0, 2.5, 2.2, 2.199, 2.21, 2.3, 2.4, 2.5, 2.6, 2.7]
BEST_EPOCH = 4


def config(**changes: Any) -> TrialConfig:
    """A one-batch digits run as long as the script (the validation values are scripted)."""
    base: dict[str, Any] = {
        "hidden_size": 8,
        "batch_size": 16,
        "eval_batch_size": 512,
        "max_batches_per_epoch": 1,
        "epochs": len(SCRIPT),
    }
    return digits_config(**{**base, **changes})


@pytest.fixture(scope="module")
def digits() -> TaskData:
    return load_task(config())


class ScriptedLoop:
    """A real task loop whose validation metric (and loss) is ``script[epoch - 1]``."""

    def __init__(self, loop: TaskLoop, script: Sequence[float]) -> None:
        self.loop, self.script = loop, script
        self.classes, self.model = loop.classes, loop.model
        self.trained: list[int] = []
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def train_epoch(
        self, optimizer: torch.optim.Optimizer, config: TrialConfig, epoch: int
    ) -> tuple[float, int]:
        outcome = self.loop.train_epoch(optimizer, config, epoch)
        self.trained.append(epoch)
        self.weights[epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return outcome

    def evaluate(self, split: Split) -> tuple[float, float]:
        if split == "valid":
            value = self.script[self.trained[-1] - 1]
            return value, value
        return self.loop.evaluate(split)


@pytest.fixture
def loops(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedLoop]:
    """Every loop `train()` builds from now on, scripted with SCRIPT; one per train() call."""
    built: list[ScriptedLoop] = []
    real = train_module.task_loop

    def scripted(*args: Any, **kwargs: Any) -> ScriptedLoop:
        built.append(ScriptedLoop(real(*args, **kwargs), SCRIPT))
        return built[-1]

    monkeypatch.setattr(train_module, "task_loop", scripted)
    return built


def numbers(epochs: list[EpochResult]) -> list[tuple[Any, ...]]:
    """What must repeat exactly between runs (timings do not)."""
    return [
        (e.epoch, e.train_loss, e.valid_metric, e.best_valid_metric, e.learning_rate, e.converged)
        for e in epochs
    ]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- the counter


@pytest.mark.parametrize(
    ("values", "min_delta", "expected"),
    [
        ([], 0.0, 0),
        ([1.0], 0.0, 0),
        ([1.0, 1.0], 0.0, 1),  # an equal value is no improvement
        ([1.0, 1.0, 1.0], 0.0, 2),
        ([1.0, 1.0, 0.5], 0.0, 0),
        ([1.0, 2.0, 3.0, 0.9], 0.0, 0),
        ([1.0, 0.5, 0.7, 0.6, 0.55], 0.0, 3),  # the reference stays at 0.5
        (SCRIPT[:5], 0.0, 1),
        (SCRIPT[:5], 0.01, 2),  # 2.2 -> 2.199 is below min_delta
        # an improvement of exactly min_delta counts (values exact in binary)
        ([4.0, 3.75], 0.25, 0),
        ([4.0, 3.875], 0.25, 1),
        # drops below min_delta do not move the reference: 3.9 and 3.8 count, 3.7 is 0.3 below
        # 4.0 and resets, 3.6 is only 0.1 below 3.7
        ([4.0, 3.9, 3.8, 3.7, 3.6], 0.25, 1),
        # a slow creep never resets the count once the reference is set
        ([4.0, 3.99, 3.98, 3.97, 3.96, 3.95], 0.25, 5),
    ],
)
def test_epochs_without_improvement(values: list[float], min_delta: float, expected: int) -> None:
    assert epochs_without_improvement(values, min_delta) == expected


@pytest.mark.parametrize("min_delta", [-0.1, math.inf, math.nan])
def test_epochs_without_improvement_refuses_a_bad_min_delta(min_delta: float) -> None:
    with pytest.raises(ValueError, match="min_delta"):
        epochs_without_improvement([1.0, 0.5], min_delta)


# ---------------------------------------------------------------- stopping


def test_patience_stops_on_the_epoch_the_count_reaches_it(
    digits: TaskData, loops: list[ScriptedLoop], tmp_path: Path
) -> None:
    reported: list[EpochResult] = []
    result = train(
        config(patience=2),
        report=lambda epoch, _: reported.append(epoch),
        checkpoint_dir=tmp_path,
        task_data=digits,
    )
    # 2.199 (epoch 4) improves; 2.21 and 2.3 do not: the count reaches 2 on epoch 6
    assert result.status == "converged" and result.reason is None
    assert [epoch.epoch for epoch in result.epochs] == [1, 2, 3, 4, 5, 6]
    assert reported == result.epochs
    assert [epoch.converged for epoch in reported] == [False] * 5 + [True]
    assert loops[0].trained == [1, 2, 3, 4, 5, 6]  # no epoch trained past the stop
    assert result.best_epoch == BEST_EPOCH and result.best_valid_metric == 2.199
    assert math.isfinite(result.test_metric)
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)
    assert saved["epoch"] == 6
    assert [epoch["converged"] for epoch in saved["history"]] == [False] * 5 + [True]


def test_min_delta_stops_earlier_and_the_best_model_is_still_the_true_minimum(
    digits: TaskData, loops: list[ScriptedLoop], tmp_path: Path
) -> None:
    result = train(config(patience=2, min_delta=0.01), checkpoint_dir=tmp_path, task_data=digits)
    # 2.199 is only 0.001 below 2.2: epochs 4 and 5 both count, the run stops after epoch 5
    assert result.status == "converged"
    assert [epoch.epoch for epoch in result.epochs] == [1, 2, 3, 4, 5]
    assert [epoch.converged for epoch in result.epochs] == [False] * 4 + [True]
    # ... yet epoch 4 is the best model: a small improvement still counts for the score
    assert result.best_epoch == BEST_EPOCH and result.best_valid_metric == 2.199
    assert result.epochs[-1].best_valid_metric == 2.199
    loop = loops[0]
    best = torch.load(tmp_path / BEST_MODEL_FILE, weights_only=True)["model"]
    assert_same_weights(best, loop.weights[BEST_EPOCH])
    last = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["model"]
    assert_same_weights(last, loop.weights[5])
    assert any(not torch.equal(best[key], last[key]) for key in best)  # they are different


def test_without_patience_every_epoch_is_trained(
    digits: TaskData, loops: list[ScriptedLoop]
) -> None:
    result = train(config(), task_data=digits, evaluate_test=False)
    assert result.status == "completed"
    assert [epoch.epoch for epoch in result.epochs] == list(range(1, len(SCRIPT) + 1))
    assert not any(epoch.converged for epoch in result.epochs)
    assert result.best_epoch == BEST_EPOCH


@pytest.mark.parametrize(
    ("epochs", "status", "flags"),
    [
        (5, "completed", [False] * 5),  # the cap comes first: the count is only 1 at epoch 5
        (6, "converged", [False] * 5 + [True]),  # patience runs out on the last epoch
    ],
)
def test_the_epoch_cap_and_patience(
    epochs: int, status: str, flags: list[bool], digits: TaskData, loops: list[ScriptedLoop]
) -> None:
    reported: list[EpochResult] = []
    result = train(
        config(epochs=epochs, patience=2),
        report=lambda epoch, _: reported.append(epoch),
        task_data=digits,
        evaluate_test=False,
    )
    assert result.status == status
    assert [epoch.converged for epoch in reported] == flags


def test_best_model_in_memory_is_tested_after_an_early_stop(
    digits: TaskData, loops: list[ScriptedLoop]
) -> None:
    """Without a checkpoint directory the best (not the last) weights are tested."""
    result = train(config(patience=2, min_delta=0.01), task_data=digits)
    loop = loops[0]
    assert result.status == "converged" and loop.trained[-1] == 5
    loop.model.load_state_dict(loop.weights[BEST_EPOCH])
    assert result.test_metric == loop.loop.evaluate("test")[1]


# ---------------------------------------------------------------- resume


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 2, 3, 4, 5])
def test_an_interrupted_run_stops_where_an_uninterrupted_one_does(
    stop_after: int, digits: TaskData, loops: list[ScriptedLoop], tmp_path: Path
) -> None:
    # patience 3, min_delta 0.01: counts 0 0 0 1 2 3 -> stops after epoch 6; resumed after
    # epoch 4 or 5 with the count lost, it would run on to epoch 7 or 8
    trial = config(patience=3, min_delta=0.01)
    whole = train(trial, checkpoint_dir=tmp_path / "whole", task_data=digits)
    assert whole.status == "converged" and len(whole.epochs) == 6

    def interrupt(epoch: EpochResult, _: Path | None) -> None:
        if epoch.epoch == stop_after:
            raise Interrupted  # the checkpoint of this epoch is already written

    with pytest.raises(Interrupted):
        train(trial, report=interrupt, checkpoint_dir=tmp_path / "split", task_data=digits)
    reported: list[int] = []
    resumed = train(
        trial,
        report=lambda epoch, _: reported.append(epoch.epoch),
        checkpoint_dir=tmp_path / "split",
        task_data=digits,
    )
    assert reported == list(range(stop_after + 1, 7))
    assert loops[-1].trained == reported
    assert resumed.status == "converged"
    assert numbers(resumed.epochs) == numbers(whole.epochs)
    assert resumed.best_epoch == whole.best_epoch == BEST_EPOCH
    assert resumed.test_metric == whole.test_metric
    for name in (CHECKPOINT_FILE, BEST_MODEL_FILE):
        a = torch.load(tmp_path / "whole" / name, weights_only=False)["model"]
        b = torch.load(tmp_path / "split" / name, weights_only=False)["model"]
        assert_same_weights(a, b)


def test_a_converged_checkpoint_trains_no_more(
    digits: TaskData, loops: list[ScriptedLoop], tmp_path: Path
) -> None:
    trial = config(patience=2)
    first = train(trial, checkpoint_dir=tmp_path, task_data=digits)
    assert first.status == "converged" and len(first.epochs) == 6
    reported: list[int] = []
    # even with a higher cap: the run ended on its own
    again = train(
        trial.model_copy(update={"epochs": 20}),
        report=lambda epoch, _: reported.append(epoch.epoch),
        checkpoint_dir=tmp_path,
        task_data=digits,
    )
    assert reported == [] and loops[-1].trained == []
    assert again.status == "converged"
    assert numbers(again.epochs) == numbers(first.epochs)
    assert again.best_epoch == BEST_EPOCH and again.best_valid_metric == 2.199
    assert again.test_metric == first.test_metric  # the best model is still tested
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["epoch"] == 6


def test_a_checkpoint_from_before_early_stopping_resumes(
    digits: TaskData, loops: list[ScriptedLoop], tmp_path: Path
) -> None:
    train(config(epochs=5), checkpoint_dir=tmp_path, task_data=digits)
    path = tmp_path / CHECKPOINT_FILE
    saved = torch.load(path, weights_only=False)
    for epoch in saved["history"]:
        del epoch["converged"]  # as written before the field existed
    torch.save(saved, path)
    # the old history already has one epoch without improvement (epoch 5): patience 2 stops at 6
    result = train(config(patience=2), checkpoint_dir=tmp_path, task_data=digits)
    assert loops[-1].trained == [6]
    assert result.status == "converged"
    assert [epoch.converged for epoch in result.epochs] == [False] * 5 + [True]


# ---------------------------------------------------------------- config


def test_early_stopping_fields_default_to_off() -> None:
    plain = config()
    assert plain.patience is None and plain.min_delta == 0.0
    stopping = config(patience=3, min_delta=0.5)
    assert TrialConfig.model_validate(stopping.to_dict()) == stopping


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"min_delta": 0.01}, "set patience"),
        ({"patience": 0}, "patience"),
        ({"patience": -1}, "patience"),
        ({"patience": 2, "min_delta": -0.01}, "min_delta"),
        ({"patience": 2, "min_delta": math.inf}, "min_delta"),
        ({"patience": 2, "min_delta": math.nan}, "min_delta"),
    ],
    ids=["delta-alone", "patience-0", "patience-negative", "delta-negative", "inf", "nan"],
)
def test_bad_early_stopping_settings_are_refused(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        validate_config({"task": "digits", **values})


# ---------------------------------------------------------------- the Ray trainable


def test_the_trainable_reports_converged_and_returns(
    loops: list[ScriptedLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import tune

    import trials.trainable as trainable
    from trials.trainable import CONVERGED_KEY, TRIAL_CONFIG_KEY, report_keys, run_trial

    reports: list[dict[str, Any]] = []
    # No Ray session: asking Ray for the node id would start a local Ray instance.
    monkeypatch.setattr(trainable, "_node_name", lambda: "test-node")
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    run_trial({TRIAL_CONFIG_KEY: config(patience=2).to_dict()})  # returns: no TrialDiverged
    assert [report["epoch"] for report in reports] == [1, 2, 3, 4, 5, 6]
    assert [report[CONVERGED_KEY] for report in reports] == [False] * 5 + [True]
    assert CONVERGED_KEY in report_keys()
    assert set(report_keys()) <= set(reports[0])  # every key named is in every report
