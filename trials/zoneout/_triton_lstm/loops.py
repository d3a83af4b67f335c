"""The per-sequence loops: one recurrent GEMM and one fused Triton kernel per step.

These functions only launch work on preallocated buffers (no allocation, no host sync), so the
eager path and the CUDA-graph capture (`graphs`) run the very same code.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from trials.zoneout._triton_lstm.kernels import bwd_step_kernel, fwd_step_kernel, masks_kernel
from trials.zoneout._triton_lstm.noise import Noise

# 256 elements (2 per thread with 4 warps) gives 125 programs at B=32, H=1000: enough to cover
# an H100's 132 SMs once; a step is latency-bound, so fewer, fatter programs would idle SMs.
BLOCK = 256
NUM_WARPS = 4
# The mask oracle is not on any hot path; big blocks keep it quick under the interpreter too.
MASK_BLOCK = 4096


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Cell state, saved gates and gradient accumulators: float32, or float64 for float64 input."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _acc(dtype: torch.dtype) -> object:
    import triton.language as tl

    return tl.float64 if state_dtype(dtype) == torch.float64 else tl.float32


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


def forward_loop(
    xproj: Tensor,
    w_hh: Tensor,
    hs: Tensor,
    cs: Tensor,
    gates: Tensor,
    hproj: Tensor,
    seed: Tensor,
    noise: Noise,
    save: bool,
) -> None:
    """Fills hs[1:], cs[1:] (and gates if save) from xproj and hs[0], cs[0]."""
    steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    n = batch * hidden
    w_hh_t = w_hh.t()  # cuBLAS reads the transposed operand in place; no copy per step
    zc, zh, p, scale = noise.kernel_args()
    flags = noise.kernel_flags()
    acc = _acc(hs.dtype)
    grid = _grid(n)
    for t in range(steps):
        torch.mm(hs[t], w_hh_t, out=hproj)
        fwd_step_kernel[grid](
            xproj, hproj, hs, cs, gates, seed, t, n, hidden, zc, zh, p, scale,
            **flags, SAVE=save, ACC=acc, BLOCK=BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip


def backward_loop(
    gates: Tensor,
    cs: Tensor,
    grad_out: Tensor,
    w_hh: Tensor,
    carry: Tensor,
    fc: Tensor,
    dh_gemm: Tensor,
    dgates: Tensor,
    seed: Tensor,
    noise: Noise,
) -> None:
    """Fills dgates; leaves in carry + dh_gemm the gradient of h0 and in fc that of c0.

    On entry carry holds dL/dh_T from h_n, fc holds dL/dc_T from c_n and dh_gemm is zero.
    """
    steps, batch, hidden = grad_out.shape
    n = batch * hidden
    zc, zh, p, scale = noise.kernel_args()
    flags = noise.kernel_flags()
    acc = _acc(dgates.dtype)
    grid = _grid(n)
    for t in range(steps - 1, -1, -1):
        bwd_step_kernel[grid](
            gates, cs, grad_out, carry, dh_gemm, fc, dgates, seed, t, n, hidden, zc, zh, p,
            scale, **flags, ACC=acc, BLOCK=BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip
        torch.mm(dgates[t], w_hh, out=dh_gemm)


def draw_masks(
    seed: int, steps: int, batch: int, hidden: int, noise: Noise, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """(d_c, d_h, keep_g) as (T, B, H) bool tensors: the masks a training call with `seed` uses.

    d = True keeps the previous value. Rates that are 0 give all-False zoneout masks and an
    all-True keep mask, as in the step kernels.
    """
    if not noise.training:
        raise ValueError("masks are drawn in training only; evaluation uses the rates")
    total = steps * batch * hidden
    out = torch.empty(3, steps, batch, hidden, dtype=torch.uint8, device=device)
    zc, zh, p, _ = noise.kernel_args()
    masks_kernel[(triton.cdiv(total, MASK_BLOCK),)](
        out[0], out[1], out[2], seed_tensor(seed, device), total, zc, zh, p,
        SHARED=noise.shared_mask, BLOCK=MASK_BLOCK, num_warps=8,
    )  # fmt: skip
    d_c, d_h, keep = out.bool().unbind(0)
    return d_c, d_h, keep


def seed_tensor(seed: int, device: torch.device) -> Tensor:
    # torch.full launches a fill kernel with the value as an argument: no host-to-device copy.
    return torch.full((1,), seed, dtype=torch.int64, device=device)
