"""The networks: language model inputs, every LSTM regularizer in the one ZoneoutLSTM, the
all-zero-rate model against torch.nn.LSTM, initial weights independent of the regularizers.
(The regularizers' own semantics are tested with the layer, in test_zoneout.py.)"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from trials.config import TrialConfig
from trials.models import (
    LanguageModel,
    PrivateStreamDropout,
    SequenceClassifier,
    build_model,
    build_recurrent,
    detach_state,
)
from trials.zoneout import ZoneoutLSTM


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


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
    "options",
    [
        {},
        {"zoneout_cell": 0.5, "zoneout_hidden": 0.05},
        {"recurrent_dropout": 0.25},
        {"recurrent_batch_norm": True},
        {"zoneout_cell": 0.15, "zoneout_hidden": 0.15, "zoneout_shared_mask": True},
        {"recurrent_batch_norm": True, "zoneout_cell": 0.15, "zoneout_hidden": 0.15},
    ],
    ids=["plain", "z", "rec-drop", "rec-bn", "shared", "bn-z"],
)
def test_every_lstm_regularizer_runs_in_the_one_zoneout_lstm(options: dict[str, object]) -> None:
    config = TrialConfig(task="digits", hidden_size=8, **options)  # type: ignore[arg-type]
    layer = build_recurrent(config, input_size=3, max_steps=5)
    assert type(layer) is ZoneoutLSTM
    for name in (
        "zoneout_cell",
        "zoneout_hidden",
        "recurrent_dropout",
        "zoneout_shared_mask",
        "recurrent_batch_norm",
    ):
        assert getattr(layer, name) == getattr(config, name), name
    assert layer.batch_norm_steps == 5
    output, (h, c) = layer(torch.rand(5, 2, 3))
    assert output.shape == (5, 2, 8) and h.shape == c.shape == (1, 2, 8)


# ---------------------------------------------------------------- all rates 0 == nn.LSTM


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"zoneout_cell": 0.0, "zoneout_hidden": 0.0, "recurrent_dropout": 0.0},
        {"zoneout_shared_mask": True},
    ],
    ids=["defaults", "zero-rates", "shared-mask"],
)
def test_all_zero_rate_model_equals_one_built_on_torch_lstm(
    options: dict[str, object], num_layers: int
) -> None:
    """The whole language model, float64, in training mode: outputs and every gradient are
    those of the same model whose recurrence is torch.nn.LSTM with the same weights."""
    config = TrialConfig(
        task="ptb-word", embedding_size=5, hidden_size=7, num_layers=num_layers, **options
    )  # type: ignore[arg-type]
    model = build_model(config, vocab_size=11).double().train()
    reference = copy.deepcopy(model)
    reference.recurrent = nn.LSTM(5, 7, num_layers).double()
    reference.recurrent.load_state_dict(model.recurrent.state_dict())
    tokens = torch.randint(0, 11, (9, 3))
    state = (torch.randn(num_layers, 3, 7, dtype=torch.float64),) * 2
    outputs = []
    for network in (model, reference):
        logits, (h, c) = network(tokens, state)
        (logits.square().sum() + h.sum() + c.sum()).backward()
        outputs.append((logits, h, c, [p.grad for p in network.parameters()]))
    (logits, h, c, grads), (ref_logits, ref_h, ref_c, ref_grads) = outputs
    assert torch.equal(logits, ref_logits)
    assert torch.equal(h, ref_h) and torch.equal(c, ref_c)
    assert len(grads) == len(ref_grads)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert grad is not None and torch.equal(grad, ref_grad)


# ---------------------------------------------------------------- equal terms across configs


@pytest.mark.parametrize(
    "change",
    [
        {"recurrent_dropout": 0.5},
        {"zoneout_cell": 0.15, "zoneout_hidden": 0.15, "zoneout_shared_mask": True},
        {"recurrent_batch_norm": True},
    ],
    ids=["rec-drop", "shared", "rec-bn"],
)
def test_regularizers_leave_the_initial_weights_alone(change: dict[str, object]) -> None:
    plain = TrialConfig(task="pmnist", hidden_size=6, seed=3)
    other = plain.model_copy(update=change)
    TrialConfig.model_validate(other.to_dict())  # a valid config, not just a copy
    first = build_model(plain, steps=8).state_dict()
    torch.randn(100)  # the global generator's state must not matter
    second = build_model(other, steps=8).state_dict()
    assert set(first) <= set(second)  # recurrent batch norm adds its gains, nothing else
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def test_shared_mask_config_keeps_c_and_h_of_a_unit_together() -> None:
    """pMNIST's shared mask through the config: wherever a unit's c kept its old value, so did
    its h, and the other way round (separate masks would split them about half the time)."""
    for shared, expect_split in ((True, False), (False, True)):
        config = TrialConfig(
            task="pmnist", hidden_size=64, zoneout_cell=0.5, zoneout_hidden=0.5,
            zoneout_shared_mask=shared,
        )  # fmt: skip
        layer = build_recurrent(config, input_size=3, max_steps=6).double().train()
        inputs = torch.randn(6, 16, 3, dtype=torch.float64)
        h, c = torch.randn(1, 16, 64, dtype=torch.float64), torch.randn(1, 16, 64).double()
        split = False
        for step in range(6):
            _, (new_h, new_c) = layer(inputs[step : step + 1], (h, c))
            kept_h, kept_c = new_h == h, new_c == c
            assert kept_c.float().mean().item() > 0.3  # zoneout is active
            split |= bool((kept_h != kept_c).any())
            h, c = new_h, new_c
        assert split is expect_split


def test_private_stream_dropout_drops_scales_and_leaves_eval_alone() -> None:
    dropout = PrivateStreamDropout(0.25).train()
    out = dropout(torch.ones(20_000))
    torch.testing.assert_close(out.unique(), torch.tensor([0.0, 1 / 0.75]))  # inverted dropout
    assert 0.23 < float((out == 0).float().mean()) < 0.27
    assert not torch.equal(out, dropout(torch.ones(20_000)))  # fresh masks per call
    values = torch.randn(50)
    assert torch.equal(dropout.eval()(values), values)


def test_dropout_rate_changes_no_later_random_draw() -> None:
    """Configs differing only in the non-recurrent dropout rate leave torch's global stream,
    which zoneout's masks are seeded from, in the same place after each training pass."""
    states = []
    for rate in (0.0, 0.4):
        config = TrialConfig(
            task="ptb-char", hidden_size=8, zoneout_cell=0.5, zoneout_hidden=0.5, dropout=rate
        )
        model = build_model(config, vocab_size=6).train()
        torch.manual_seed(5)
        model(torch.randint(0, 6, (4, 3)))
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])


def test_batch_norm_classifier_trains_a_step() -> None:
    config = TrialConfig(task="digits", hidden_size=8, recurrent_batch_norm=True)
    model = build_model(config, input_size=1, steps=10, num_classes=10)
    assert isinstance(model, SequenceClassifier) and model.recurrent.recurrent_batch_norm
    logits = model(torch.rand(10, 6, 1))
    nn.functional.cross_entropy(logits, torch.arange(6)).backward()
    gamma = model.recurrent.bn_weight_hh_l0
    assert gamma.grad is not None and torch.allclose(gamma, torch.full_like(gamma, 0.1))
