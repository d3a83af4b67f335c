"""One zoneout-LSTM layer on CPU through the C++ extension (``_cpu/zoneout_lstm.cpp``).

Same contract as `FusedZoneoutLSTMLayer` (the pure-PyTorch oracle it is tested against). The
time loop runs in C++: per step one recurrent GEMM (oneDNN's, through torch's
``mkldnn::_linear_pointwise``, with the weight packed once per sequence; at::mm for float64)
and one pass over memory for all pointwise work. The whole-sequence GEMMs (input projection,
dx, dW_ih, dW_hh) also go through oneDNN: on CPUs where MKL takes a generic code path (AMD) it
is about twice as fast as torch.mm at these shapes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from trials.zoneout._args import DIFFERENTIABLE, LayerArgs, LayerOutput, Weight


def _use_onednn(t: Tensor) -> bool:
    return t.dtype == torch.float32 and t.device.type == "cpu" and torch.backends.mkldnn.enabled


def dense_linear(a: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(a, weight, bias) for 2-D ``a``, by oneDNN when it can (float32 on CPU).

    ``weight`` may be a transposed view: oneDNN reads it in place (a copy of a (T*B, 4H)
    matrix costs as much as a fifth of the GEMM it feeds at H=1000).
    """
    if _use_onednn(a) and torch.backends.mkldnn.is_available():
        return torch.ops.mkldnn._linear_pointwise(a.contiguous(), weight, bias, "none", [], "")
    return F.linear(a, weight, bias)


def weight_gradient(dgates: Tensor, inputs: Tensor) -> Tensor:
    """dgates^T @ inputs for dgates (N, 4H) and inputs (N, K): the (4H, K) weight gradient.

    Computed as (inputs^T @ dgates)^T, so that only the narrower ``inputs`` is transposed in
    memory and dgates is read in place as oneDNN's weight.
    """
    if _use_onednn(dgates) and torch.backends.mkldnn.is_available():
        return dense_linear(inputs.t().contiguous(), dgates.t()).t().contiguous()
    return torch.mm(dgates.t(), inputs)


def _mask_and_rate(d: Weight) -> tuple[Tensor | None, float]:
    return (d, 0.0) if isinstance(d, Tensor) else (None, float(d))


class CpuZoneoutLSTMLayer(torch.autograd.Function):
    """One layer, the fields of a `LayerArgs` flat (``apply(*args.node_args())``; see
    `cpu_extension_layer`) -> (output, h_n, c_n), with `LayerArgs`' contract."""

    @staticmethod
    def forward(ctx: Any, *flat: Any) -> LayerOutput:  # type: ignore[override]
        args = LayerArgs(*flat)
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = args.tensors()
        rd_keep, rd_scale = args.rd_keep, args.rd_scale
        steps, batch, _ = x.shape
        bias = b_ih + b_hh if b_ih is not None and b_hh is not None else None
        gates = dense_linear(x.reshape(steps * batch, -1), w_ih, bias).view(steps, batch, -1)
        mask_c, rate_c = _mask_and_rate(args.d_c)
        mask_h, rate_h = _mask_and_rate(args.d_h)
        hs, cs, tanh_c = torch.ops.zoneout_cpu.lstm_forward(
            gates, h0, c0, w_hh, mask_c, rate_c, mask_h, rate_h, rd_keep, float(rd_scale)
        )
        ctx.save_for_backward(x, w_ih, w_hh, gates, hs, cs, tanh_c)
        ctx.zoneout = (mask_c, rate_c, mask_h, rate_h, rd_keep, float(rd_scale))
        ctx.has_bias = b_ih is not None
        ctx.no_grad_inputs = len(flat) - DIFFERENTIABLE  # the masks and rd_scale
        # Fresh outputs, not views of the saved states: callers may modify them in place.
        return hs[1:].clone(), hs[steps].clone(), cs[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: Tensor | None, grad_hn: Tensor | None, grad_cn: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, w_ih, w_hh, gates, hs, cs, tanh_c = ctx.saved_tensors
        mask_c, rate_c, mask_h, rate_h, rd_keep, rd_scale = ctx.zoneout
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        dgates, grad_h0, grad_c0 = torch.ops.zoneout_cpu.lstm_backward(
            grad_out, grad_hn, grad_cn, w_hh, gates, cs, tanh_c,
            mask_c, rate_c, mask_h, rate_h, rd_keep, rd_scale,
        )  # fmt: skip
        need = ctx.needs_input_grad
        dg2d = dgates.view(steps * batch, 4 * hidden)
        grad_x = grad_wih = grad_whh = grad_bih = grad_bhh = None
        if need[0]:
            grad_x = dense_linear(dg2d, w_ih.t()).view_as(x)
        if need[3]:
            grad_wih = weight_gradient(dg2d, x.reshape(steps * batch, -1))
        if need[4]:
            grad_whh = weight_gradient(dg2d, hs[:steps].reshape(steps * batch, hidden))
        if ctx.has_bias and (need[5] or need[6]):
            grad_b = dg2d.sum(0)
            grad_bih = grad_b if need[5] else None
            # Separate tensors: two parameters must not share one .grad.
            grad_bhh = (grad_b.clone() if need[5] else grad_b) if need[6] else None
        return (
            grad_x,
            grad_h0 if need[1] else None,
            grad_c0 if need[2] else None,
            grad_wih,
            grad_whh,
            grad_bih,
            grad_bhh,
            *([None] * ctx.no_grad_inputs),
        )


def cpu_extension_layer(args: LayerArgs) -> LayerOutput:
    """The C++ extension's path (`LayerPath.CPU_EXTENSION`): one layer as one autograd node."""
    out: LayerOutput = CpuZoneoutLSTMLayer.apply(*args.node_args())
    return out
