"""Reader and writer for the IDX format used by MNIST, Fashion-MNIST and KMNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the array payload in big-endian C order. Files may be gzipped;
gzip is detected from the content, not from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from pcgraph.atomic import atomic_writer
from pcgraph.data.errors import DataError

__all__ = ["read_idx", "write_idx"]

# IDX dtype code -> big-endian numpy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "delete it and re-download or regenerate it"


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) contents of ``path``.

    Args:
        path: A plain or gzipped file.

    Returns:
        The raw IDX bytes.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(
            f"{path}: the gzip stream ends early; the file is truncated — {_FIX}"
        ) from None
    except (OSError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip data ({err}) — {_FIX}") from None


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a numpy array.

    Args:
        path: The file to read.
        ndim: If given, the number of dimensions the file must declare (3 for images,
            1 for labels).

    Returns:
        An array with the file's shape, in native byte order (uint8 for MNIST-style files).

    Raises:
        DataError: The file is missing, not IDX, or its payload does not match its header;
            the message names the file and what is wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(
            f"{path}: only {len(data)} bytes, too short for an IDX header; "
            f"the file is truncated — {_FIX}"
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: bad magic number 0x{data[:4].hex()} (an IDX file starts with 00 00); "
            "this is not an IDX file — check the path, or delete it and re-download"
        )
    code, file_ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02x}" for c in _CODE_TO_DTYPE)
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02x} (expected one of {known}) — {_FIX}"
        )
    if file_ndim == 0:
        raise DataError(f"{path}: the IDX header declares 0 dimensions — {_FIX}")
    if ndim is not None and file_ndim != ndim:
        raise DataError(
            f"{path}: the IDX header declares {file_ndim} dimensions, expected {ndim}; "
            "the file is corrupt or is not the file it is named after"
        )
    header_len = 4 + 4 * file_ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: expected a {header_len}-byte header, found {len(data)} bytes; "
            f"the file is truncated — {_FIX}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=file_ndim, offset=4))
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{path}: expected {expected} bytes of data for shape {shape}, found {found}; "
            f"the file is truncated — {_FIX}"
        )
    if found > expected:
        raise DataError(
            f"{path}: expected {expected} bytes of data for shape {shape}, found {found} "
            f"({found - expected} extra); the header and payload disagree — {_FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _encode(array: np.ndarray | torch.Tensor) -> bytes:
    """Serialise an array as IDX bytes.

    Args:
        array: Any array whose dtype IDX can store (uint8, int8, int16, int32, float32,
            float64).

    Returns:
        Header plus big-endian payload.
    """
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    code = _KIND_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DataError(
            f"write_idx: dtype {arr.dtype} cannot be stored in IDX; "
            "convert to uint8, int8, int16, int32, float32 or float64 first"
        )
    if arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"write_idx: arrays need 1 to 255 dimensions, got {arr.ndim}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=_CODE_TO_DTYPE[code]).tobytes()


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray | torch.Tensor, *, compresslevel: int = 9
) -> Path:
    """Write ``array`` as an IDX file, atomically (temp file, then ``os.replace``).

    The output is gzipped when ``path`` ends with ``.gz``; the gzip header carries no name
    and mtime 0, so identical arrays give byte-identical files.

    Args:
        path: Destination file; its directory is created if missing.
        array: The array to store.
        compresslevel: gzip level (1-9), used only for ``.gz`` paths.

    Returns:
        The path written.
    """
    path = Path(path)
    payload = _encode(array)
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=compresslevel, mtime=0)
    with atomic_writer(path) as handle:
        handle.write(payload)
    return path
