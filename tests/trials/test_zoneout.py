"""ZoneoutLSTM / ZoneoutGRU / ZoneoutRNN against torch's layers and an independent reference loop.

The reference below is written from the papers' equations with the explicit d*old + (1-d)*new
rule (not lerp, not the package's code), so a shared mistake cannot hide. The training-mode
comparison draws masks as the package documents (trials/zoneout/_masks.py: a (layers, 3) seed
table from the global RNG, then one private stream per layer and mask kind) after reseeding.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from trials.zoneout import ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN
from trials.zoneout._lstm_fused import FusedZoneoutLSTMLayer

DT = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-12}
IMPLEMENTATIONS = ["fused", "reference"]


def _params(module: nn.Module, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    get = lambda name: getattr(module, f"{name}_l{layer}", None)  # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")


def _affine(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return x @ w.t() + (b if b is not None else 0.0)


def _mix(d: Tensor | float, old: Tensor, new: Tensor) -> Tensor:
    return d * old + (1 - d) * new


def reference_forward(
    module: nn.Module,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    d_c: list[Tensor | float],
    d_h: list[Tensor | float],
    r_g: list[Tensor | float] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Paper equations, one layer after another; d_* are per layer, (T,B,H) masks or rates;
    r_g per layer multiplies the LSTM's candidate g (recurrent dropout: keep/(1-p), or 1)."""
    r_g = r_g if r_g is not None else [1.0] * module.num_layers
    kind = type(module).__name__
    h_n, c_n = [], []
    for layer in range(module.num_layers):
        w_ih, w_hh, b_ih, b_hh = _params(module, layer)
        h = h0[layer]
        c = c0[layer] if c0 is not None else None
        outs = []
        for t in range(x.shape[0]):
            dc = d_c[layer][t] if isinstance(d_c[layer], Tensor) else d_c[layer]
            dh = d_h[layer][t] if isinstance(d_h[layer], Tensor) else d_h[layer]
            rg = r_g[layer][t] if isinstance(r_g[layer], Tensor) else r_g[layer]
            gi, gh = _affine(x[t], w_ih, b_ih), _affine(h, w_hh, b_hh)
            if kind == "ZoneoutLSTM":
                i, f, g, o = (gi + gh).chunk(4, 1)
                c_tilde = torch.sigmoid(f) * c + torch.sigmoid(i) * (rg * torch.tanh(g))
                h_tilde = torch.sigmoid(o) * torch.tanh(c_tilde)
                c = _mix(dc, c, c_tilde)
            elif kind == "ZoneoutGRU":
                (xr, xz, xn), (hr, hz, hn) = gi.chunk(3, 1), gh.chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h_tilde = (1 - z) * n + z * h
            else:
                h_tilde = torch.tanh(gi + gh)
            h = _mix(dh, h, h_tilde)
            outs.append(h)
        x = torch.stack(outs)
        h_n.append(h)
        c_n.append(c)
    return x, torch.stack(h_n), torch.stack(c_n) if c0 is not None else None


def _stream(seed: Tensor, shape: tuple[int, ...]) -> Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(int(seed)))


def draw_masks(module: nn.Module, seed: int, steps: int, batch: int) -> tuple[list, list, list]:
    """The masks the layer draws after torch.manual_seed(seed) (dropout=0 assumed), as float64:
    per layer the cell and hidden zoneout masks and recurrent dropout's multiplier of g."""
    torch.manual_seed(seed)
    seeds = torch.randint(0, 2**62, (module.num_layers, 3))
    shape = (steps, batch, module.hidden_size)
    z_c = getattr(module, "zoneout_cell", 0.0)
    p = getattr(module, "recurrent_dropout", 0.0)
    d_c: list[Tensor | float] = []
    d_h: list[Tensor | float] = []
    r_g: list[Tensor | float] = []
    for layer in range(module.num_layers):
        cell = (_stream(seeds[layer, 0], shape) < z_c).to(DT) if 0 < z_c < 1 else z_c
        d_c.append(cell)
        if getattr(module, "zoneout_shared_mask", False):
            d_h.append(cell)
        else:
            z_h = module.zoneout_hidden
            d_h.append((_stream(seeds[layer, 1], shape) < z_h).to(DT) if 0 < z_h < 1 else z_h)
        keep = (_stream(seeds[layer, 2], shape) >= p).to(DT) / (1 - p) if 0 < p < 1 else 1.0
        r_g.append(keep)
    return d_c, d_h, r_g


