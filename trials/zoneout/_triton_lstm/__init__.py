"""A fused CUDA path for one ZoneoutLSTM layer, written in Triton (issue 13, GPU part).

Per step: the recurrent GEMM ``h_{t-1} W_hh^T`` (cuBLAS through ``torch.mm``) and ONE fused
Triton kernel (activations, recurrent dropout on g, zoneout of c and h, writes c_t, h_t and the
activated gates the backward needs); backward, one fused kernel and one GEMM per step. The input
projection of all steps is one GEMM up front; the weight and input gradients are GEMMs at the
end. Masks come from Philox inside the kernels (`kernels._draw`), regenerated in the backward
from the same seed: no (T, B, H) mask tensor exists. On CUDA the per-step loops are replayed
from captured CUDA graphs (`graphs`), which removes the 2*T Python launches per direction.

Precision: x, the weights, h and the gradients flowing through the GEMMs keep the input dtype
(float32, bfloat16, float16 or float64; the GEMMs accumulate in float32); the pointwise math,
the cell state c, the saved gates and the gradient accumulators of the recurrence are float32
(float64 for float64 input). With bfloat16 the returned c_n is rounded to bfloat16 like h.
float32 GEMMs follow ``torch.backends.cuda.matmul.allow_tf32`` (off by default), whereas
cuDNN's nn.LSTM follows ``torch.backends.cudnn.allow_tf32`` (on by default): compare the two
at equal settings (benchmarks/gpu_triton_check.py times both; a trial sets both from its
``matmul_precision``, TF32 off by default). Autocast is not applied inside:
x, the states and the weights must share one dtype.

Inside a CUDA graph captured by the caller the eager loop runs (it is capturable), and the seed
is then baked into that graph: its replays repeat the same masks.

Semantics (trials.zoneout's contract, Krueger et al. 2017): c~ = f*c_{t-1} + i*g' with
g' = g*keep/(1-p) under recurrent dropout p in training (g at eval; p = 1 drops every g);
h~ = o*tanh(c~); training c_t = d_c*c_{t-1} + (1-d_c)*c~ and h_t = d_h*h_{t-1} + (1-d_h)*h~,
d ~ Bernoulli(rate) per step, example and unit, separate for c and h unless ``shared_mask``
(then the cell mask, rate ``zoneout_cell``, for both); eval: the expectation
z*old + (1-z)*new. All rates 0 is nn.LSTM.
Rates reach the kernels as float32.

Use by ZoneoutLSTM: when `trials.zoneout._paths.choose_path` returns `LayerPath.TRITON`, the
layer calls `triton_layer` per layer (its `LayerArgs` without masks) in place of drawing
(T, B, H) masks and calling a fused node, with ``seed = int(seeds[layer, MaskKind.CELL])`` from
the layer's seed table in training (one key serves all three masks: they are separate Philox
lanes). `triton_lstm_layer` is the same with the tensors as arguments (tests, GPU check).

Nothing here imports triton until a layer is run.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import torch
from torch import Tensor

from trials.zoneout._args import LayerArgs, LayerOutput, check_rate
from trials.zoneout._triton_lstm.noise import Noise

_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_SEED_LIMIT = 2**63


@functools.cache
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_available(device: torch.device) -> bool:
    """True where `triton_lstm_layer` can run: a CUDA device with triton importable, or any
    device under Triton's interpreter (TRITON_INTERPRET=1: how the tests run it on CPU)."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    return (torch.device(device).type == "cuda" or interpreted) and _triton_importable()


def clear_caches() -> None:
    """Drop what one trial's layers left in this process: the captured CUDA graphs (keyed by
    the rates, so useless to the next trial) with their static buffers, then torch's cached
    CUDA blocks. A Ray worker reused between trials calls it when a trial starts. Imports
    neither triton nor CUDA where they were not used."""
    graphs = sys.modules.get(f"{__name__}.graphs")
    if graphs is not None:
        graphs.clear()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def make_noise(
    zoneout_cell: float,
    zoneout_hidden: float,
    recurrent_dropout: float,
    shared_mask: bool,
    training: bool,
) -> Noise:
    return Noise(
        zoneout_cell=check_rate("zoneout_cell", zoneout_cell),
        zoneout_hidden=check_rate("zoneout_hidden", zoneout_hidden),
        recurrent_dropout=check_rate("recurrent_dropout", recurrent_dropout),
        shared_mask=bool(shared_mask),
        training=bool(training),
    )


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")


