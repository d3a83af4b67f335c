"""One layer's forward and backward sequence, eagerly or by replaying a captured CUDA graph.

`forward_sequence` and `backward_sequence` hand back fresh tensors either way; `graphs` only
decides whether the per-step launches come from Python or from a graph replay.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trials.zoneout._triton_lstm import graphs
from trials.zoneout._triton_lstm.loops import (
    backward_loop,
    forward_loop,
    seed_tensor,
    state_dtype,
)
from trials.zoneout._triton_lstm.noise import Noise
from trials.zoneout._triton_lstm.results import (
    BackwardResult,
    ForwardResult,
    input_projection,
)


def forward_sequence(
    x: Tensor,
    w_ih: Tensor,
    bias: Tensor | None,
    w_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    seed: int,
    noise: Noise,
    save: bool,
) -> ForwardResult:
    if graphs.usable(x.device):
        result = graphs.forward(x, w_ih, bias, w_hh, h0, c0, seed, noise, save)
        if result is not None:
            return result
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    acc = state_dtype(x.dtype)
    xproj = torch.empty(steps, batch, 4 * hidden, dtype=x.dtype, device=x.device)
    input_projection(x, w_ih, bias, xproj)
    hs = torch.empty(steps + 1, batch, hidden, dtype=x.dtype, device=x.device)
    hs[0] = h0
    cs = torch.empty(steps + 1, batch, hidden, dtype=acc, device=x.device)
    cs[0] = c0
    hproj = torch.empty(batch, 4 * hidden, dtype=x.dtype, device=x.device)
    # Without save the kernel never touches the gates pointer; any tensor will do.
    gates = torch.empty(steps, batch, 4 * hidden, dtype=acc, device=x.device) if save else cs
    forward_loop(xproj, w_hh, hs, cs, gates, hproj, seed_tensor(seed, x.device), noise, save)
    # Fresh outputs, not views of saved state: callers may modify them in place.
    return ForwardResult(
        output=hs[1:].clone(),
        h_n=hs[steps].clone(),
        c_n=cs[steps].clone(),
        h_prev=hs[:steps] if save else None,
        c_prev=cs[:steps] if save else None,
        gates=gates if save else None,
    )


def backward_sequence(
    gates: Tensor,
    c_prev: Tensor,
    grad_out: Tensor,
    grad_hn: Tensor,
    grad_cn: Tensor,
    w_hh: Tensor,
    seed: int,
    noise: Noise,
) -> BackwardResult:
    if graphs.usable(grad_out.device):
        result = graphs.backward(gates, c_prev, grad_out, grad_hn, grad_cn, w_hh, seed, noise)
        if result is not None:
            return result
    steps, batch, hidden = grad_out.shape
    acc = state_dtype(grad_out.dtype)
    carry = grad_hn.to(acc, copy=True)
    fc = grad_cn.to(acc, copy=True)
    dh_gemm = torch.zeros(batch, hidden, dtype=grad_out.dtype, device=grad_out.device)
    dgates = torch.empty(steps, batch, 4 * hidden, dtype=grad_out.dtype, device=grad_out.device)
    seed_t = seed_tensor(seed, grad_out.device)
    backward_loop(gates, c_prev, grad_out, w_hh, carry, fc, dh_gemm, dgates, seed_t, noise)
    return BackwardResult(dgates=dgates, grad_h0=carry + dh_gemm, grad_c0=fc)
