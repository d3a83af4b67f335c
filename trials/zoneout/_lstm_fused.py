"""One LSTM layer with zoneout as a single autograd node: a hand-written forward and backward loop.

Autograd over a per-step Python loop records ~15 nodes per step and replays them one by one in
the backward pass; at B=32, H=256 that bookkeeping costs more than the arithmetic. Here the
step-independent work is done for all steps at once (the input projection, the weight gradients,
the activation derivatives) and only the recurrence itself stays in the loop, each step a handful
of in-place ops on preallocated buffers.

Gate layout: torch stores the gates as (i, f, g, o). Rolling the weight rows by one block gives
(o, i, f, g), so the forward applies sigmoid to one contiguous slice (o, i, f) and tanh to one (g),
and the backward writes the three cell-driven gates (i, f, g) with one broadcast multiply.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from trials.zoneout._args import DIFFERENTIABLE, LayerArgs, LayerOutput, Weight


def _active(d: Weight) -> bool:
    # A float 0.0 means "no zoneout": skip the interpolation so z=0 is bit-for-bit plain LSTM math.
    return isinstance(d, Tensor) or d != 0.0


def as_float(d: Weight, dtype: torch.dtype) -> Weight:
    """A bool mask as 0/1 values of the layer's dtype (lerp's weight); a rate unchanged."""
    return d.to(dtype) if isinstance(d, Tensor) else d


def zoneout_weights(d_c: Weight, d_h: Weight, dtype: torch.dtype) -> tuple[Weight, Weight]:
    """Both zoneout weights as floats; a shared mask is converted (and stored) once."""
    w_c = as_float(d_c, dtype)
    return w_c, (w_c if d_h is d_c else as_float(d_h, dtype))


def dropout_weight(keep: Tensor | None, scale: float, dtype: torch.dtype) -> Tensor | None:
    """Recurrent dropout's multiplier of g: keep/(1-p) (inverted dropout); None when off."""
    return None if keep is None else keep.to(dtype).mul_(scale)


def _steps(d: Weight, n: int) -> list[Any]:
    # unbind once in C++ instead of indexing in Python at every step.
    return list(d.unbind(0)) if isinstance(d, Tensor) else [d] * n