def _inputs(steps: int, batch: int, module: nn.Module, seed: int = 0) -> tuple[Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shape = (module.num_layers, batch, module.hidden_size)
    x = torch.randn(steps, batch, module.input_size, dtype=DT, generator=gen)
    h0 = torch.randn(shape, dtype=DT, generator=gen)
    c0 = torch.randn(shape, dtype=DT, generator=gen)
    return x.requires_grad_(), h0.requires_grad_(), c0.requires_grad_()


def _run(module: nn.Module, x: Tensor, h0: Tensor, c0: Tensor | None, fn=None) -> list[Tensor]:
    """Outputs and the gradients of a loss touching output, h_n (and c_n) w.r.t. everything."""
    if fn is None:
        out, state = module(x, (h0, c0) if c0 is not None else h0)
        h_n, c_n = state if c0 is not None else (state, None)
    else:
        out, h_n, c_n = fn()
    loss = (out * torch.cos(out.detach() * 3)).sum() + torch.sin(h_n).sum()
    if c_n is not None:
        loss = loss + torch.exp(c_n * 0.5).sum()
    wrt = [x, h0, *([c0] if c0 is not None else []), *module.parameters()]
    grads = torch.autograd.grad(loss, wrt)
    return [out, h_n, *([c_n] if c_n is not None else []), *grads]


def _assert_all_close(got: list[Tensor], want: list[Tensor], **tol: float) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, **(tol or TIGHT), msg=lambda m, k=k: f"item {k}: {m}")


def _twin(cls: type, torch_cls: type, **kw) -> tuple[nn.Module, nn.Module]:
    ours = cls(**kw).to(DT)
    torch_args = {"input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"}
    kw = {k: v for k, v in kw.items() if k in torch_args}
    theirs = torch_cls(**kw).to(DT)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


KINDS = [(ZoneoutLSTM, nn.LSTM), (ZoneoutGRU, nn.GRU), (ZoneoutRNN, nn.RNN)]


# --- rates 0: exactly torch's layers --------------------------------------------------------


EXACT = {"rtol": 0.0, "atol": 0.0}
ZERO_RATE_VARIANTS = [
    {},
    {"recurrent_dropout": 0.0},
    {"zoneout_shared_mask": True},
    {"zoneout_shared_mask": True, "recurrent_dropout": 0.0},
]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("variant", ZERO_RATE_VARIANTS)
@pytest.mark.parametrize(("num_layers", "bias"), [(1, True), (2, True), (2, False)])
def test_lstm_zero_rates_match_nn_lstm_bit_for_bit(impl, variant, num_layers, bias):
    ours, theirs = _twin(
        ZoneoutLSTM,
        nn.LSTM,
        input_size=5,
        hidden_size=6,
        num_layers=num_layers,
        bias=bias,
        **variant,
    )
    ours.implementation = impl
    x, h0, c0 = _inputs(7, 3, ours)
    _assert_all_close(_run(ours.train(), x, h0, c0), _run(theirs.train(), x, h0, c0), **EXACT)
    _assert_all_close(_run(ours.eval(), x, h0, c0), _run(theirs.eval(), x, h0, c0), **EXACT)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_recurrent_dropout_is_the_identity_in_evaluation(impl):
    ours, theirs = _twin(
        ZoneoutLSTM, nn.LSTM, input_size=5, hidden_size=6, num_layers=2, recurrent_dropout=0.5
    )
    ours.implementation = impl
    x, h0, c0 = _inputs(7, 3, ours)
    _assert_all_close(_run(ours.eval(), x, h0, c0), _run(theirs.eval(), x, h0, c0), **EXACT)
    # With zoneout on as well (the fused node, not nn.LSTM's kernel): dropout changes nothing.
    without = ZoneoutLSTM(5, 6, num_layers=2, zoneout_cell=0.3, zoneout_hidden=0.2).to(DT)
    with_rd = ZoneoutLSTM(
        5, 6, num_layers=2, zoneout_cell=0.3, zoneout_hidden=0.2, recurrent_dropout=0.5
    ).to(DT)
    with_rd.load_state_dict(without.state_dict())
    with_rd.implementation = without.implementation = impl
    got = _run(with_rd.eval(), x, h0, c0)
    _assert_all_close(got, _run(without.eval(), x, h0, c0), **EXACT)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_node_at_zero_rates_matches_nn_lstm(bias):
    # The layer hands rate-0 passes to nn.LSTM's kernel; the fused node must agree there too,
    # because it is what runs as soon as a rate becomes non-zero.
    ours, theirs = _twin(ZoneoutLSTM, nn.LSTM, input_size=5, hidden_size=6, bias=bias)
    x, h0, c0 = _inputs(7, 3, ours)

    def node() -> tuple[Tensor, Tensor, Tensor]:
        out, h, c = FusedZoneoutLSTMLayer.apply(
            x, h0[0], c0[0], *_params(ours, 0), 0.0, 0.0, None, 1.0
        )
        return out, h.unsqueeze(0), c.unsqueeze(0)

    _assert_all_close(_run(ours, x, h0, c0, node), _run(theirs, x, h0, c0))


@pytest.mark.parametrize(("cls", "torch_cls"), KINDS[1:])
def test_gru_rnn_zero_rates_match_torch(cls, torch_cls):
    ours, theirs = _twin(cls, torch_cls, input_size=5, hidden_size=6, num_layers=2)
    x, h0, _ = _inputs(7, 3, ours)
    _assert_all_close(_run(ours.train(), x, h0, None), _run(theirs.train(), x, h0, None))


