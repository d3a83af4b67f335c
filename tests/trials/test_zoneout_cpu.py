"""The CPU extension (trials/zoneout/_cpu/zoneout_lstm.cpp) against the pure-PyTorch fused node.

Both nodes get the very same masks here, so any difference is the extension's arithmetic. The
layer-level tests in test_zoneout.py run the extension too (it is the default CPU path, checked
below), against the independent reference loop and for the masks' statistics.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor

from trials.zoneout import ZoneoutLSTM, _cpu_ext
from trials.zoneout import _masks as masks
from trials.zoneout._lstm_cpu import CpuZoneoutLSTMLayer
from trials.zoneout._lstm_fused import FusedZoneoutLSTMLayer

T, B, IN, H = 6, 4, 5, 7


def _require_extension() -> None:
    # Not a skip: the extension is part of the product, and `make test` machines have g++.
    assert _cpu_ext.load(), "the zoneout CPU extension did not build (see the warning above)"


def _case(dtype: torch.dtype, seed: int, *, bias: bool = True) -> list:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5).to(dtype)

    x, h0, c0 = rnd(T, B, IN), rnd(B, H), rnd(B, H)
    w_ih, w_hh = rnd(4 * H, IN), rnd(4 * H, H)
    b_ih, b_hh = (rnd(4 * H), rnd(4 * H)) if bias else (None, None)
    return [x, h0, c0, w_ih, w_hh, b_ih, b_hh]


def _masks(kind: str, seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)

    def mask(rate: float) -> Tensor:
        return torch.rand(T, B, H, generator=gen) < rate

    if kind == "masks":
        return mask(0.5), mask(0.3), None, 1.0
    if kind == "shared+dropout":
        shared = mask(0.4)
        return shared, shared, ~mask(0.25), 1 / 0.75
    if kind == "dropout only":
        return 0.0, 0.0, ~mask(0.5), 2.0
    if kind == "rates (evaluation)":
        return 0.5, 0.05, None, 1.0
    if kind == "rates one":
        return 1.0, 1.0, None, 1.0
    raise AssertionError(kind)


KINDS = ["masks", "shared+dropout", "dropout only", "rates (evaluation)", "rates one"]


def _outputs_and_grads(node: type, args: list, zone: tuple, heads: str) -> list[Tensor]:
    leaves = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    out, h_n, c_n = node.apply(*leaves, *zone)
    loss = torch.zeros((), dtype=out.dtype)
    if "o" in heads:
        loss = loss + (out * torch.cos(out.detach() * 3)).sum()
    if "h" in heads:
        loss = loss + torch.sin(h_n).sum()
    if "c" in heads:
        loss = loss + torch.exp(c_n * 0.5).sum()
    wrt = [a for a in leaves if a is not None]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [
        out,
        h_n,
        c_n,
        *(g if g is not None else torch.zeros_like(a) for g, a in zip(grads, wrt, strict=True)),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("heads", ["ohc", "h", "o"])
def test_extension_equals_pytorch_node_with_the_same_masks(kind, dtype, tol, heads):
    _require_extension()
    args = _case(dtype, seed=1, bias=heads != "o")
    zone = _masks(kind, seed=2)
    got = _outputs_and_grads(CpuZoneoutLSTMLayer, args, zone, heads)
    want = _outputs_and_grads(FusedZoneoutLSTMLayer, args, zone, heads)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, k=k: f"item {k}: {m}")


@pytest.mark.parametrize("kind", ["masks", "shared+dropout", "rates (evaluation)"])
def test_extension_gradcheck_float64(kind):
    _require_extension()
    args = [a.requires_grad_() for a in _case(torch.float64, seed=3)]
    zone = _masks(kind, seed=4)
    assert torch.autograd.gradcheck(
        lambda *a: CpuZoneoutLSTMLayer.apply(*a, *zone),
        tuple(args),
        eps=1e-6,
        atol=1e-7,
        fast_mode=True,
    )


def test_layer_uses_the_extension_on_cpu_and_the_masks_keep_their_rates():
    _require_extension()
    torch.manual_seed(0)
    m = ZoneoutLSTM(3, 40, zoneout_cell=0.5, zoneout_hidden=0.05).train()
    x = torch.randn(1, 1500, 3)
    h0, c0 = torch.randn(1, 1500, 40), torch.randn(1, 1500, 40)
    out, (h1, c1) = m(x, (h0, c0))
    assert type(out.grad_fn).__name__ == "CpuZoneoutLSTMLayerBackward"
    kept_c, kept_h = c1 == c0, h1 == h0  # 60,000 units: binomial std of a fraction <= 0.002
    assert abs(kept_c.double().mean().item() - 0.5) < 0.01
    assert abs(kept_h.double().mean().item() - 0.05) < 0.005
    assert abs((kept_c & kept_h).double().mean().item() - 0.025) < 0.005  # independent
    m.implementation = "fused-pytorch"
    assert type(m(x)[0].grad_fn).__name__ == "FusedZoneoutLSTMLayerBackward"


# --- masks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "rate"), [(0, 0.5), (12345, 0.05), (2**62 - 1, 0.999)])
def test_extension_masks_equal_the_torch_fallback_bit_for_bit(seed, rate):
    _require_extension()
    shape = (9, 5, 70)
    got = torch.ops.zoneout_cpu.bernoulli_mask(seed, masks.threshold(rate), list(shape))
    want = masks.splitmix_mask(seed, rate, shape, torch.device("cpu"))
    assert got.dtype == torch.bool and got.shape == shape
    assert torch.equal(got, want)


def test_extension_masks_rate_and_independence_across_seeds():
    _require_extension()
    shape = (40, 50, 100)  # 200,000 draws: binomial std of a fraction <= 0.0011
    a = masks.bernoulli_mask(1, 0.3, shape, torch.device("cpu"))
    b = masks.bernoulli_mask(2, 0.3, shape, torch.device("cpu"))
    assert abs(a.double().mean().item() - 0.3) < 0.006
    assert abs((a & b).double().mean().item() - 0.09) < 0.006
    # Neighbouring elements (units, examples, steps) are not correlated.
    for dim in range(3):
        first = a.narrow(dim, 0, shape[dim] - 1)
        second = a.narrow(dim, 1, shape[dim] - 1)
        assert abs((first & second).double().mean().item() - 0.09) < 0.006


# --- building ------------------------------------------------------------------------------


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    from torch.utils import cpp_extension

    def broken(**_: object) -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setattr(cpp_extension, "load", broken)
    with pytest.warns(RuntimeWarning, match="pure-PyTorch fused path"):
        assert _cpu_ext.load() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second use is silent
        assert _cpu_ext.load() is False
        m = ZoneoutLSTM(3, 4, zoneout_cell=0.3).train()
        out = m(torch.randn(5, 2, 3))[0]
    assert type(out.grad_fn).__name__ == "FusedZoneoutLSTMLayerBackward"


def test_switch_turns_the_extension_off(monkeypatch):
    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setenv(_cpu_ext.ENV_SWITCH, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cpu_ext.load() is False


def test_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path: Path):
    lock = tmp_path / "lock"
    lock.touch()
    _cpu_ext._remove_stale_lock(tmp_path)
    assert lock.exists()  # someone is compiling right now: wait for them
    old = time.time() - _cpu_ext.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="killed while compiling"):
        _cpu_ext._remove_stale_lock(tmp_path)
    assert not lock.exists()


def test_unwritable_extensions_directory_falls_back_to_a_temp_dir(monkeypatch, tmp_path: Path):
    from torch.utils import cpp_extension

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda *_a, **_k: str(blocked / "x"))
    got = _cpu_ext.build_directory("zoneout_lstm_cpu_test")
    assert got.is_dir() and os.access(got, os.W_OK) and "zoneout-torch-extensions" in str(got)

    def refuses(*_a: object, **_k: object) -> str:
        raise PermissionError("read-only home")

    monkeypatch.setattr(cpp_extension, "_get_build_directory", refuses)
    assert _cpu_ext.build_directory("zoneout_lstm_cpu_test") == got


def test_build_name_depends_on_the_cpu(monkeypatch):
    name = _cpu_ext.extension_name()
    monkeypatch.setattr(_cpu_ext, "_cpu_description", lambda: "flags : something else")
    assert _cpu_ext.extension_name() != name
