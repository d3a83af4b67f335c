"""Where a run's random numbers come from, and what makes a run repeatable.

One training seed feeds several independent streams, each derived from ``(seed, stream)``:
the initial weights of each model part, the training noise (zoneout, dropout masks) and the data
order. Because each stream starts fresh, two configs that differ in one rate draw the same
initial weights and see the batches in the same order: a regularizer that draws no random
numbers (or more of them) shifts nothing else.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

import numpy as np
import torch

__all__ = [
    "RandomStream",
    "data_order_generator",
    "deterministic_algorithms",
    "seed_noise",
    "seeded",
    "stream_seed",
]

# cuBLAS reuses workspaces across streams unless told a fixed size; with this setting its
# matrix products are repeatable (NVIDIA's cuBLAS "Results reproducibility" notes).
CUBLAS_WORKSPACE = ":4096:8"


class RandomStream(IntEnum):
    """Independent random streams of one run (the values are part of the seed derivation)."""

    EMBEDDING = 1
    RECURRENT = 2
    DECODER = 3
    INIT_RANGE = 4
    NOISE = 5
    DATA_ORDER = 6


def stream_seed(seed: int, stream: RandomStream, *more: int) -> int:
    """A 63-bit seed for ``stream`` of a run seeded ``seed`` (numpy's SeedSequence mixing)."""
    entropy = [seed % 2**64, int(stream), *(value % 2**64 for value in more)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


@contextmanager
def seeded(seed: int, stream: RandomStream) -> Iterator[None]:
    """Run the block on torch's CPU generator seeded for ``stream``; restore it afterwards.

    Models are built on the CPU and moved to their device, so only the CPU generator matters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, stream))
        yield


def seed_noise(seed: int) -> None:
    """Seed the global generators that zoneout and dropout masks draw from (every device)."""
    noise = stream_seed(seed, RandomStream.NOISE)
    random.seed(noise)
    np.random.seed(noise % 2**32)
    torch.manual_seed(noise)


def data_order_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's batch order: a resumed run sees the same order again."""
    return torch.Generator().manual_seed(stream_seed(seed, RandomStream.DATA_ORDER, epoch))


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Ask torch for deterministic kernels (an op without one raises) for the block's duration.

    On CUDA this also needs cuBLAS's fixed workspace, which must be set before cuBLAS starts in
    this process; a value the user already exported is kept. Without ``enabled`` nothing is
    changed: CPU runs are repeatable with the same seed and thread count anyway, CUDA runs may
    differ in the last bits (atomics in cuDNN/cuBLAS reductions).
    """
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn
