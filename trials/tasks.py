"""From a config's task name to tensors ready for training, and the task's reported metric.

Each paper task is reported in its own unit: bits per character for character-level language
modelling, perplexity for words, error rate for pixel-by-pixel MNIST. Losses everywhere are
mean cross-entropy in nats; the metric is derived from them here, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    # The metric names below are read by commands that train nothing (a report, a spec's
    # check): torch and the data loaders are imported where data is loaded.
    import torch

    from trials.config import TrialConfig
    from trials.data import SequenceDataset, TokenCorpus

__all__ = [
    "METRIC_LABELS",
    "METRIC_UNITS",
    "MetricName",
    "TaskData",
    "bits_per_character",
    "load_task",
    "metric_for_task",
    "metric_from_loss",
    "perplexity",
]

MetricName = Literal["bpc", "perplexity", "error"]
# The one place the metrics are named: reports title them "validation <label>" and put the unit
# on the axis (dashboards reads both from here).
METRIC_UNITS: dict[str, str] = {
    "bpc": "bits per character",
    "perplexity": "perplexity",
    "error": "error rate",
}
METRIC_LABELS: dict[str, str] = {
    "bpc": "BPC",
    "perplexity": "perplexity",
    "error": "error",
}


def bits_per_character(nats_per_char: float) -> float:
    return nats_per_char / math.log(2.0)


def perplexity(nats_per_word: float) -> float:
    # exp overflows to inf past ~709 nats, which is what a diverged model's perplexity is.
    try:
        return math.exp(nats_per_word)
    except OverflowError:
        return math.inf


def metric_for_task(task: str) -> MetricName:
    if task in ("ptb-char", "text-char"):
        return "bpc"
    if task == "ptb-word":
        return "perplexity"
    return "error"


def metric_from_loss(metric: MetricName, nats: float, error_rate: float | None = None) -> float:
    """The task metric from the mean loss (language tasks) or the error rate (classification)."""
    if metric == "bpc":
        return bits_per_character(nats)
    if metric == "perplexity":
        return perplexity(nats)
    if error_rate is None:
        raise ValueError("the error metric needs the error rate")
    return error_rate


@dataclass(frozen=True)
class TaskData:
    """What the training loop needs: either a token corpus or a sequence dataset."""

    metric: MetricName
    corpus: TokenCorpus | None = None
    sequences: SequenceDataset | None = None

    @property
    def source(self) -> str:
        data = self.corpus if self.corpus is not None else self.sequences
        assert data is not None
        return data.source


def _limit(tokens: torch.Tensor, count: int | None) -> torch.Tensor:
    return tokens if count is None else tokens[:count]


def _check_streams(corpus: TokenCorpus, config: TrialConfig) -> None:
    """Each split fills the streams that read it (trials.task_loops.batchify: at least
    MIN_STREAM_TOKENS tokens a stream), else a ConfigError naming the field that asks for too
    many streams and the most the split allows. A split cut too short by train_tokens /
    valid_tokens / test_tokens is refused naming that field when the config is validated."""
    from trials.config import MIN_STREAM_TOKENS, SHOWN_PATH_CHARS, ConfigError, cut_text

    for split, tokens, field in (
        ("training", corpus.train, "batch_size"),
        ("validation", corpus.valid, "eval_streams"),
        ("test", corpus.test, "eval_streams"),
    ):
        streams, count = getattr(config, field), tokens.numel()
        if count < MIN_STREAM_TOKENS * streams:
            most = count // MIN_STREAM_TOKENS
            raise ConfigError(
                f"{field}: {streams:,} streams need at least {MIN_STREAM_TOKENS * streams:,} "
                f"{split} tokens ({MIN_STREAM_TOKENS} each: an input and its target), but the "
                f"{split} text of {cut_text(corpus.source, SHOWN_PATH_CHARS, middle=True)} has "
                f"{count:,}: use {field} " + (f"at most {most:,}" if most else "1 with more data")
            )


def load_task(config: TrialConfig) -> TaskData:
    """Load the config's real data (raises trials.data.DataNotFoundError when it is missing)."""
    from trials.data import (
        SequenceDataset,
        TokenCorpus,
        load_digits,
        load_mnist,
        load_ptb_chars,
        load_ptb_words,
        load_text_chars,
        permute_pixels,
    )

    metric = metric_for_task(config.task)
    if config.is_language_task:
        if config.task == "ptb-char":
            corpus = load_ptb_chars(config.data_dir)
        elif config.task == "ptb-word":
            corpus = load_ptb_words(config.data_dir)
        else:
            assert config.text_path is not None
            corpus = load_text_chars(config.text_path)
        corpus = TokenCorpus(
            train=_limit(corpus.train, config.train_tokens),
            valid=_limit(corpus.valid, config.valid_tokens),
            test=_limit(corpus.test, config.test_tokens),
            vocab=corpus.vocab,
            unit=corpus.unit,
            source=corpus.source,
        )
        # Before any model is built: the field to change, not "too few for batch size".
        _check_streams(corpus, config)
        return TaskData(metric=metric, corpus=corpus)

    # The splits follow data_seed, not the training seed: repeating a run with other seeds must
    # vary the training noise only, never which examples are held out.
    if config.task == "digits":
        dataset = load_digits(seed=config.data_seed)
    else:
        dataset = load_mnist(config.mnist_source, config.data_dir, seed=config.data_seed)
    if config.task == "pmnist":
        # One permutation for the whole run (train, valid and test alike), fixed by its own seed
        # so that trials with different training seeds still see the same task.
        dataset = SequenceDataset(
            train_x=permute_pixels(dataset.train_x, config.permutation_seed),
            train_y=dataset.train_y,
            valid_x=permute_pixels(dataset.valid_x, config.permutation_seed),
            valid_y=dataset.valid_y,
            test_x=permute_pixels(dataset.test_x, config.permutation_seed),
            test_y=dataset.test_y,
            num_classes=dataset.num_classes,
            source=f"{dataset.source}, pixels permuted (seed {config.permutation_seed})",
        )
    if config.train_examples is not None:
        dataset = SequenceDataset(
            train_x=dataset.train_x[: config.train_examples],
            train_y=dataset.train_y[: config.train_examples],
            valid_x=dataset.valid_x,
            valid_y=dataset.valid_y,
            test_x=dataset.test_x,
            test_y=dataset.test_y,
            num_classes=dataset.num_classes,
            source=dataset.source,
        )
    return TaskData(metric=metric, sequences=dataset)
