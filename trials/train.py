"""The training loop: one config in, epochs of metrics out, a checkpoint after every epoch.

Read it top to bottom: `train()` prepares a run (seeds, real data, model, optimizer), resumes
from the last checkpoint if there is one, then for each epoch trains and validates
(`trials.task_loops` knows how, per kind of task), checkpoints and reports; at the end it
evaluates the best checkpoint on the test split.

It reports through a callback so the same code serves ``zoneout-study train`` and the Ray
trainable; it imports nothing from the study service.

With ``patience`` set, a run stops early once its validation metric has flattened (see
`epochs_without_improvement`); ``epochs`` stays the cap.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trials.checkpoints import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    CONFIG_KEY,
    FINGERPRINT_KEY,
    config_fingerprint,
    read_checkpoint,
    read_weights,
    restoring,
)
from trials.config import TrialConfig
from trials.reproducibility import (
    deterministic_algorithms,
    matmul_precision,
    rng_state,
    seed_noise,
    set_rng_state,
)
from trials.task_loops import Diverged, TaskLoop, task_loop
from trials.tasks import TaskData, load_task

__all__ = [
    "CHECKPOINT_FILE",
    "EpochResult",
    "ReportCallback",
    "TrainResult",
    "epochs_without_improvement",
    "train",
]

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
    # True only on the epoch whose counter reached ``patience``: the last one the run trains.
    # Defaulted so that the history of a checkpoint written before the field existed loads.
    converged: bool = False
    # The recurrent layer's path in this process (trials.zoneout.LayerPath values): the training
    # pass's, then " (eval <path>)" when evaluation ran another; and why it fell back from the
    # preferred path, if it did. None in a checkpoint's history written before the fields.
    layer_path: str | None = None
    layer_fallback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    # "completed": trained all ``epochs``; "converged": stopped early, patience ran out;
    # "diverged": the loss blew up (``reason`` says where).
    status: Literal["completed", "converged", "diverged"]
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


def _build_optimizer(model: nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    params, lr, decay = model.parameters(), config.learning_rate, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if config.optimizer == "rmsprop":
        # torch's defaults otherwise (alpha 0.99, eps 1e-8): the paper does not give its own.
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=decay)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay)


def scheduled_learning_rate(config: TrialConfig, epoch: int) -> float | None:
    """The rate of (1-based) ``epoch`` under a step/exponential schedule; None for the others.

    ``learning_rate * lr_decay ** floor(max(0, epoch - lr_constant_epochs) / every)``, with
    ``every`` = ``lr_decay_every`` for "step" and 1 for "exponential". A pure function of the
    epoch, so a resumed run needs no scheduler state.
    """
    if config.lr_schedule not in ("step", "exponential"):
        return None
    every = config.lr_decay_every if config.lr_schedule == "step" else 1
    decays = max(0, epoch - config.lr_constant_epochs) // every
    return config.learning_rate * config.lr_decay**decays


def epochs_without_improvement(values: Sequence[float], min_delta: float) -> int:
    """How many epochs since the last significant improvement of a metric that is minimized.

    ``values`` are the validation metrics of epochs 1, 2, ... The reference is the value at the
    last significant improvement (the first epoch's value to begin with). An epoch improves
    significantly when its value is below the reference by at least ``min_delta`` (with
    ``min_delta`` = 0: strictly below; an equal value is no improvement); it then becomes the
    reference and the count restarts from 0, else the count goes up by one. Early stopping ends a
    run on the epoch whose count reaches ``patience`` (Keras's EarlyStopping, min mode).

    The reference is not the best value: drops smaller than ``min_delta`` do not move it, so a
    slow creep down still runs out of patience (while the best model still follows the true
    minimum). A pure function of the history, so a resumed run needs no extra state.
    """
    if not (math.isfinite(min_delta) and min_delta >= 0):
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta}")
    count = 0
    reference: float | None = None
    for value in values:
        if reference is None or (value < reference and reference - value >= min_delta):
            reference, count = value, 0
        else:
            count += 1
    return count


@dataclass
class _Run:
    """Everything one `train()` call works on."""

    config: TrialConfig
    loop: TaskLoop
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    directory: Path | None
    result: TrainResult
    device: torch.device
    start_epoch: int = 1
    best_in_memory: dict[str, torch.Tensor] | None = None
    # Read from the layer in the first epoch this process trains (`_LayerPaths`).
    layer_paths: _LayerPaths | None = None


@dataclass
class _LayerPaths:
    """Which path the recurrent layer's passes ran: training, then evaluation."""

    training: str | None = None
    evaluation: str | None = None
    fallbacks: list[str] = field(default_factory=list)

    def read(self, model: nn.Module, training: bool) -> None:
        layer = getattr(model, "recurrent", None)
        path = getattr(layer, "last_path", None)
        if path is None:
            return
        if training:
            self.training = str(path)  # a LayerPath prints as its value
        else:
            self.evaluation = str(path)
        fallback = getattr(layer, "last_fallback", None)
        if fallback and fallback not in self.fallbacks:
            self.fallbacks.append(str(fallback))

    @property
    def path(self) -> str | None:
        """'cpu_extension', or 'cpu_extension (eval nn_lstm)' when evaluation ran another."""
        if self.training is None:
            return self.evaluation
        if self.evaluation is None or self.evaluation == self.training:
            return self.training
        return f"{self.training} (eval {self.evaluation})"

    @property
    def fallback(self) -> str | None:
        return "; ".join(self.fallbacks) or None


def _prepare(config: TrialConfig, checkpoint_dir: Path | str | None, data: TaskData | None) -> _Run:
    """Threads, device, seeds, real data, model and optimizer of a fresh run."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    seed_noise(config.seed)
    data = data if data is not None else load_task(config)
    loop = task_loop(data, config, device)
    optimizer = _build_optimizer(loop.model, config)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay, patience=config.lr_decay_patience
        )
        if config.lr_schedule == "plateau"
        else None
    )
    result = TrainResult(status="completed", metric=data.metric, data_source=data.source)
    return _Run(config, loop, optimizer, plateau, directory, result, device)


def _resume(run: _Run) -> None:
    """Continue from the directory's checkpoint, if any, exactly where it stopped; a checkpoint
    that cannot resume this run (unreadable, made with another config, weights of other
    shapes) is a CheckpointError naming the file (trials.checkpoints)."""
    path = run.directory / CHECKPOINT_FILE if run.directory is not None else None
    if path is None or not (path.exists() or path.is_symlink()):
        return
    saved = read_checkpoint(path, run.config)  # on the CPU: see read_checkpoint
    with restoring(path):
        run.loop.model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        if run.plateau is not None and saved["scheduler"] is not None:
            run.plateau.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], run.device)  # only the trial's own device's CUDA state
        run.result.epochs = [EpochResult(**epoch) for epoch in saved["history"]]
        run.result.best_epoch = saved["best_epoch"]
        run.result.best_valid_metric = saved["best_valid_metric"]
        run.start_epoch = int(saved["epoch"]) + 1
    best = path.with_name(BEST_MODEL_FILE)
    if best.exists() or best.is_symlink():
        # Tried now rather than after the remaining epochs, which would be trained in vain;
        # then the checkpoint's own weights again.
        with restoring(best):
            run.loop.model.load_state_dict(read_weights(best))
        run.loop.model.load_state_dict(saved["model"])
    if run.result.epochs and run.result.epochs[-1].converged:
        run.result.status = "converged"  # it stopped on its own: train() trains no more


def _check_loss(loss: float, classes: int, what: str) -> None:
    uniform = math.log(max(classes, 2))
    if not math.isfinite(loss):
        raise Diverged(f"{what} loss became {loss:.4g}")
    if loss > DIVERGED_LOSS_FACTOR * uniform:
        raise Diverged(
            f"{what} loss {loss:.4g} nats is over {DIVERGED_LOSS_FACTOR:g} times "
            f"that of a uniform guess ({uniform:.3g})"
        )


def _train_and_validate(run: _Run, epoch: int) -> tuple[EpochResult, bool] | None:
    """One epoch of training and validation: its result and whether it is the best so far, or
    None when it diverged (``run.result`` then says why and keeps the last good epoch)."""
    config, loop, result = run.config, run.loop, run.result
    rate = scheduled_learning_rate(config, epoch)
    if rate is not None:
        for group in run.optimizer.param_groups:
            group["lr"] = rate
    learning_rate = run.optimizer.param_groups[0]["lr"]
    started = time.perf_counter()
    first = run.layer_paths is None
    paths = run.layer_paths = run.layer_paths or _LayerPaths()
    try:
        train_loss, tokens = loop.train_epoch(run.optimizer, config, epoch)
        train_seconds = time.perf_counter() - started
        if first:
            paths.read(loop.model, training=True)
        _check_loss(train_loss, loop.classes, "training")
        valid_loss, valid_metric = loop.evaluate("valid")
        if first:
            paths.read(loop.model, training=False)
        _check_loss(valid_loss, loop.classes, "validation")
    except Diverged as diverged:
        result.status = "diverged"
        result.reason = f"diverged in epoch {epoch}: {diverged}"
        return None
    improved = result.best_epoch is None or valid_metric < result.best_valid_metric
    if improved:
        result.best_epoch, result.best_valid_metric = epoch, valid_metric
    if run.plateau is not None:
        run.plateau.step(valid_loss)
    # From the whole history (a resumed run's epochs included), not a counter kept in memory.
    values = [item.valid_metric for item in result.epochs] + [valid_metric]
    converged = config.patience is not None and (
        epochs_without_improvement(values, config.min_delta) >= config.patience
    )
    if converged:
        result.status = "converged"
    epoch_result = EpochResult(
        epoch=epoch,
        train_loss=train_loss,
        valid_loss=valid_loss,
        valid_metric=valid_metric,
        metric=result.metric,
        best_valid_metric=result.best_valid_metric,
        learning_rate=learning_rate,
        tokens_per_second=tokens / train_seconds if train_seconds > 0 else math.nan,
        seconds=time.perf_counter() - started,
        converged=converged,
        layer_path=paths.path,
        layer_fallback=paths.fallback,
    )
    result.epochs.append(epoch_result)
    return epoch_result, improved


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    # Write then rename: a run killed mid-save leaves the previous checkpoint intact.
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def _checkpoint(run: _Run, epoch: int, improved: bool) -> None:
    """Keep the best weights (in memory without a directory) and everything needed to resume."""
    model = run.loop.model
    if run.directory is None:
        if improved:
            run.best_in_memory = {key: value.clone() for key, value in model.state_dict().items()}
        return
    if improved:
        _save_atomically({"model": model.state_dict()}, run.directory / BEST_MODEL_FILE)
    _save_atomically(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.plateau.state_dict() if run.plateau is not None else None,
            "rng": rng_state(run.device),
            "history": [item.as_dict() for item in run.result.epochs],
            "best_epoch": run.result.best_epoch,
            "best_valid_metric": run.result.best_valid_metric,
            CONFIG_KEY: run.config.to_dict(),
            # What a resume must share with this run's config (trials.checkpoints).
            FINGERPRINT_KEY: config_fingerprint(run.config),
        },
        run.directory / CHECKPOINT_FILE,
    )


def _test_best(run: _Run) -> None:
    """Test the best model, not the last one: a late epoch may have overfit."""
    if run.result.best_epoch is None:
        return
    model = run.loop.model
    best_path = run.directory / BEST_MODEL_FILE if run.directory is not None else None
    if best_path is not None and best_path.exists():
        device = next(model.parameters()).device
        with restoring(best_path):
            model.load_state_dict(read_weights(best_path, map_location=device))
    elif run.best_in_memory is not None:
        model.load_state_dict(run.best_in_memory)
    run.result.test_loss, run.result.test_metric = run.loop.evaluate("test")


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
    continues from it and produces the same numbers as an uninterrupted run. A checkpoint that
    cannot (unreadable, or made with a config whose fingerprint differs from ``config``'s: see
    trials.checkpoints) is refused with a CheckpointError before any epoch runs. A study's trials
    skip the test split (``evaluate_test=False``): selection must not look at it.

    With ``config.patience`` set the run stops after the epoch whose count of epochs without a
    significant improvement (`epochs_without_improvement`) reaches it: that epoch is reported
    with ``converged=True`` and the status is "converged". A checkpoint that already ended so
    trains no more epochs. The best model is the minimum of the epochs trained either way.

    ``config.matmul_precision`` holds for the whole call, on every layer path alike (TF32 off
    for cuBLAS and cuDNN under "highest", the default); the previous flags come back after it.
    """
    with matmul_precision(config.matmul_precision), deterministic_algorithms(config.deterministic):
        run = _prepare(config, checkpoint_dir, task_data)
        if resume:
            _resume(run)
        # A checkpoint whose run converged stays as it ended, even under a larger ``epochs``.
        last = run.start_epoch - 1 if run.result.status == "converged" else config.epochs
        for epoch in range(run.start_epoch, last + 1):
            outcome = _train_and_validate(run, epoch)
            if outcome is None:
                break  # diverged: the last good epoch's metrics and checkpoint stay
            epoch_result, improved = outcome
            _checkpoint(run, epoch, improved)  # saves the converged flag with the history
            if report is not None:
                report(epoch_result, run.directory)
            if epoch_result.converged:
                break
        if evaluate_test:
            _test_best(run)
    return run.result
