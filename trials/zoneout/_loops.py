"""Per-step autograd loops: the GRU and tanh-RNN layers, and the LSTM reference path.

These are the paper's equations written out directly and differentiated by autograd. The LSTM
layer normally runs the fused node in `_lstm_fused`; this loop is kept as the readable reference
it is tested against (``ZoneoutLSTM.implementation = "reference"`` selects it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trials.zoneout._lstm_fused import Weight, _active, _steps


def _input_projection(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> list[Tensor]:
    # One GEMM for every step's input term; only the recurrent term stays in the loop.
    return list(F.linear(x, w_ih, b_ih).unbind(0))


def _zone(new: Tensor, old: Tensor, d: Weight, active: bool) -> Tensor:
    # lerp(new, old, d) = new + d*(old - new): exactly `new` at d=0 and exactly `old` at d=1.
    return torch.lerp(new, old, d) if active else new


def lstm_layer_reference(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    d_c: Weight,
    d_h: Weight,
) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `FusedZoneoutLSTMLayer.apply`, as a plain autograd loop."""
    xs = _input_projection(x, w_ih, b_ih)
    zc, zh = _active(d_c), _active(d_h)
    dc_s, dh_s = _steps(d_c, len(xs)), _steps(d_h, len(xs))
    h, c = h0, c0
    outs: list[Tensor] = []
    for t, xt in enumerate(xs):
        gates = xt + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        # The output gate reads the new, un-zoned cell (paper, eq. for h~_t).
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
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
    active = _active(d_h)
    dh_s = _steps(d_h, len(xs))
    h = h0
    outs: list[Tensor] = []
    for t, xt in enumerate(xs):
        h_new = torch.tanh(xt + F.linear(h, w_hh, b_hh))
        h = _zone(h_new, h, dh_s[t], active)
        outs.append(h)
    return torch.stack(outs), h
