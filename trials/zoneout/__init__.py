"""Zoneout recurrent layers (Krueger et al. 2017), drop-ins for torch.nn.LSTM / GRU / RNN.

``ZoneoutLSTM(input_size, hidden_size, ..., zoneout_cell=0.5, zoneout_hidden=0.05)`` has the
same parameters, state_dict and ``forward(input, hx)`` as ``torch.nn.LSTM``; with both rates 0
it computes what ``nn.LSTM`` computes.
"""

from trials.zoneout._layers import ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN

__all__ = ["ZoneoutGRU", "ZoneoutLSTM", "ZoneoutRNN"]
