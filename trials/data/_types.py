"""Result types and the "data not found" error shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from trials.errors import UserError

__all__ = ["CorruptDataError", "DataNotFoundError", "SequenceDataset", "TokenCorpus"]


class DataNotFoundError(UserError, FileNotFoundError):
    """The data set is not available locally.

    The message says which files (or package) were looked for, where, and how to get them.
    Nothing is ever downloaded by :mod:`trials.data`.
    """


class CorruptDataError(UserError, ValueError):
    """A data file is there but unreadable (truncated, bad header, corrupt gzip): replace it."""


@dataclass(frozen=True, eq=False)
class TokenCorpus:
    """A language-modelling corpus: three 1-D int64 streams of token ids and the vocabulary.

    ``vocab[i]`` is the symbol of id ``i``. ``eq=False``: tensors have no scalar equality,
    so instances compare (and hash) by identity.
    """

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]
    unit: Literal["char", "word"]
    source: str

    def __post_init__(self) -> None:
        if self.unit not in ("char", "word"):
            raise ValueError(f"unit must be 'char' or 'word', not {self.unit!r}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab contains duplicate symbols")
        for name in ("train", "valid", "test"):
            ids = getattr(self, name)
            if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.ndim != 1:
                raise ValueError(f"{name} must be a 1-D int64 tensor")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.vocab)):
                raise ValueError(f"{name} holds ids outside [0, {len(self.vocab)})")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """A sequence-classification data set (pixel-by-pixel MNIST and friends).

    ``*_x`` are float32 ``(N, T, F)`` tensors with values in [0, 1]; ``*_y`` are int64 ``(N,)``
    labels in ``[0, num_classes)``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    source: str

    def __post_init__(self) -> None:
        shape: tuple[int, ...] | None = None
        for split in ("train", "valid", "test"):
            x: torch.Tensor = getattr(self, f"{split}_x")
            y: torch.Tensor = getattr(self, f"{split}_y")
            if x.dtype != torch.float32 or x.ndim != 3:
                raise ValueError(f"{split}_x must be a float32 (N, T, F) tensor")
            if y.dtype != torch.int64 or y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"{split}_y must be an int64 (N,) tensor matching {split}_x")
            if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
                raise ValueError(f"{split}_x values must lie in [0, 1]")
            if shape is None:
                shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != shape:
                raise ValueError("all splits must share the same (T, F)")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{split}_y holds labels outside [0, {self.num_classes})")
