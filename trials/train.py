"""The training loop: one config in, epochs of metrics out, a checkpoint after every epoch.

Read it top to bottom: `train()` seeds, loads the real data, builds the model and optimizer,
resumes from the last checkpoint if there is one, then for each epoch trains (truncated BPTT for
language models, shuffled minibatches for pixel sequences), validates in eval mode, checkpoints
and reports; at the end it evaluates the best checkpoint on the test split.

It reports through a callback so the same code serves ``zoneout-study train`` and the Ray
trainable; it imports nothing from the study service.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trials.config import ConfigError, TrialConfig
from trials.models import LanguageModel, SequenceClassifier, build_model, detach_state
from trials.tasks import MetricName, TaskData, load_task, metric_from_loss

__all__ = [
    "CHECKPOINT_FILE",
    "EpochResult",
    "ReportCallback",
    "TrainResult",
    "train",
]

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
# An epoch whose mean loss exceeds this many times the loss of a uniform guess (ln of the number
# of classes) has diverged even if every number is still finite: with a huge learning rate the
# LSTM saturates and the loss explodes to ~1e6 nats without ever becoming inf or NaN.
DIVERGED_LOSS_FACTOR = 100.0


@dataclass
class EpochResult:
    """What one epoch measured. Losses are mean cross-entropy in nats."""

    epoch: int
    train_loss: float
    valid_loss: float
    valid_metric: float
    metric: str
    best_valid_metric: float
    learning_rate: float
    tokens_per_second: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    status: Literal["completed", "diverged"]
    metric: str
    epochs: list[EpochResult] = field(default_factory=list)
    best_epoch: int | None = None
    best_valid_metric: float = math.nan
    test_loss: float = math.nan
    test_metric: float = math.nan
    reason: str | None = None
    data_source: str = ""


# Called after each epoch with the result and the directory holding that epoch's checkpoint.
ReportCallback = Callable[[EpochResult, Path | None], None]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu"
        )
    return torch.device(requested)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _batchify(tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``batch_size`` parallel streams: (steps, batch)."""
    steps = tokens.numel() // batch_size
    if steps < 2:
        # A config the data cannot serve: a user error (ConfigError is also a ValueError).
        raise ConfigError(
            f"{tokens.numel()} tokens are too few for batch size {batch_size}; "
            "lower the batch size or use more data"
        )
    return tokens[: steps * batch_size].view(batch_size, steps).t().contiguous()


def _windows(streams: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, streams.shape[0] - 1, bptt):
        length = min(bptt, streams.shape[0] - 1 - start)
        yield streams[start : start + length], streams[start + 1 : start + 1 + length]


def _build_optimizer(model: nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def _build_scheduler(optimizer: torch.optim.Optimizer, config: TrialConfig) -> Any:
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay
        )
    if config.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay, patience=config.lr_decay_patience
        )
    return None


class _Diverged(Exception):
    pass


