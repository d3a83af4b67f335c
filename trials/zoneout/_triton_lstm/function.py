"""The autograd node: input GEMM up front, the recurrence in Triton, weight GEMMs at the end."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from trials.zoneout._triton_lstm.noise import Noise
from trials.zoneout._triton_lstm.runs import backward_sequence, forward_sequence


class TritonZoneoutLSTMFunction(torch.autograd.Function):
    """(x, h0, c0, W_ih, W_hh, b_ih, b_hh, noise, seed, save) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        noise: Noise,
        seed: int,
        save: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        bias = None if b_ih is None or b_hh is None else b_ih + b_hh
        result = forward_sequence(x, w_ih, bias, w_hh, h0, c0, seed, noise, save)
        if save:
            ctx.save_for_backward(x, w_ih, w_hh, result.h_prev, result.c_prev, result.gates)
            ctx.noise, ctx.seed = noise, seed
            ctx.has_bias = bias is not None
            ctx.state_dtypes = (h0.dtype, c0.dtype)
        return result.output, result.h_n, result.c_n.to(c0.dtype)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: Tensor, grad_hn: Tensor, grad_cn: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, w_ih, w_hh, h_prev, c_prev, gates = ctx.saved_tensors
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        result = backward_sequence(
            gates, c_prev, grad_out.contiguous(), grad_hn, grad_cn, w_hh, ctx.seed, ctx.noise
        )
        need = ctx.needs_input_grad
        dg2d = result.dgates.view(steps * batch, 4 * hidden)
        grad_x = grad_wih = grad_whh = grad_bih = grad_bhh = None
        if need[0]:
            grad_x = torch.mm(dg2d, w_ih).view_as(x)
        if need[3]:
            grad_wih = torch.mm(dg2d.t(), x.reshape(steps * batch, -1))
        if need[4]:
            grad_whh = torch.mm(dg2d.t(), h_prev.reshape(steps * batch, hidden))
        if ctx.has_bias and (need[5] or need[6]):
            grad_b = dg2d.sum(0, dtype=result.grad_h0.dtype).to(w_hh.dtype)
            grad_bih = grad_b if need[5] else None
            # Two parameters must not share one .grad tensor (AccumulateGrad may adopt it).
            grad_bhh = (grad_b.clone() if need[5] else grad_b) if need[6] else None
        h_dtype, c_dtype = ctx.state_dtypes
        grad_h0 = result.grad_h0.to(h_dtype) if need[1] else None
        grad_c0 = result.grad_c0.to(c_dtype) if need[2] else None
        return grad_x, grad_h0, grad_c0, grad_wih, grad_whh, grad_bih, grad_bhh, None, None, None
