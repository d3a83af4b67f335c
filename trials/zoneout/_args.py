"""What one LSTM layer is given, whatever its path: `LayerArgs`, and the one check of a rate.

Every per-path layer function takes one `LayerArgs` (`_lstm_cpu.cpu_extension_layer`,
`_lstm_fused.fused_layer`, `_loops.lstm_layer_reference`, `_triton_lstm.triton_layer`) and
returns ``(output (T, B, H), h_n (B, H), c_n (B, H))``. The two autograd nodes behind the fused
paths take the record's fields flat (``Node.apply(*args.node_args())``), because autograd tracks
only tensors passed to ``apply`` directly; their ``forward`` rebuilds the record from them.

No triton and no other module of the package is imported here: `_triton_lstm` uses this module
where only torch and triton are installed (benchmarks/gpu_triton_check.py).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from trials.zoneout._loops import StepBatchNorm

# A zoneout weight is either a (T, B, H) bool mask, True = keep the previous value (training), or
# the rate itself (evaluation, and training at rates 0 and 1).
Weight = Tensor | float
# (output (T, B, H), h_n (B, H), c_n (B, H)) of one layer.
LayerOutput = tuple[Tensor, Tensor, Tensor]
# x, h0, c0, w_ih, w_hh, b_ih, b_hh: what the autograd nodes differentiate, in this order.
DIFFERENTIABLE = 7


def check_rate(name: str, value: object) -> float:
    """``value`` as a float rate in [0, 1]; ValueError naming ``name`` otherwise (NaN included).

    The one range check of a rate: the layers' rate attributes (on every assignment) and the
    Triton layer's arguments go through it.
    """
    # bool is an int subclass; True would silently mean "always preserve".
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return rate


@dataclass(frozen=True)
class LayerArgs:
    """One LSTM layer's inputs: x (T, B, I), h0 and c0 (B, H), nn.LSTM's weights of the layer
    (gates i, f, g, o; both biases or neither) and how the pass perturbs the recurrence.

    ``d_c``, ``d_h``: the zoneout weights of c and h (`Weight`; for a shared mask the very same
    tensor). ``rd_keep``: recurrent dropout's (T, B, H) bool keep mask, None when off;
    ``rd_scale`` its 1/(1-p) (0 at p = 1). Per step, with r = rd_keep*rd_scale (1 without
    dropout): c~_t = f*c_{t-1} + i*(r*g), c_t = d_c*c_{t-1} + (1-d_c)*c~_t and
    h_t = d_h*h_{t-1} + (1-d_h)*o_t*tanh(c~_t). ``norm``: recurrent batch norm, which only the
    reference loop computes. On the Triton path the masks are drawn inside the kernels, so the
    mask fields keep their defaults there and `_triton_lstm.triton_layer` takes the rates and
    the Philox key beside the record.
    """

    x: Tensor
    h0: Tensor
    c0: Tensor
    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None
    d_c: Weight = 0.0
    d_h: Weight = 0.0
    rd_keep: Tensor | None = None
    rd_scale: float = 1.0
    norm: StepBatchNorm | None = None

    def tensors(
        self,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """(x, h0, c0, w_ih, w_hh, b_ih, b_hh)."""
        return self.x, self.h0, self.c0, self.w_ih, self.w_hh, self.b_ih, self.b_hh

    def node_args(self) -> tuple[Any, ...]:
        """The fields an autograd node's ``apply`` takes, in order (everything but ``norm``)."""
        if self.norm is not None:
            raise ValueError("recurrent batch norm runs only in the reference loop")
        return (*self.tensors(), self.d_c, self.d_h, self.rd_keep, self.rd_scale)
