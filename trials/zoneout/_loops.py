"""Per-step autograd loops: the GRU and tanh-RNN layers, and the LSTM reference path.

These are the paper's equations written out directly and differentiated by autograd. The LSTM
layer normally runs the fused node in `_lstm_fused`; this loop is kept as the readable reference
it is tested against (``ZoneoutLSTM.implementation = "reference"`` selects it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trials.zoneout._args import LayerArgs, LayerOutput, Weight
from trials.zoneout._lstm_fused import _active, _steps, as_float, dropout_weight, zoneout_weights


@dataclass(frozen=True)
class StepBatchNorm:
    """Recurrent batch norm of one LSTM layer (Cooijmans et al.): parameters and statistics.

    W_ih x and W_hh h are normalized separately (scale only: the LSTM biases are added after),
    the new cell c~ before its tanh (scale and shift). Statistics are kept per time step, rows
    of the (S, features) running buffers; steps past the last row use (and in training update)
    the last row, as Cooijmans et al. do for sequences longer than those seen in training.
    """

    weight_ih: Tensor  # (4H,) gamma of W_ih x
    weight_hh: Tensor  # (4H,) gamma of W_hh h
    weight_c: Tensor  # (H,) gamma of c~
    bias_c: Tensor  # (H,) beta of c~
    mean_ih: Tensor  # (S, 4H) running statistics, updated in place in training
    var_ih: Tensor
    mean_hh: Tensor
    var_hh: Tensor
    mean_c: Tensor
    var_c: Tensor
    training: bool
    momentum: float = 0.1
    eps: float = 1e-5

    def _norm(
        self, value: Tensor, step: int, mean: Tensor, var: Tensor, w: Tensor, b: Tensor | None
    ) -> Tensor:
        row = min(step, mean.shape[0] - 1)
        return F.batch_norm(
            value, mean[row], var[row], w, b, self.training, self.momentum, self.eps
        )

    def input(self, value: Tensor, step: int) -> Tensor:
        return self._norm(value, step, self.mean_ih, self.var_ih, self.weight_ih, None)

    def hidden(self, value: Tensor, step: int) -> Tensor:
        return self._norm(value, step, self.mean_hh, self.var_hh, self.weight_hh, None)

    def cell(self, value: Tensor, step: int) -> Tensor:
        return self._norm(value, step, self.mean_c, self.var_c, self.weight_c, self.bias_c)


def _input_projection(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> list[Tensor]:
    # One GEMM for every step's input term; only the recurrent term stays in the loop.
    return list(F.linear(x, w_ih, b_ih).unbind(0))


def _zone(new: Tensor, old: Tensor, d: Weight, active: bool) -> Tensor:
    # lerp(new, old, d) = new + d*(old - new): exactly `new` at d=0 and exactly `old` at d=1.
    return torch.lerp(new, old, d) if active else new


def lstm_layer_reference(args: LayerArgs) -> LayerOutput:
    """The reference path (`LayerPath.REFERENCE`): `LayerArgs`' contract as a plain autograd
    loop; ``args.norm`` adds recurrent batch norm, which only this path computes."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args.tensors()
    norm = args.norm
    d_c, d_h = zoneout_weights(args.d_c, args.d_h, x.dtype)
    rd_w = dropout_weight(args.rd_keep, args.rd_scale, x.dtype)
    # With batch norm the biases go after the normalization (which would cancel them).
    xs = _input_projection(x, w_ih, b_ih if norm is None else None)
    zc, zh = _active(d_c), _active(d_h)
    dc_s, dh_s = _steps(d_c, len(xs)), _steps(d_h, len(xs))
    h, c = h0, c0
    outs: list[Tensor] = []
    for t, xt in enumerate(xs):
        if norm is None:
            gates = xt + F.linear(h, w_hh, b_hh)
        else:
            gates = norm.input(xt, t) + norm.hidden(F.linear(h, w_hh), t)
            if b_ih is not None and b_hh is not None:
                gates = gates + b_ih + b_hh
        i, f, g, o = gates.chunk(4, 1)
        g = torch.tanh(g)
        if rd_w is not None:  # Semeniuta et al.: drop the candidate, never the memory itself
            g = g * rd_w[t]
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * g
        # The output gate reads the new, un-zoned cell (paper, eq. for h~_t).
        shown = c_new if norm is None else norm.cell(c_new, t)
        h_new = torch.sigmoid(o) * torch.tanh(shown)
        c = _zone(c_new, c, dc_s[t], zc)
        h = _zone(h_new, h, dh_s[t], zh)
        outs.append(h)
    return torch.stack(outs), h, c


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    d_h: Weight,
) -> tuple[Tensor, Tensor]:
    """torch.nn.GRU's cell (reset gate applied after W_hn h + b_hn), then zoneout on h."""
    xs = _input_projection(x, w_ih, b_ih)
    d_h = as_float(d_h, x.dtype)
    active = _active(d_h)
    dh_s = _steps(d_h, len(xs))
    h = h0
    outs: list[Tensor] = []
    for t, xt in enumerate(xs):
        hh = F.linear(h, w_hh, b_hh)
        x_r, x_z, x_n = xt.chunk(3, 1)
        h_r, h_z, h_n = hh.chunk(3, 1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h_new = torch.lerp(n, h, z)  # (1 - z)*n + z*h, torch's GRU update
        h = _zone(h_new, h, dh_s[t], active)
        outs.append(h)
    return torch.stack(outs), h


def rnn_tanh_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    d_h: Weight,
) -> tuple[Tensor, Tensor]:
    """torch.nn.RNN(nonlinearity="tanh")'s cell, then zoneout on h."""
    xs = _input_projection(x, w_ih, b_ih)
    d_h = as_float(d_h, x.dtype)
    active = _active(d_h)
    dh_s = _steps(d_h, len(xs))
    h = h0
    outs: list[Tensor] = []
    for t, xt in enumerate(xs):
        h_new = torch.tanh(xt + F.linear(h, w_hh, b_hh))
        h = _zone(h_new, h, dh_s[t], active)
        outs.append(h)
    return torch.stack(outs), h
