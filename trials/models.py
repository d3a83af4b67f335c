"""The networks a trial trains: a character/word language model and a pixel-by-pixel classifier.

Both are: input (one-hot, embedding or pixels) -> stacked recurrent layers -> linear decoder.
The recurrent stack is a fused `ZoneoutLSTM`/`ZoneoutGRU`/`ZoneoutRNN` unless the config asks
for something those layers do not compute (recurrent dropout, recurrent batch normalization);
then a step-by-step LSTM that implements all three regularizers together is used, so a study
can compare them on equal footing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trials.config import TrialConfig
from trials.reproducibility import RandomStream, seeded
from trials.zoneout import ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN

__all__ = [
    "LanguageModel",
    "RecurrentState",
    "SequenceClassifier",
    "StepwiseLSTM",
    "build_model",
    "build_recurrent",
    "detach_state",
    "init_uniform",
]

RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def detach_state(state: RecurrentState) -> RecurrentState:
    """Cut the graph between truncated-BPTT windows while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(part.detach() for part in state)  # type: ignore[return-value]
    return state.detach()


class _RecurrentBatchNorm(nn.Module):
    """Batch normalization with separate statistics per time step (Cooijmans et al. 2017).

    Statistics past the longest step seen in training reuse the last step's, as the paper does
    for sequences longer than those used in training.
    """

    def __init__(self, features: int, max_steps: int, *, shift: bool, gamma: float = 0.1) -> None:
        super().__init__()
        self.steps = nn.ModuleList(
            nn.BatchNorm1d(features, affine=False, momentum=0.1) for _ in range(max_steps)
        )
        # gamma 0.1 keeps tanh/sigmoid out of saturation at the start (the paper's advice).
        self.weight = nn.Parameter(torch.full((features,), gamma))
        self.bias = nn.Parameter(torch.zeros(features)) if shift else None

    def forward(self, values: torch.Tensor, step: int) -> torch.Tensor:
        normalized = self.steps[min(step, len(self.steps) - 1)](values)
        out = normalized * self.weight
        return out + self.bias if self.bias is not None else out