def test_default_hx_and_seeded_init_match_nn_lstm():
    torch.manual_seed(3)
    theirs = nn.LSTM(4, 5, num_layers=2).to(DT)
    torch.manual_seed(3)
    ours = ZoneoutLSTM(4, 5, num_layers=2).to(DT)
    for (name_a, a), (name_b, b) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert name_a == name_b
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = torch.randn(6, 2, 4, dtype=DT)
    out, (h, c) = ours(x)
    ref_out, (ref_h, ref_c) = theirs(x)
    _assert_all_close([out, h, c], [ref_out, ref_h, ref_c])


def test_single_layer_dropout_is_not_applied_to_the_last_layer():
    ours, theirs = _twin(ZoneoutLSTM, nn.LSTM, input_size=3, hidden_size=4, dropout=0.0)
    ours.dropout = 0.9
    x, h0, c0 = _inputs(5, 2, ours)
    _assert_all_close(_run(ours.train(), x, h0, c0), _run(theirs.train(), x, h0, c0))


def test_output_may_be_modified_in_place_like_nn_lstm():
    ours, theirs = _twin(ZoneoutLSTM, nn.LSTM, input_size=3, hidden_size=4, zoneout_cell=0.0)
    x, h0, c0 = _inputs(5, 2, ours)
    grads = []
    for m in (ours, theirs):
        out, (h, c) = m(x, (h0, c0))
        out.mul_(2.0)
        h.add_(1.0)
        grads.append(torch.autograd.grad(out.sum() + h.sum() + c.sum(), [x, *m.parameters()]))
    _assert_all_close(list(grads[0]), list(grads[1]))


# --- evaluation: the expectation, against the reference loop --------------------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("z_c", "z_h"), [(0.3, 0.6), (0.5, 0.0), (0.0, 0.25), (1.0, 1.0)])
def test_lstm_eval_matches_reference(impl, z_c, z_h):
    m = ZoneoutLSTM(4, 5, num_layers=2, dropout=0.5, zoneout_cell=z_c, zoneout_hidden=z_h)
    m = m.to(DT).eval()
    m.implementation = impl
    x, h0, c0 = _inputs(6, 3, m)
    rates_c, rates_h = [z_c] * 2, [z_h] * 2
    got = _run(m, x, h0, c0)
    want = _run(m, x, h0, c0, lambda: reference_forward(m, x, h0, c0, rates_c, rates_h))
    _assert_all_close(got, want)
    # Deterministic: a second pass (dropout > 0, rates in (0, 1)) gives the same numbers.
    _assert_all_close(_run(m, x, h0, c0), got)


@pytest.mark.parametrize("cls", [ZoneoutGRU, ZoneoutRNN])
def test_gru_rnn_eval_matches_reference(cls):
    m = cls(4, 5, num_layers=2, zoneout_hidden=0.35).to(DT).eval()
    x, h0, _ = _inputs(6, 3, m)
    want = _run(m, x, h0, None, lambda: reference_forward(m, x, h0, None, [0.0] * 2, [0.35] * 2))
    _assert_all_close(_run(m, x, h0, None), want)


# --- training: Bernoulli masks, against the reference loop given the same masks --------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("z_c", "z_h", "num_layers"), [(0.3, 0.6, 1), (0.5, 0.05, 2)])
def test_lstm_training_matches_reference_with_same_masks(impl, z_c, z_h, num_layers):
    m = ZoneoutLSTM(4, 5, num_layers=num_layers, zoneout_cell=z_c, zoneout_hidden=z_h)
    m = m.to(DT).train()
    m.implementation = impl
    x, h0, c0 = _inputs(8, 3, m)
    d_c, d_h, _ = draw_masks(m, seed=11, steps=8, batch=3)
    want = _run(m, x, h0, c0, lambda: reference_forward(m, x, h0, c0, d_c, d_h))
    torch.manual_seed(11)
    got = _run(m, x, h0, c0)
    _assert_all_close(got, want)
    # And the masks really are random: another seed gives another output.
    torch.manual_seed(12)
    assert not torch.allclose(m(x, (h0, c0))[0], got[0])


@pytest.mark.parametrize("cls", [ZoneoutGRU, ZoneoutRNN])
def test_gru_rnn_training_matches_reference_with_same_masks(cls):
    m = cls(4, 5, num_layers=2, zoneout_hidden=0.4).to(DT).train()
    x, h0, _ = _inputs(6, 3, m)
    d_c, d_h, _ = draw_masks(m, seed=5, steps=6, batch=3)
    want = _run(m, x, h0, None, lambda: reference_forward(m, x, h0, None, d_c, d_h))
    torch.manual_seed(5)
    _assert_all_close(_run(m, x, h0, None), want)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lstm_rates_one_keep_the_initial_state_forever(impl):
    m = ZoneoutLSTM(3, 4, num_layers=2, zoneout_cell=1.0, zoneout_hidden=1.0).to(DT).train()
    m.implementation = impl
    x, h0, c0 = _inputs(9, 2, m)
    out, (h_n, c_n) = m(x, (h0, c0))
    assert torch.equal(out, h0[-1].expand(9, 2, 4))
    assert torch.equal(h_n, h0)
    assert torch.equal(c_n, c0)


