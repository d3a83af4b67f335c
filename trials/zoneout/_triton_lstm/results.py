"""What one layer's forward and backward sequence hand back, and the input projection both
the eager loop (runs.py) and the graph replay (graphs.py) start from. Its own module so that
graphs.py and runs.py need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ForwardResult:
    output: Tensor  # (T, B, H): h_t for every step
    h_n: Tensor
    c_n: Tensor  # in the state dtype (float32 / float64)
    # What the backward needs (None when nothing will be differentiated):
    h_prev: Tensor | None  # (T, B, H): h_{t-1} for every step, for dL/dW_hh
    c_prev: Tensor | None  # (T, B, H), state dtype: c_{t-1} for every step
    gates: Tensor | None  # (T, B, 4H), state dtype: activated i, f, g, o


@dataclass(frozen=True)
class BackwardResult:
    dgates: Tensor  # (T, B, 4H): d(preactivation); may be a graph's buffer: use it at once
    grad_h0: Tensor  # state dtype
    grad_c0: Tensor  # state dtype


def input_projection(x: Tensor, w_ih: Tensor, bias: Tensor | None, out: Tensor) -> None:
    """out (T, B, 4H) = x W_ih^T + bias, all steps in one GEMM."""
    x2d = x.reshape(-1, x.shape[-1])
    if bias is None:
        torch.mm(x2d, w_ih.t(), out=out.view(x2d.shape[0], -1))
    else:
        torch.addmm(bias, x2d, w_ih.t(), out=out.view(x2d.shape[0], -1))
