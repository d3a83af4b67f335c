"""Where a run's random numbers come from, and what makes a run repeatable.

One training seed feeds several independent streams, each derived from ``(seed, stream)``:
the initial weights of each model part, the training noise (zoneout, dropout masks) and the data
order. Because each stream starts fresh, two configs that differ in one rate draw the same
initial weights and see the batches in the same order: a regularizer that draws no random
numbers (or more of them) shifts nothing else.

A checkpoint keeps the generators' states (`rng_state`): Python's, numpy's, torch's CPU
generator and, only for a trial on CUDA, its own device's generator, so that a checkpoint
resumes on a node with any number of GPUs (or none, for a CPU trial).

What precision float32 matrix products run at (`matmul_precision`) is set for every path alike:
torch's defaults let cuDNN (nn.LSTM's kernel, the rate-0 path) use TF32 but not cuBLAS
(`torch.mm`, the zoneout paths), which would put the two ends of one sweep at different precision.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "RandomStream",
    "data_order_generator",
    "deterministic_algorithms",
    "matmul_precision",
    "rng_state",
    "seed_noise",
    "seeded",
    "set_rng_state",
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


# A checkpoint's key for the CUDA generator state of the trial's own device (one ByteTensor).
# Checkpoints written before it held "cuda": the states of every visible GPU, as a list.
CUDA_RNG_KEY = "cuda_device"
LEGACY_CUDA_RNG_KEY = "cuda"


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def rng_state(device: torch.device) -> dict[str, Any]:
    """The generator states a checkpoint keeps: Python, numpy, torch's CPU generator and, when
    the trial runs on CUDA, that one device's generator. A CPU trial touches no GPU."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state[CUDA_RNG_KEY] = torch.cuda.get_rng_state(_cuda_index(device))
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore `rng_state`'s states (loaded on the CPU) for a trial on ``device``.

    CUDA states are used only when the trial runs on CUDA: the device's own state, or from a
    checkpoint of the older format (every visible GPU's state, a list) the entry of the trial's
    device index when the list has one; the other GPUs' states are ignored. A CPU trial ignores
    CUDA states altogether, so a checkpoint resumes on a node with fewer GPUs, or none.
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type != "cuda":
        return
    index = _cuda_index(device)
    own = state.get(CUDA_RNG_KEY)
    if own is None:
        legacy = state.get(LEGACY_CUDA_RNG_KEY)
        if isinstance(legacy, (list, tuple)) and index < len(legacy):
            own = legacy[index]
    if own is not None:
        torch.cuda.set_rng_state(own, index)


MatmulPrecision = Literal["highest", "high"]


def _precision_flags() -> tuple[str | None, bool, bool]:
    try:
        precision: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and new TF32 switches were mixed: nothing single to restore
        precision = None
    return precision, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _set_precision_flags(precision: str | None, matmul_tf32: bool, cudnn_tf32: bool) -> None:
    # The general switch first, then the two legacy ones consistently with it: set the other
    # way round, newer torch sees the two APIs mixed and refuses to report the precision.
    if precision is not None:
        torch.set_float32_matmul_precision(precision)
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


@contextmanager
def matmul_precision(precision: MatmulPrecision) -> Iterator[None]:
    """Run the block with float32 matrix products at ``precision``, on every path alike.

    "highest": float32 throughout, TF32 off for cuBLAS (`torch.mm`: the fused and Triton paths)
    and for cuDNN (nn.LSTM's kernel: the rate-0 path); "high": TF32 allowed for both (and for
    oneDNN's CPU matmuls where the CPU has it). The flags are process-wide; the previous ones
    come back after the block.
    """
    if precision not in ("highest", "high"):
        raise ValueError(f"matmul precision must be 'highest' or 'high', got {precision!r}")
    previous = _precision_flags()
    tf32 = precision == "high"
    _set_precision_flags(precision, tf32, tf32)
    try:
        yield
    finally:
        _set_precision_flags(*previous)
