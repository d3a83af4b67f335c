"""The networks: language model inputs, the step-by-step LSTM against torch.nn.LSTM, recurrent
dropout (Semeniuta et al.) and recurrent batch normalization (Cooijmans et al.)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from trials.config import TrialConfig
from trials.models import (
    LanguageModel,
    SequenceClassifier,
    StepwiseLSTM,
    build_model,
    build_recurrent,
    detach_state,
)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def copy_lstm_weights(stepwise: StepwiseLSTM, reference: nn.LSTM) -> None:
    with torch.no_grad():
        for index, layer in enumerate(stepwise.layers):
            layer.weight_ih.copy_(getattr(reference, f"weight_ih_l{index}"))
            layer.weight_hh.copy_(getattr(reference, f"weight_hh_l{index}"))
            layer.bias.copy_(
                getattr(reference, f"bias_ih_l{index}") + getattr(reference, f"bias_hh_l{index}")
            )


# ---------------------------------------------------------------- language model and classifier


def test_language_model_one_hot() -> None:
    config = TrialConfig(task="ptb-char", hidden_size=16)
    model = build_model(config, vocab_size=50)
    assert isinstance(model, LanguageModel)
    assert model.embedding is None
    # one-hot input: the first recurrent matrix reads the 50 symbols directly
    assert model.recurrent.weight_ih_l0.shape == (64, 50)
    tokens = torch.randint(0, 50, (7, 3))
    logits, state = model(tokens)
    assert logits.shape == (7, 3, 50)
    assert isinstance(state, tuple) and state[0].shape == (1, 3, 16)
    # the state carries over: feeding the second half with the first half's state equals one pass
    model.eval()
    full, _ = model(tokens)
    first, mid = model(tokens[:4])
    second, _ = model(tokens[4:], detach_state(mid))
    torch.testing.assert_close(torch.cat([first, second]), full)


def test_language_model_embedding_with_tied_weights() -> None:
    config = TrialConfig(
        task="ptb-word", hidden_size=12, embedding_size=12, tie_weights=True, num_layers=2
    )
    model = build_model(config, vocab_size=30)
    assert isinstance(model, LanguageModel) and model.embedding is not None
    assert model.decoder.weight is model.embedding.weight
    names = [name for name, _ in model.named_parameters()]
    assert "decoder.weight" not in names  # counted once
    logits, _ = model(torch.randint(0, 30, (5, 2)))
    assert logits.shape == (5, 2, 30)
    logits.sum().backward()
    assert model.embedding.weight.grad is not None


def test_language_model_untied_embedding() -> None:
    config = TrialConfig(task="ptb-word", hidden_size=12, embedding_size=6)
    model = build_model(config, vocab_size=30)
    assert isinstance(model, LanguageModel) and model.embedding is not None
    assert model.decoder.weight is not model.embedding.weight
    assert model.recurrent.weight_ih_l0.shape == (48, 6)


def test_language_task_needs_vocab_size() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(TrialConfig(task="ptb-char"))


def test_sequence_classifier_reads_the_last_step() -> None:
    config = TrialConfig(task="digits", hidden_size=8)
    model = build_model(config, input_size=1, steps=64, num_classes=10)
    assert isinstance(model, SequenceClassifier)
    assert model(torch.rand(64, 5, 1)).shape == (5, 10)


@pytest.mark.parametrize(
    ("options", "stepwise"),
    [
        ({}, False),
        ({"zoneout_cell": 0.5, "zoneout_hidden": 0.05}, False),
        ({"recurrent_dropout": 0.25}, True),
        ({"recurrent_batch_norm": True}, True),
    ],
    ids=["plain", "z", "rec-drop", "rec-bn"],
)
def test_build_recurrent_picks_the_stepwise_lstm_only_when_needed(
    options: dict[str, object], stepwise: bool
) -> None:
    config = TrialConfig(task="digits", hidden_size=8, **options)  # type: ignore[arg-type]
    layer = build_recurrent(config, input_size=3, max_steps=5)
    assert isinstance(layer, StepwiseLSTM) is stepwise
    output, (h, c) = layer(torch.rand(5, 2, 3))
    assert output.shape == (5, 2, 8) and h.shape == c.shape == (1, 2, 8)


# ---------------------------------------------------------------- StepwiseLSTM == nn.LSTM


@pytest.mark.parametrize("num_layers", [1, 2])
def test_stepwise_lstm_without_regularization_equals_torch_lstm(num_layers: int) -> None:
    reference = nn.LSTM(5, 7, num_layers)
    stepwise = StepwiseLSTM(5, 7, num_layers)
    copy_lstm_weights(stepwise, reference)
    inputs = torch.randn(9, 3, 5)
    h0, c0 = torch.randn(num_layers, 3, 7), torch.randn(num_layers, 3, 7)
    for mode in (True, False):  # no randomness anywhere: train and eval agree with torch
        stepwise.train(mode)
        expected, (eh, ec) = reference(inputs, (h0, c0))
        actual, (ah, ac) = stepwise(inputs, (h0, c0))
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ah, eh, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ac, ec, rtol=1e-5, atol=1e-6)
    # and without an initial state (zeros), gradients flow to every parameter
    out, _ = stepwise(inputs)
    expected, _ = reference(inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None for p in stepwise.parameters())


def test_stepwise_lstm_eval_uses_expected_rates() -> None:
    """With zoneout in eval mode: h_t = z*h_{t-1} + (1-z)*h~_t, likewise c (deterministic)."""
    reference = nn.LSTM(4, 6)
    stepwise = StepwiseLSTM(4, 6, zoneout_cell=0.5, zoneout_hidden=0.25).eval()
    copy_lstm_weights(stepwise, reference)
    inputs = torch.randn(3, 2, 4)
    h, c = torch.zeros(2, 6), torch.zeros(2, 6)
    expected = []
    for step in range(3):
        _, (h_new, c_new) = reference(inputs[step : step + 1], (h[None], c[None]))
        h = 0.25 * h + 0.75 * h_new[0]
        c = 0.5 * c + 0.5 * c_new[0]
        expected.append(h)
    output, _ = stepwise(inputs)
    torch.testing.assert_close(output, torch.stack(expected), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- recurrent dropout


def _one_step_gates(
    layer: nn.Module, x: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    gates = x @ layer.weight_ih.t() + h0 @ layer.weight_hh.t() + layer.bias
    i, f, g, o = gates.chunk(4, dim=1)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def test_recurrent_dropout_drops_only_the_cell_update() -> None:
    rate = 0.5
    model = StepwiseLSTM(3, 200, recurrent_dropout=rate).train()
    x = torch.randn(1, 4, 3)
    h0, c0 = torch.randn(1, 4, 200), torch.randn(1, 4, 200)
    with torch.no_grad():
        _, (_, c1) = model(x, (h0, c0))
        i, f, g, _ = _one_step_gates(model.layers[0], x[0], h0[0])
    kept_memory = f * c0[0]  # the update was dropped: the memory itself survives
    full_update = f * c0[0] + i * g / (1.0 - rate)  # inverted dropout scales what is kept
    dropped = torch.isclose(c1[0], kept_memory, atol=1e-6)
    kept = torch.isclose(c1[0], full_update, atol=1e-5)
    assert bool((dropped | kept).all()), "every cell is either f*c or f*c + i*g/(1-p)"
    fraction = dropped.float().mean().item()
    assert 0.35 < fraction < 0.65  # about `rate` of the updates are dropped
    assert not torch.isclose(c1[0], torch.zeros_like(c1[0])).any()  # never the memory


def test_recurrent_dropout_in_eval_mode_is_deterministic_and_plain_lstm() -> None:
    reference = nn.LSTM(3, 8)
    model = StepwiseLSTM(3, 8, recurrent_dropout=0.5)
    copy_lstm_weights(model, reference)
    inputs = torch.randn(6, 2, 3)
    model.train()
    first, _ = model(inputs)
    second, _ = model(inputs)
    assert not torch.allclose(first, second)  # training: fresh masks each call
    model.eval()
    a, _ = model(inputs)
    b, _ = model(inputs)
    assert torch.equal(a, b)
    expected, _ = reference(inputs)
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- recurrent batch normalization


def test_recurrent_batch_norm_keeps_separate_statistics_per_step() -> None:
    steps = 4
    model = StepwiseLSTM(2, 5, batch_norm_steps=steps).train()
    layer = model.layers[0]
    assert layer.norm_input is not None and layer.norm_cell is not None
    # step t's inputs are centred on 10*t: each step's running mean must follow its own step
    inputs = torch.randn(3, 64, 2) * 0.1 + torch.arange(3).view(3, 1, 1) * 10.0
    output, _ = model(inputs)
    assert output.shape == (3, 64, 5) and torch.isfinite(output).all()
    means = [bn.running_mean.clone() for bn in layer.norm_input.steps]
    counts = [int(bn.num_batches_tracked) for bn in layer.norm_input.steps]
    assert counts == [1, 1, 1, 0]  # a 3-step batch touches steps 0..2 only
    expected_mean = (inputs.mean(dim=1) @ layer.weight_ih.t()).detach()  # (steps, 4H)
    for step in range(3):
        # BatchNorm1d momentum 0.1 from a zero start
        torch.testing.assert_close(means[step], 0.1 * expected_mean[step], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(means[1], means[2])
    assert torch.equal(means[3], torch.zeros_like(means[3]))
    assert [int(bn.num_batches_tracked) for bn in layer.norm_cell.steps] == [1, 1, 1, 0]


def test_recurrent_batch_norm_eval_is_deterministic_and_handles_longer_sequences() -> None:
    model = StepwiseLSTM(2, 5, zoneout_cell=0.2, zoneout_hidden=0.1, batch_norm_steps=3)
    model.train()
    for _ in range(3):
        model(torch.randn(3, 16, 2))
    model.eval()
    inputs = torch.randn(7, 2, 2)  # longer than training: the last step's statistics reused
    a, _ = model(inputs)
    b, _ = model(inputs)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    # eval mode does not change the statistics
    before = model.layers[0].norm_input.steps[0].running_mean.clone()
    model(inputs)
    assert torch.equal(model.layers[0].norm_input.steps[0].running_mean, before)


def test_batch_norm_classifier_trains_a_step() -> None:
    config = TrialConfig(task="digits", hidden_size=8, recurrent_batch_norm=True)
    model = build_model(config, input_size=1, steps=10, num_classes=10)
    assert isinstance(model.recurrent, StepwiseLSTM)
    logits = model(torch.rand(10, 6, 1))
    nn.functional.cross_entropy(logits, torch.arange(6)).backward()
    gamma = model.recurrent.layers[0].norm_hidden.weight
    assert gamma.grad is not None and torch.allclose(gamma, torch.full_like(gamma, 0.1))