class FusedZoneoutLSTMLayer(torch.autograd.Function):
    """One layer, the fields of a `LayerArgs` flat (``apply(*args.node_args())``; see
    `fused_layer`) -> (output, h_n, c_n), with `LayerArgs`' contract."""

    @staticmethod
    def forward(ctx: Any, *flat: Any) -> LayerOutput:  # type: ignore[override]
        args = LayerArgs(*flat)
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = args.tensors()
        steps, batch, _ = x.shape
        d_c, d_h = zoneout_weights(args.d_c, args.d_h, x.dtype)
        rd_w = dropout_weight(args.rd_keep, args.rd_scale, x.dtype)
        hidden = w_hh.shape[1]
        w_ih_p = w_ih.roll(hidden, 0)
        w_hh_p = w_hh.roll(hidden, 0)
        # A contiguous W_hh^T: MKL's small-batch GEMM is ~25% faster on (B,H)@(H,4H) "NN" than
        # on the transposed view at H=1000 (measured), and the copy is paid once per sequence.
        w_hh_t = w_hh_p.t().contiguous()

        # gates holds x W_ih^T + b for every step, then each step adds h W_hh^T in place and
        # applies the activations in place: after the loop it is the saved activations.
        gates = torch.empty(steps, batch, 4 * hidden, dtype=x.dtype, device=x.device)
        x2d = x.reshape(steps * batch, -1)
        if b_ih is not None and b_hh is not None:
            torch.addmm(
                (b_ih + b_hh).roll(hidden, 0), x2d, w_ih_p.t(), out=gates.view(-1, 4 * hidden)
            )
        else:
            torch.mm(x2d, w_ih_p.t(), out=gates.view(-1, 4 * hidden))
        # hs[t + 1] = h_t and cs[t + 1] = c_t, with the initial state at index 0, so h_{t-1} for
        # every step is the slice hs[:T] (one GEMM for dW_hh in the backward).
        hs = torch.empty(steps + 1, batch, hidden, dtype=x.dtype, device=x.device)
        hs[0] = h0
        cs = torch.empty_like(hs)
        cs[0] = c0
        tanh_c = torch.empty(steps, batch, hidden, dtype=x.dtype, device=x.device)

        g4 = gates.view(steps, batch, 4, hidden)
        g_all = gates.unbind(0)
        g_sig = gates[:, :, : 3 * hidden].unbind(0)
        g_tanh = gates[:, :, 3 * hidden :].unbind(0)
        o_s, i_s, f_s, g_s = (g4[:, :, k].unbind(0) for k in range(4))
        c_s = cs.unbind(0)
        h_s = hs.unbind(0)
        tc_s = tanh_c.unbind(0)
        zc, zh = _active(d_c), _active(d_h)
        dc_s, dh_s = _steps(d_c, steps), _steps(d_h, steps)
        rd_s = rd_w.unbind(0) if rd_w is not None else None
        g_dropped = torch.empty_like(h0) if rd_w is not None else None

        for t in range(steps):
            c_prev, c_new, h_prev, h_new = c_s[t], c_s[t + 1], h_s[t], h_s[t + 1]
            g_all[t].addmm_(h_prev, w_hh_t)
            g_sig[t].sigmoid_()
            g_tanh[t].tanh_()
            torch.mul(f_s[t], c_prev, out=c_new)
            if rd_s is None:
                c_new.addcmul_(i_s[t], g_s[t])
            else:  # the saved g stays undropped: the backward needs tanh's derivative of it
                c_new.addcmul_(i_s[t], torch.mul(g_s[t], rd_s[t], out=g_dropped))
            torch.tanh(c_new, out=tc_s[t])
            torch.mul(o_s[t], tc_s[t], out=h_new)
            # c~ is not needed later (only tanh(c~) is), so zone out over it in place.
            if zc:
                c_new.lerp_(c_prev, dc_s[t])
            if zh:
                h_new.lerp_(h_prev, dh_s[t])

        ctx.save_for_backward(x, w_ih, w_hh, gates, hs, cs, tanh_c)
        ctx.d_c, ctx.d_h, ctx.rd_w = d_c, d_h, rd_w
        ctx.has_bias = b_ih is not None
        ctx.no_grad_inputs = len(flat) - DIFFERENTIABLE  # the masks and rd_scale
        # Fresh output tensors, not views of the saved state: the caller may modify them in
        # place (e.g. nn.Dropout(inplace=True)), as it may with nn.LSTM's outputs.
        out = hs[1:].clone()
        h_n = hs[steps].clone()
        c_n = cs[steps].clone()
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: Tensor | None, grad_hn: Tensor | None, grad_cn: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, w_ih, w_hh, gates, hs, cs, tanh_c = ctx.saved_tensors
        d_c: Weight = ctx.d_c
        d_h: Weight = ctx.d_h
        rd_w: Tensor | None = ctx.rd_w
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        w_hh_p = w_hh.roll(hidden, 0)
        w_ih_p = w_ih.roll(hidden, 0)

        # Everything that does not depend on the backward recurrence, for all steps at once.
        # Few whole-sequence ops: each is a pass over T*B*H memory, so their count matters too.
        g4 = gates.view(steps, batch, 4, hidden)
        o, i, f, g = g4.unbind(2)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        dact = torch.empty_like(g4)  # activation derivatives: s(1-s) for o, i, f; 1-g^2 for g
        sig = g4[:, :, :3]
        torch.addcmul(sig, sig, sig, value=-1, out=dact[:, :, :3])
        torch.addcmul(one, g, g, value=-1, out=dact[:, :, 3])
        # d(i, f, g preact) = dc~ * cell_factors, from c~ = f*c_{t-1} + i*(r*g).
        if rd_w is None:
            cell_factors = torch.stack((g, cs[:steps], i), 2).mul_(dact[:, :, 1:])
        else:
            cell_factors = torch.stack((g * rd_w, cs[:steps], i * rd_w), 2).mul_(dact[:, :, 1:])
        out_factor = tanh_c * dact[:, :, 0]  # d(o preact) = dh~ * out_factor
        cell_from_h = torch.addcmul(one, tanh_c, tanh_c, value=-1).mul_(o)  # dc~ += dh~ * this

        # e[t + 1] is the total gradient reaching h_t; e[0] ends as the gradient of h0.
        e = torch.zeros(steps + 1, batch, hidden, dtype=x.dtype, device=x.device)
        if grad_out is not None:
            e[1:] = grad_out
        if grad_hn is not None:
            e[steps] += grad_hn
        fc = torch.zeros(batch, hidden, dtype=x.dtype, device=x.device)
        if grad_cn is not None:
            fc.copy_(grad_cn)
        fc_next = torch.empty_like(fc)
        dct = torch.empty_like(fc)
        dht_buf = torch.empty_like(fc)
        dgates = torch.empty(steps, batch, 4, hidden, dtype=x.dtype, device=x.device)

        zc, zh = _active(d_c), _active(d_h)
        mask_h = isinstance(d_h, Tensor)
        kc = 1.0 - d_c
        kh = 1.0 - d_h
        e_s = e.unbind(0)
        dg_all = dgates.view(steps, batch, 4 * hidden).unbind(0)
        dg_o = dgates[:, :, 0].unbind(0)
        dg_ifg = dgates[:, :, 1:].unbind(0)
        cf_s = cell_factors.unbind(0)
        of_s = out_factor.unbind(0)
        cfh_s = cell_from_h.unbind(0)
        f_s = f.unbind(0)
        dc_s, dh_s = _steps(d_c, steps), _steps(d_h, steps)
        kc_s, kh_s = _steps(kc, steps), _steps(kh, steps)
        dct_b = dct.unsqueeze(1)

        for t in range(steps - 1, -1, -1):
            et = e_s[t + 1]
            dht = torch.mul(et, kh_s[t], out=dht_buf) if zh else et
            if zc:
                torch.mul(fc, kc_s[t], out=dct)
                dct.addcmul_(dht, cfh_s[t])
            else:
                torch.addcmul(fc, dht, cfh_s[t], out=dct)
            torch.mul(cf_s[t], dct_b, out=dg_ifg[t])
            torch.mul(of_s[t], dht, out=dg_o[t])
            if zc:
                torch.mul(fc, dc_s[t], out=fc_next)
                fc_next.addcmul_(dct, f_s[t])
                fc, fc_next = fc_next, fc
            else:
                torch.mul(dct, f_s[t], out=fc)
            if mask_h:
                e_s[t].addcmul_(et, dh_s[t])
            elif zh:
                e_s[t].add_(et, alpha=d_h)
            e_s[t].addmm_(dg_all[t], w_hh_p)

        need = ctx.needs_input_grad
        dg2d = dgates.view(steps * batch, 4 * hidden)
        grad_x = grad_h0 = grad_c0 = grad_wih = grad_whh = grad_b = None
        if need[0]:
            grad_x = torch.mm(dg2d, w_ih_p).view_as(x)
        if need[1]:
            grad_h0 = e_s[0]
        if need[2]:
            grad_c0 = fc
        if need[3]:
            grad_wih = torch.mm(dg2d.t(), x.reshape(steps * batch, -1)).roll(-hidden, 0)
        if need[4]:
            h_prev = hs[:steps].reshape(steps * batch, hidden)
            grad_whh = torch.mm(dg2d.t(), h_prev).roll(-hidden, 0)
        grad_bih = grad_bhh = None
        if ctx.has_bias and (need[5] or need[6]):
            grad_b = dg2d.sum(0).roll(-hidden, 0)
            grad_bih = grad_b if need[5] else None
            # A separate tensor: AccumulateGrad may adopt a returned gradient as .grad itself,
            # and two parameters must not share one .grad.
            grad_bhh = (grad_b.clone() if need[5] else grad_b) if need[6] else None
        return (
            grad_x,
            grad_h0,
            grad_c0,
            grad_wih,
            grad_whh,
            grad_bih,
            grad_bhh,
            *([None] * ctx.no_grad_inputs),
        )


def fused_layer(args: LayerArgs) -> LayerOutput:
    """The pure-PyTorch fused path (`LayerPath.FUSED`): one layer as one autograd node."""
    out: LayerOutput = FusedZoneoutLSTMLayer.apply(*args.node_args())
    return out
