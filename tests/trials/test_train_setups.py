"""The training loop's paper set-ups and fair comparisons: fixed data splits, continuous-stream
evaluation, rotating capped epochs, Zaremba's schedule and summed loss, independent random
streams, deterministic mode."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import trials.task_loops as loops_module
from trials.config import TrialConfig
from trials.data import TokenCorpus
from trials.models import LanguageModel, build_model
from trials.task_loops import batchify, language_loss, window_order
from trials.tasks import TaskData, load_task
from trials.train import scheduled_learning_rate, train


def tiny_corpus(train: int = 600, valid: int = 97, vocab: int = 7) -> TaskData:
    generator = torch.Generator().manual_seed(3)
    corpus = TokenCorpus(
        train=torch.randint(0, vocab, (train,), generator=generator),
        valid=torch.randint(0, vocab, (valid,), generator=generator),
        test=torch.randint(0, vocab, (valid,), generator=generator),
        vocab=tuple(chr(ord("a") + index) for index in range(vocab)),
        unit="char",
        source="random test tokens",
    )
    return TaskData(metric="bpc", corpus=corpus)


def char_config(**changes: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "task": "ptb-char",
        "hidden_size": 6,
        "batch_size": 4,
        "bptt": 5,
        "learning_rate": 0.01,
        "epochs": 1,
        "threads": 1,
    }
    return TrialConfig(**{**base, **changes})


# ---------------------------------------------------------------- data splits


def test_mnist_family_splits_follow_data_seed_not_the_training_seed() -> None:
    first = load_task(TrialConfig(task="digits", seed=0)).sequences
    other_seed = load_task(TrialConfig(task="digits", seed=5)).sequences
    other_split = load_task(TrialConfig(task="digits", seed=0, data_seed=1)).sequences
    assert first is not None and other_seed is not None and other_split is not None
    for name in ("train_x", "train_y", "valid_x", "valid_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(other_seed, name)), name
    assert not torch.equal(first.valid_y, other_split.valid_y)


# ---------------------------------------------------------------- evaluation


def test_one_stream_evaluation_equals_a_hand_computation() -> None:
    """13 tokens as one stream, windows of 3: the state crosses every window border, so the
    loss is that of reading the text one token at a time from a single zero state."""
    config = char_config(hidden_size=4, zoneout_cell=0.3, zoneout_hidden=0.2)
    model = build_model(config, vocab_size=5)
    assert isinstance(model, LanguageModel)
    tokens = torch.tensor([0, 3, 1, 4, 4, 2, 0, 1, 3, 3, 2, 4, 1])
    actual = language_loss(model, batchify(tokens, 1), bptt=3)

    model.eval()
    nats, state = 0.0, None
    with torch.no_grad():
        for step in range(len(tokens) - 1):
            logits, state = model(tokens[step : step + 1].view(1, 1), state)
            nats -= F.log_softmax(logits[0, 0].double(), dim=0)[tokens[step + 1]].item()
    assert actual == pytest.approx(nats / (len(tokens) - 1), rel=1e-6)

    # Two streams restart the second half from a zero state: a different (colder) reading.
    halves = language_loss(model, batchify(tokens, 2), bptt=3)
    assert halves != pytest.approx(actual, rel=1e-6)


def test_validation_reads_eval_streams_continuous_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...]] = []
    evaluate = loops_module.language_loss

    def recording(model: Any, streams: torch.Tensor, bptt: int) -> float:
        seen.append(tuple(streams.shape))
        return evaluate(model, streams, bptt)

    monkeypatch.setattr(loops_module, "language_loss", recording)
    data = tiny_corpus(valid=97)
    for streams in (1, 8):
        seen.clear()
        train(char_config(eval_streams=streams, max_batches_per_epoch=2), task_data=data)
        assert seen == [(97 // streams, streams)] * 2  # validation, then test


# ---------------------------------------------------------------- capped epochs


def test_window_order_continues_where_the_last_epoch_stopped() -> None:
    assert window_order(5, None, 3) == [0, 1, 2, 3, 4]
    assert window_order(5, 9, 3) == [0, 1, 2, 3, 4]
    assert window_order(5, 2, 1) == [0, 1]
    assert window_order(5, 2, 2) == [2, 3]
    assert window_order(5, 2, 3) == [4, 0]  # wraps round to the start of the text
    covered = [index for epoch in range(1, 8) for index in window_order(7, 3, epoch)]
    assert sorted(covered) == sorted(list(range(7)) * 3)  # 7 capped epochs: 3 passes, evenly


def record_training_inputs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, bool]]:
    """(inputs, started from a zero state) of every training forward pass."""
    seen: list[tuple[torch.Tensor, bool]] = []
    build = loops_module.build_model

    def recording_build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build(*args, **kwargs)
        forward = model.forward

        def recorded(inputs: torch.Tensor, state: Any = None) -> Any:
            if model.training:
                seen.append((inputs.clone(), state is None))
            return forward(inputs, state) if state is not None else forward(inputs)

        model.forward = recorded  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(loops_module, "build_model", recording_build)
    return seen


def test_capped_language_epochs_see_new_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_training_inputs(monkeypatch)
    data = tiny_corpus(train=600)  # 150 steps per stream: 30 windows of 5
    train(char_config(epochs=3, max_batches_per_epoch=12), task_data=data, evaluate_test=False)
    assert len(seen) == 36
    streams = batchify(data.corpus.train, 4)  # type: ignore[union-attr]
    starts = list(range(0, 149, 5))
    expected = [starts[(12 * epoch + k) % 30] for epoch in range(3) for k in range(12)]
    for (inputs, _), start in zip(seen, expected, strict=True):
        assert torch.equal(inputs, streams[start : start + inputs.shape[0]])
    cold = [index for index, (_, zero_state) in enumerate(seen) if zero_state]
    assert cold == [0, 12, 24, 30]  # each epoch, and the wrap to the start of the text


def test_capped_sequence_epochs_draw_fresh_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    build = loops_module.build_model

    def recording_build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build(*args, **kwargs)
        forward = model.forward

        def recorded(inputs: torch.Tensor) -> torch.Tensor:
            if model.training:
                seen.append(inputs.clone())
            return forward(inputs)

        model.forward = recorded  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(loops_module, "build_model", recording_build)
    config = TrialConfig(task="digits", hidden_size=4, batch_size=8, epochs=2, threads=1)
    train(config.model_copy(update={"max_batches_per_epoch": 1}), evaluate_test=False)
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


# ---------------------------------------------------------------- Zaremba's set-up


def test_zaremba_large_learning_rate_schedule() -> None:
    config = char_config(
        optimizer="sgd",
        learning_rate=1.0,
        lr_schedule="exponential",
        lr_decay=1 / 1.15,
        lr_constant_epochs=14,
        epochs=55,
    )
    rates = [scheduled_learning_rate(config, epoch) for epoch in range(1, 56)]
    assert rates[:14] == [1.0] * 14  # epochs 1-14 at the initial rate
    assert rates[14] == pytest.approx(1 / 1.15)
    assert rates[54] == pytest.approx(1.15 ** -(55 - 14))
    assert scheduled_learning_rate(char_config(), 3) is None  # no schedule: the optimizer's


def test_loss_summed_over_steps_scales_the_gradient_by_the_window_length() -> None:
    """One SGD step on the summed loss equals one on the token mean with bptt times the rate."""
    data = tiny_corpus()
    common: dict[str, Any] = {
        "optimizer": "sgd",
        "clip_norm": None,
        "max_batches_per_epoch": 1,
        "bptt": 5,
    }
    summed = char_config(loss_reduction="sum_over_steps", learning_rate=0.1, **common)
    mean = char_config(learning_rate=0.5, **common)
    results = []
    for config in (summed, mean):
        loop = loops_module.task_loop(data, config, torch.device("cpu"))
        optimizer = torch.optim.SGD(loop.model.parameters(), lr=config.learning_rate)
        loss, _ = loop.train_epoch(optimizer, config, epoch=1)
        results.append((loss, {k: v.clone() for k, v in loop.model.state_dict().items()}))
    (loss_a, weights_a), (loss_b, weights_b) = results
    assert loss_a == loss_b  # the reported loss is per token either way
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=1e-5, atol=1e-7)


def test_init_range_sets_every_parameter_uniform() -> None:
    config = TrialConfig(
        task="ptb-word", embedding_size=40, hidden_size=40, num_layers=2, init_range=0.04
    )
    model = build_model(config, vocab_size=50)
    for name, parameter in model.named_parameters():
        largest = float(parameter.detach().abs().max())
        assert 0.03 < largest <= 0.04, name  # spread over the range, never beyond it
    again = build_model(config, vocab_size=50)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- fair comparisons


@pytest.mark.parametrize(
    "change",
    [
        {"recurrent_dropout": 0.5},
        {"zoneout_cell": 0.5, "zoneout_hidden": 0.05},
        {"zoneout_cell": 0.2, "zoneout_hidden": 0.2, "zoneout_shared_mask": True},
        {"dropout": 0.5},
    ],
    ids=["recurrent-dropout", "rates", "shared-mask", "dropout"],
)
def test_configs_differing_in_a_rate_share_weights_and_batches(
    change: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_corpus()
    plain = char_config(epochs=2, max_batches_per_epoch=3)
    other = plain.model_copy(update=change)
    torch.manual_seed(99)  # the global generator's state must not matter
    first = build_model(plain, vocab_size=7)
    torch.randn(1000)
    second = build_model(other, vocab_size=7)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    seen = record_training_inputs(monkeypatch)
    train(plain, task_data=data, evaluate_test=False)
    plain_inputs = [inputs for inputs, _ in seen]
    seen.clear()
    train(other, task_data=data, evaluate_test=False)
    assert len(plain_inputs) == len(seen) == 6
    assert all(torch.equal(a, b) for a, (b, _) in zip(plain_inputs, seen, strict=True))


def test_sequence_order_is_the_same_across_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    orders: list[list[torch.Tensor]] = []
    for rate in (0.0, 0.3):
        config = TrialConfig(task="digits", hidden_size=4, batch_size=16, zoneout_hidden=rate)
        loop = loops_module.task_loop(load_task(config), config, torch.device("cpu"))
        assert isinstance(loop, loops_module.SequenceLoop)
        orders.append(list(loop._batches(config, epoch=2)))
    assert all(torch.equal(a, b) for a, b in zip(*orders, strict=True))


# ---------------------------------------------------------------- deterministic mode


def test_deterministic_mode_is_on_during_the_run_only(monkeypatch: pytest.MonkeyPatch) -> None:
    flags: list[bool] = []
    build = loops_module.build_model

    def probing_build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        flags.append(torch.are_deterministic_algorithms_enabled())
        return build(*args, **kwargs)

    monkeypatch.setattr(loops_module, "build_model", probing_build)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    data = tiny_corpus()
    config = char_config(max_batches_per_epoch=2, zoneout_cell=0.5, deterministic=True)
    first = train(config, task_data=data)
    assert flags == [True] and not torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    second = train(config, task_data=data)
    assert first.epochs[0].valid_loss == second.epochs[0].valid_loss
    assert first.test_loss == second.test_loss and math.isfinite(first.test_loss)
