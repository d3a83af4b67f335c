"""Zoneout recurrent layers (Krueger et al. 2017), drop-ins for torch.nn.LSTM / GRU / RNN.

``ZoneoutLSTM(input_size, hidden_size, ..., zoneout_cell=0.5, zoneout_hidden=0.05)`` has the
same parameters, state_dict and ``forward(input, hx)`` as ``torch.nn.LSTM``; with both rates 0
it computes what ``nn.LSTM`` computes, bit for bit. The same layer also runs recurrent dropout
(Semeniuta et al., ``recurrent_dropout``), one zoneout mask shared by c and h
(``zoneout_shared_mask``) and recurrent batch norm (Cooijmans et al., ``recurrent_batch_norm``),
alone or combined, on the same parameters, initialisation and random streams.

`choose_path` decides which `LayerPath` a ZoneoutLSTM pass runs (nn.LSTM's kernel, the CPU
extension, the fused PyTorch node, the reference loop or Triton); ``layer.last_path`` records
the one the last pass ran, as a stable lowercase string value, and ``layer.last_fallback`` why
it was not the preferred one (the CPU extension unavailable; under ``implementation="auto"`` on
CUDA, Triton missing or failing `triton_selfcheck` on the device). ``layer.required_path`` makes
a pass that cannot run that path raise `LayerPathError` instead.
"""

from trials.zoneout._layers import ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN
from trials.zoneout._paths import LayerPath, LayerPathError, choose_path
from trials.zoneout._selfcheck import triton_selfcheck
from trials.zoneout._triton_lstm import clear_caches

__all__ = [
    "LayerPath",
    "LayerPathError",
    "ZoneoutGRU",
    "ZoneoutLSTM",
    "ZoneoutRNN",
    "choose_path",
    "clear_caches",
    "triton_selfcheck",
]
