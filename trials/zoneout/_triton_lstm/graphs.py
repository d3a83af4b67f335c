"""CUDA graphs of the per-step loops: one replay instead of 2*T launches from Python.

Why: at B=32, H=1000 a step's GEMM and pointwise kernel take a few microseconds each on an
H100, about what launching them from Python costs, so the eager loop is bound by the CPU.

How (the standard static-buffer recipe): capturing a (device, stream, dtype, T, B, H, noise,
save) key allocates static buffers, runs the loop once on a side stream (that compiles
the Triton kernels and sets up cuBLAS for the stream), then captures `loops.forward_loop` /
`loops.backward_loop` on those buffers. Every call copies its inputs into the buffers, replays,
and clones the results out, because the next replay overwrites them; the seed lives in a device
tensor, so a replay draws new masks without a new capture. The copies cost a few passes over
(T, B, 5H) floats, small next to the sequence's GEMMs.

Guards: only on CUDA; never while the caller is itself capturing a graph (the eager loop is
capturable as it is); a key is captured the second time it is seen (a one-off shape, such as a
last partial batch, stays eager); at most MAX_GRAPHS graphs per direction, the least recently
used evicted (with its buffers) to make room, and after MAX_EVICTIONS evictions no new key is
captured until `clear`, so a workload with more shapes than that cannot thrash between captures
(its other shapes run eagerly); a capture that fails turns into a one-time warning and the
eager loop for that key. The bookkeeping (`cache.GraphBook`) bounds what it remembers too.
`clear` drops everything: `trials.zoneout.clear_caches` calls it when a reused Ray worker starts
a new trial, whose rates (part of every key) differ. Set ZONEOUT_TRITON_CUDA_GRAPHS=0 (or
`graphs.ENABLED = False`) to always run eagerly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable

import torch
from torch import Tensor

from trials.zoneout._triton_lstm.cache import GraphBook
from trials.zoneout._triton_lstm.loops import backward_loop, forward_loop, state_dtype
from trials.zoneout._triton_lstm.noise import Noise
from trials.zoneout._triton_lstm.results import BackwardResult, ForwardResult, input_projection

ENABLED = os.environ.get("ZONEOUT_TRITON_CUDA_GRAPHS", "1") != "0"
MAX_GRAPHS = 8  # per direction; each holds (T, B, 4H)-sized static buffers
CAPTURE_AT_SIGHTING = 2
MAX_EVICTIONS = 4 * MAX_GRAPHS  # since the last clear(); then the cache stops capturing

# Least recently used first (plain dicts: `cache` keeps their order).
_forward_graphs: dict[Hashable, _ForwardGraph] = {}
_backward_graphs: dict[Hashable, _BackwardGraph] = {}
_book = GraphBook(capture_at=CAPTURE_AT_SIGHTING, max_evictions=MAX_EVICTIONS)
_failed = _book.failed  # the keys whose capture failed (read by benchmarks/gpu_triton_check.py)


def clear() -> None:
    """Drops every captured graph and its buffers (frees their memory; later calls recapture)
    and forgets sightings, failures and evictions."""
    for entry in [*_forward_graphs.values(), *_backward_graphs.values()]:
        _finish(entry)
    _forward_graphs.clear()
    _backward_graphs.clear()
    _book.clear()


def _finish(entry: object) -> None:
    # A replay may still run on the device: let it finish before its graph and buffers go.
    device = getattr(entry, "device", None)
    if isinstance(device, torch.device) and device.type == "cuda":
        torch.cuda.synchronize(device)


def usable(device: torch.device) -> bool:
    return ENABLED and device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def _capture(run: Callable[[], None]) -> torch.cuda.CUDAGraph:
    # Warm-up and capture on one side stream, so the capture meets compiled kernels and a cuBLAS
    # handle and workspace that already exist for that stream.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: the backward runs on autograd's device thread; other threads may allocate.
    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
        run()
    return graph


class _ForwardGraph:
    def __init__(self, x: Tensor, hidden: int, noise: Noise, save: bool) -> None:
        steps, batch, _ = x.shape
        dev, dtype, acc = x.device, x.dtype, state_dtype(x.dtype)
        self.device = dev
        self.xproj = torch.zeros(steps, batch, 4 * hidden, dtype=dtype, device=dev)
        self.w_hh = torch.zeros(4 * hidden, hidden, dtype=dtype, device=dev)
        self.hs = torch.zeros(steps + 1, batch, hidden, dtype=dtype, device=dev)
        self.cs = torch.zeros(steps + 1, batch, hidden, dtype=acc, device=dev)
        self.gates = torch.zeros(steps if save else 1, batch, 4 * hidden, dtype=acc, device=dev)
        self.hproj = torch.zeros(batch, 4 * hidden, dtype=dtype, device=dev)
        self.seed = torch.zeros(1, dtype=torch.int64, device=dev)
        self.save = save
        self.graph = _capture(
            lambda: forward_loop(
                self.xproj,
                self.w_hh,
                self.hs,
                self.cs,
                self.gates,
                self.hproj,
                self.seed,
                noise,
                save,
            )
        )

    def run(
        self,
        x: Tensor,
        w_ih: Tensor,
        bias: Tensor | None,
        w_hh: Tensor,
        h0: Tensor,
        c0: Tensor,
        seed: int,
    ) -> ForwardResult:
        input_projection(x, w_ih, bias, self.xproj)
        self.w_hh.copy_(w_hh)
        self.hs[0].copy_(h0)
        self.cs[0].copy_(c0)
        self.seed.fill_(seed)
        self.graph.replay()
        steps = x.shape[0]
        return ForwardResult(
            output=self.hs[1:].clone(),
            h_n=self.hs[steps].clone(),
            c_n=self.cs[steps].clone(),
            h_prev=self.hs[:steps].clone() if self.save else None,
            c_prev=self.cs[:steps].clone() if self.save else None,
            gates=self.gates.clone() if self.save else None,
        )


class _BackwardGraph:
    def __init__(self, grad_out: Tensor, noise: Noise) -> None:
        steps, batch, hidden = grad_out.shape
        dev, dtype, acc = grad_out.device, grad_out.dtype, state_dtype(grad_out.dtype)
        self.device = dev
        self.gates = torch.zeros(steps, batch, 4 * hidden, dtype=acc, device=dev)
        self.c_prev = torch.zeros(steps, batch, hidden, dtype=acc, device=dev)
        self.grad_out = torch.zeros(steps, batch, hidden, dtype=dtype, device=dev)
        self.w_hh = torch.zeros(4 * hidden, hidden, dtype=dtype, device=dev)
        self.carry = torch.zeros(batch, hidden, dtype=acc, device=dev)
        self.fc = torch.zeros(batch, hidden, dtype=acc, device=dev)
        self.dh_gemm = torch.zeros(batch, hidden, dtype=dtype, device=dev)
        self.dgates = torch.zeros(steps, batch, 4 * hidden, dtype=dtype, device=dev)
        self.seed = torch.zeros(1, dtype=torch.int64, device=dev)
        self.graph = _capture(
            lambda: backward_loop(
                self.gates,
                self.c_prev,
                self.grad_out,
                self.w_hh,
                self.carry,
                self.fc,
                self.dh_gemm,
                self.dgates,
                self.seed,
                noise,
            )
        )

    def run(
        self,
        gates: Tensor,
        c_prev: Tensor,
        grad_out: Tensor,
        grad_hn: Tensor,
        grad_cn: Tensor,
        w_hh: Tensor,
        seed: int,
    ) -> BackwardResult:
        self.gates.copy_(gates)
        self.c_prev.copy_(c_prev)
        self.grad_out.copy_(grad_out)
        self.w_hh.copy_(w_hh)
        self.carry.copy_(grad_hn)
        self.fc.copy_(grad_cn)
        self.dh_gemm.zero_()
        self.seed.fill_(seed)
        self.graph.replay()
        # dgates stays the static buffer: the caller's weight-gradient GEMMs read it next on
        # this stream, before any later replay can overwrite it.
        return BackwardResult(
            dgates=self.dgates, grad_h0=self.carry + self.dh_gemm, grad_c0=self.fc.clone()
        )


def _key(kind: str, t: Tensor, *rest: Hashable) -> Hashable:
    # Buffers are per stream: two streams never share (and race on) one graph's buffers.
    stream = torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0
    # A graph replays the GEMM kernels chosen at capture: the math settings belong to the key.
    matmul = torch.backends.cuda.matmul
    math = (
        matmul.allow_tf32,
        matmul.allow_bf16_reduced_precision_reduction,
        matmul.allow_fp16_reduced_precision_reduction,
        _float32_matmul_precision(),
        getattr(matmul, "fp32_precision", None),  # newer torch's spelling of the TF32 switch
    )
    return (kind, t.device, stream, t.dtype, tuple(t.shape), math, *rest)


def _float32_matmul_precision() -> str:
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:  # newer torch refuses to answer once legacy and new switches were mixed
        return "mixed"


def _get(cache: dict, key: Hashable, build: Callable[[], object]) -> object | None:
    try:
        return _book.get(cache, key, build, MAX_GRAPHS, on_evict=_finish)
    except RuntimeError as error:  # capture refused (driver, allocator, library): run eagerly
        warnings.warn(
            f"zoneout Triton LSTM: CUDA graph capture failed ({error}); running this shape "
            "with per-step launches instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def forward(
    x: Tensor,
    w_ih: Tensor,
    bias: Tensor | None,
    w_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    seed: int,
    noise: Noise,
    save: bool,
) -> ForwardResult | None:
    hidden = w_hh.shape[1]
    # The captured loop only sees x through xproj, so the input size is not part of the key.
    key = _key("fwd", x[..., :1], hidden, noise, save)
    entry = _get(_forward_graphs, key, lambda: _ForwardGraph(x, hidden, noise, save))
    if not isinstance(entry, _ForwardGraph):
        return None
    return entry.run(x, w_ih, bias, w_hh, h0, c0, seed)


def backward(
    gates: Tensor,
    c_prev: Tensor,
    grad_out: Tensor,
    grad_hn: Tensor,
    grad_cn: Tensor,
    w_hh: Tensor,
    seed: int,
    noise: Noise,
) -> BackwardResult | None:
    key = _key("bwd", grad_out, noise)
    entry = _get(_backward_graphs, key, lambda: _BackwardGraph(grad_out, noise))
    if not isinstance(entry, _BackwardGraph):
        return None
    return entry.run(gates, c_prev, grad_out, grad_hn, grad_cn, w_hh, seed)
