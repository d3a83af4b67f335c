"""Which path a ZoneoutLSTM forward pass runs: `LayerPath`, chosen in one place, `choose_path`.

The rules, in order (the first that applies decides):

1. ``implementation="reference"`` or recurrent batch norm: `LayerPath.REFERENCE`, the per-step
   autograd loop (`_loops.lstm_layer_reference`; the only path that computes batch norm).
2. No rate perturbs the pass (zoneout rates 0, and recurrent dropout 0 or evaluation):
   `LayerPath.NN_LSTM`, nn.LSTM's own kernel (oneDNN on CPU, cuDNN on GPU), whatever the
   implementation ("triton" included, on any device).
3. ``implementation="triton"``: `LayerPath.TRITON`; `LayerPathError` (a ValueError) where Triton
   cannot run (no CUDA tensor or no triton package).
4. ``implementation="auto"`` on a CUDA tensor: `LayerPath.TRITON` once the Triton layer passed
   its self-check in this process on this device (`trials.zoneout._selfcheck`: outputs and
   gradients against the PyTorch fused node, masks' keep-rates); else `LayerPath.FUSED`, with
   the reason in ``layer.last_fallback``.
5. ``implementation="fused"`` with ``ZONEOUT_TRITON=1`` in the environment (read at each call,
   e.g. set on Ray workers) where Triton can run: `LayerPath.TRITON` (no self-check: the
   variable is the user's word).
6. ``implementation="fused"`` or ``"auto"`` on a float32/float64 CPU tensor with the C++
   extension loaded (`_cpu_ext.load()`: built at first use; ``ZONEOUT_CPU_EXTENSION=0`` turns
   it off): `LayerPath.CPU_EXTENSION`.
7. Otherwise (``"fused-pytorch"``, or "fused"/"auto" on CUDA or without the extension):
   `LayerPath.FUSED`, the pure-PyTorch fused node (the extension's test oracle). Where "fused"
   or "auto" wanted the extension or Triton and could not have it, ``layer.last_fallback`` says
   why (the extension turned off or not built, a dtype it does not take, ...).

A layer may also require one path (``layer.required_path``, set from a trial config's
``implementation``): a pass that would run another raises `LayerPathError` naming why, instead
of falling back; only a pass that no rate perturbs may still run nn.LSTM's kernel (rule 2, the
contract that all rates 0 is nn.LSTM).

A pass runs one path for all its layers. `ZoneoutLSTM.last_path` tells which one the last pass
took; the values are stable lowercase strings, fit for a trial's record.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import torch

from trials.errors import UserError
from trials.zoneout import _cpu_ext
from trials.zoneout._triton_lstm import triton_available

if TYPE_CHECKING:
    from torch import Tensor

    from trials.zoneout._layers import ZoneoutLSTM

# "fused": the fastest available path; "fused-pytorch": always the pure-PyTorch node;
# "reference": the per-step loop; "triton": the Triton CUDA layer; "auto": "fused" on CPU, and
# on CUDA the Triton layer once its self-check passed on the device (rule 4).
IMPLEMENTATIONS = ("fused", "fused-pytorch", "reference", "triton", "auto")
# "1" makes implementation="fused" run the Triton layer where it can (rule 5 above).
TRITON_ENV = "ZONEOUT_TRITON"
_EXTENSION_DTYPES = (torch.float32, torch.float64)
# The device types on which "auto" considers the Triton layer (a test adds "cpu" to run the
# self-check and the layer under Triton's interpreter).
AUTO_TRITON_DEVICES: tuple[str, ...] = ("cuda",)


class LayerPath(str, Enum):
    """The path of a ZoneoutLSTM forward pass; the value is a stable lowercase name."""

    NN_LSTM = "nn_lstm"  # nn.LSTM's own kernel (cuDNN / oneDNN): no rate perturbs the pass
    CPU_EXTENSION = "cpu_extension"  # the C++ extension's node (_lstm_cpu, _cpu/zoneout_lstm.cpp)
    FUSED = "fused"  # the pure-PyTorch fused node (_lstm_fused)
    REFERENCE = "reference"  # the per-step autograd loop (_loops; GRU and RNN always)
    TRITON = "triton"  # the Triton CUDA layer (_triton_lstm)

    def __str__(self) -> str:
        return self.value


class LayerPathError(UserError, ValueError):
    """A path was asked for (``implementation="triton"``, or a required path) that cannot run
    this pass on its device; the message says why and what to choose instead."""


@dataclass(frozen=True)
class PathChoice:
    """The path a pass runs and, when it is not the one the implementation preferred (the CPU
    extension, or Triton under "auto"), why: the fallback's reason, else None."""

    path: LayerPath
    fallback: str | None = None


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


# ------------------------------------------------------------------ the CPU extension's state
_extension_lock = threading.Lock()
_extension_problem: str | None = None  # why load() failed, from its warning (this process)


