"""The layers' random masks: one seed table per training pass, read differently by each path.

Random masks
------------
Seeds. In training, a forward pass of any of the three layers first draws one seed per layer and
mask kind (`MaskKind`: cell zoneout, hidden zoneout, recurrent dropout) from torch's global CPU
generator, as ``torch.randint(0, 2**62, (num_layers, 3))``, whatever the rates and whatever the
path (so the global stream advances by the same amount for every configuration, and the data
order or any later draw does not depend on which rates are non-zero or which path runs).
Evaluation draws nothing: zoneout uses the expectation (the rate as the weight), recurrent
dropout is the identity. Inter-layer dropout (``dropout``) is separate: it draws from torch's
global RNG, as nn.LSTM's does.

What each path (`trials.zoneout.LayerPath`) makes of the table:

* ``nn_lstm`` (no rate perturbs the pass): no mask at all; the table is drawn and unused.
* ``cpu_extension``, ``fused``, ``reference`` (and ZoneoutGRU / ZoneoutRNN, which always run a
  reference loop): every mask kind whose rate is strictly between 0 and 1 is materialized before
  the layer runs, as a (T, B, H) bool tensor from its own splitmix64 counter stream: element i
  (row-major over (T, B, H)) of a mask with seed s is output i+1 of splitmix64 started at s,
  True (keep the previous value; for recurrent dropout: drop) when the output's top 24 bits are
  below round(rate * 2^24). A counter hash, so any thread can draw any part: on CPU with the C++
  extension loaded `bernoulli_mask` runs its kernel (``_cpu/zoneout_lstm.cpp``), otherwise the
  torch integer ops of `splitmix_mask` (CUDA, or no extension); both give the same bits, so these
  three paths see the very same masks and differ only in arithmetic. A rate of 0 or 1 draws no
  mask (the rate itself is exact); since each stream is nobody else's, skipping one changes no
  other mask, and two configurations that differ only in the recurrent-dropout rate get the
  very same zoneout masks. A shared zoneout mask is the cell stream's mask, used for c and h.
* ``triton``: no mask tensor exists. Each layer's masks are drawn inside the kernels (forward,
  and again in the backward) from ONE Philox key, the layer's cell seed ``seeds[layer, CELL]``;
  the hidden and recurrent-dropout seeds of the row are drawn and unused. One Philox call per
  (step, example, unit) gives four float32 uniforms; lane 0 is the cell mask (u < z_c), lane 1
  the hidden mask (u < z_h; a shared mask reuses lane 0), lane 2 recurrent dropout's keep mask
  (u >= p). The lanes are fixed, so here too a rate does not change the other masks. The bits
  differ from the splitmix64 paths' (same distribution, different draws): a pass on Triton does
  not reproduce the masks of a pass on the other paths under the same torch seed
  (`trials.zoneout._triton_lstm.zoneout_masks` materializes Triton's masks for tests).
"""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import Tensor

from trials.zoneout import _cpu_ext


class MaskKind(IntEnum):
    """Column of a layer's row in the seed table."""

    CELL = 0  # zoneout of c (also the shared zoneout mask)
    HIDDEN = 1  # zoneout of h
    RECURRENT_DROPOUT = 2  # Semeniuta's dropout of the candidate g


SEED_HIGH = 2**62
RESOLUTION_BITS = 24

# splitmix64's constants as two's-complement int64 (torch's integer arithmetic wraps).
_GAMMA = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def draw_seeds(num_layers: int) -> Tensor:
    """The (num_layers, 3) int64 seed table of one training forward pass (global CPU RNG)."""
    return torch.randint(0, SEED_HIGH, (num_layers, len(MaskKind)), dtype=torch.int64)


def threshold(rate: float) -> int:
    """Elements whose 24-bit draw is below this are True: P = threshold / 2^24 ~ rate."""
    return round(rate * 2**RESOLUTION_BITS)


def _shift_right(z: Tensor, bits: int) -> Tensor:
    # A logical shift: torch's >> on int64 is arithmetic (it copies the sign bit).
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix_mask(seed: int, rate: float, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """The mask in torch integer ops: the fallback without the extension, and CUDA."""
    count = 1
    for size in shape:
        count *= size
    z = torch.arange(1, count + 1, dtype=torch.int64, device=device) * _GAMMA + seed
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    return (_shift_right(z, 64 - RESOLUTION_BITS) < threshold(rate)).view(shape)


def bernoulli_mask(seed: int, rate: float, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """A bool mask, True with probability ``rate`` independently per element."""
    if torch.device(device).type == "cpu" and _cpu_ext.load():
        return torch.ops.zoneout_cpu.bernoulli_mask(seed, threshold(rate), list(shape))
    return splitmix_mask(seed, rate, shape, device)