def _step(
    loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrialConfig
) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise _Diverged(f"training loss became {value}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
    optimizer.step()
    return value


def _train_language_epoch(
    model: LanguageModel,
    streams: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrialConfig,
) -> tuple[float, int]:
    model.train()
    total_nats, total_tokens, state = 0.0, 0, None
    for batch_index, (inputs, targets) in enumerate(_windows(streams, config.bptt)):
        if config.max_batches_per_epoch and batch_index >= config.max_batches_per_epoch:
            break
        # The state flows on across windows (truncated BPTT) but gradients stop at the border.
        state = detach_state(state)
        logits, state = model(inputs, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        total_nats += _step(loss, model, optimizer, config) * targets.numel()
        total_tokens += targets.numel()
    return total_nats / max(total_tokens, 1), total_tokens


@torch.no_grad()
def _evaluate_language(model: LanguageModel, streams: torch.Tensor, bptt: int) -> float:
    model.eval()
    total_nats, total_tokens, state = 0.0, 0, None
    for inputs, targets in _windows(streams, bptt):
        logits, state = model(inputs, state)
        total_nats += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        ).item()
        total_tokens += targets.numel()
    return total_nats / max(total_tokens, 1)


def _train_sequence_epoch(
    model: SequenceClassifier,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrialConfig,
    epoch: int,
) -> tuple[float, int]:
    model.train()
    # The shuffle has its own generator, seeded by (seed, epoch): a resumed run sees the same order.
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(inputs.shape[0], generator=generator)
    total_nats, total_examples, total_steps = 0.0, 0, 0
    for batch_index, start in enumerate(range(0, len(order), config.batch_size)):
        if config.max_batches_per_epoch and batch_index >= config.max_batches_per_epoch:
            break
        index = order[start : start + config.batch_size]
        batch_inputs = inputs[index].transpose(0, 1)  # (T, B, F): time-major
        logits = model(batch_inputs)
        loss = F.cross_entropy(logits, labels[index])
        total_nats += _step(loss, model, optimizer, config) * len(index)
        total_examples += len(index)
        total_steps += len(index) * batch_inputs.shape[0]
    return total_nats / max(total_examples, 1), total_steps


@torch.no_grad()
def _evaluate_sequences(
    model: SequenceClassifier, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    model.eval()
    total_nats, wrong = 0.0, 0
    for start in range(0, inputs.shape[0], batch_size):
        logits = model(inputs[start : start + batch_size].transpose(0, 1))
        batch_labels = labels[start : start + batch_size]
        total_nats += F.cross_entropy(logits, batch_labels, reduction="sum").item()
        wrong += int((logits.argmax(dim=1) != batch_labels).sum().item())
    count = max(inputs.shape[0], 1)
    return total_nats / count, wrong / count


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    # Write then rename: a run killed mid-save leaves the previous checkpoint intact.
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def train(
    config: TrialConfig,
    report: ReportCallback | None = None,
    checkpoint_dir: Path | str | None = None,
    *,
    resume: bool = True,
    task_data: TaskData | None = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train one config; report after every validation; evaluate the best model on test.

    ``checkpoint_dir`` holds ``checkpoint.pt`` (everything needed to continue) and
    ``best_model.pt``; if it already holds a checkpoint and ``resume`` is true, training
    continues from it and produces the same numbers as an uninterrupted run. A study's trials
    skip the test split (``evaluate_test=False``): selection must not look at it.
    """
    # 1. Determinism and resources.
    _seed_everything(config.seed)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)

    # 2. Real data, on the device once.
    data = task_data if task_data is not None else load_task(config)
    metric: MetricName = data.metric
    if data.corpus is not None:
        corpus = data.corpus
        classes = corpus.vocab_size
        model = build_model(config, vocab_size=corpus.vocab_size).to(device)
        train_streams = _batchify(corpus.train, config.batch_size).to(device)
        valid_streams = _batchify(corpus.valid, config.eval_batch_size).to(device)
        test_streams = _batchify(corpus.test, config.eval_batch_size).to(device)
    else:
        sequences = data.sequences
        assert sequences is not None
        steps, features = sequences.train_x.shape[1], sequences.train_x.shape[2]
        classes = sequences.num_classes
        model = build_model(
            config, input_size=features, steps=steps, num_classes=sequences.num_classes
        ).to(device)
        train_x, train_y = sequences.train_x.to(device), sequences.train_y.to(device)
        valid_x, valid_y = sequences.valid_x.to(device), sequences.valid_y.to(device)
        test_x, test_y = sequences.test_x.to(device), sequences.test_y.to(device)

    def evaluate(split: Literal["valid", "test"]) -> tuple[float, float]:
        if data.corpus is not None:
            streams = valid_streams if split == "valid" else test_streams
            loss = _evaluate_language(model, streams, config.bptt)  # type: ignore[arg-type]
            return loss, metric_from_loss(metric, loss)
        inputs, labels = (valid_x, valid_y) if split == "valid" else (test_x, test_y)
        loss, error = _evaluate_sequences(model, inputs, labels, config.eval_batch_size)  # type: ignore[arg-type]
        return loss, metric_from_loss(metric, loss, error)

    # 3. Optimizer, schedule, and where we left off.
    optimizer = _build_optimizer(model, config)
    scheduler = _build_scheduler(optimizer, config)
    result = TrainResult(status="completed", metric=metric, data_source=data.source)
    start_epoch = 1
    checkpoint_path = directory / CHECKPOINT_FILE if directory is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        # Load on the CPU: the RNG states must stay CPU ByteTensors (torch.set_rng_state rejects
        # a CUDA tensor); the model and optimizer copy their tensors onto the device themselves.
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        result.epochs = [EpochResult(**epoch) for epoch in saved["history"]]
        result.best_epoch = saved["best_epoch"]
        result.best_valid_metric = saved["best_valid_metric"]
        start_epoch = saved["epoch"] + 1

    # 4. Epochs.
    best_in_memory: dict[str, torch.Tensor] | None = None
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        try:
            if data.corpus is not None:
                train_loss, tokens = _train_language_epoch(
                    model,  # type: ignore[arg-type]
                    train_streams,
                    optimizer,
                    config,
                )
            else:
                train_loss, tokens = _train_sequence_epoch(
                    model,  # type: ignore[arg-type]
                    train_x,
                    train_y,
                    optimizer,
                    config,
                    epoch,
                )
            train_seconds = time.perf_counter() - started
            loss_limit = DIVERGED_LOSS_FACTOR * math.log(max(classes, 2))
            if train_loss > loss_limit:
                raise _Diverged(
                    f"training loss {train_loss:.4g} nats is over {DIVERGED_LOSS_FACTOR:g} times "
                    f"that of a uniform guess ({math.log(max(classes, 2)):.3g})"
                )
            valid_loss, valid_metric = evaluate("valid")
            if not math.isfinite(valid_loss) or valid_loss > loss_limit:
                raise _Diverged(f"validation loss became {valid_loss:.4g}")
        except _Diverged as diverged:
            # Keep the last good epoch's metrics and checkpoint; the caller decides what to do.
            result.status = "diverged"
            result.reason = f"diverged in epoch {epoch}: {diverged}"
            break
        seconds = time.perf_counter() - started

        improved = result.best_epoch is None or valid_metric < result.best_valid_metric
        if improved:
            result.best_epoch, result.best_valid_metric = epoch, valid_metric
        learning_rate = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(valid_loss)
            else:
                scheduler.step()
        epoch_result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            valid_loss=valid_loss,
            valid_metric=valid_metric,
            metric=metric,
            best_valid_metric=result.best_valid_metric,
            learning_rate=learning_rate,
            tokens_per_second=tokens / train_seconds if train_seconds > 0 else math.nan,
            seconds=seconds,
        )
        result.epochs.append(epoch_result)

        if improved and directory is None:
            best_in_memory = {key: value.clone() for key, value in model.state_dict().items()}
        if directory is not None:
            if improved:
                _save_atomically({"model": model.state_dict()}, directory / BEST_MODEL_FILE)
            _save_atomically(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": _rng_state(),
                    "history": [item.as_dict() for item in result.epochs],
                    "best_epoch": result.best_epoch,
                    "best_valid_metric": result.best_valid_metric,
                    "config": config.to_dict(),
                },
                directory / CHECKPOINT_FILE,
            )
        if report is not None:
            report(epoch_result, directory)

    # 5. Test the best model (not the last one: a late epoch may have overfit).
    if evaluate_test and result.best_epoch is not None:
        best_path = directory / BEST_MODEL_FILE if directory is not None else None
        if best_path is not None and best_path.exists():
            saved_best = torch.load(best_path, map_location=device, weights_only=True)
            model.load_state_dict(saved_best["model"])
        elif best_in_memory is not None:
            model.load_state_dict(best_in_memory)
        result.test_loss, result.test_metric = evaluate("test")
    return result
