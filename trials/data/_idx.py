"""Parser for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, one type byte, one byte with the
number of dimensions ``d``, ``d`` big-endian uint32 sizes, then the data in big-endian C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from trials.data._types import CorruptDataError

__all__ = ["read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw, detected from the content) into a native-endian array.

    Raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` naming the file
    and the defect for anything that is not a well-formed IDX file (bad magic, unknown type code,
    no dimensions, truncated or over-long data, corrupt gzip stream).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptDataError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise CorruptDataError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the header"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise CorruptDataError(
            f"{path}: not an IDX file: magic number starts with {raw[:2].hex()}, expected 0000"
        )
    type_code, ndim = raw[2], raw[3]
    dtype = _DTYPES.get(type_code)
    if dtype is None:
        raise CorruptDataError(
            f"{path}: not an IDX file: unknown data type code 0x{type_code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in _DTYPES)})"
        )
    if ndim == 0:
        raise CorruptDataError(f"{path}: IDX header declares 0 dimensions")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise CorruptDataError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_end
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise CorruptDataError(
            f"{path}: IDX data {kind}: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"found {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