class _StepwiseLSTMLayer(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        zoneout_cell: float,
        zoneout_hidden: float,
        recurrent_dropout: float,
        batch_norm_steps: int | None,
        shared_mask: bool = False,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.shared_mask = shared_mask
        self.zoneout_cell = zoneout_cell
        self.zoneout_hidden = zoneout_hidden
        self.recurrent_dropout = recurrent_dropout
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -bound, bound)
        if batch_norm_steps is not None:
            self.norm_input: _RecurrentBatchNorm | None = _RecurrentBatchNorm(
                4 * hidden_size, batch_norm_steps, shift=False
            )
            self.norm_hidden: _RecurrentBatchNorm | None = _RecurrentBatchNorm(
                4 * hidden_size, batch_norm_steps, shift=False
            )
            self.norm_cell: _RecurrentBatchNorm | None = _RecurrentBatchNorm(
                hidden_size, batch_norm_steps, shift=True
            )
        else:
            self.norm_input = self.norm_hidden = self.norm_cell = None

    def _keep_mask(self, rate: float, like: torch.Tensor) -> torch.Tensor | None:
        if not self.training or rate == 0.0:
            return None
        return torch.bernoulli(torch.full_like(like, rate))

    def forward(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        hidden, cell = state
        outputs = []
        input_projection = inputs @ self.weight_ih.t()
        for step in range(inputs.shape[0]):
            from_input = input_projection[step]
            from_hidden = hidden @ self.weight_hh.t()
            if self.norm_input is not None and self.norm_hidden is not None:
                from_input = self.norm_input(from_input, step)
                from_hidden = self.norm_hidden(from_hidden, step)
            gates = from_input + from_hidden + self.bias
            in_gate, forget_gate, cell_update, out_gate = gates.chunk(4, dim=1)
            cell_update = torch.tanh(cell_update)
            if self.recurrent_dropout > 0.0:
                # Semeniuta et al.: drop only the update, never the memory itself.
                cell_update = F.dropout(cell_update, self.recurrent_dropout, self.training)
            new_cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(in_gate) * cell_update
            shown_cell = self.norm_cell(new_cell, step) if self.norm_cell is not None else new_cell
            new_hidden = torch.sigmoid(out_gate) * torch.tanh(shown_cell)
            cell_keep = self._keep_mask(self.zoneout_cell, new_cell)
            # Shared (permuted MNIST in the paper): a unit keeps both its c and its h, or neither.
            hidden_keep = (
                cell_keep if self.shared_mask else self._keep_mask(self.zoneout_hidden, new_hidden)
            )
            cell = self._zoneout(cell, new_cell, self.zoneout_cell, cell_keep)
            hidden = self._zoneout(hidden, new_hidden, self.zoneout_hidden, hidden_keep)
            outputs.append(hidden)
        return torch.stack(outputs), (hidden, cell)

    def _zoneout(
        self, old: torch.Tensor, new: torch.Tensor, rate: float, keep: torch.Tensor | None
    ) -> torch.Tensor:
        if rate == 0.0:
            return new
        if keep is None:  # evaluation: the expectation of the stochastic update
            return rate * old + (1.0 - rate) * new
        return keep * old + (1.0 - keep) * new


class StepwiseLSTM(nn.Module):
    """A multi-layer LSTM stepped in Python: zoneout, recurrent dropout and recurrent batch norm.

    Slower than the fused `ZoneoutLSTM`; used only when a config asks for recurrent dropout or
    recurrent batch normalization. Same ``forward(input, hx) -> (output, (h_n, c_n))`` contract
    (time-major).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        dropout: float = 0.0,
        zoneout_cell: float = 0.0,
        zoneout_hidden: float = 0.0,
        recurrent_dropout: float = 0.0,
        batch_norm_steps: int | None = None,
        zoneout_shared_mask: bool = False,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.layers = nn.ModuleList(
            _StepwiseLSTMLayer(
                input_size if index == 0 else hidden_size,
                hidden_size,
                zoneout_cell=zoneout_cell,
                zoneout_hidden=zoneout_hidden,
                recurrent_dropout=recurrent_dropout,
                batch_norm_steps=batch_norm_steps,
                shared_mask=zoneout_shared_mask,
            )
            for index in range(num_layers)
        )

    def forward(
        self, inputs: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch = inputs.shape[1]
        if hx is None:
            zeros = inputs.new_zeros(self.num_layers, batch, self.hidden_size)
            hx = (zeros, zeros)
        hiddens, cells = [], []
        layer_input = inputs
        for index, layer in enumerate(self.layers):
            layer_input, (hidden, cell) = layer(layer_input, (hx[0][index], hx[1][index]))
            hiddens.append(hidden)
            cells.append(cell)
            if index < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        return layer_input, (torch.stack(hiddens), torch.stack(cells))


def build_recurrent(config: TrialConfig, input_size: int, max_steps: int) -> nn.Module:
    """The recurrent stack a config asks for (time-major input)."""
    needs_stepwise = (
        config.recurrent_dropout > 0 or config.recurrent_batch_norm or config.zoneout_shared_mask
    )
    if config.cell == "lstm" and needs_stepwise:
        return StepwiseLSTM(
            input_size,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout,
            zoneout_cell=config.zoneout_cell,
            zoneout_hidden=config.zoneout_hidden,
            recurrent_dropout=config.recurrent_dropout,
            batch_norm_steps=max_steps if config.recurrent_batch_norm else None,
            zoneout_shared_mask=config.zoneout_shared_mask,
        )
    if config.cell == "lstm":
        return ZoneoutLSTM(
            input_size,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            zoneout_cell=config.zoneout_cell,
            zoneout_hidden=config.zoneout_hidden,
        )
    layer_class = ZoneoutGRU if config.cell == "gru" else ZoneoutRNN
    return layer_class(
        input_size,
        config.hidden_size,
        config.num_layers,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        zoneout_hidden=config.zoneout_hidden,
    )


class LanguageModel(nn.Module):
    """Next-symbol prediction over a token stream (characters or words)."""

    def __init__(self, vocab_size: int, config: TrialConfig) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        # Each part draws its initial weights from its own stream of the seed, so a part that
        # changes (or a regularizer that adds parameters) leaves the others' weights alone.
        if config.embedding_size is None:
            # The paper feeds characters one-hot: no embedding parameters to regularize.
            self.embedding: nn.Embedding | None = None
            input_size = vocab_size
        else:
            with seeded(config.seed, RandomStream.EMBEDDING):
                self.embedding = nn.Embedding(vocab_size, config.embedding_size)
            input_size = config.embedding_size
        self.dropout = nn.Dropout(config.dropout)
        with seeded(config.seed, RandomStream.RECURRENT):
            self.recurrent = build_recurrent(config, input_size, max_steps=config.bptt)
        with seeded(config.seed, RandomStream.DECODER):
            self.decoder = nn.Linear(config.hidden_size, vocab_size)
        if config.tie_weights:
            assert self.embedding is not None  # the config validator guarantees it
            self.decoder.weight = self.embedding.weight

    def forward(
        self, tokens: torch.Tensor, state: RecurrentState = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """tokens: (T, B) int64 -> logits (T, B, V) and the final recurrent state."""
        if self.embedding is None:
            inputs = F.one_hot(tokens, self.vocab_size).to(self.decoder.weight.dtype)
        else:
            inputs = self.embedding(tokens)
        outputs, state = self.recurrent(self.dropout(inputs), state)
        return self.decoder(self.dropout(outputs)), state


class SequenceClassifier(nn.Module):
    """Reads a sequence (pixels) step by step and classifies it from the last hidden output."""

    def __init__(self, input_size: int, num_classes: int, steps: int, config: TrialConfig) -> None:
        super().__init__()
        with seeded(config.seed, RandomStream.RECURRENT):
            self.recurrent = build_recurrent(config, input_size, max_steps=steps)
        self.dropout = nn.Dropout(config.dropout)
        with seeded(config.seed, RandomStream.DECODER):
            self.decoder = nn.Linear(config.hidden_size, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs: (T, B, F) -> logits (B, classes)."""
        outputs, _ = self.recurrent(inputs, None)
        return self.decoder(self.dropout(outputs[-1]))


def build_model(
    config: TrialConfig,
    *,
    vocab_size: int | None = None,
    input_size: int = 1,
    steps: int = 784,
    num_classes: int = 10,
) -> nn.Module:
    """The model for a config's task; language tasks need ``vocab_size``.

    Its initial weights depend on ``config.seed`` and the model's shape only, never on the
    state of torch's global generator.
    """
    model: nn.Module
    if config.is_language_task:
        if vocab_size is None:
            raise ValueError("language tasks need vocab_size")
        model = LanguageModel(vocab_size, config)
    else:
        model = SequenceClassifier(input_size, num_classes, steps, config)
    if config.init_range is not None:
        init_uniform(model, config.init_range, config.seed)
    return model


def init_uniform(model: nn.Module, bound: float, seed: int) -> None:
    """Every parameter U(-bound, bound), embedding, recurrent biases and decoder included, as
    Zaremba et al. initialise their PTB models."""
    with seeded(seed, RandomStream.INIT_RANGE), torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-bound, bound)