@pytest.mark.parametrize("cls", [ZoneoutGRU, ZoneoutRNN])
def test_gru_rnn_rate_one_keeps_the_initial_state_forever(cls):
    m = cls(3, 4, zoneout_hidden=1.0).to(DT).train()
    x, h0, _ = _inputs(9, 2, m)
    out, h_n = m(x, h0)
    assert torch.equal(out, h0[0].expand(9, 2, 4))
    assert torch.equal(h_n, h0)


def test_preserved_fractions_match_the_rates_and_c_h_masks_are_independent():
    torch.manual_seed(0)
    m = ZoneoutLSTM(3, 50, zoneout_cell=0.3, zoneout_hidden=0.7).to(DT).train()
    batch = 2000  # 100,000 units; binomial std of a fraction <= 0.0016
    x = torch.randn(1, batch, 3, dtype=DT)
    h0 = torch.randn(1, batch, 50, dtype=DT)
    c0 = torch.randn(1, batch, 50, dtype=DT)
    with torch.no_grad():
        _, (h1, c1) = m(x, (h0, c0))
    kept_c, kept_h = (c1 == c0), (h1 == h0)
    assert abs(kept_c.double().mean().item() - 0.3) < 0.01
    assert abs(kept_h.double().mean().item() - 0.7) < 0.01
    joint = (kept_c & kept_h).double().mean().item()
    assert abs(joint - 0.3 * 0.7) < 0.01
    # Nothing is preserved exactly in evaluation: the expectation mixes old and new.
    with torch.no_grad():
        _, (h_e, c_e) = m.eval()(x, (h0, c0))
    assert not (c_e == c0).any() and not (h_e == h0).any()


def test_masks_differ_across_examples_and_steps():
    torch.manual_seed(1)
    m = ZoneoutRNN(3, 64, zoneout_hidden=0.5).to(DT).train()
    # Every example gets the same input and state: only the masks can tell them apart.
    x = torch.randn(12, 1, 3, dtype=DT).expand(12, 8, 3)
    h0 = torch.randn(1, 1, 64, dtype=DT).expand(1, 8, 64)
    with torch.no_grad():
        out, _ = m(x, h0)
    prev = torch.cat([h0, out[:-1]])
    kept = out == prev  # (T, B, H)
    assert abs(kept.double().mean().item() - 0.5) < 0.05
    for t in range(12):
        assert not all(torch.equal(kept[t, 0], kept[t, b]) for b in range(1, 8))
    for b in range(8):
        assert not all(torch.equal(kept[0, b], kept[t, b]) for t in range(1, 12))


# --- stack, layout, state -------------------------------------------------------------------


def test_inter_layer_dropout():
    ours, theirs = _twin(
        ZoneoutLSTM, nn.LSTM, input_size=4, hidden_size=5, num_layers=3, dropout=0.5
    )
    x, h0, c0 = _inputs(6, 3, ours)
    # Eval: no dropout, deterministic, and equal to nn.LSTM in eval.
    _assert_all_close(_run(ours.eval(), x, h0, c0), _run(theirs.eval(), x, h0, c0))
    ours.train()
    torch.manual_seed(0)
    a = ours(x, (h0, c0))[0]
    torch.manual_seed(0)
    b = ours(x, (h0, c0))[0]
    torch.manual_seed(1)
    c = ours(x, (h0, c0))[0]
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # Dropout drops units of the layer below: with it on, training differs from eval.
    assert not torch.allclose(a, ours.eval()(x, (h0, c0))[0])


@pytest.mark.parametrize(("cls", "state_is_tuple"), [(ZoneoutLSTM, True), (ZoneoutGRU, False)])
def test_batch_first_equals_time_major_with_the_same_masks(cls, state_is_tuple):
    kw = {"zoneout_cell": 0.4} if cls is ZoneoutLSTM else {}
    m = cls(3, 4, num_layers=2, zoneout_hidden=0.3, **kw).to(DT).train()
    mb = cls(3, 4, num_layers=2, batch_first=True, zoneout_hidden=0.3, **kw).to(DT).train()
    mb.load_state_dict(m.state_dict())
    x, h0, c0 = _inputs(5, 2, m)
    hx = (h0, c0) if state_is_tuple else h0
    torch.manual_seed(2)
    out, state = m(x, hx)
    torch.manual_seed(2)
    out_b, state_b = mb(x.transpose(0, 1), hx)
    torch.testing.assert_close(out_b, out.transpose(0, 1), **TIGHT)
    states = (state, state_b) if state_is_tuple else ([state], [state_b])
    for a, b in zip(*states, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


def test_unbatched_input_equals_batch_of_one():
    m = ZoneoutLSTM(3, 4, num_layers=2, zoneout_cell=0.2, zoneout_hidden=0.1).to(DT).eval()
    x, h0, c0 = _inputs(5, 1, m)
    out, (h, c) = m(x[:, 0], (h0[:, 0], c0[:, 0]))
    ref_out, (ref_h, ref_c) = m(x, (h0, c0))
    _assert_all_close([out, h, c], [ref_out[:, 0], ref_h[:, 0], ref_c[:, 0]])


@pytest.mark.parametrize(("cls", "torch_cls"), KINDS)
def test_state_dict_round_trip(cls, torch_cls):
    theirs = torch_cls(4, 6, num_layers=2)
    ours = cls(4, 6, num_layers=2, zoneout_hidden=0.1)
    assert ours.load_state_dict(theirs.state_dict(), strict=True)
    back = torch_cls(4, 6, num_layers=2)
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)
        assert ours.state_dict()[key].shape == value.shape


