"""ZoneoutLSTM's path: `choose_path`'s answer in each situation, and that forward runs it.

Each case checks three things: the `LayerPath` the chooser returns, the layer's ``last_path``
after a forward pass, and that the path's own function ran (a spy in the layer's dispatch table,
or the autograd node's name on the output).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

from trials.zoneout import (
    LayerPath,
    ZoneoutGRU,
    ZoneoutLSTM,
    ZoneoutRNN,
    _cpu_ext,
    _layers,
    _paths,
    _triton_lstm,
    choose_path,
)
from trials.zoneout._args import LayerArgs, check_rate
from trials.zoneout._loops import lstm_layer_reference
from trials.zoneout._lstm_cpu import cpu_extension_layer
from trials.zoneout._lstm_fused import fused_layer
from trials.zoneout._masks import MaskKind, draw_seeds

T, B, IN, H = 5, 3, 4, 6


def _x(dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(T, B, IN, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[LayerPath]]:
    """Which masked-path functions the layer called, one entry per layer run."""
    calls: list[LayerPath] = []
    for path, function in list(_layers._MASKED_PATHS.items()):

        def spy(args: LayerArgs, path: LayerPath = path, function: Callable = function):
            calls.append(path)
            return function(args)

        monkeypatch.setitem(_layers._MASKED_PATHS, path, spy)
    yield calls


def _check(layer: ZoneoutLSTM, x: Tensor, want: LayerPath, ran: list[LayerPath]) -> Tensor:
    assert choose_path(layer, x) is want
    out, _ = layer(x)
    assert layer.last_path is want
    assert ran == (
        [] if want in (LayerPath.NN_LSTM, LayerPath.TRITON) else [want] * layer.num_layers
    )
    return out


def test_values_are_stable_lowercase_names() -> None:
    assert {p.name: p.value for p in LayerPath} == {
        "NN_LSTM": "nn_lstm",
        "CPU_EXTENSION": "cpu_extension",
        "FUSED": "fused",
        "REFERENCE": "reference",
        "TRITON": "triton",
    }
    assert LayerPath("cpu_extension") is LayerPath.CPU_EXTENSION
    assert str(LayerPath.NN_LSTM) == "nn_lstm" and LayerPath.FUSED == "fused"


@pytest.mark.parametrize("implementation", ["fused", "fused-pytorch", "triton"])
def test_no_perturbing_rate_runs_nn_lstm(implementation: str, ran: list[LayerPath]) -> None:
    # All rates 0 in training, and recurrent dropout alone in evaluation; "triton" included
    # (on CPU it runs nn.LSTM rather than refusing, since no rate needs the Triton layer).
    torch.manual_seed(0)
    layer = ZoneoutLSTM(IN, H, num_layers=2)
    twin = nn.LSTM(IN, H, num_layers=2)
    twin.load_state_dict(layer.state_dict())
    layer.implementation = implementation
    x = _x()
    out = _check(layer.train(), x, LayerPath.NN_LSTM, ran)
    assert torch.equal(out, twin(x)[0])
    layer.recurrent_dropout = 0.5
    _check(layer.eval(), x, LayerPath.NN_LSTM, ran)


def test_zoneout_acts_in_evaluation_so_eval_does_not_run_nn_lstm(ran: list[LayerPath]) -> None:
    layer = ZoneoutLSTM(IN, H, zoneout_hidden=0.1).eval()
    assert choose_path(layer, _x()) is not LayerPath.NN_LSTM


def test_cpu_with_the_extension(ran: list[LayerPath]) -> None:
    assert _cpu_ext.load(), "the zoneout CPU extension did not build"
    layer = ZoneoutLSTM(IN, H, num_layers=2, zoneout_cell=0.5, zoneout_hidden=0.05)
    for dtype in (torch.float32, torch.float64):
        layer = layer.to(dtype)
        out = _check(layer.train(), _x(dtype), LayerPath.CPU_EXTENSION, ran)
        assert type(out.grad_fn).__name__ == "CpuZoneoutLSTMLayerBackward"
        ran.clear()
    _check(layer.eval(), _x(torch.float64), LayerPath.CPU_EXTENSION, ran)


def test_cpu_with_the_extension_switched_off(
    monkeypatch: pytest.MonkeyPatch, ran: list[LayerPath]
) -> None:
    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setenv(_cpu_ext.ENV_SWITCH, "0")
    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5, recurrent_dropout=0.25)
    out = _check(layer, _x(), LayerPath.FUSED, ran)
    assert type(out.grad_fn).__name__ == "FusedZoneoutLSTMLayerBackward"


def test_fused_pytorch_and_half_precision_run_the_pytorch_node(ran: list[LayerPath]) -> None:
    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5)
    layer.implementation = "fused-pytorch"
    out = _check(layer, _x(), LayerPath.FUSED, ran)
    assert type(out.grad_fn).__name__ == "FusedZoneoutLSTMLayerBackward"
    layer.implementation = "fused"
    assert choose_path(layer.to(torch.bfloat16), _x(torch.bfloat16)) is LayerPath.FUSED


@pytest.mark.parametrize("rates", [{}, {"zoneout_cell": 0.5, "recurrent_dropout": 0.25}])
def test_reference_implementation(rates: dict[str, float], ran: list[LayerPath]) -> None:
    layer = ZoneoutLSTM(IN, H, num_layers=2, **rates)
    layer.implementation = "reference"
    _check(layer, _x(), LayerPath.REFERENCE, ran)


@pytest.mark.parametrize("implementation", ["fused", "fused-pytorch", "reference", "triton"])
@pytest.mark.parametrize("rates", [{}, {"zoneout_cell": 0.5}])
def test_recurrent_batch_norm_runs_the_reference_loop(
    implementation: str, rates: dict[str, float], ran: list[LayerPath]
) -> None:
    layer = ZoneoutLSTM(IN, H, recurrent_batch_norm=True, **rates)
    layer.implementation = implementation
    _check(layer, _x(), LayerPath.REFERENCE, ran)


def test_triton_requested_on_cpu_refuses_when_a_rate_needs_it(ran: list[LayerPath]) -> None:
    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5)
    layer.implementation = "triton"
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        choose_path(layer, _x())
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        layer(_x())
    assert layer.last_path is None and ran == []


def test_zoneout_triton_env_is_read_when_choosing(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5)
    x = _x()
    monkeypatch.setenv(_paths.TRITON_ENV, "1")
    # On CPU Triton cannot run, so "fused" keeps its CPU path.
    assert choose_path(layer, x) is not LayerPath.TRITON
    monkeypatch.setattr(_paths, "triton_available", lambda device: True)
    assert choose_path(layer, x) is LayerPath.TRITON
    layer.implementation = "fused-pytorch"  # the variable only changes "fused"
    assert choose_path(layer, x) is LayerPath.FUSED
    layer.implementation = "fused"
    monkeypatch.setenv(_paths.TRITON_ENV, "0")
    assert choose_path(layer, x) is not LayerPath.TRITON


def test_triton_path_gets_one_key_per_layer_and_no_masks(
    monkeypatch: pytest.MonkeyPatch, ran: list[LayerPath]
) -> None:
    # The Triton branch of forward, run on CPU with a stand-in for the kernels.
    calls: list[tuple[LayerArgs, object, int]] = []

    def fake_triton_layer(args: LayerArgs, noise: object, seed: int):
        calls.append((args, noise, seed))
        return lstm_layer_reference(args)

    monkeypatch.setattr(_paths, "triton_available", lambda device: True)
    monkeypatch.setattr(_layers, "triton_layer", fake_triton_layer)
    layer = ZoneoutLSTM(IN, H, num_layers=2, zoneout_cell=0.5, zoneout_hidden=0.25)
    layer.implementation = "triton"
    torch.manual_seed(7)
    seeds = draw_seeds(2)
    torch.manual_seed(7)
    _check(layer, _x(), LayerPath.TRITON, ran)
    assert [seed for _, _, seed in calls] == [int(seeds[k, MaskKind.CELL]) for k in range(2)]
    for args, noise, _ in calls:
        assert args.d_c == 0.0 and args.d_h == 0.0 and args.rd_keep is None
        assert noise == _triton_lstm.make_noise(0.5, 0.25, 0.0, False, True)


def test_unknown_implementation_is_refused() -> None:
    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5)
    layer.implementation = "cudnn"
    with pytest.raises(ValueError, match="implementation must be one of"):
        choose_path(layer, _x())


def test_gru_and_rnn_report_the_reference_loop() -> None:
    for cls in (ZoneoutGRU, ZoneoutRNN):
        layer = cls(IN, H, zoneout_hidden=0.1)
        assert layer.last_path is None
        layer(_x())
        assert layer.last_path is LayerPath.REFERENCE


def test_last_path_is_read_only() -> None:
    with pytest.raises(AttributeError):
        ZoneoutLSTM(IN, H).last_path = LayerPath.FUSED  # type: ignore[misc]


def test_every_path_function_takes_the_record() -> None:
    assert _cpu_ext.load()
    gen = torch.Generator().manual_seed(3)

    def rnd(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5

    d_c = torch.rand(T, B, H, generator=gen) < 0.5
    keep = torch.rand(T, B, H, generator=gen) >= 0.25
    args = LayerArgs(
        rnd(T, B, IN), rnd(B, H), rnd(B, H), rnd(4 * H, IN), rnd(4 * H, H), rnd(4 * H),
        rnd(4 * H), d_c, d_c, keep, 1 / 0.75,
    )  # fmt: skip
    want = lstm_layer_reference(args)
    for function in (cpu_extension_layer, fused_layer):
        for got, expected in zip(function(args), want, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="draws its own masks"):
        _triton_lstm.triton_layer(args, _triton_lstm.make_noise(0.5, 0.5, 0.25, True, True), 1)


def test_one_rate_check() -> None:
    # The layers' attributes and the Triton layer's arguments go through the same function.
    assert _layers.check_rate is check_rate
    assert _triton_lstm.check_rate is check_rate
    for bad in (True, "0.5", -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="zoneout_cell"):
            check_rate("zoneout_cell", bad)
        with pytest.raises(ValueError, match="zoneout_cell"):
            ZoneoutLSTM(IN, H, zoneout_cell=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="zoneout_cell"):
            _triton_lstm.make_noise(bad, 0.0, 0.0, False, True)  # type: ignore[arg-type]
    assert check_rate("dropout", 1) == 1.0
