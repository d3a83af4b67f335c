"""The layers' random masks: one private stream per (layer, mask kind), seeded from torch's RNG.

Contract (reproducibility): in training, a forward pass first draws one int64 seed per layer and
mask kind from torch's global CPU generator, as ``torch.randint(0, 2**62, (num_layers, 3))``,
whatever the rates (so the global stream advances by the same amount for every configuration,
and the data order or any later draw does not depend on which rates are non-zero). Each mask is
then ``torch.rand(T, B, H, generator=torch.Generator(device).manual_seed(seed))`` compared with
its rate. A mask kind whose rate is 0 (or 1) is simply not generated: its private stream is
not shared with anything, so skipping it changes no other mask. Two configurations that differ
only in the recurrent-dropout rate therefore get the very same zoneout masks. Evaluation draws
nothing.

Note: torch's CPU generator keeps only the low 32 bits of a seed, so two of the ~10^5 streams
of a long run may coincide; the masks of those two steps are then equal, which is harmless.
"""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import Tensor


class MaskKind(IntEnum):
    """Column of a layer's row in the seed table."""

    CELL = 0  # zoneout of c (also the shared zoneout mask)
    HIDDEN = 1  # zoneout of h
    RECURRENT_DROPOUT = 2  # Semeniuta's dropout of the candidate g


SEED_HIGH = 2**62


def draw_seeds(num_layers: int) -> Tensor:
    """The (num_layers, 3) int64 seed table of one training forward pass (global CPU RNG)."""
    return torch.randint(0, SEED_HIGH, (num_layers, len(MaskKind)), dtype=torch.int64)


def uniform(seed: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """U[0, 1) float32 values of one private stream."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float32, device=device)


def bernoulli_mask(seed: int, rate: float, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """A bool mask, True with probability ``rate`` independently per element."""
    return uniform(seed, shape, device) < rate
