"""Triton kernels of one LSTM step with zoneout and recurrent dropout, forward and backward.

Layouts (all contiguous): gate tensors are (B, 4H) per step in torch's order (i, f, g, o); the
state tensors hs and cs are (T + 1, B, H) with the initial state at index 0; ``n = B * H``.
One program handles BLOCK consecutive (example, unit) elements of one step.

Randomness: every mask comes from one Philox call per (step, example, unit),
``tl.rand4x(seed, offset)`` with ``offset = (t * B + b) * H + j``, the flat index into (T, B, H).
Its four independent uniforms are the four "which-mask" lanes: 0 is the cell zoneout mask,
1 the hidden one, 2 the recurrent-dropout keep mask on g (3 is unused). The seed is read from a
device tensor, so a captured CUDA graph replays with a new seed without being re-captured. The
backward kernel and `masks_kernel` (the test oracle) call the same `_draw`, so they see the very
masks the forward saw, and no (T, B, H) mask tensor exists.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # tl has no tanh that also runs under the interpreter; this identity is exact in math and
    # within a few ulp of tanh in float32.
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _draw(seed, offset, zc, zh, p, SHARED: tl.constexpr):
    """(d_c, d_h, keep_g) for the given flat (t, b, j) offsets; d = True keeps the old value."""
    u_c, u_h, u_g, _ = tl.rand4x(seed, offset)
    d_c = u_c < zc
    d_h = d_c if SHARED else u_h < zh
    keep_g = u_g >= p
    return d_c, d_h, keep_g


@triton.jit(do_not_specialize=["t"])
def fwd_step_kernel(
    xproj_ptr,  # (T, B, 4H): x W_ih^T + b_ih + b_hh
    hproj_ptr,  # (B, 4H): h_{t-1} W_hh^T
    hs_ptr,  # (T + 1, B, H): reads h_{t-1} at t, writes h_t at t + 1
    cs_ptr,  # (T + 1, B, H), ACC dtype: reads c_{t-1}, writes c_t
    gates_ptr,  # (T, B, 4H), ACC dtype: activated i, f, g (before dropout), o; if SAVE
    seed_ptr,  # (1,) int64
    t,
    n,  # B * H
    H,
    zc,  # cell rate
    zh,  # hidden rate (the cell rate when SHARED)
    p,  # recurrent dropout rate
    keep_scale,  # 1 / (1 - p)
    RANDOM: tl.constexpr,  # masks are drawn: training with some rate above 0
    USE_ZC: tl.constexpr,
    USE_ZH: tl.constexpr,
    USE_DROP: tl.constexpr,
    SHARED: tl.constexpr,
    SAVE: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Indices within a step fit int32 (cheaper division); offsets across steps are int64.
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = idx < n
    b = idx // H
    j = idx - b * H
    t64 = t.to(tl.int64)
    row = b * 4 * H + j  # gate i of element (b, j) in a (B, 4H) block
    x_row = xproj_ptr + t64 * 4 * n + row
    h_row = hproj_ptr + row
    a_i = tl.load(x_row, mask=live).to(ACC) + tl.load(h_row, mask=live).to(ACC)
    a_f = tl.load(x_row + H, mask=live).to(ACC) + tl.load(h_row + H, mask=live).to(ACC)
    a_g = tl.load(x_row + 2 * H, mask=live).to(ACC) + tl.load(h_row + 2 * H, mask=live).to(ACC)
    a_o = tl.load(x_row + 3 * H, mask=live).to(ACC) + tl.load(h_row + 3 * H, mask=live).to(ACC)
    i = tl.sigmoid(a_i)
    f = tl.sigmoid(a_f)
    g = _tanh(a_g)
    o = tl.sigmoid(a_o)

    state = t64 * n + idx  # flat (t, b, j): the state at t - 1 and the Philox offset of step t
    c_prev = tl.load(cs_ptr + state, mask=live)
    h_prev = tl.load(hs_ptr + state, mask=live).to(ACC)
    if RANDOM:
        d_c, d_h, keep_g = _draw(tl.load(seed_ptr), state, zc, zh, p, SHARED)
    g_in = g
    if RANDOM and USE_DROP:
        g_in = tl.where(keep_g, g * keep_scale, 0.0)
    c_new = f * c_prev + i * g_in
    # The output gate reads the new, un-zoned cell (the paper's h~_t).
    h_new = o * _tanh(c_new)
    c = c_new
    h = h_new
    if USE_ZC:
        c = tl.where(d_c, c_prev, c_new) if RANDOM else c_new + zc * (c_prev - c_new)
    if USE_ZH:
        h = tl.where(d_h, h_prev, h_new) if RANDOM else h_new + zh * (h_prev - h_new)
    tl.store(cs_ptr + n + state, c, mask=live)
    tl.store(hs_ptr + n + state, h.to(hs_ptr.dtype.element_ty), mask=live)
    if SAVE:
        s_row = gates_ptr + t64 * 4 * n + row
        tl.store(s_row, i, mask=live)
        tl.store(s_row + H, f, mask=live)
        tl.store(s_row + 2 * H, g, mask=live)
        tl.store(s_row + 3 * H, o, mask=live)


@triton.jit(do_not_specialize=["t"])
def bwd_step_kernel(
    gates_ptr,  # (T, B, 4H), ACC: the forward's activated gates
    cs_ptr,  # (T + 1, B, H), ACC
    grad_out_ptr,  # (T, B, H): dL/d output[t]
    carry_ptr,  # (B, H), ACC, in/out: d_h(t+1) * E_{t+1} in, d_h(t) * E_t out
    dh_gemm_ptr,  # (B, H): dgates_{t+1} W_hh (zeros at t = T - 1)
    fc_ptr,  # (B, H), ACC, in/out: dL/dc_t in, dL/dc_{t-1} out
    dgates_ptr,  # (T, B, 4H): writes d(preactivation) of step t
    seed_ptr,
    t,
    n,
    H,
    zc,
    zh,
    p,
    keep_scale,
    RANDOM: tl.constexpr,  # masks are drawn: training with some rate above 0
    USE_ZC: tl.constexpr,
    USE_ZH: tl.constexpr,
    USE_DROP: tl.constexpr,
    SHARED: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Indices within a step fit int32 (cheaper division); offsets across steps are int64.
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = idx < n
    b = idx // H
    j = idx - b * H
    t64 = t.to(tl.int64)
    row = b * 4 * H + j
    s_row = gates_ptr + t64 * 4 * n + row
    i = tl.load(s_row, mask=live)
    f = tl.load(s_row + H, mask=live)
    g = tl.load(s_row + 2 * H, mask=live)
    o = tl.load(s_row + 3 * H, mask=live)
    state = t64 * n + idx
    c_prev = tl.load(cs_ptr + state, mask=live)

    # E_t: the whole gradient reaching h_t (output, the zoned-out path, the recurrent GEMM).
    e = (
        tl.load(grad_out_ptr + state, mask=live).to(ACC)
        + tl.load(carry_ptr + idx, mask=live)
        + tl.load(dh_gemm_ptr + idx, mask=live).to(ACC)
    )
    fc = tl.load(fc_ptr + idx, mask=live)

    if RANDOM:
        d_c, d_h, keep_g = _draw(tl.load(seed_ptr), state, zc, zh, p, SHARED)
    g_scale = tl.full(g.shape, 1.0, ACC)
    if RANDOM and USE_DROP:
        g_scale = tl.where(keep_g, keep_scale, 0.0).to(ACC)
    g_in = g * g_scale
    c_new = f * c_prev + i * g_in
    tc = _tanh(c_new)

    dh_new = e
    carry = tl.zeros_like(e)
    if USE_ZH:
        if RANDOM:
            dh_new = tl.where(d_h, 0.0, e)
            carry = tl.where(d_h, e, 0.0)
        else:
            dh_new = (1.0 - zh) * e
            carry = zh * e
    dc_new = fc
    fc_prev = tl.zeros_like(fc)
    if USE_ZC:
        if RANDOM:
            dc_new = tl.where(d_c, 0.0, fc)
            fc_prev = tl.where(d_c, fc, 0.0)
        else:
            dc_new = (1.0 - zc) * fc
            fc_prev = zc * fc
    dc_new += dh_new * o * (1.0 - tc * tc)
    fc_prev += dc_new * f

    da_i = dc_new * g_in * i * (1.0 - i)
    da_f = dc_new * c_prev * f * (1.0 - f)
    da_g = dc_new * i * g_scale * (1.0 - g * g)
    da_o = dh_new * tc * o * (1.0 - o)
    out_ty = dgates_ptr.dtype.element_ty
    d_row = dgates_ptr + t64 * 4 * n + row
    tl.store(d_row, da_i.to(out_ty), mask=live)
    tl.store(d_row + H, da_f.to(out_ty), mask=live)
    tl.store(d_row + 2 * H, da_g.to(out_ty), mask=live)
    tl.store(d_row + 3 * H, da_o.to(out_ty), mask=live)
    tl.store(carry_ptr + idx, carry, mask=live)
    tl.store(fc_ptr + idx, fc_prev, mask=live)


@triton.jit
def masks_kernel(
    dc_ptr,  # (T, B, H) uint8 outputs
    dh_ptr,
    keep_ptr,
    seed_ptr,
    total,  # T * B * H
    zc,
    zh,
    p,
    SHARED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Materializes the masks the step kernels draw for one seed (a test and debugging oracle)."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = idx < total
    d_c, d_h, keep_g = _draw(tl.load(seed_ptr), idx, zc, zh, p, SHARED)
    tl.store(dc_ptr + idx, d_c.to(tl.uint8), mask=live)
    tl.store(dh_ptr + idx, d_h.to(tl.uint8), mask=live)
    tl.store(keep_ptr + idx, keep_g.to(tl.uint8), mask=live)
