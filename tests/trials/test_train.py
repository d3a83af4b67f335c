"""The training loop on real data (sklearn digits, a Penn Treebank character subset): learning,
truncated BPTT, exact resume from checkpoints, divergence, learning-rate schedules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import trials.task_loops as loops_module
from trials.config import TrialConfig
from trials.data import TokenCorpus
from trials.tasks import TaskData, load_task
from trials.train import BEST_MODEL_FILE, CHECKPOINT_FILE, EpochResult, train

# Metrics that must repeat exactly; timing fields (seconds, tokens/s) naturally differ.
REPEATABLE = ("epoch", "train_loss", "valid_loss", "valid_metric", "best_valid_metric")


def digits_config(**changes: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "task": "digits",
        "hidden_size": 16,
        "batch_size": 32,
        "eval_batch_size": 256,
        "learning_rate": 0.02,
        "max_batches_per_epoch": 20,
        "epochs": 4,
        "threads": 1,
        "seed": 0,
    }
    base.update(changes)
    return TrialConfig(**base)


def char_config(**changes: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "task": "ptb-char",
        "train_tokens": 24_000,
        "valid_tokens": 4_000,
        "hidden_size": 32,
        "batch_size": 16,
        "eval_batch_size": 16,
        "bptt": 30,
        "learning_rate": 0.01,
        "epochs": 3,
        "threads": 1,
        "seed": 0,
    }
    base.update(changes)
    return TrialConfig(**base)


@pytest.fixture(scope="module")
def digits() -> TaskData:
    return load_task(digits_config())


@pytest.fixture(scope="module")
def chars() -> TaskData:
    loaded = load_task(char_config())
    corpus = loaded.corpus
    assert corpus is not None
    # The real test split (~440k characters) is cut here only to keep evaluation quick.
    short_test = TokenCorpus(
        train=corpus.train,
        valid=corpus.valid,
        test=corpus.test[:8_000],
        vocab=corpus.vocab,
        unit=corpus.unit,
        source=corpus.source,
    )
    return TaskData(metric=loaded.metric, corpus=short_test)


def repeatable(epochs: list[EpochResult]) -> list[tuple[Any, ...]]:
    return [
        (*(getattr(epoch, name) for name in REPEATABLE), epoch.learning_rate) for epoch in epochs
    ]


# ---------------------------------------------------------------- learning


def test_digits_run_learns_and_reports_every_epoch(digits: TaskData, tmp_path: Path) -> None:
    reported: list[tuple[EpochResult, Path | None]] = []
    result = train(
        digits_config(),
        report=lambda epoch, where: reported.append((epoch, where)),
        checkpoint_dir=tmp_path,
        task_data=digits,
    )
    assert result.status == "completed" and result.reason is None
    assert result.metric == "error"
    assert [epoch.epoch for epoch, _ in reported] == [1, 2, 3, 4]
    assert all(where == tmp_path for _, where in reported)
    assert [epoch for epoch, _ in reported] == result.epochs
    first, last = result.epochs[0], result.epochs[-1]
    chance = math.log(10)
    assert last.valid_loss < first.valid_loss
    assert last.valid_loss < chance - 0.2  # clearly better than a uniform guess
    assert result.best_valid_metric < 0.85  # error rate below chance (0.9)
    assert result.best_valid_metric == min(epoch.valid_metric for epoch in result.epochs)
    assert result.epochs[result.best_epoch - 1].valid_metric == result.best_valid_metric
    bests = [epoch.best_valid_metric for epoch in result.epochs]
    assert bests == sorted(bests, reverse=True)
    assert all(epoch.tokens_per_second > 0 and epoch.seconds > 0 for epoch in result.epochs)
    assert 0.0 <= result.test_metric < 0.9 and math.isfinite(result.test_loss)
    assert (tmp_path / CHECKPOINT_FILE).exists() and (tmp_path / BEST_MODEL_FILE).exists()
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)
    assert saved["epoch"] == 4 and len(saved["history"]) == 4
    assert TrialConfig.model_validate(saved["config"]) == digits_config()


def test_test_split_is_skipped_when_asked(digits: TaskData) -> None:
    result = train(digits_config(epochs=1), task_data=digits, evaluate_test=False)
    assert result.status == "completed" and math.isnan(result.test_metric)


def unigram_entropy_bits(tokens: torch.Tensor, vocab_size: int) -> float:
    counts = torch.bincount(tokens, minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


def test_truncated_bptt_beats_the_unigram_baseline(
    chars: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = char_config()
    assert chars.corpus is not None
    baseline = unigram_entropy_bits(chars.corpus.train, chars.corpus.vocab_size)
    assert 4.0 < baseline < 4.7  # PTB characters: about 4.4 bits

    windows: list[tuple[int, bool, bool]] = []  # (length, has state, state requires grad)
    build = loops_module.build_model

    def recording_build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build(*args, **kwargs)
        forward = model.forward

        def recorded(tokens: torch.Tensor, state: Any = None) -> Any:
            if model.training:
                windows.append(
                    (
                        tokens.shape[0],
                        state is not None,
                        state is not None and state[0].requires_grad,
                    )
                )
            return forward(tokens, state)

        model.forward = recorded  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(loops_module, "build_model", recording_build)
    result = train(config, task_data=chars, evaluate_test=False)
    assert result.status == "completed" and result.metric == "bpc"

    # truncated BPTT: 24,000 tokens in 16 streams of 1,500 -> 1,499 targets in windows of 30
    per_epoch = math.ceil((24_000 // 16 - 1) / 30)
    assert len(windows) == per_epoch * config.epochs
    assert windows[0] == (30, False, False)  # each epoch starts from a zero state
    assert windows[1] == (30, True, False)  # the state flows on, its graph cut
    assert windows[per_epoch - 1][0] == (24_000 // 16 - 1) % 30  # the short last window
    assert windows[per_epoch] == (30, False, False)

    bpc = [epoch.valid_metric for epoch in result.epochs]
    assert bpc[-1] < bpc[0]
    assert bpc[-1] < baseline - 0.5, f"valid BPC {bpc[-1]:.3f} vs unigram {baseline:.3f}"
    for epoch in result.epochs:  # the metric is the loss in bits
        assert epoch.valid_metric == pytest.approx(epoch.valid_loss / math.log(2))
        # tokens/s counts the training targets of the epoch
        assert epoch.tokens_per_second > 0


def test_max_batches_per_epoch_caps_the_windows(chars: TaskData) -> None:
    capped = train(char_config(epochs=1, max_batches_per_epoch=2), task_data=chars)
    assert capped.status == "completed"
    assert capped.epochs[0].train_loss > 3.0  # two steps barely move from ~ln(50) = 3.9
    assert math.isfinite(capped.test_metric)


# ---------------------------------------------------------------- resume


def _final_weights(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / CHECKPOINT_FILE, weights_only=False)["model"]


@pytest.mark.parametrize("which", ["digits", "chars"])
def test_resume_gives_the_numbers_of_an_uninterrupted_run(
    which: str, digits: TaskData, chars: TaskData, tmp_path: Path
) -> None:
    if which == "digits":
        loaded = digits
        config = digits_config(
            epochs=3,
            max_batches_per_epoch=6,
            zoneout_cell=0.3,
            zoneout_hidden=0.1,
            lr_schedule="step",
            lr_decay=0.5,
        )
    else:
        loaded = chars
        config = char_config(
            epochs=3,
            max_batches_per_epoch=8,
            zoneout_cell=0.5,
            zoneout_hidden=0.05,
            dropout=0.1,
            lr_schedule="plateau",
        )
    whole = train(config, checkpoint_dir=tmp_path / "whole", task_data=loaded)

    reported: list[int] = []
    first = train(
        config.model_copy(update={"epochs": 1}),
        checkpoint_dir=tmp_path / "split",
        task_data=loaded,
        evaluate_test=False,
    )
    assert len(first.epochs) == 1
    resumed = train(
        config,
        report=lambda epoch, _: reported.append(epoch.epoch),
        checkpoint_dir=tmp_path / "split",
        task_data=loaded,
    )
    assert reported == [2, 3]  # epoch 1 came from the checkpoint, not retrained
    assert resumed.status == whole.status == "completed"
    assert repeatable(resumed.epochs) == repeatable(whole.epochs)
    assert resumed.best_epoch == whole.best_epoch
    assert resumed.test_metric == whole.test_metric
    a, b = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_without_restoring_the_rng_would_differ(digits: TaskData, tmp_path: Path) -> None:
    """Guards the test above: with zoneout, a fresh RNG after resuming changes the numbers."""
    config = digits_config(epochs=2, max_batches_per_epoch=6, zoneout_cell=0.5, zoneout_hidden=0.5)
    whole = train(config, checkpoint_dir=tmp_path / "whole", task_data=digits)
    train(
        config.model_copy(update={"epochs": 1}), checkpoint_dir=tmp_path / "split", task_data=digits
    )
    saved = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=False)
    torch.manual_seed(12345)
    saved["rng"]["torch"] = torch.get_rng_state()
    torch.save(saved, tmp_path / "split" / CHECKPOINT_FILE)
    resumed = train(config, checkpoint_dir=tmp_path / "split", task_data=digits)
    assert repeatable(resumed.epochs)[0] == repeatable(whole.epochs)[0]
    assert repeatable(resumed.epochs)[1] != repeatable(whole.epochs)[1]


def test_resume_false_starts_over(digits: TaskData, tmp_path: Path) -> None:
    config = digits_config(epochs=1, max_batches_per_epoch=3)
    train(config, checkpoint_dir=tmp_path, task_data=digits)
    again = train(config, checkpoint_dir=tmp_path, task_data=digits, resume=False)
    assert [epoch.epoch for epoch in again.epochs] == [1]


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize("which", ["digits", "chars"])
def test_huge_learning_rate_diverges(which: str, digits: TaskData, chars: TaskData) -> None:
    changes = {"optimizer": "sgd", "learning_rate": 1e6, "clip_norm": None, "epochs": 3}
    if which == "digits":
        config, loaded = digits_config(max_batches_per_epoch=5, **changes), digits
    else:
        config, loaded = char_config(max_batches_per_epoch=5, **changes), chars
    result = train(config, task_data=loaded)
    assert result.status == "diverged"
    assert result.reason is not None and "diverged in epoch" in result.reason
    # whatever epochs finished before the explosion are kept, and none after it
    assert len(result.epochs) < 3
    assert all(math.isfinite(epoch.valid_loss) for epoch in result.epochs)


def test_nan_validation_loss_keeps_the_last_good_epoch(
    digits: TaskData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluate = loops_module.sequence_loss_and_error
    calls = {"n": 0}

    def nan_on_second_validation(*args: Any, **kwargs: Any) -> tuple[float, float]:
        calls["n"] += 1
        loss, error = evaluate(*args, **kwargs)
        return (math.nan, error) if calls["n"] == 2 else (loss, error)

    monkeypatch.setattr(loops_module, "sequence_loss_and_error", nan_on_second_validation)
    reported: list[int] = []
    config = digits_config(epochs=3, max_batches_per_epoch=5)
    result = train(
        config,
        report=lambda e, _: reported.append(e.epoch),
        checkpoint_dir=tmp_path,
        task_data=digits,
    )
    assert result.status == "diverged"
    assert result.reason is not None
    assert "epoch 2" in result.reason and "validation loss" in result.reason
    assert [epoch.epoch for epoch in result.epochs] == [1] == reported
    assert result.best_epoch == 1 and math.isfinite(result.best_valid_metric)
    assert math.isfinite(result.test_metric)  # the best (epoch 1) checkpoint is tested
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)
    assert saved["epoch"] == 1  # the checkpoint is the last good epoch


def test_nan_training_loss_stops_the_run(chars: TaskData, monkeypatch: pytest.MonkeyPatch) -> None:
    build = loops_module.build_model
    calls = {"n": 0}
    per_epoch = 4

    def poisoned_build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build(*args, **kwargs)
        forward = model.forward

        def poisoned(tokens: torch.Tensor, state: Any = None) -> Any:
            logits, state = forward(tokens, state)
            if model.training:
                calls["n"] += 1
                if calls["n"] == per_epoch + 2:  # the second window of epoch 2
                    logits = logits * math.nan
            return logits, state

        model.forward = poisoned  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(loops_module, "build_model", poisoned_build)
    config = char_config(epochs=3, max_batches_per_epoch=per_epoch)
    result = train(config, task_data=chars, evaluate_test=False)
    assert result.status == "diverged"
    assert result.reason is not None and "epoch 2" in result.reason and "nan" in result.reason
    assert [epoch.epoch for epoch in result.epochs] == [1]
    assert result.best_epoch == 1


# ---------------------------------------------------------------- learning-rate schedules


@pytest.mark.parametrize(
    ("schedule", "every", "expected"),
    [
        ("none", 1, [0.01, 0.01, 0.01]),
        ("step", 1, [0.01, 0.005, 0.0025]),
        ("step", 2, [0.01, 0.01, 0.005]),
        ("exponential", 1, [0.01, 0.005, 0.0025]),
    ],
)
def test_learning_rate_schedules(
    schedule: str, every: int, expected: list[float], digits: TaskData
) -> None:
    config = digits_config(
        epochs=3,
        max_batches_per_epoch=2,
        learning_rate=0.01,
        lr_schedule=schedule,
        lr_decay=0.5,
        lr_decay_every=every,
    )
    result = train(config, task_data=digits, evaluate_test=False)
    assert [epoch.learning_rate for epoch in result.epochs] == pytest.approx(expected)


def test_plateau_schedule_decays_after_a_validation_loss_stops_improving(
    digits: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses = iter([1.0, 2.0, 0.5, 0.6, 0.7])

    def scripted(*args: Any, **kwargs: Any) -> tuple[float, float]:
        return next(losses), 0.5

    monkeypatch.setattr(loops_module, "sequence_loss_and_error", scripted)
    config = digits_config(
        epochs=5,
        max_batches_per_epoch=1,
        learning_rate=0.01,
        lr_schedule="plateau",
        lr_decay=0.5,
        lr_decay_patience=0,
    )
    result = train(config, task_data=digits, evaluate_test=False)
    # epoch 2 is worse -> epoch 3 runs at half; epoch 4 worse than 3 -> epoch 5 at a quarter
    assert [epoch.learning_rate for epoch in result.epochs] == pytest.approx(
        [0.01, 0.01, 0.005, 0.005, 0.0025]
    )
