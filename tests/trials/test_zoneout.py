"""ZoneoutLSTM / ZoneoutGRU / ZoneoutRNN against torch's layers and an independent reference loop.

The reference below is written from the paper's equations with the explicit d*old + (1-d)*new
rule (not lerp, not the package's code), so a shared mistake cannot hide. The training-mode
comparison draws masks in the order the package documents (per layer: cell mask, then hidden
mask, each ``torch.empty(T, B, H).bernoulli_(rate)``) after reseeding.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from trials.zoneout import ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN

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
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Paper equations, one layer after another; d_* are per layer, (T,B,H) masks or rates."""
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
            gi, gh = _affine(x[t], w_ih, b_ih), _affine(h, w_hh, b_hh)
            if kind == "ZoneoutLSTM":
                i, f, g, o = (gi + gh).chunk(4, 1)
                c_tilde = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
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


def draw_masks(module: nn.Module, seed: int, steps: int, batch: int) -> tuple[list, list]:
    """The masks the layer draws after torch.manual_seed(seed) (dropout=0 assumed)."""
    torch.manual_seed(seed)
    shape = (steps, batch, module.hidden_size)
    d_c: list[Tensor | float] = []
    d_h: list[Tensor | float] = []
    for _ in range(module.num_layers):
        for rate, out in (
            (getattr(module, "zoneout_cell", 0.0), d_c),
            (module.zoneout_hidden, d_h),
        ):
            out.append(torch.empty(shape, dtype=DT).bernoulli_(rate) if 0 < rate < 1 else rate)
    return d_c, d_h


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
    kw = {k: v for k, v in kw.items() if not k.startswith("zoneout")}
    theirs = torch_cls(**kw).to(DT)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


KINDS = [(ZoneoutLSTM, nn.LSTM), (ZoneoutGRU, nn.GRU), (ZoneoutRNN, nn.RNN)]


# --- rates 0: exactly torch's layers --------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("num_layers", "bias"), [(1, True), (2, True), (2, False)])
def test_lstm_zero_rates_match_nn_lstm_outputs_and_grads(impl, num_layers, bias):
    ours, theirs = _twin(
        ZoneoutLSTM, nn.LSTM, input_size=5, hidden_size=6, num_layers=num_layers, bias=bias
    )
    ours.implementation = impl
    x, h0, c0 = _inputs(7, 3, ours)
    _assert_all_close(_run(ours.train(), x, h0, c0), _run(theirs.train(), x, h0, c0))
    _assert_all_close(_run(ours.eval(), x, h0, c0), _run(theirs.eval(), x, h0, c0))


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
    d_c, d_h = draw_masks(m, seed=11, steps=8, batch=3)
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
    d_c, d_h = draw_masks(m, seed=5, steps=6, batch=3)
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
