"""The networks a trial trains: a character/word language model and a pixel-by-pixel classifier.

Both are: input (one-hot, embedding or pixels) -> stacked recurrent layers -> linear decoder.
The recurrent stack is a `ZoneoutLSTM`, `ZoneoutGRU` or `ZoneoutRNN`; every LSTM regularizer
runs in the same `ZoneoutLSTM`, so a study compares regularizers on equal footing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trials.config import TrialConfig
from trials.reproducibility import RandomStream, seeded
from trials.zoneout import LayerPath, ZoneoutGRU, ZoneoutLSTM, ZoneoutRNN

__all__ = [
    "LAYER_IMPLEMENTATIONS",
    "LanguageModel",
    "PrivateStreamDropout",
    "RecurrentState",
    "SequenceClassifier",
    "build_model",
    "build_recurrent",
    "detach_state",
    "init_uniform",
]

RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None

# TrialConfig.implementation -> the ZoneoutLSTM's own ``implementation`` and the path it must
# run (None: "auto" takes the best path the device runs and records any fallback's reason).
# The layer's "fused" means "the fastest available"; the config's "fused" is the path of that
# name, the pure-PyTorch node ("fused-pytorch").
LAYER_IMPLEMENTATIONS: dict[str, tuple[str, LayerPath | None]] = {
    "auto": ("auto", None),
    "nn_lstm": ("fused-pytorch", LayerPath.NN_LSTM),
    "cpu_extension": ("fused", LayerPath.CPU_EXTENSION),
    "fused": ("fused-pytorch", LayerPath.FUSED),
    "triton": ("triton", LayerPath.TRITON),
    "reference": ("reference", LayerPath.REFERENCE),
}


def detach_state(state: RecurrentState) -> RecurrentState:
    """Cut the graph between truncated-BPTT windows while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(part.detach() for part in state)  # type: ignore[return-value]
    return state.detach()


class PrivateStreamDropout(nn.Module):
    """Inverted dropout whose masks come from a private generator.

    A training call draws one number from torch's global generator whatever the rate (0
    included) and seeds its masks from it. So the rate changes no later global draw: two
    configs that differ only in ``dropout`` get the same zoneout masks. (``nn.Dropout`` draws
    only when its rate is above 0, which would shift every mask after it.)
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return values
        seed = int(torch.randint(0, 2**62, (1,)).item())
        if self.rate == 0.0:
            return values
        generator = torch.Generator(device=values.device).manual_seed(seed)
        keep = torch.empty_like(values).bernoulli_(1.0 - self.rate, generator=generator)
        return values * keep / (1.0 - self.rate)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def build_recurrent(config: TrialConfig, input_size: int, max_steps: int) -> nn.Module:
    """The recurrent stack a config asks for (time-major input).

    Every LSTM regularizer (zoneout, shared-mask zoneout, recurrent dropout, recurrent batch
    norm, and their combinations) runs in the one `ZoneoutLSTM`: the same parameters, the same
    initialisation and the same use of random numbers for every choice of rates, so a comparison
    of regularizers compares nothing else. ``max_steps`` sizes recurrent batch norm's per-step
    statistics (later steps reuse the last set). ``config.implementation`` picks the LSTM's
    layer path (`LAYER_IMPLEMENTATIONS`); GRU and RNN always run the reference loop.
    """
    # nn.LSTM's convention: dropout applies between layers, so a single layer takes none.
    between_layers = config.dropout if config.num_layers > 1 else 0.0
    if config.cell == "lstm":
        layer = ZoneoutLSTM(
            input_size,
            config.hidden_size,
            config.num_layers,
            dropout=between_layers,
            zoneout_cell=config.zoneout_cell,
            zoneout_hidden=config.zoneout_hidden,
            recurrent_dropout=config.recurrent_dropout,
            zoneout_shared_mask=config.zoneout_shared_mask,
            recurrent_batch_norm=config.recurrent_batch_norm,
            batch_norm_steps=max_steps,
        )
        # Explicit choices that cannot run the config were refused by TrialConfig; one that
        # cannot run on the device (no extension, no Triton) raises at the first pass.
        layer.implementation, layer.required_path = LAYER_IMPLEMENTATIONS[config.implementation]
        return layer
    layer_class = ZoneoutGRU if config.cell == "gru" else ZoneoutRNN
    return layer_class(
        input_size,
        config.hidden_size,
        config.num_layers,
        dropout=between_layers,
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
        self.dropout = PrivateStreamDropout(config.dropout)
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
        self.dropout = PrivateStreamDropout(config.dropout)
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
