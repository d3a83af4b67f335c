"""ZoneoutLSTM, ZoneoutGRU, ZoneoutRNN: drop-ins for torch.nn.LSTM / GRU / RNN(tanh).

Reproducibility contract: at the start of a training forward pass the layer draws its seed table
from torch's global RNG, whatever the rates and whatever the path, and its masks come from that
table alone (`trials.zoneout._masks`, "Random masks", says how on each path); the inter-layer
dropout then draws from the global RNG as nn.LSTM's does. Parameters are created and initialised
exactly as nn.LSTM's (names, shapes, order, the same U(-1/sqrt(H), 1/sqrt(H)) draws); recurrent
batch norm's parameters are constants and draw nothing. So the same seed gives the same initial
weights and the same later random numbers whatever the zoneout, recurrent-dropout and batch-norm
settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from trials.zoneout._args import LayerArgs, LayerOutput, Weight, check_rate
from trials.zoneout._loops import StepBatchNorm, gru_layer, lstm_layer_reference, rnn_tanh_layer
from trials.zoneout._lstm_cpu import cpu_extension_layer
from trials.zoneout._lstm_fused import fused_layer
from trials.zoneout._masks import MaskKind, bernoulli_mask, draw_seeds
from trials.zoneout._paths import LayerPath, check_implementation, decide_path
from trials.zoneout._triton_lstm import make_noise, triton_layer

# The per-path layer functions that take masks drawn here; the Triton path draws its own.
_MASKED_PATHS: dict[LayerPath, Callable[[LayerArgs], LayerOutput]] = {
    LayerPath.CPU_EXTENSION: cpu_extension_layer,
    LayerPath.FUSED: fused_layer,
    LayerPath.REFERENCE: lstm_layer_reference,
}
# Per-step statistic sets kept by recurrent batch norm unless told otherwise: char-PTB's 100-step
# windows. Longer sequences reuse the last set.
DEFAULT_BATCH_NORM_STEPS = 100
# Cooijmans et al.: gamma 0.1 keeps sigmoid/tanh out of saturation at the start of training.
BATCH_NORM_GAMMA = 0.1


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class _ZoneoutBase(nn.Module):
    """Parameters, input handling and the layer stack shared by the three layers."""

    _gates: ClassVar[int]
    _has_cell: ClassVar[bool] = False
    _last_path: LayerPath | None = None
    _last_fallback: str | None = None

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
        self._rnn_parameter_names: list[str] = []
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
        self._rnn_parameter_names = [name for name, _ in self.named_parameters()]
        self.reset_parameters()

    # Rates are validated on every assignment, so a schedule in a training loop cannot set
    # an out-of-range value either.
    @property
    def dropout(self) -> float:
        return self._dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        self._dropout = check_rate("dropout", value)

    @property
    def zoneout_cell(self) -> float:
        return self._zoneout_cell

    @zoneout_cell.setter
    def zoneout_cell(self, value: float) -> None:
        rate = check_rate("zoneout_cell", value)
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
        self._zoneout_hidden = check_rate("zoneout_hidden", value)

    @property
    def last_path(self) -> LayerPath | None:
        """The path the last completed forward pass ran (`trials.zoneout.LayerPath`); None
        before the first. GRU and RNN always run the reference loop."""
        return self._last_path

    @property
    def last_fallback(self) -> str | None:
        """Why the last pass did not run the path its implementation preferred (the CPU
        extension, or Triton under "auto"): e.g. the extension turned off or not built, Triton's
        self-check failed on the device. None when it ran the preferred path."""
        return self._last_fallback

    def reset_parameters(self) -> None:
        """torch's RNN init: each weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)), in nn.LSTM's order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._rnn_parameter_names:
            nn.init.uniform_(getattr(self, name), -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op here (GRU and RNN never run cuDNN), so code written for nn.LSTM keeps working;
        ZoneoutLSTM's lays its weights out for cuDNN."""

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

    def _seed_table(self) -> Tensor | None:
        # Drawn in every training pass, whatever the rates: see the module docstring.
        return draw_seeds(self.num_layers) if self.training else None

    def _zoneout_weight(
        self, rate: float, x: Tensor, seeds: Tensor | None, layer: int, kind: MaskKind
    ) -> Weight:
        # Training with 0 < rate < 1: a fresh bool mask per step, example and unit (True = keep
        # the previous value). Otherwise the rate itself: the expectation in eval, and exact in
        # training at 0 and 1.
        if seeds is not None and 0.0 < rate < 1.0:
            shape = (x.shape[0], x.shape[1], self.hidden_size)
            return bernoulli_mask(int(seeds[layer, kind]), rate, shape, x.device)
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
    """torch.nn.LSTM with zoneout (Krueger et al. 2017), recurrent dropout and recurrent batch norm.

    Training: c~_t = f*c_{t-1} + i*drop(g_t), c_t = d_c*c_{t-1} + (1-d_c)*c~_t and
    h_t = d_h*h_{t-1} + (1-d_h)*o_t*tanh(c~_t), d ~ Bernoulli(rate) per step, example and unit,
    drawn separately for c and h, or once for both with ``zoneout_shared_mask`` (as on permuted
    MNIST in the paper; it needs ``zoneout_cell == zoneout_hidden``, since one mask cannot keep
    two different fractions). ``recurrent_dropout`` p is Semeniuta et al.'s: drop(g) = g*m/(1-p),
    m ~ Bernoulli(1-p) per step, example and unit; the identity in evaluation. Evaluation: d is
    replaced by the rate.

    ``recurrent_batch_norm`` (Cooijmans et al.) normalizes W_ih x and W_hh h separately and c~
    before its tanh, with per-step statistics for the first ``batch_norm_steps`` steps (later
    steps share the last set) and the running (population) statistics in evaluation. Its
    parameters (gammas 0.1, the cell's beta 0) are registered after nn.LSTM's, as
    ``bn_weight_ih_l{k}``, ``bn_weight_hh_l{k}``, ``bn_weight_c_l{k}``, ``bn_bias_c_l{k}``.

    ``implementation`` picks the fast path ("fused", default), the pure-PyTorch fused node
    ("fused-pytorch"), the per-step autograd loop they are tested against ("reference") or the
    Triton CUDA layer ("triton"); recurrent batch norm always runs the reference loop, and a pass
    where no rate perturbs the recurrence runs nn.LSTM's own kernel (so with all rates 0 the
    numbers are nn.LSTM's, bit for bit). `trials.zoneout.choose_path` decides, once per pass;
    ``last_path`` tells which `LayerPath` the last pass ran, ``last_fallback`` why it was not the
    preferred one. "auto" is "fused" on CPU and, on CUDA, the Triton layer once it passed its
    self-check there. ``required_path`` set, a pass that cannot run that path raises
    `trials.zoneout.LayerPathError` instead of falling back.
    """

    _gates = 4
    _has_cell = True
    implementation: str = "fused"
    # The one path a pass may run (a trial config's explicit ``implementation``), besides
    # nn.LSTM's kernel when no rate perturbs the pass; another raises `LayerPathError`.
    required_path: LayerPath | None = None

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
        recurrent_dropout: float = 0.0,
        zoneout_shared_mask: bool = False,
        recurrent_batch_norm: bool = False,
        batch_norm_steps: int = DEFAULT_BATCH_NORM_STEPS,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            zoneout_cell,
            zoneout_hidden,
        )
        self.recurrent_dropout = recurrent_dropout
        self.zoneout_shared_mask = bool(zoneout_shared_mask)
        self._check_shared_mask()
        self.recurrent_batch_norm = bool(recurrent_batch_norm)
        self.batch_norm_steps = _check_size("batch_norm_steps", batch_norm_steps)
        if self.recurrent_batch_norm:
            self._register_batch_norm()
            self._reset_batch_norm()

    @property
    def recurrent_dropout(self) -> float:
        return self._recurrent_dropout

    @recurrent_dropout.setter
    def recurrent_dropout(self, value: float) -> None:
        self._recurrent_dropout = check_rate("recurrent_dropout", value)

    def _check_shared_mask(self) -> None:
        if self.zoneout_shared_mask and self.zoneout_cell != self.zoneout_hidden:
            raise ValueError(
                "zoneout_shared_mask needs zoneout_cell == zoneout_hidden (one mask keeps one "
                f"fraction of units), got zoneout_cell={self.zoneout_cell}, "
                f"zoneout_hidden={self.zoneout_hidden}"
            )

    def _register_batch_norm(self) -> None:
        hidden, steps = self.hidden_size, self.batch_norm_steps
        for layer in range(self.num_layers):
            for what, size in (("ih", 4 * hidden), ("hh", 4 * hidden), ("c", hidden)):
                self.register_parameter(
                    f"bn_weight_{what}_l{layer}", nn.Parameter(torch.empty(size))
                )
                if what == "c":
                    self.register_parameter(f"bn_bias_c_l{layer}", nn.Parameter(torch.empty(size)))
                self.register_buffer(f"bn_mean_{what}_l{layer}", torch.zeros(steps, size))
                self.register_buffer(f"bn_var_{what}_l{layer}", torch.ones(steps, size))

    def _reset_batch_norm(self) -> None:
        # Constants only: recurrent batch norm must not change the random stream of the init.
        with torch.no_grad():
            for layer in range(self.num_layers):
                for what in ("ih", "hh", "c"):
                    getattr(self, f"bn_weight_{what}_l{layer}").fill_(BATCH_NORM_GAMMA)
                    getattr(self, f"bn_mean_{what}_l{layer}").zero_()
                    getattr(self, f"bn_var_{what}_l{layer}").fill_(1.0)
                getattr(self, f"bn_bias_c_l{layer}").zero_()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # The base constructor calls this before the batch-norm parameters exist.
        if hasattr(self, "bn_bias_c_l0"):
            self._reset_batch_norm()

    def _cudnn_weights(self) -> list[Tensor] | None:
        """nn.LSTM's weights (its order) when cuDNN can take them as one buffer, else None."""
        weights = [getattr(self, name) for name in self._rnn_parameter_names]
        dtype = weights[0].dtype
        for weight in weights:
            if (
                weight.dtype != dtype
                or not weight.is_cuda
                or not torch.backends.cudnn.is_acceptable(weight)
            ):
                return None
        if len({weight.data_ptr() for weight in weights}) != len(weights):
            return None  # aliased parameters: cuDNN copies, as nn.LSTM's falls back to
        return weights

    def flatten_parameters(self) -> None:
        """What nn.LSTM's does: on CUDA with cuDNN, move the weights into one contiguous buffer
        in cuDNN's layout (each parameter becomes a view of it), so that the rate-0 path's
        cuDNN kernel (`torch._VF.lstm`) uses them in place instead of copying them on every
        call. Called, as nn.LSTM does, after every move (``.to``, ``.cuda``, ``.half``). A
        no-op elsewhere (CPU, other dtypes): the values, and so every path's numbers, do not
        change; the other paths read the same parameters, whatever their storage."""
        weights = self._cudnn_weights()
        if weights is None:
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(weights[0]), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights,
                    4 if self.bias else 2,  # tensors per layer
                    self.input_size,
                    cudnn_rnn.get_cudnn_mode("LSTM"),
                    self.hidden_size,
                    0,  # proj_size
                    self.num_layers,
                    False,  # batch_first: the layer hands cuDNN time-major input
                    False,  # bidirectional
                )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ZoneoutLSTM:
        # As nn.RNNBase._apply: parameters moved to a new device or dtype are laid out afresh.
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if self.zoneout_shared_mask:
            s += ", zoneout_shared_mask=True"
        if self.recurrent_batch_norm:
            s += f", recurrent_batch_norm=True, batch_norm_steps={self.batch_norm_steps}"
        return s

    def _batch_norm(self, layer: int) -> StepBatchNorm | None:
        if not self.recurrent_batch_norm:
            return None
        get = lambda kind, what: getattr(self, f"bn_{kind}_{what}_l{layer}")  # noqa: E731
        return StepBatchNorm(
            weight_ih=get("weight", "ih"),
            weight_hh=get("weight", "hh"),
            weight_c=get("weight", "c"),
            bias_c=get("bias", "c"),
            mean_ih=get("mean", "ih"),
            var_ih=get("var", "ih"),
            mean_hh=get("mean", "hh"),
            var_hh=get("var", "hh"),
            mean_c=get("mean", "c"),
            var_c=get("var", "c"),
            training=self.training,
        )

    def _dropout_keep(
        self, x: Tensor, seeds: Tensor | None, layer: int
    ) -> tuple[Tensor | None, float]:
        # Recurrent dropout's keep mask and its inverted-dropout scale 1/(1-p); None when off.
        p = self.recurrent_dropout
        if seeds is None or p == 0.0:
            return None, 1.0
        shape = (x.shape[0], x.shape[1], self.hidden_size)
        if p == 1.0:  # everything dropped, like F.dropout(p=1); no stream needed
            return torch.zeros(shape, dtype=torch.bool, device=x.device), 0.0
        seed = int(seeds[layer, MaskKind.RECURRENT_DROPOUT])
        return ~bernoulli_mask(seed, p, shape, x.device), 1.0 / (1.0 - p)

    def _layer_args(
        self, path: LayerPath, x: Tensor, h0: Tensor, c0: Tensor, seeds: Tensor | None, layer: int
    ) -> LayerArgs:
        args = LayerArgs(x, h0, c0, *self._layer_params(layer))
        if path is LayerPath.TRITON:  # masks are drawn inside the kernels
            return args
        d_c = self._zoneout_weight(self.zoneout_cell, x, seeds, layer, MaskKind.CELL)
        if self.zoneout_shared_mask:
            d_h = d_c
        else:
            d_h = self._zoneout_weight(self.zoneout_hidden, x, seeds, layer, MaskKind.HIDDEN)
        rd_keep, rd_scale = self._dropout_keep(x, seeds, layer)
        return LayerArgs(*args.tensors(), d_c, d_h, rd_keep, rd_scale, norm=self._batch_norm(layer))

    def _run_layer(
        self, path: LayerPath, args: LayerArgs, seeds: Tensor | None, layer: int
    ) -> LayerOutput:
        if path is not LayerPath.TRITON:
            return _MASKED_PATHS[path](args)
        # One Philox key per layer, the cell column of its seed row (the three masks are
        # separate Philox lanes): no (T, B, H) mask tensors.
        noise = make_noise(
            self.zoneout_cell,
            self.zoneout_hidden,
            self.recurrent_dropout,
            self.zoneout_shared_mask,
            self.training,
        )
        seed = int(seeds[layer, MaskKind.CELL]) if seeds is not None else 0
        return triton_layer(args, noise, seed)

    def forward(  # type: ignore[override]
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        check_implementation(self.implementation)
        self._check_shared_mask()  # the rates may have been reassigned since construction
        x, unbatched = self._prepare_input(input)
        if hx is None:
            h0 = c0 = None
        elif isinstance(hx, (tuple, list)) and len(hx) == 2:
            h0, c0 = hx
        else:
            raise TypeError("ZoneoutLSTM: hx must be a tuple (h_0, c_0) or None")
        h0 = self._prepare_state(h0, x, unbatched, "h_0")
        c0 = self._prepare_state(c0, x, unbatched, "c_0")
        seeds = self._seed_table()  # before choosing: every training pass draws it
        choice = decide_path(self, x)
        path = choice.path
        if path is LayerPath.NN_LSTM:
            # Nothing perturbs the recurrence in this pass: run nn.LSTM's own kernel (oneDNN on
            # CPU, cuDNN on GPU). Same numbers as nn.LSTM, bit for bit, at vendor speed.
            x, h_out, c_out = torch._VF.lstm(  # type: ignore[attr-defined]
                x,
                (h0, c0),
                [getattr(self, name) for name in self._rnn_parameter_names],
                self.bias,
                self.num_layers,
                self.dropout,
                self.training,
                False,  # bidirectional
                False,  # batch_first: x is time-major here
            )
        else:
            h_n: list[Tensor] = []
            c_n: list[Tensor] = []
            for layer in range(self.num_layers):
                x = self._inter_layer(x, layer)
                args = self._layer_args(path, x, h0[layer], c0[layer], seeds, layer)
                x, h, c = self._run_layer(path, args, seeds, layer)
                h_n.append(h)
                c_n.append(c)
            h_out, c_out = torch.stack(h_n), torch.stack(c_n)
        self._last_path, self._last_fallback = path, choice.fallback
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
        seeds = self._seed_table()
        h_n: list[Tensor] = []
        for layer in range(self.num_layers):
            x = self._inter_layer(x, layer)
            d_h = self._zoneout_weight(self.zoneout_hidden, x, seeds, layer, MaskKind.HIDDEN)
            x, h = type(self)._layer_function(x, h0[layer], *self._layer_params(layer), d_h)
            h_n.append(h)
        h_out = torch.stack(h_n)
        self._last_path = LayerPath.REFERENCE
        return self._finish_output(x, unbatched), h_out.squeeze(1) if unbatched else h_out


class ZoneoutGRU(_ZoneoutSingleState):
    """torch.nn.GRU with zoneout on h: h_t = d*h_{t-1} + (1-d)*GRUCell(x_t, h_{t-1})."""

    _gates = 3
    _layer_function = staticmethod(gru_layer)


class ZoneoutRNN(_ZoneoutSingleState):
    """torch.nn.RNN (tanh) zoneout: h_t = d*h_{t-1} + (1-d)*tanh(W x_t + U h_{t-1} + b)."""

    _gates = 1
    _layer_function = staticmethod(rnn_tanh_layer)