def test_gradcheck_eval_and_seeded_training():
    m = ZoneoutLSTM(3, 4, num_layers=2, zoneout_cell=0.4, zoneout_hidden=0.3).to(DT)
    x, h0, c0 = _inputs(4, 2, m)
    params = list(m.parameters())

    def fn(x: Tensor, h0: Tensor, c0: Tensor, *weights: Tensor) -> tuple[Tensor, ...]:
        # Reseeding makes the training masks the same at every gradcheck evaluation.
        torch.manual_seed(0)
        state = dict(zip((n for n, _ in m.named_parameters()), weights, strict=True))
        out, (h, c) = torch.func.functional_call(m, state, (x, (h0, c0)))
        return out, h, c

    for mode in (False, True):
        m.train(mode)
        assert torch.autograd.gradcheck(
            fn, (x, h0, c0, *params), eps=1e-6, atol=1e-7, fast_mode=True
        )
    gru = ZoneoutGRU(3, 4, zoneout_hidden=0.3).to(DT).eval()
    xg, hg, _ = _inputs(4, 2, gru)
    assert torch.autograd.gradcheck(lambda a, b: gru(a, b)[0], (xg, hg))


# --- configuration and errors ---------------------------------------------------------------


def test_rates_are_attributes_and_in_repr():
    m = ZoneoutLSTM(3, 4, num_layers=2, dropout=0.1, zoneout_cell=0.5, zoneout_hidden=0.05)
    assert (m.zoneout_cell, m.zoneout_hidden, m.dropout) == (0.5, 0.05, 0.1)
    m.zoneout_cell = 0.25  # a training loop may schedule it
    assert "zoneout_cell=0.25" in repr(m) and "zoneout_hidden=0.05" in repr(m)
    assert "zoneout_hidden=0.2" in repr(ZoneoutGRU(3, 4, zoneout_hidden=0.2))


