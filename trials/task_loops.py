"""One epoch of training and one evaluation, per kind of task.

Language models read their text as parallel streams in truncated-BPTT windows, the state carried
from window to window; evaluation reads the whole validation/test text as ``eval_streams``
continuous streams (1 by default, as language-modelling papers evaluate). Pixel-sequence
classifiers read shuffled minibatches. `task_loop()` picks the loop for a task's data, so the
training loop in `trials.train` never asks which kind of task it runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from trials.config import ConfigError, TrialConfig
from trials.data import SequenceDataset, TokenCorpus
from trials.errors import ZoneoutError
from trials.models import LanguageModel, SequenceClassifier, build_model, detach_state
from trials.reproducibility import data_order_generator
from trials.tasks import MetricName, TaskData, metric_from_loss

__all__ = [
    "Diverged",
    "LanguageLoop",
    "SequenceLoop",
    "Split",
    "TaskLoop",
    "batchify",
    "language_loss",
    "sequence_loss_and_error",
    "task_loop",
    "window_order",
]

Split = Literal["valid", "test"]


class Diverged(ZoneoutError):
    """The training loss stopped being a number (or exploded); the message says what it became.

    The one exception of a diverged run: ``train()`` turns it into the outcome status
    ``diverged``, and the Ray trainable raises it again on the worker as its subclass
    :class:`trials.trainable.TrialDiverged`, whose name the trial's stored error carries."""


class TaskLoop(Protocol):
    classes: int
    model: nn.Module

    def train_epoch(
        self, optimizer: torch.optim.Optimizer, config: TrialConfig, epoch: int
    ) -> tuple[float, int]:
        """Mean training loss (nats) and the number of tokens (time steps) trained on."""
        ...

    def evaluate(self, split: Split) -> tuple[float, float]:
        """Mean loss (nats) and the task metric on ``split``."""
        ...


def optimizer_step(
    objective: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, clip: float | None
) -> None:
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def _finite(loss: torch.Tensor) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise Diverged(f"training loss became {value}")
    return value


# ------------------------------------------------------------------------------ language models


def batchify(tokens: torch.Tensor, streams: int) -> torch.Tensor:
    """Cut a token stream into ``streams`` parallel streams: (steps, streams)."""
    steps = tokens.numel() // streams
    if steps < 2:
        # A config the data cannot serve: a user error (ConfigError is also a ValueError).
        raise ConfigError(
            f"{tokens.numel()} tokens are too few for batch size {streams}; "
            "lower the batch size or use more data"
        )
    return tokens[: steps * streams].view(streams, steps).t().contiguous()


def _window(streams: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = min(bptt, streams.shape[0] - 1 - start)
    return streams[start : start + length], streams[start + 1 : start + 1 + length]


def _window_starts(steps: int, bptt: int) -> range:
    return range(0, steps - 1, bptt)


def window_order(windows: int, cap: int | None, epoch: int) -> list[int]:
    """Which windows an epoch trains on, in order.

    Without a cap, all of them. With ``cap`` windows per epoch, epoch ``e`` continues where epoch
    ``e - 1`` stopped, wrapping round at the end of the text: successive epochs cover the whole
    training text instead of replaying its beginning.
    """
    if cap is None or cap >= windows:
        return list(range(windows))
    first = (epoch - 1) * cap % windows
    return [(first + offset) % windows for offset in range(cap)]


@torch.no_grad()
def language_loss(model: LanguageModel, streams: torch.Tensor, bptt: int) -> float:
    """Mean loss (nats per token) of ``streams`` read from a zero state, each stream continuous:
    the state is carried from one window to the next, so windows only bound the work per call."""
    model.eval()
    total_nats, total_tokens, state = 0.0, 0, None
    for start in _window_starts(streams.shape[0], bptt):
        inputs, targets = _window(streams, start, bptt)
        logits, state = model(inputs, state)
        total_nats += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        ).item()
        total_tokens += targets.numel()
    return total_nats / max(total_tokens, 1)