def _check_tensors(args: LayerArgs) -> None:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args.tensors()
    if x.dim() != 3 or 0 in x.shape:
        raise ValueError(f"x must be a non-empty (T, B, I) tensor, got shape {tuple(x.shape)}")
    _, batch, inputs = x.shape
    hidden = w_hh.shape[1]
    expected = {
        "h0": (h0, (batch, hidden)),
        "c0": (c0, (batch, hidden)),
        "w_ih": (w_ih, (4 * hidden, inputs)),
        "w_hh": (w_hh, (4 * hidden, hidden)),
    }
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be tensors or both be None")
    if b_ih is not None and b_hh is not None:
        expected["b_ih"] = (b_ih, (4 * hidden,))
        expected["b_hh"] = (b_hh, (4 * hidden,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
        if tensor.dtype != x.dtype or tensor.device != x.device:
            raise TypeError(
                f"{name} is {tensor.dtype} on {tensor.device}, x is {x.dtype} on {x.device}"
            )
    if x.dtype not in _DTYPES:
        raise TypeError(f"x must be one of {_DTYPES}, got {x.dtype}")


def triton_layer(args: LayerArgs, noise: Noise, seed: int) -> LayerOutput:
    """The Triton path (`LayerPath.TRITON`): one layer, its masks drawn in the kernels from
    ``seed`` as ``noise`` says (the record's mask fields must keep their defaults)."""
    if not (
        isinstance(args.d_c, float)
        and isinstance(args.d_h, float)
        and args.d_c == args.d_h == 0.0
        and args.rd_keep is None
        and args.norm is None
    ):
        raise ValueError(
            "the Triton layer draws its own masks and has no recurrent batch norm: pass the "
            "rates and a seed, not masks"
        )
    _check_seed(seed)
    _check_tensors(args)
    from trials.zoneout._triton_lstm.function import TritonZoneoutLSTMFunction

    tensors = args.tensors()
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    x, *rest = tensors
    out: LayerOutput = TritonZoneoutLSTMFunction.apply(x.contiguous(), *rest, noise, seed, save)
    return out


def triton_lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    *,
    zoneout_cell: float,
    zoneout_hidden: float,
    recurrent_dropout: float,
    shared_mask: bool,
    training: bool,
    seed: int,
) -> LayerOutput:
    """One LSTM layer with zoneout: (output (T, B, H), h_n (B, H), c_n (B, H)).

    Weights in nn.LSTM's layout (gates i, f, g, o). Differentiable w.r.t. x, h0, c0 and the
    weights. In training the masks are a function of ``seed`` (0 <= seed < 2**63) alone: the
    same seed draws the same masks (`zoneout_masks` materializes them); draw a fresh seed per
    call and layer. At eval ``seed`` is unused.
    """
    noise = make_noise(zoneout_cell, zoneout_hidden, recurrent_dropout, shared_mask, training)
    return triton_layer(LayerArgs(x, h0, c0, w_ih, w_hh, b_ih, b_hh), noise, seed)


def zoneout_masks(
    seed: int,
    steps: int,
    batch: int,
    hidden: int,
    *,
    zoneout_cell: float,
    zoneout_hidden: float,
    recurrent_dropout: float,
    shared_mask: bool,
    device: torch.device | str = "cuda",
) -> tuple[Tensor, Tensor, Tensor]:
    """The training masks `triton_lstm_layer` draws for ``seed``: (d_c, d_h, keep_g), (T, B, H).

    Bool tensors from the kernels' own Philox draw; d = True keeps the previous value, keep_g =
    False drops g (the kept ones are scaled by 1/(1-p)). A test and debugging oracle.
    """
    noise = make_noise(zoneout_cell, zoneout_hidden, recurrent_dropout, shared_mask, training=True)
    _check_seed(seed)
    for name, size in (("steps", steps), ("batch", batch), ("hidden", hidden)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    from trials.zoneout._triton_lstm.loops import draw_masks

    return draw_masks(seed, steps, batch, hidden, noise, torch.device(device))


__all__ = [
    "clear_caches",
    "make_noise",
    "triton_available",
    "triton_layer",
    "triton_lstm_layer",
    "zoneout_masks",
]