@pytest.mark.parametrize("name", ["zoneout_cell", "zoneout_hidden", "dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, "0.5", True])
def test_invalid_rates_raise_value_error(name, value):
    with pytest.raises(ValueError, match=name):
        ZoneoutLSTM(3, 4, **{name: value})
    m = ZoneoutLSTM(3, 4)
    with pytest.raises(ValueError, match=name):
        setattr(m, name, value)
    if name != "zoneout_cell":
        with pytest.raises(ValueError, match=name):
            ZoneoutGRU(3, 4, **{name: value})


def test_unsupported_inputs_raise_clear_errors():
    m = ZoneoutLSTM(3, 4)
    x = torch.randn(5, 2, 3)
    packed = pack_padded_sequence(x, torch.tensor([5, 3]))
    with pytest.raises(TypeError, match="pad_packed_sequence"):
        m(packed)
    with pytest.raises(TypeError, match="pad_packed_sequence"):
        ZoneoutGRU(3, 4)(packed)
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(2, 5, 2, 3))
    with pytest.raises(ValueError, match="size 3"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="h_0"):
        m(x, (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(TypeError, match=r"dtype|float64"):
        m(x.double())


def test_float32_fused_matches_reference_and_biases_get_separate_grads():
    m = ZoneoutLSTM(4, 8, zoneout_cell=0.5, zoneout_hidden=0.05).train()
    x = torch.randn(10, 3, 4)
    results = []
    for impl in IMPLEMENTATIONS:
        m.implementation = impl
        m.zero_grad(set_to_none=True)
        torch.manual_seed(4)
        out, (h, c) = m(x)
        (out.sum() + c.sum()).backward()
        results.append([out, h, c, *(p.grad for p in m.parameters())])
        # Two parameters sharing one .grad tensor would corrupt each other on accumulation.
        assert m.bias_ih_l0.grad.data_ptr() != m.bias_hh_l0.grad.data_ptr()
    _assert_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)


# --- recurrent dropout, shared masks: one recurrence, one random stream ---------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "rates",
    [
        {"recurrent_dropout": 0.4},
        {"zoneout_cell": 0.3, "zoneout_hidden": 0.3, "zoneout_shared_mask": True},
        {
            "zoneout_cell": 0.25,
            "zoneout_hidden": 0.25,
            "zoneout_shared_mask": True,
            "recurrent_dropout": 0.3,
        },
        {"zoneout_cell": 0.5, "zoneout_hidden": 0.05, "recurrent_dropout": 0.5},
    ],
)
def test_lstm_dropout_and_shared_masks_match_reference_with_same_masks(impl, rates):
    m = ZoneoutLSTM(4, 5, num_layers=2, **rates).to(DT).train()
    m.implementation = impl
    x, h0, c0 = _inputs(8, 3, m)
    d_c, d_h, r_g = draw_masks(m, seed=21, steps=8, batch=3)
    want = _run(m, x, h0, c0, lambda: reference_forward(m, x, h0, c0, d_c, d_h, r_g))
    torch.manual_seed(21)
    got = _run(m, x, h0, c0)
    _assert_all_close(got, want)


def test_fused_equals_reference_with_dropout_and_shared_mask_float32():
    m = ZoneoutLSTM(
        4,
        8,
        num_layers=2,
        zoneout_cell=0.2,
        zoneout_hidden=0.2,
        zoneout_shared_mask=True,
        recurrent_dropout=0.3,
    ).train()
    x = torch.randn(10, 3, 4)
    results = []
    for impl in IMPLEMENTATIONS:
        m.implementation = impl
        m.zero_grad(set_to_none=True)
        torch.manual_seed(4)
        out, (h, c) = m(x)
        (out.sum() + c.sum()).backward()
        results.append([out, h, c, *(p.grad for p in m.parameters())])
    _assert_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_shared_mask_zones_c_and_h_at_exactly_the_same_units():
    torch.manual_seed(0)
    m = ZoneoutLSTM(3, 50, zoneout_cell=0.3, zoneout_hidden=0.3, zoneout_shared_mask=True)
    m = m.to(DT).train()
    x = torch.randn(1, 1000, 3, dtype=DT)
    h0 = torch.randn(1, 1000, 50, dtype=DT)
    c0 = torch.randn(1, 1000, 50, dtype=DT)
    with torch.no_grad():
        _, (h1, c1) = m(x, (h0, c0))
    kept_c, kept_h = c1 == c0, h1 == h0
    assert torch.equal(kept_c, kept_h)
    assert abs(kept_c.double().mean().item() - 0.3) < 0.01
    # Without sharing, the same rates give two independent masks.
    m.zoneout_shared_mask = False
    with torch.no_grad():
        _, (h1, c1) = m(x, (h0, c0))
    joint = ((c1 == c0) & (h1 == h0)).double().mean().item()
    assert abs(joint - 0.09) < 0.01


def test_shared_mask_needs_equal_rates():
    with pytest.raises(
        ValueError, match="zoneout_shared_mask needs zoneout_cell == zoneout_hidden"
    ):
        ZoneoutLSTM(3, 4, zoneout_cell=0.5, zoneout_hidden=0.05, zoneout_shared_mask=True)
    m = ZoneoutLSTM(3, 4, zoneout_cell=0.2, zoneout_hidden=0.2, zoneout_shared_mask=True)
    m.zoneout_hidden = 0.1  # a schedule may move one rate; the next pass refuses it
    with pytest.raises(ValueError, match="zoneout_shared_mask"):
        m(torch.randn(5, 2, 3))


def _dropped_candidates(m: ZoneoutLSTM, x: Tensor) -> tuple[Tensor, Tensor]:
    """c_t per step, training and evaluation, with the forget gate shut, c_0 = 0 and W_hh = 0,
    so that c_t = i(x_t) * drop(g(x_t)): the steps do not interact and c_t shows step t's mask.
    """
    with torch.no_grad():
        m.bias_ih_l0[m.hidden_size : 2 * m.hidden_size] = -1e4  # sigmoid underflows to 0
        m.weight_hh_l0.zero_()
        h0 = torch.zeros(1, x.shape[1], m.hidden_size, dtype=DT)
        outs = []
        for mode in (True, False):
            m.train(mode)
            torch.manual_seed(7)
            cs = [m(x[: t + 1], (h0, h0.clone()))[1][1][0] for t in range(x.shape[0])]
            outs.append(torch.stack(cs))
    return outs[0], outs[1]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_recurrent_dropout_mask_rate_scale_and_independence(impl):
    p = 0.3
    m = ZoneoutLSTM(3, 50, recurrent_dropout=p).to(DT)
    m.implementation = impl
    # Every example gets the same input: only the masks can tell the examples apart.
    x = torch.randn(6, 1, 3, dtype=DT).expand(6, 200, 3)
    train, evaluated = _dropped_candidates(m, x)
    dropped = train == 0
    assert not (evaluated == 0).any()
    assert abs(dropped.double().mean().item() - p) < 0.01
    # Kept units are scaled by 1/(1-p) (inverted dropout); evaluation is the identity.
    torch.testing.assert_close(train[~dropped], (evaluated / (1 - p))[~dropped], **TIGHT)
    for t in range(6):
        assert not all(torch.equal(dropped[t, 0], dropped[t, b]) for b in range(1, 200))
    assert not all(torch.equal(dropped[0], dropped[t]) for t in range(1, 6))
    # Per unit: every unit is dropped at about the rate, and units are not copies of each other.
    per_unit = dropped.double().mean(dim=(0, 1))
    assert (per_unit - p).abs().max().item() < 0.06
    assert not torch.equal(dropped[..., 0], dropped[..., 1])


def test_recurrent_dropout_one_drops_every_candidate():
    m = ZoneoutLSTM(3, 8, recurrent_dropout=1.0).to(DT)
    x = torch.randn(2, 5, 3, dtype=DT)
    train, evaluated = _dropped_candidates(m, x)
    assert torch.equal(train, torch.zeros_like(train)) and not (evaluated == 0).any()


def test_configs_differing_in_one_rate_share_init_and_random_stream():
    def build(**rates) -> tuple[ZoneoutLSTM, Tensor]:
        torch.manual_seed(5)
        m = ZoneoutLSTM(4, 6, num_layers=2, **rates).to(DT).train()
        x = torch.randn(5, 3, 4, dtype=DT)
        m(x)
        return m, torch.rand(3)  # where the global stream stands after one training pass

    base, after = build()
    for rates in (
        {"recurrent_dropout": 0.5},
        {"zoneout_cell": 0.5, "zoneout_hidden": 0.05},
        {"zoneout_cell": 0.2, "zoneout_hidden": 0.2, "zoneout_shared_mask": True},
        {"recurrent_batch_norm": True},
    ):
        other, other_after = build(**rates)
        for name, value in base.named_parameters():
            assert torch.equal(getattr(other, name), value), (rates, name)
        assert torch.equal(other_after, after), rates


def test_turning_on_recurrent_dropout_keeps_the_zoneout_masks():
    kw = {"zoneout_cell": 0.0, "zoneout_hidden": 0.4}
    plain = ZoneoutLSTM(3, 50, **kw).to(DT).train()
    with_rd = ZoneoutLSTM(3, 50, recurrent_dropout=0.5, **kw).to(DT).train()
    with_rd.load_state_dict(plain.state_dict())
    x = torch.randn(1, 500, 3, dtype=DT)
    h0 = torch.randn(1, 500, 50, dtype=DT)
    kept = []
    for m in (plain, with_rd):
        torch.manual_seed(9)
        with torch.no_grad():
            kept.append(m(x, (h0, h0.clone()))[1][0] == h0)
    assert torch.equal(kept[0], kept[1])
    assert abs(kept[0].double().mean().item() - 0.4) < 0.02


# --- recurrent batch norm (Cooijmans et al.) -------------------------------------------------


def _bn(v: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, beta: Tensor | float) -> Tensor:
    return (v - mean) / torch.sqrt(var + 1e-5) * gamma + beta


def batch_norm_reference(
    m: ZoneoutLSTM, x: Tensor, h0: Tensor, c0: Tensor, training: bool
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """One BN-LSTM layer from Cooijmans et al.'s equations; returns the updated running stats."""
    w_ih, w_hh, b_ih, b_hh = _params(m, 0)
    stats = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("bn_mean")}
    stats |= {k: v.clone() for k, v in m.state_dict().items() if k.startswith("bn_var")}
    h, c = h0[0], c0[0]
    outs = []

    def norm(v: Tensor, what: str, t: int, beta: Tensor | float) -> Tensor:
        row = min(t, m.batch_norm_steps - 1)
        gamma = getattr(m, f"bn_weight_{what}_l0")
        mean_key, var_key = f"bn_mean_{what}_l0", f"bn_var_{what}_l0"
        if not training:
            return _bn(v, stats[mean_key][row], stats[var_key][row], gamma, beta)
        mean, var = v.mean(0), v.var(0, unbiased=False)
        n = v.shape[0]
        with torch.no_grad():
            stats[mean_key][row] = 0.9 * stats[mean_key][row] + 0.1 * mean
            stats[var_key][row] = 0.9 * stats[var_key][row] + 0.1 * var * n / (n - 1)
        return _bn(v, mean, var, gamma, beta)

    for t in range(x.shape[0]):
        gates = norm(x[t] @ w_ih.t(), "ih", t, 0.0) + norm(h @ w_hh.t(), "hh", t, 0.0)
        i, f, g, o = (gates + b_ih + b_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(norm(c, "c", t, m.bn_bias_c_l0))
        outs.append(h)
    return torch.stack(outs), h.unsqueeze(0), c.unsqueeze(0), stats


def _bn_lstm(steps: int = 3) -> ZoneoutLSTM:
    m = ZoneoutLSTM(4, 5, recurrent_batch_norm=True, batch_norm_steps=steps).to(DT)
    with torch.no_grad():  # make gammas and betas distinct, so a swapped one would show
        for name, value in m.named_parameters():
            if name.startswith("bn_"):
                value.add_(torch.linspace(0.0, 0.5, value.numel(), dtype=DT))
    return m


def test_batch_norm_parameters_are_constants_registered_after_nn_lstm_ones():
    torch.manual_seed(1)
    theirs = nn.LSTM(4, 5, num_layers=2).to(DT)
    torch.manual_seed(1)
    m = ZoneoutLSTM(4, 5, num_layers=2, recurrent_batch_norm=True, batch_norm_steps=7).to(DT)
    after_ours = torch.rand(3)
    torch.manual_seed(1)
    nn.LSTM(4, 5, num_layers=2)
    assert torch.equal(torch.rand(3), after_ours)  # batch norm's constants drew nothing
    names = [n for n, _ in m.named_parameters()]
    assert names[:8] == [n for n, _ in theirs.named_parameters()]
    for name, value in theirs.named_parameters():
        assert torch.equal(getattr(m, name), value)
    assert torch.equal(m.bn_weight_ih_l1, torch.full((20,), 0.1).to(DT))
    assert torch.equal(m.bn_bias_c_l0, torch.zeros(5, dtype=DT))
    assert m.bn_mean_hh_l0.shape == (7, 20) and m.bn_var_c_l1.shape == (7, 5)
    assert "recurrent_batch_norm=True" in repr(m)
    # The nn.LSTM part of the state_dict still loads from (and into) nn.LSTM.
    missing = m.load_state_dict(theirs.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("bn_") for k in missing)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_batch_norm_training_uses_batch_statistics_per_step_and_updates_running_ones(impl):
    m = _bn_lstm(steps=3).train()
    m.implementation = impl  # recurrent batch norm runs the reference loop either way
    x, h0, c0 = _inputs(5, 4, m)  # 5 steps > 3 statistic sets: steps 2..4 share the last
    # The hand reference works on copies of the running statistics; the layer updates its own.
    want_stats = batch_norm_reference(m, x, h0, c0, training=True)[3]
    want = _run(m, x, h0, c0, lambda: batch_norm_reference(m, x, h0, c0, True)[:3])
    got = _run(m, x, h0, c0)
    _assert_all_close(got, want)
    for key, value in want_stats.items():
        torch.testing.assert_close(m.state_dict()[key], value, **TIGHT)
    # Per-step sets: each row saw different statistics.
    assert not torch.allclose(m.bn_mean_ih_l0[0], m.bn_mean_ih_l0[1])


def test_batch_norm_evaluation_uses_population_statistics():
    m = _bn_lstm(steps=3).train()
    x, h0, c0 = _inputs(5, 4, m)
    for _ in range(3):
        m(x, (h0, c0))
    m.eval()
    stats = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("bn_")}
    got = _run(m, x, h0, c0)
    want = _run(m, x, h0, c0, lambda: batch_norm_reference(m, x, h0, c0, False)[:3])
    _assert_all_close(got, want)
    for key, value in stats.items():  # evaluation leaves the statistics alone
        assert torch.equal(m.state_dict()[key], value)
    # Evaluation of one example does not depend on the rest of the batch.
    one = m(x[:, :1], (h0[:, :1], c0[:, :1]))[0]
    torch.testing.assert_close(one, got[0][:, :1], **TIGHT)


def test_batch_norm_with_zoneout_and_dropout_matches_the_masks_reference():
    m = ZoneoutLSTM(
        4,
        5,
        zoneout_cell=0.15,
        zoneout_hidden=0.15,
        zoneout_shared_mask=True,
        recurrent_dropout=0.2,
        recurrent_batch_norm=True,
    ).to(DT)
    x, h0, c0 = _inputs(6, 8, m)
    torch.manual_seed(3)
    a = m.train()(x, (h0, c0))[0]
    torch.manual_seed(3)
    b = m(x, (h0, c0))[0]
    torch.manual_seed(4)
    c = m(x, (h0, c0))[0]
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # In evaluation, zoneout is its expectation and dropout the identity: no randomness left.
    e1, e2 = m.eval()(x, (h0, c0))[0], m(x, (h0, c0))[0]
    assert torch.equal(e1, e2)


def test_gradcheck_all_regularizers_together():
    m = ZoneoutLSTM(
        3,
        4,
        num_layers=2,
        zoneout_cell=0.3,
        zoneout_hidden=0.3,
        zoneout_shared_mask=True,
        recurrent_dropout=0.4,
    ).to(DT)
    bn = ZoneoutLSTM(3, 4, zoneout_cell=0.3, recurrent_dropout=0.4, recurrent_batch_norm=True)
    bn = bn.to(DT)
    # Zoneout and dropout: both paths in training (evaluation is covered above); batch norm
    # (always the reference loop) in both modes.
    for module, impls, modes in ((m, IMPLEMENTATIONS, (True,)), (bn, ["reference"], (True, False))):
        x, h0, c0 = _inputs(3, 3, module)
        names = [n for n, _ in module.named_parameters()]
        params = [p for _, p in module.named_parameters()]

        def fn(x: Tensor, h0: Tensor, c0: Tensor, *weights: Tensor, module=module, names=names):
            torch.manual_seed(0)  # the same training masks at every evaluation
            state = dict(zip(names, weights, strict=True))
            state |= {k: v.clone() for k, v in module.named_buffers()}  # stats stay put
            out, (h, c) = torch.func.functional_call(module, state, (x, (h0, c0)))
            return out, h, c

        for impl in impls:
            module.implementation = impl
            for mode in modes:
                module.train(mode)
                assert torch.autograd.gradcheck(
                    fn, (x, h0, c0, *params), eps=1e-6, atol=1e-7, fast_mode=True
                )
