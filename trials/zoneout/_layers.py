"""ZoneoutLSTM, ZoneoutGRU, ZoneoutRNN: drop-ins for torch.nn.LSTM / GRU / RNN(tanh).

Reproducibility contract: masks come from torch's global RNG. Per layer, in layer order, the
layer draws its cell mask and then its hidden mask, each as
``torch.empty(T, B, H).bernoulli_(rate)`` (1 = keep the previous value), just before it runs
and after the inter-layer dropout feeding it. A rate of 0 or 1 draws nothing: it is
deterministic, so no random numbers are spent on it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from trials.zoneout._loops import gru_layer, lstm_layer_reference, rnn_tanh_layer
from trials.zoneout._lstm_fused import FusedZoneoutLSTMLayer, Weight

_IMPLEMENTATIONS = ("fused", "reference")


def _check_rate(name: str, value: object) -> float:
    # bool is an int subclass; True would silently mean "always preserve".
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return rate


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class _ZoneoutBase(nn.Module):
    """Parameters, input handling and the layer stack shared by the three layers."""

    _gates: ClassVar[int]
    _has_cell: ClassVar[bool] = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        zoneout_cell: float = 0.0,
        zoneout_hidden: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.num_layers = _check_size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = dropout
        self.zoneout_cell = zoneout_cell
        self.zoneout_hidden = zoneout_hidden
        gate_size = self._gates * hidden_size
        # Registration order and names follow nn.RNNBase so state_dicts and seeded inits match.
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            self.register_parameter(
                f"weight_ih_l{layer}", nn.Parameter(torch.empty(gate_size, in_size))
            )
            self.register_parameter(
                f"weight_hh_l{layer}", nn.Parameter(torch.empty(gate_size, hidden_size))
            )
            if self.bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(gate_size)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(gate_size)))
        self.reset_parameters()

    # Rates are validated on every assignment, so a schedule in a training loop cannot set
    # an out-of-range value either.
    @property
    def dropout(self) -> float:
        return self._dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        self._dropout = _check_rate("dropout", value)

    @property
    def zoneout_cell(self) -> float:
        return self._zoneout_cell

    @zoneout_cell.setter
    def zoneout_cell(self, value: float) -> None:
        rate = _check_rate("zoneout_cell", value)
        if rate != 0.0 and not self._has_cell:
            raise ValueError(
                f"{type(self).__name__} has no cell state; zoneout_cell must be 0, got {value!r}"
            )
        self._zoneout_cell = rate

    @property
    def zoneout_hidden(self) -> float:
        return self._zoneout_hidden

    @zoneout_hidden.setter
    def zoneout_hidden(self, value: float) -> None:
        self._zoneout_hidden = _check_rate("zoneout_hidden", value)

    def reset_parameters(self) -> None:
        """torch's RNN init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, so code written for nn.LSTM (which calls it for cuDNN) keeps working."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self._has_cell:
            s += f", zoneout_cell={self.zoneout_cell}"
        return s + f", zoneout_hidden={self.zoneout_hidden}"

    def _layer_params(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        w_ih: Tensor = getattr(self, f"weight_ih_l{layer}")
        w_hh: Tensor = getattr(self, f"weight_hh_l{layer}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")

    def _zoneout_weight(self, rate: float, x: Tensor) -> Weight:
        # Training with 0 < rate < 1: a fresh 0/1 mask per step, example and unit.
        # Otherwise the rate itself: the expectation in eval, and exact in training at 0 and 1.
        if self.training and 0.0 < rate < 1.0:
            shape = (x.shape[0], x.shape[1], self.hidden_size)
            return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(rate)
        return rate

    def _prepare_input(self, input: Tensor) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            raise TypeError(
                f"{name} does not accept a PackedSequence: unpack it with "
                "torch.nn.utils.rnn.pad_packed_sequence, pass the padded tensor, and mask the "
                "padded steps in the loss (or sort/bucket sequences by length)"
            )
        if not isinstance(input, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor input, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{name} expects a 3-D input (T, B, {self.input_size}) "
                f"({'B, T' if self.batch_first else 'T, B'} order) or a 2-D unbatched input "
                f"(T, {self.input_size}), got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name} expects input features of size {self.input_size}, "
                f"got shape {tuple(input.shape)}"
            )
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype or input.device != weight.device:
            raise TypeError(
                f"{name}: input is {input.dtype} on {input.device} but the parameters are "
                f"{weight.dtype} on {weight.device}; move one of them with .to()"
            )
        unbatched = input.dim() == 2
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} got an empty sequence or batch: shape {tuple(input.shape)}")
        return x, unbatched

    def _prepare_state(self, state: Tensor | None, x: Tensor, unbatched: bool, what: str) -> Tensor:
        expected = (self.num_layers, x.shape[1], self.hidden_size)
        if state is None:
            return torch.zeros(expected, dtype=x.dtype, device=x.device)
        if not isinstance(state, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a Tensor")
        if unbatched:
            state = state.unsqueeze(1)
        if tuple(state.shape) != expected:
            shown = (expected[0], expected[2]) if unbatched else expected
            raise ValueError(
                f"{type(self).__name__}: {what} must have shape {shown}, "
                f"got {tuple(state.shape) if not unbatched else tuple(state.squeeze(1).shape)}"
            )
        if state.dtype != x.dtype or state.device != x.device:
            raise TypeError(
                f"{type(self).__name__}: {what} is {state.dtype} on {state.device}, "
                f"input is {x.dtype} on {x.device}"
            )
        return state

    def _finish_output(self, out: Tensor, unbatched: bool) -> Tensor:
        if unbatched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out

    def _inter_layer(self, x: Tensor, layer: int) -> Tensor:
        # Like nn.LSTM: dropout on every layer's output except the last, in training only.
        if layer > 0 and self.dropout > 0.0 and self.training:
            return F.dropout(x, self.dropout, training=True)
        return x


class ZoneoutLSTM(_ZoneoutBase):
    """torch.nn.LSTM with zoneout (Krueger et al. 2017) on the cell and the hidden state.

    Training: c_t = d_c*c_{t-1} + (1-d_c)*c~_t and h_t = d_h*h_{t-1} + (1-d_h)*o_t*tanh(c~_t),
    d ~ Bernoulli(rate) per step, example and unit, drawn separately for c and h. Evaluation:
    d is replaced by the rate. ``implementation`` picks the fused single-node layer ("fused",
    default) or the per-step autograd loop it is tested against ("reference").
    """

    _gates = 4
    _has_cell = True
    implementation: str = "fused"

    def forward(  # type: ignore[override]
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if self.implementation not in _IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {_IMPLEMENTATIONS}, got {self.implementation!r}"
            )
        x, unbatched = self._prepare_input(input)
        if hx is None:
            h0 = c0 = None
        elif isinstance(hx, (tuple, list)) and len(hx) == 2:
            h0, c0 = hx
        else:
            raise TypeError("ZoneoutLSTM: hx must be a tuple (h_0, c_0) or None")
        h0 = self._prepare_state(h0, x, unbatched, "h_0")
        c0 = self._prepare_state(c0, x, unbatched, "c_0")
        run = (
            FusedZoneoutLSTMLayer.apply if self.implementation == "fused" else lstm_layer_reference
        )
        h_n: list[Tensor] = []
        c_n: list[Tensor] = []
        for layer in range(self.num_layers):
            x = self._inter_layer(x, layer)
            d_c = self._zoneout_weight(self.zoneout_cell, x)
            d_h = self._zoneout_weight(self.zoneout_hidden, x)
            x, h, c = run(x, h0[layer], c0[layer], *self._layer_params(layer), d_c, d_h)
            h_n.append(h)
            c_n.append(c)
        h_out, c_out = torch.stack(h_n), torch.stack(c_n)
        if unbatched:
            h_out, c_out = h_out.squeeze(1), c_out.squeeze(1)
        return self._finish_output(x, unbatched), (h_out, c_out)


class _ZoneoutSingleState(_ZoneoutBase):
    """GRU and tanh-RNN: one state (h), zoned out with ``zoneout_hidden``."""

    # The per-layer loop of the subclass's cell (trials.zoneout._loops).
    _layer_function: Callable[..., tuple[Tensor, Tensor]]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        zoneout_hidden: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, 0.0, zoneout_hidden
        )

    def forward(  # type: ignore[override]
        self, input: Tensor, hx: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        x, unbatched = self._prepare_input(input)
        h0 = self._prepare_state(hx, x, unbatched, "hx")
        h_n: list[Tensor] = []
        for layer in range(self.num_layers):
            x = self._inter_layer(x, layer)
            d_h = self._zoneout_weight(self.zoneout_hidden, x)
            x, h = type(self)._layer_function(x, h0[layer], *self._layer_params(layer), d_h)
            h_n.append(h)
        h_out = torch.stack(h_n)
        return self._finish_output(x, unbatched), h_out.squeeze(1) if unbatched else h_out


class ZoneoutGRU(_ZoneoutSingleState):
    """torch.nn.GRU with zoneout on h: h_t = d*h_{t-1} + (1-d)*GRUCell(x_t, h_{t-1})."""

    _gates = 3
    _layer_function = staticmethod(gru_layer)


class ZoneoutRNN(_ZoneoutSingleState):
    """torch.nn.RNN (tanh) zoneout: h_t = d*h_{t-1} + (1-d)*tanh(W x_t + U h_{t-1} + b)."""

    _gates = 1
    _layer_function = staticmethod(rnn_tanh_layer)