def _load_extension() -> bool:
    """`_cpu_ext.load()`, keeping the reason of a failed build (its warning, shown as before)."""
    global _extension_problem
    if _cpu_ext._loaded is not None:  # tried already in this process: no warning to keep
        return _cpu_ext._loaded
    with _extension_lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _cpu_ext.load()
    for warning in caught:
        text = str(warning.message)
        if not loaded and "could not be built" in text:
            _extension_problem = text.split("; ZoneoutLSTM uses")[0]
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return loaded


def extension_problem() -> str | None:
    """Why the CPU extension is not in use in this process (None when it loads)."""
    if os.environ.get(_cpu_ext.ENV_SWITCH, "1") == "0":
        return f"the CPU extension is turned off ({_cpu_ext.ENV_SWITCH}=0)"
    if _load_extension():
        return None
    return _extension_problem or "the CPU extension did not load in this process"


def _triton_problem(device: torch.device) -> str | None:
    """Why "auto" does not run the Triton layer on ``device`` (None: it passed its self-check)."""
    if not triton_available(device):
        return "the triton package is not installed"
    from trials.zoneout._selfcheck import triton_selfcheck

    failure = triton_selfcheck(device)
    return None if failure is None else f"the Triton layer failed its self-check: {failure}"


def decide_path(layer: ZoneoutLSTM, x: Tensor) -> PathChoice:
    """The path ``layer`` runs for input ``x`` and why a preferred path was not taken: the rules
    of this module's docstring, then the layer's ``required_path``."""
    choice = _decide(layer, x)
    required = getattr(layer, "required_path", None)
    if required is None or choice.path is required:
        return choice
    if choice.path is LayerPath.NN_LSTM and not perturbs(layer):
        return choice  # nothing to regularize: nn.LSTM's numbers, whatever was asked
    raise LayerPathError(
        f"implementation {LayerPath(required).value!r} cannot run this pass on {x.device} "
        f"({x.dtype}): {_why_not(LayerPath(required), layer, x, choice)}; choose "
        "implementation 'auto' to let each device take the path it can run"
    )


def _why_not(required: LayerPath, layer: ZoneoutLSTM, x: Tensor, choice: PathChoice) -> str:
    if required is LayerPath.NN_LSTM:
        return (
            "a rate perturbs it (zoneout, or recurrent dropout in training), which nn.LSTM's "
            "kernel cannot compute"
        )
    if layer.recurrent_batch_norm:
        return "recurrent batch norm runs on the reference loop only"
    if required is LayerPath.CPU_EXTENSION:
        if x.device.type != "cpu":
            return "the CPU extension runs on CPU tensors only"
        if x.dtype not in _EXTENSION_DTYPES:
            return "the CPU extension takes float32 and float64 only"
        return choice.fallback or "the CPU extension did not load"
    return choice.fallback or f"the layer would run the {choice.path.value} path"


def _decide(layer: ZoneoutLSTM, x: Tensor) -> PathChoice:
    implementation = layer.implementation
    check_implementation(implementation)
    if implementation == "reference" or layer.recurrent_batch_norm:
        return PathChoice(LayerPath.REFERENCE)
    if not perturbs(layer):
        return PathChoice(LayerPath.NN_LSTM)
    if implementation == "triton":
        if not triton_available(x.device):
            raise LayerPathError(
                "implementation='triton' needs a CUDA tensor and the triton package "
                f"(got a tensor on {x.device}); use 'fused' elsewhere"
            )
        return PathChoice(LayerPath.TRITON)
    if implementation == "fused-pytorch":
        return PathChoice(LayerPath.FUSED)
    if implementation == "auto" and x.device.type in AUTO_TRITON_DEVICES:
        problem = _triton_problem(x.device)
        if problem is None:
            return PathChoice(LayerPath.TRITON)
        return PathChoice(LayerPath.FUSED, problem)
    if (
        implementation == "fused"
        and os.environ.get(TRITON_ENV, "0") == "1"
        and triton_available(x.device)
    ):
        return PathChoice(LayerPath.TRITON)
    if x.device.type != "cpu":
        return PathChoice(LayerPath.FUSED)
    if x.dtype not in _EXTENSION_DTYPES:
        return PathChoice(
            LayerPath.FUSED, f"the CPU extension takes float32 and float64, not {x.dtype}"
        )
    problem = extension_problem()
    if problem is None:
        return PathChoice(LayerPath.CPU_EXTENSION)
    return PathChoice(LayerPath.FUSED, problem)


def choose_path(layer: ZoneoutLSTM, x: Tensor) -> LayerPath:
    """The path ``layer`` runs for input ``x`` (any layout; only its device and dtype count) in
    its current mode and settings: the rules of this module's docstring. It may build the CPU
    extension (rule 6), or run the Triton self-check (rule 4), as the pass itself would."""
    return decide_path(layer, x).path
