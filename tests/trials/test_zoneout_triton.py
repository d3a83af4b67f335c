"""The Triton LSTM kernels (trials.zoneout._triton_lstm), checked on CPU by Triton's interpreter.

The kernels only run under TRITON_INTERPRET=1 here, and that variable must be set before the
kernels are defined; setting it in this pytest process could leak into other tests. So
`test_kernels_under_the_triton_interpreter` runs this same file in a child pytest with the
variable set, collecting the ``check_*`` functions below (the parent collects only ``test_*``).
The checks compare the kernels with an independent autograd loop fed the very masks the kernels
draw (`zoneout_masks`, the same Philox call), with the expectation at eval, with nn.LSTM when
every rate is 0, and test the masks' statistics.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from trials.zoneout._triton_lstm import triton_available, triton_lstm_layer, zoneout_masks

REPO = Path(__file__).resolve().parents[2]
T, B, IN, H = 5, 3, 4, 8  # tiny: the interpreter runs every program in Python

# ---------------------------------------------------------------------------------------------
# Parent process: argument checks (no triton needed) and the child run.


def test_triton_available_only_on_cuda() -> None:
    assert not triton_available(torch.device("cpu"))
    assert not triton_available(torch.device("meta"))


def test_zoneout_lstm_refuses_triton_off_cuda_and_keeps_it_opt_in() -> None:
    from trials.zoneout import LayerPath, ZoneoutLSTM, choose_path

    layer = ZoneoutLSTM(IN, H, zoneout_cell=0.5)
    x = torch.randn(T, B, IN)
    assert choose_path(layer, x) is not LayerPath.TRITON  # "fused" on CPU never picks it
    layer.implementation = "triton"
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        layer(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zoneout_cell": 1.5}, "zoneout_cell"),
        ({"zoneout_hidden": -0.1}, "zoneout_hidden"),
        ({"recurrent_dropout": 1.5}, "recurrent_dropout"),
        ({"recurrent_dropout": float("nan")}, "recurrent_dropout"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
def test_rejects_bad_rates_and_seeds(kwargs: dict[str, object], message: str) -> None:
    args = {
        "zoneout_cell": 0.5,
        "zoneout_hidden": 0.05,
        "recurrent_dropout": 0.0,
        "shared_mask": False,
        "training": True,
        "seed": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        triton_lstm_layer(*_params(torch.float32), **args)  # type: ignore[arg-type]


def test_rejects_mismatched_shapes() -> None:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _params(torch.float32)
    with pytest.raises(ValueError, match="h0"):
        triton_lstm_layer(
            x, h0[:1], c0, w_ih, w_hh, b_ih, b_hh, zoneout_cell=0.0, zoneout_hidden=0.0,
            recurrent_dropout=0.0, shared_mask=False, training=False, seed=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="both"):
        triton_lstm_layer(
            x, h0, c0, w_ih, w_hh, b_ih, None, zoneout_cell=0.0, zoneout_hidden=0.0,
            recurrent_dropout=0.0, shared_mask=False, training=False, seed=0,
        )  # fmt: skip


def _run_child(function_prefix: str, interpret: bool) -> None:
    """Runs this file's ``<function_prefix>*`` functions in a child pytest."""
    if importlib.util.find_spec("triton") is None:
        message = "triton is not installed (it is in the `test` extra: pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = path
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    child = subprocess.run(
        [
            sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
            "--noconftest", "-o", f"python_functions={function_prefix}*",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = child.stdout[-6000:] + child.stderr[-3000:]
    assert child.returncode == 0, report
    passed = re.search(r"(\d+) passed", child.stdout)
    functions = [name for name in globals() if name.startswith(function_prefix)]
    assert functions and passed is not None and int(passed.group(1)) >= len(functions), report
    assert "skipped" not in child.stdout, report


@pytest.mark.slow
def test_kernels_under_the_triton_interpreter() -> None:
    _run_child("check_", interpret=True)


@pytest.mark.slow
def test_kernels_compile_for_h100() -> None:
    # The interpreter runs the kernels' Python, not Triton's compiler: this builds the real
    # sm_90 binaries (triton ships ptxas; no GPU needed) for the variants the layer launches.
    _run_child("compile_", interpret=False)


# ---------------------------------------------------------------------------------------------
# Helpers shared by both processes.


def _params(dtype: torch.dtype, bias: bool = True, seed: int = 0) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(T, B, IN), (B, H), (B, H), (4 * H, IN), (4 * H, H)]
    if bias:
        shapes += [(4 * H,), (4 * H,)]
    params = [(torch.randn(*s, generator=gen) * 0.7).to(dtype).requires_grad_() for s in shapes]
    return params if bias else [*params, None, None]  # type: ignore[list-item]


def _reference(
    params: list[Tensor],
    d_c: Tensor | float,
    d_h: Tensor | float,
    g_scale: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The contract written out as an autograd loop (independent of the kernels)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = params
    h, c = h0, c0
    outs = []

    def pick(mask: Tensor | float, t: int) -> Tensor | float:
        return mask[t] if isinstance(mask, Tensor) else mask

    for t in range(x.shape[0]):
        gates = F.linear(x[t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * (g * pick(g_scale, t))
        h_new = o * torch.tanh(c_new)
        c = pick(d_c, t) * c + (1 - pick(d_c, t)) * c_new
        h = pick(d_h, t) * h + (1 - pick(d_h, t)) * h_new
        outs.append(h)
    return torch.stack(outs), h, c


def _run(params: list[Tensor], **kwargs: object) -> tuple[Tensor, Tensor, Tensor]:
    args = {"shared_mask": False, "recurrent_dropout": 0.0, "seed": 7, **kwargs}
    return triton_lstm_layer(*params, **args)  # type: ignore[arg-type]


def _grads(outputs: tuple[Tensor, ...], inputs: list[Tensor]) -> list[Tensor]:
    """Gradients of a fixed random projection of the outputs (the same for equal shapes)."""
    gen = torch.Generator().manual_seed(123)
    cotangents = [torch.randn(o.shape, generator=gen).to(o.dtype) for o in outputs]
    present = [p for p in inputs if p is not None]
    return list(torch.autograd.grad(outputs, present, cotangents))


def _assert_close(got: list[Tensor], want: list[Tensor], dtype: torch.dtype) -> None:
    tol = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 6e-2}[dtype]
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, msg=f"item {k}")


def _kernel_masks(seed: int, zc: float, zh: float, p: float, shared: bool) -> tuple[Tensor, ...]:
    return zoneout_masks(
        seed, T, B, H, zoneout_cell=zc, zoneout_hidden=zh, recurrent_dropout=p,
        shared_mask=shared, device="cpu",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Child process (TRITON_INTERPRET=1): the kernels themselves.

# Rates that are exact in float32 (the kernels get their rates as float32), so float64 runs can
# be held to float64 tolerances.
TRAINING_CASES = [
    # dtype, bias, zc, zh, p, shared
    (torch.float64, True, 0.5, 0.25, 0.5, False),
    (torch.float64, False, 0.25, 0.75, 0.75, True),
    (torch.float32, True, 0.5, 0.125, 0.5, False),
]


@pytest.mark.parametrize(("dtype", "bias", "zc", "zh", "p", "shared"), TRAINING_CASES)
def check_training_matches_reference_with_the_kernels_masks(
    dtype: torch.dtype, bias: bool, zc: float, zh: float, p: float, shared: bool
) -> None:
    params = _params(dtype, bias)
    seed = 2024
    got = _run(
        params, zoneout_cell=zc, zoneout_hidden=zh, recurrent_dropout=p, shared_mask=shared,
        training=True, seed=seed,
    )  # fmt: skip
    d_c, d_h, keep = _kernel_masks(seed, zc, zh, p, shared)
    # The masks are live: some units were zoned out and some were not (else nothing is tested).
    assert 0 < d_c.sum() < d_c.numel() and 0 < d_h.sum() < d_h.numel()
    assert 0 < keep.sum() < keep.numel()
    want = _reference(params, d_c.to(dtype), d_h.to(dtype), keep.to(dtype) / (1 - p))
    _assert_close(list(got), list(want), dtype)
    _assert_close(_grads(got, params), _grads(want, params), dtype)


@pytest.mark.parametrize("shared", [False, True])
def check_training_matches_the_projects_reference_loop(shared: bool) -> None:
    # trials.zoneout._loops is the layers' oracle on CPU; fed the kernels' masks.
    from trials.zoneout._args import LayerArgs
    from trials.zoneout._loops import lstm_layer_reference

    params = _params(torch.float64)
    got = _run(params, zoneout_cell=0.5, zoneout_hidden=0.25, recurrent_dropout=0.5,
               shared_mask=shared, training=True, seed=99)  # fmt: skip
    d_c, d_h, keep = _kernel_masks(99, 0.5, 0.25, 0.5, shared)
    d_h = d_c if shared else d_h
    want = lstm_layer_reference(LayerArgs(*params, d_c, d_h, keep, 2.0))
    _assert_close(list(got), list(want), torch.float64)
    _assert_close(_grads(got, params), _grads(want, params), torch.float64)


def check_bfloat16_follows_the_float32_reference() -> None:
    params = _params(torch.bfloat16)
    got = _run(params, zoneout_cell=0.5, zoneout_hidden=0.125, recurrent_dropout=0.5,
               training=True, seed=5)  # fmt: skip
    assert all(o.dtype == torch.bfloat16 for o in got)
    d_c, d_h, keep = _kernel_masks(5, 0.5, 0.125, 0.5, False)
    ref_params = [p.detach().float().requires_grad_() for p in params]
    want = _reference(ref_params, d_c.float(), d_h.float(), keep.float() * 2.0)
    _assert_close(list(got), list(want), torch.bfloat16)
    got_grads = _grads(got, params)
    assert all(g is not None and g.dtype == torch.bfloat16 for g in got_grads)
    _assert_close(got_grads, _grads(want, ref_params), torch.bfloat16)


@pytest.mark.parametrize("shared", [False, True])
def check_eval_is_the_expectation(shared: bool) -> None:
    params = _params(torch.float64)
    zc, zh = 0.5, 0.125
    got = _run(params, zoneout_cell=zc, zoneout_hidden=zh, recurrent_dropout=0.5,
               shared_mask=shared, training=False, seed=1)  # fmt: skip
    # Recurrent dropout is the identity at eval; a shared mask has the cell rate for both.
    want = _reference(params, zc, zc if shared else zh, 1.0)
    _assert_close(list(got), list(want), torch.float64)
    _assert_close(_grads(got, params), _grads(want, params), torch.float64)
    # No randomness at eval: another seed gives the same numbers.
    other = _run(params, zoneout_cell=zc, zoneout_hidden=zh, recurrent_dropout=0.5,
                 shared_mask=shared, training=False, seed=2)  # fmt: skip
    for a, b in zip(got, other, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("training", [True, False])
def check_all_rates_zero_is_nn_lstm(training: bool) -> None:
    params = _params(torch.float64)
    lstm = torch.nn.LSTM(IN, H).double()
    with torch.no_grad():
        for name, value in zip(
            ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), params[3:], strict=True
        ):
            getattr(lstm, name).copy_(value)
    got = _run(params, zoneout_cell=0.0, zoneout_hidden=0.0, training=training)
    x, h0, c0 = params[:3]
    out, (h_n, c_n) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    want = (out, h_n.squeeze(0), c_n.squeeze(0))
    _assert_close(list(got), list(want), torch.float64)
    _assert_close(_grads(got, params), _grads(want, [x, h0, c0, *lstm.parameters()]),
                  torch.float64)  # fmt: skip


def check_gradcheck_in_training_and_eval() -> None:
    gen = torch.Generator().manual_seed(3)
    steps, batch, inputs, hidden = 2, 1, 2, 2
    shapes = [(steps, batch, inputs), (batch, hidden), (batch, hidden), (4 * hidden, inputs),
              (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]  # fmt: skip
    params = [torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]
    for training in (True, False):

        def layer(*args: Tensor, training: bool = training) -> tuple[Tensor, ...]:
            return triton_lstm_layer(
                *args, zoneout_cell=0.5, zoneout_hidden=0.5, recurrent_dropout=0.5,
                shared_mask=False, training=training, seed=11,
            )  # fmt: skip

        assert torch.autograd.gradcheck(layer, params, eps=1e-6, atol=1e-7, fast_mode=True)


def check_recurrent_dropout_drops_g() -> None:
    # One step from c0 = 0 without zoneout: c_1 = i*g/(1-p) where g is kept and exactly 0
    # where it is dropped.
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = [p.detach() for p in _params(torch.float64)]
    x1, c0 = x[:1], torch.zeros_like(c0)
    p = 0.75
    _, _, c_1 = triton_lstm_layer(
        x1, h0, c0, w_ih, w_hh, b_ih, b_hh, zoneout_cell=0.0, zoneout_hidden=0.0,
        recurrent_dropout=p, shared_mask=False, training=True, seed=31,
    )  # fmt: skip
    keep = zoneout_masks(31, 1, B, H, zoneout_cell=0.0, zoneout_hidden=0.0,
                         recurrent_dropout=p, shared_mask=False, device="cpu")[2][0]  # fmt: skip
    gates = F.linear(x1[0], w_ih, b_ih) + F.linear(h0, w_hh, b_hh)
    i, _, g, _ = gates.chunk(4, 1)
    expected = torch.where(keep, torch.sigmoid(i) * torch.tanh(g) / (1 - p), 0.0)
    assert 0 < keep.sum() < keep.numel()
    assert torch.equal(c_1 == 0, ~keep)
    torch.testing.assert_close(c_1, expected, rtol=1e-12, atol=1e-12)
    # At eval the same call is the plain cell: nothing dropped, nothing scaled.
    _, _, c_eval = triton_lstm_layer(
        x1, h0, c0, w_ih, w_hh, b_ih, b_hh, zoneout_cell=0.0, zoneout_hidden=0.0,
        recurrent_dropout=p, shared_mask=False, training=False, seed=31,
    )  # fmt: skip
    torch.testing.assert_close(c_eval, torch.sigmoid(i) * torch.tanh(g), rtol=1e-12, atol=1e-12)
    # p = 1 drops every g.
    _, _, c_all_dropped = triton_lstm_layer(
        x1, h0, c0, w_ih, w_hh, b_ih, b_hh, zoneout_cell=0.0, zoneout_hidden=0.0,
        recurrent_dropout=1.0, shared_mask=False, training=True, seed=31,
    )  # fmt: skip
    assert torch.equal(c_all_dropped, torch.zeros_like(c0))


def check_zoneout_lstm_dispatches_to_the_kernels() -> None:
    # ZoneoutLSTM(implementation="triton") runs these kernels: in eval it equals the reference
    # loop's expectation; in training it reproduces under the same torch seed and draws masks.
    from trials.zoneout import ZoneoutLSTM

    torch.manual_seed(0)
    layer = ZoneoutLSTM(IN, H, num_layers=2, zoneout_cell=0.5, zoneout_hidden=0.25,
                        recurrent_dropout=0.25).double()  # fmt: skip
    x = torch.randn(T, B, IN, dtype=torch.float64)
    layer.eval()
    layer.implementation = "reference"
    want, (want_h, want_c) = layer(x)
    layer.implementation = "triton"
    got, (got_h, got_c) = layer(x)
    _assert_close([got, got_h, got_c], [want, want_h, want_c], torch.float64)
    layer.train()
    torch.manual_seed(1)
    first, _ = layer(x)
    torch.manual_seed(1)
    again, _ = layer(x)
    torch.manual_seed(2)
    other, _ = layer(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.allclose(first, want)
    first.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def check_rate_one_keeps_the_initial_state() -> None:
    params = [p.detach() for p in _params(torch.float64)]
    out, h_n, c_n = _run(params, zoneout_cell=1.0, zoneout_hidden=1.0, training=True)
    assert torch.equal(c_n, params[2]) and torch.equal(h_n, params[1])
    assert torch.equal(out, params[1].expand(T, B, H))


# Mask statistics on a bigger draw (the mask kernel is cheap even when interpreted).
MT, MB, MH = 40, 30, 50
N = MT * MB * MH


def _masks(seed: int, zc: float, zh: float, p: float, shared: bool = False) -> list[Tensor]:
    masks = zoneout_masks(
        seed, MT, MB, MH, zoneout_cell=zc, zoneout_hidden=zh, recurrent_dropout=p,
        shared_mask=shared, device="cpu",
    )  # fmt: skip
    return [m.double() for m in masks]


def _within_binomial(fraction: float, rate: float, n: int) -> bool:
    # 5 standard deviations: a correct generator fails this with probability < 1e-6.
    return abs(fraction - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)


def _correlation(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def check_mask_rates_and_independence() -> None:
    zc, zh, p = 0.5, 0.05, 0.3
    d_c, d_h, keep = _masks(17, zc, zh, p)
    assert _within_binomial(float(d_c.mean()), zc, N)
    assert _within_binomial(float(d_h.mean()), zh, N)
    assert _within_binomial(float(keep.mean()), 1 - p, N)
    bound = 5 / math.sqrt(N // 2)  # sample correlation of independent pairs: sd ~ 1/sqrt(n)
    for mask in (d_c, d_h, keep):
        assert abs(_correlation(mask[1:], mask[:-1])) < bound  # across steps
        assert abs(_correlation(mask[:, 1:], mask[:, :-1])) < bound  # across examples
        assert abs(_correlation(mask[:, :, 1:], mask[:, :, :-1])) < bound  # across units
    # The three masks of one (step, example, unit) are independent of each other.
    assert abs(_correlation(d_c, d_h)) < bound
    assert abs(_correlation(d_c, keep)) < bound
    assert abs(_correlation(d_h, keep)) < bound
    assert _within_binomial(float((d_c * d_h).mean()), zc * zh, N)


def check_shared_mask_is_the_cell_mask() -> None:
    d_c, d_h, _ = _masks(17, 0.25, 0.9, 0.0, shared=True)
    assert torch.equal(d_c, d_h)
    assert _within_binomial(float(d_h.mean()), 0.25, N)
    # Sharing does not change the cell mask of a seed.
    assert torch.equal(d_c, _masks(17, 0.25, 0.05, 0.0)[0])


def check_seeds_reproduce_and_differ() -> None:
    first, again = _masks(5, 0.5, 0.5, 0.5), _masks(5, 0.5, 0.5, 0.5)
    other = _masks(6, 0.5, 0.5, 0.5)
    far = _masks(2**40 + 5, 0.5, 0.5, 0.5)  # the seed's high word matters too
    for a, b, c, d in zip(first, again, other, far, strict=True):
        assert torch.equal(a, b)
        # Two independent rate-1/2 masks agree on about half the units.
        assert _within_binomial(float((a == c).double().mean()), 0.5, N)
        assert _within_binomial(float((a == d).double().mean()), 0.5, N)
    params = [p.detach() for p in _params(torch.float32)]
    kwargs = {"zoneout_cell": 0.5, "zoneout_hidden": 0.5, "training": True}
    out_a = _run(params, seed=5, **kwargs)[0]
    assert torch.equal(out_a, _run(params, seed=5, **kwargs)[0])
    assert not torch.equal(out_a, _run(params, seed=6, **kwargs)[0])


class _ReplayByRerun:
    """Stands in for a captured CUDA graph on CPU: a replay runs the captured loop again."""

    def __init__(self, run: Callable[[], None]) -> None:
        self.run = run

    def replay(self) -> None:
        self.run()


def check_graph_buffers_carry_inputs_and_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CUDA-graph path's data flow (inputs copied into static buffers, the seed refreshed,
    # results cloned out before the next replay overwrites them), exercised on CPU.
    from trials.zoneout._triton_lstm import graphs

    monkeypatch.setattr(graphs, "usable", lambda device: True)
    monkeypatch.setattr(graphs, "_capture", _ReplayByRerun)
    monkeypatch.setattr(graphs, "_forward_graphs", {})
    monkeypatch.setattr(graphs, "_backward_graphs", {})
    params = _params(torch.float64)
    kwargs = {"zoneout_cell": 0.5, "zoneout_hidden": 0.25, "recurrent_dropout": 0.5,
              "training": True}  # fmt: skip
    results = []
    for seed in (41, 42, 43):  # eager, captured on its second sighting, replayed
        outputs = _run(params, seed=seed, **kwargs)
        results.append((seed, outputs, _grads(outputs, params)))
    assert len(graphs._forward_graphs) == 1 and len(graphs._backward_graphs) == 1
    # Later replays did not overwrite earlier results, and each call used its own seed's masks.
    for seed, outputs, got_grads in results:
        d_c, d_h, keep = _kernel_masks(seed, 0.5, 0.25, 0.5, False)
        want = _reference(params, d_c.double(), d_h.double(), keep.double() * 2.0)
        _assert_close(list(outputs), list(want), torch.float64)
        _assert_close(got_grads, _grads(want, params), torch.float64)


# ---------------------------------------------------------------------------------------------
# Child process without the interpreter: Triton's real compiler, for an H100 (sm_90).


def _compile(kernel: object, signature: dict[str, str], constexprs: dict[str, object]) -> bytes:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    full = {**signature, **dict.fromkeys(constexprs, "constexpr")}
    source = ASTSource(fn=kernel, signature=full, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    return compiled.asm["cubin"]


# io dtype, RANDOM (training with a rate), SHARED, SAVE
COMPILED_VARIANTS = [("fp32", True, False, True), ("fp32", False, False, False),
                     ("bf16", True, True, True)]  # fmt: skip


@pytest.mark.parametrize(("io", "random", "shared", "save"), COMPILED_VARIANTS)
def compile_step_kernels(io: str, random: bool, shared: bool, save: bool) -> None:
    import triton.language as tl

    from trials.zoneout._triton_lstm.kernels import bwd_step_kernel, fwd_step_kernel

    scalars = {"seed_ptr": "*i64", "t": "i32", "n": "i32", "H": "i32", "zc": "fp32",
               "zh": "fp32", "p": "fp32", "keep_scale": "fp32"}  # fmt: skip
    flags = {"RANDOM": random, "USE_ZC": True, "USE_ZH": True, "USE_DROP": random,
             "SHARED": shared, "ACC": tl.float32, "BLOCK": 256}  # fmt: skip
    forward = {"xproj_ptr": f"*{io}", "hproj_ptr": f"*{io}", "hs_ptr": f"*{io}",
               "cs_ptr": "*fp32", "gates_ptr": "*fp32", **scalars}  # fmt: skip
    backward = {"gates_ptr": "*fp32", "cs_ptr": "*fp32", "grad_out_ptr": f"*{io}",
                "carry_ptr": "*fp32", "dh_gemm_ptr": f"*{io}", "fc_ptr": "*fp32",
                "dgates_ptr": f"*{io}", **scalars}  # fmt: skip
    assert _compile(fwd_step_kernel, forward, {**flags, "SAVE": save})
    assert _compile(bwd_step_kernel, backward, flags)


def compile_masks_kernel() -> None:
    from trials.zoneout._triton_lstm.kernels import masks_kernel

    signature = {"dc_ptr": "*u8", "dh_ptr": "*u8", "keep_ptr": "*u8", "seed_ptr": "*i64",
                 "total": "i64", "zc": "fp32", "zh": "fp32", "p": "fp32"}  # fmt: skip
    assert _compile(masks_kernel, signature, {"SHARED": False, "BLOCK": 4096})
