"""The Triton layer's self-check: what ``implementation="auto"`` runs before it trusts the
Triton layer on a device (`trials.zoneout._paths`, rule 4).

On a small problem (a few steps, a batch of 2, 4 units), in float32 with TF32 off, the Triton
layer is compared with the pure-PyTorch fused node (`_lstm_fused.fused_layer`, the oracle of
every fast path), outputs (output, h_n, c_n) and the gradients of x, h0, c0 and the weights:

1. training with every rate 0;
2. evaluation with rates > 0 (zoneout's expectation; recurrent dropout is the identity);
3. training with rates > 0, the fused node fed the very masks the kernels draw
   (`_triton_lstm.zoneout_masks`, the same Philox call);

and the masks' keep-rates are checked on a larger draw (each within six standard deviations of
its rate; one shared mask is one mask). The answer is kept per (process, device): a process
runs it at most once per device, at the first "auto" pass that would run Triton there.

It draws nothing from torch's global generators (its tensors come from a private generator,
its masks from a fixed Philox key), so a trial's random streams are the same whether it ran.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from trials.zoneout._args import LayerArgs, LayerOutput
from trials.zoneout._lstm_fused import fused_layer
from trials.zoneout._triton_lstm import make_noise, triton_layer, zoneout_masks

__all__ = ["clear_selfchecks", "run_selfcheck", "triton_selfcheck"]

# Tiny on purpose: under Triton's interpreter (the tests) every program runs in Python.
STEPS, BATCH, INPUTS, HIDDEN = 3, 2, 3, 4
MASK_SHAPE = (16, 8, 32)  # steps, batch, hidden of the keep-rate draw: 4096 draws per mask
ZONEOUT_CELL, ZONEOUT_HIDDEN, RECURRENT_DROPOUT = 0.5, 0.25, 0.25
SEED = 20240521
TOLERANCE = 1e-4  # float32, TF32 off, sums over at most 4 units and 3 steps
KEEP_RATE_SIGMAS = 6.0

_lock = threading.Lock()
_results: dict[tuple[int, str], str | None] = {}


def _key(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return os.getpid(), str(device)


def triton_selfcheck(device: torch.device | str) -> str | None:
    """None when the Triton layer passed its self-check on ``device`` (run once per process and
    device, then remembered), else why it failed, in words. A failure warns once."""
    key = _key(torch.device(device))
    with _lock:
        if key in _results:
            return _results[key]
        try:
            failure = run_selfcheck(torch.device(device))
        except Exception as error:  # a kernel that does not compile or launch is a failure too
            first = (str(error).strip().splitlines() or [""])[0][:300]
            failure = f"it raised {type(error).__name__}: {first}"
        _results[key] = failure
    if failure is not None:
        warnings.warn(
            f"the Triton zoneout layer failed its self-check on {key[1]} ({failure}); "
            "implementation 'auto' runs the PyTorch fused path there",
            RuntimeWarning,
            stacklevel=2,
        )
    return failure


def clear_selfchecks() -> None:
    """Forget every answer of this process (tests)."""
    with _lock:
        _results.clear()


@contextmanager
def _exact_float32() -> Iterator[None]:
    # TF32 would make the GEMMs differ from the oracle's by ~1e-3: the check is of the kernels.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_selfcheck(device: torch.device) -> str | None:
    """The check itself, uncached: None when every comparison holds, else the first failure."""
    with torch.inference_mode(False), torch.enable_grad(), _exact_float32():
        generator = torch.Generator().manual_seed(SEED)

        def draw(*shape: int) -> Tensor:
            values = torch.rand(*shape, generator=generator, dtype=torch.float32) - 0.5
            return values.to(device)

        tensors = [
            draw(STEPS, BATCH, INPUTS),
            draw(BATCH, HIDDEN),
            draw(BATCH, HIDDEN),
            draw(4 * HIDDEN, INPUTS),
            draw(4 * HIDDEN, HIDDEN),
            draw(4 * HIDDEN),
            draw(4 * HIDDEN),
        ]
        cotangents = [draw(STEPS, BATCH, HIDDEN), draw(BATCH, HIDDEN), draw(BATCH, HIDDEN)]
        zc, zh, p = ZONEOUT_CELL, ZONEOUT_HIDDEN, RECURRENT_DROPOUT
        d_c, d_h, keep = zoneout_masks(
            SEED, STEPS, BATCH, HIDDEN, zoneout_cell=zc, zoneout_hidden=zh,
            recurrent_dropout=p, shared_mask=False, device=device,
        )  # fmt: skip
        cases: list[tuple[str, Callable[[list[Tensor]], LayerOutput], Callable[..., LayerOutput]]]
        cases = [
            (
                "training with rates 0",
                lambda t: triton_layer(LayerArgs(*t), make_noise(0, 0, 0, False, True), SEED),
                lambda t: fused_layer(LayerArgs(*t)),
            ),
            (
                "evaluation with rates > 0",
                lambda t: triton_layer(LayerArgs(*t), make_noise(zc, zh, p, False, False), SEED),
                lambda t: fused_layer(LayerArgs(*t, zc, zh)),
            ),
            (
                "training with rates > 0 (the kernels' masks)",
                lambda t: triton_layer(LayerArgs(*t), make_noise(zc, zh, p, False, True), SEED),
                lambda t: fused_layer(LayerArgs(*t, d_c, d_h, keep, 1.0 / (1.0 - p))),
            ),
        ]
        for what, run_triton, run_fused in cases:
            failure = _compare(what, tensors, cotangents, run_triton, run_fused)
            if failure is not None:
                return failure
        return _keep_rates(device)


def _compare(
    what: str,
    tensors: Sequence[Tensor],
    cotangents: Sequence[Tensor],
    run_triton: Callable[[list[Tensor]], LayerOutput],
    run_fused: Callable[[list[Tensor]], LayerOutput],
) -> str | None:
    results = []
    for run in (run_triton, run_fused):
        inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
        outputs = run(inputs)
        grads = torch.autograd.grad(outputs, inputs, cotangents)
        results.append([*(o.detach() for o in outputs), *grads])
    names = ["output", "h_n", "c_n", "grad x", "grad h0", "grad c0"]
    names += ["grad w_ih", "grad w_hh", "grad b_ih", "grad b_hh"]
    for name, got, want in zip(names, *results, strict=True):
        if got.shape != want.shape:
            return f"{what}: {name} has shape {tuple(got.shape)}, the PyTorch path's is " + str(
                tuple(want.shape)
            )
        error = (got.double() - want.double()).abs()
        limit = TOLERANCE * (1.0 + want.double().abs())
        if not bool(torch.isfinite(got).all()) or bool((error > limit).any()):
            worst = float(error.max()) if bool(torch.isfinite(error).all()) else math.inf
            return f"{what}: {name} differs from the PyTorch path's by up to {worst:.3g}"
    return None


def _keep_rates(device: torch.device) -> str | None:
    steps, batch, hidden = MASK_SHAPE
    n = steps * batch * hidden
    for shared in (False, True):
        zc, zh, p = ZONEOUT_CELL, ZONEOUT_CELL if shared else ZONEOUT_HIDDEN, RECURRENT_DROPOUT
        d_c, d_h, keep = zoneout_masks(
            SEED + 1, steps, batch, hidden, zoneout_cell=zc, zoneout_hidden=zh,
            recurrent_dropout=p, shared_mask=shared, device=device,
        )  # fmt: skip
        if shared and not torch.equal(d_c, d_h):
            return "masks: a shared mask differs between c and h"
        for name, mask, rate in (("d_c", d_c, zc), ("d_h", d_h, zh), ("keep_g", keep, 1.0 - p)):
            seen = float(mask.float().mean())
            sigma = math.sqrt(rate * (1.0 - rate) / n)
            if abs(seen - rate) > KEEP_RATE_SIGMAS * sigma:
                return f"masks: {name} keeps {seen:.3f} of {n} units where {rate:g} is expected"
    return None