@dataclass
class LanguageLoop:
    """Truncated BPTT over a token corpus."""

    model: LanguageModel
    train_streams: torch.Tensor
    eval_streams: dict[Split, torch.Tensor]
    classes: int
    metric: MetricName
    bptt: int

    @classmethod
    def build(
        cls, corpus: TokenCorpus, metric: MetricName, config: TrialConfig, device: torch.device
    ) -> LanguageLoop:
        model = build_model(config, vocab_size=corpus.vocab_size).to(device)
        assert isinstance(model, LanguageModel)
        return cls(
            model=model,
            train_streams=batchify(corpus.train, config.batch_size).to(device),
            eval_streams={
                "valid": batchify(corpus.valid, config.eval_streams).to(device),
                "test": batchify(corpus.test, config.eval_streams).to(device),
            },
            classes=corpus.vocab_size,
            metric=metric,
            bptt=config.bptt,
        )

    def train_epoch(
        self, optimizer: torch.optim.Optimizer, config: TrialConfig, epoch: int
    ) -> tuple[float, int]:
        self.model.train()
        starts = _window_starts(self.train_streams.shape[0], self.bptt)
        order = window_order(len(starts), config.max_batches_per_epoch, epoch)
        total_nats, total_tokens, state, previous = 0.0, 0, None, None
        for index in order:
            if previous is not None and index != previous + 1:
                state = None  # wrapped round to the start of the text: a new pass starts cold
            previous = index
            inputs, targets = _window(self.train_streams, starts[index], self.bptt)
            # The state flows on across windows (truncated BPTT) but gradients stop at the border.
            logits, state = self.model(inputs, detach_state(state))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            value = _finite(loss)
            # Zaremba et al. sum the loss over the window's steps (mean over the batch): the
            # gradient, and the norm clip_norm bounds, are as many times larger as there are steps.
            steps = inputs.shape[0] if config.loss_reduction == "sum_over_steps" else 1
            optimizer_step(loss * steps, self.model, optimizer, config.clip_norm)
            total_nats += value * targets.numel()
            total_tokens += targets.numel()
        return total_nats / max(total_tokens, 1), total_tokens

    def evaluate(self, split: Split) -> tuple[float, float]:
        loss = language_loss(self.model, self.eval_streams[split], self.bptt)
        return loss, metric_from_loss(self.metric, loss)


# ------------------------------------------------------------------- pixel-sequence classifiers


@torch.no_grad()
def sequence_loss_and_error(
    model: SequenceClassifier, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean loss (nats per example) and error rate over ``inputs`` (N, T, F)."""
    model.eval()
    total_nats, wrong = 0.0, 0
    for start in range(0, inputs.shape[0], batch_size):
        logits = model(inputs[start : start + batch_size].transpose(0, 1))
        batch_labels = labels[start : start + batch_size]
        total_nats += F.cross_entropy(logits, batch_labels, reduction="sum").item()
        wrong += int((logits.argmax(dim=1) != batch_labels).sum().item())
    count = max(inputs.shape[0], 1)
    return total_nats / count, wrong / count


@dataclass
class SequenceLoop:
    """Shuffled minibatches of whole sequences, classified from the last step."""

    model: SequenceClassifier
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: int
    metric: MetricName
    eval_batch_size: int

    @classmethod
    def build(
        cls, data: SequenceDataset, metric: MetricName, config: TrialConfig, device: torch.device
    ) -> SequenceLoop:
        steps, features = data.train_x.shape[1], data.train_x.shape[2]
        model = build_model(
            config, input_size=features, steps=steps, num_classes=data.num_classes
        ).to(device)
        assert isinstance(model, SequenceClassifier)
        splits = {
            "train": (data.train_x.to(device), data.train_y.to(device)),
            "valid": (data.valid_x.to(device), data.valid_y.to(device)),
            "test": (data.test_x.to(device), data.test_y.to(device)),
        }
        return cls(model, splits, data.num_classes, metric, config.eval_batch_size)

    def _batches(self, config: TrialConfig, epoch: int) -> Iterator[torch.Tensor]:
        count = self.splits["train"][0].shape[0]
        # Each epoch a fresh order from its own stream: a capped epoch draws different examples,
        # and a resumed run, or a run with other rates, sees the same order.
        order = torch.randperm(count, generator=data_order_generator(config.seed, epoch))
        starts: Sequence[int] = range(0, count, config.batch_size)
        if config.max_batches_per_epoch is not None:
            starts = starts[: config.max_batches_per_epoch]
        for start in starts:
            yield order[start : start + config.batch_size]

    def train_epoch(
        self, optimizer: torch.optim.Optimizer, config: TrialConfig, epoch: int
    ) -> tuple[float, int]:
        self.model.train()
        inputs, labels = self.splits["train"]
        total_nats, total_examples, total_steps = 0.0, 0, 0
        for index in self._batches(config, epoch):
            index = index.to(inputs.device)
            batch_inputs = inputs[index].transpose(0, 1)  # (T, B, F): time-major
            loss = F.cross_entropy(self.model(batch_inputs), labels[index])
            value = _finite(loss)
            optimizer_step(loss, self.model, optimizer, config.clip_norm)
            total_nats += value * len(index)
            total_examples += len(index)
            total_steps += len(index) * batch_inputs.shape[0]
        return total_nats / max(total_examples, 1), total_steps

    def evaluate(self, split: Split) -> tuple[float, float]:
        inputs, labels = self.splits[split]
        loss, error = sequence_loss_and_error(self.model, inputs, labels, self.eval_batch_size)
        return loss, metric_from_loss(self.metric, loss, error)


def task_loop(data: TaskData, config: TrialConfig, device: torch.device) -> TaskLoop:
    """The model on ``device`` and the loop that trains and evaluates it on ``data``."""
    if data.corpus is not None:
        return LanguageLoop.build(data.corpus, data.metric, config, device)
    assert data.sequences is not None
    return SequenceLoop.build(data.sequences, data.metric, config, device)
