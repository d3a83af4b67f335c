"""Which path a ZoneoutLSTM forward pass runs: `LayerPath`, chosen in one place, `choose_path`.

The rules, in order (the first that applies decides):

1. ``implementation="reference"`` or recurrent batch norm: `LayerPath.REFERENCE`, the per-step
   autograd loop (`_loops.lstm_layer_reference`; the only path that computes batch norm).
2. No rate perturbs the pass (zoneout rates 0, and recurrent dropout 0 or evaluation):
   `LayerPath.NN_LSTM`, nn.LSTM's own kernel (oneDNN on CPU, cuDNN on GPU), whatever the
   implementation ("triton" included, on any device).
3. ``implementation="triton"``: `LayerPath.TRITON`; ValueError where Triton cannot run (no CUDA
   tensor or no triton package).
4. ``implementation="fused"`` with ``ZONEOUT_TRITON=1`` in the environment (read at each call,
   e.g. set on Ray workers) where Triton can run: `LayerPath.TRITON`. The Triton layer is
   opt-in until a GPU run has measured it (benchmarks/gpu_triton_check.py).
5. ``implementation="fused"`` on a float32/float64 CPU tensor with the C++ extension loaded
   (`_cpu_ext.load()`: built at first use; ``ZONEOUT_CPU_EXTENSION=0`` turns it off):
   `LayerPath.CPU_EXTENSION`.
6. Otherwise (``"fused-pytorch"``, or "fused" on CUDA or without the extension):
   `LayerPath.FUSED`, the pure-PyTorch fused node (the extension's test oracle).

A pass runs one path for all its layers. `ZoneoutLSTM.last_path` tells which one the last pass
took; the values are stable lowercase strings, fit for a trial's record.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import TYPE_CHECKING

import torch

from trials.zoneout import _cpu_ext
from trials.zoneout._triton_lstm import triton_available

if TYPE_CHECKING:
    from torch import Tensor

    from trials.zoneout._layers import ZoneoutLSTM

# "fused": the fastest available path; "fused-pytorch": always the pure-PyTorch node;
# "reference": the per-step loop; "triton": the Triton CUDA layer.
IMPLEMENTATIONS = ("fused", "fused-pytorch", "reference", "triton")
# "1" makes implementation="fused" run the Triton layer where it can (rule 4 above).
TRITON_ENV = "ZONEOUT_TRITON"
_EXTENSION_DTYPES = (torch.float32, torch.float64)


class LayerPath(str, Enum):
    """The path of a ZoneoutLSTM forward pass; the value is a stable lowercase name."""

    NN_LSTM = "nn_lstm"  # nn.LSTM's own kernel (cuDNN / oneDNN): no rate perturbs the pass
    CPU_EXTENSION = "cpu_extension"  # the C++ extension's node (_lstm_cpu, _cpu/zoneout_lstm.cpp)
    FUSED = "fused"  # the pure-PyTorch fused node (_lstm_fused)
    REFERENCE = "reference"  # the per-step autograd loop (_loops; GRU and RNN always)
    TRITON = "triton"  # the Triton CUDA layer (_triton_lstm)

    def __str__(self) -> str:
        return self.value


def check_implementation(implementation: object) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")


def perturbs(layer: ZoneoutLSTM) -> bool:
    """Whether some rate changes this pass: zoneout acts in evaluation too (the expectation),
    recurrent dropout only in training."""
    return (
        layer.zoneout_cell > 0.0
        or layer.zoneout_hidden > 0.0
        or (layer.training and layer.recurrent_dropout > 0.0)
    )


def choose_path(layer: ZoneoutLSTM, x: Tensor) -> LayerPath:
    """The path ``layer`` runs for input ``x`` (any layout; only its device and dtype count) in
    its current mode and settings: the rules of this module's docstring. It may build the CPU
    extension (rule 5), as the pass itself would."""
    implementation = layer.implementation
    check_implementation(implementation)
    if implementation == "reference" or layer.recurrent_batch_norm:
        return LayerPath.REFERENCE
    if not perturbs(layer):
        return LayerPath.NN_LSTM
    if implementation == "triton":
        if not triton_available(x.device):
            raise ValueError(
                "implementation='triton' needs a CUDA tensor and the triton package "
                f"(got a tensor on {x.device}); use 'fused' elsewhere"
            )
        return LayerPath.TRITON
    if implementation != "fused":
        return LayerPath.FUSED
    if os.environ.get(TRITON_ENV, "0") == "1" and triton_available(x.device):
        return LayerPath.TRITON
    if x.device.type == "cpu" and x.dtype in _EXTENSION_DTYPES and _cpu_ext.load():
        return LayerPath.CPU_EXTENSION
    return LayerPath.FUSED
