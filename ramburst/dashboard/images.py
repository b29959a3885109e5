"""Arrays as the slice viewer needs them: a listing (shape, dtype, chunks) of a zarr group and
one 2-D plane as an 8-bit grayscale PNG, contrast set by percentiles of that plane.

The PNG is written by hand (zlib, filter 0, level 1): no image library, and a 512x512 plane
encodes in about a millisecond."""
from __future__ import annotations

import struct
import zlib

import numpy as np


def list_arrays(group) -> list[dict]:
    """Every array under `group` (any depth), sorted by path."""
    import zarr

    out = []
    for path, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            out.append({"path": path, "shape": list(node.shape), "dtype": str(node.dtype),
                        "chunks": list(node.chunks), "nbytes": int(node.nbytes)})
    return sorted(out, key=lambda a: a["path"])


def plane(array, axis: int, index: int) -> np.ndarray:
    """The 2-D plane at `index` along `axis` (index 0 on any further leading axes); reads only
    the chunks that plane touches."""
    ndim = array.ndim
    if ndim < 2:
        raise ValueError("a slice needs an array of 2 or more dimensions")
    if not 0 <= axis < ndim:
        raise ValueError(f"axis {axis} out of range for {ndim} dimensions")
    if not 0 <= index < array.shape[axis]:
        raise ValueError(f"index {index} out of range 0..{array.shape[axis] - 1}")
    if ndim == 2:
        return np.asarray(array[...])
    sel: list = [slice(None)] * ndim
    sel[axis] = index
    kept = [d for d in range(ndim) if d != axis]
    for d in kept[:-2]:
        sel[d] = 0
    return np.asarray(array[tuple(sel)])


def to_gray(data: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """8-bit gray: the `lo` and `hi` percentiles of the finite values map to 0 and 255."""
    values = data.astype("float64", copy=False)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, "uint8"), 0.0, 0.0
    vmin, vmax = (float(v) for v in np.percentile(finite, [lo, hi]))
    span = vmax - vmin if vmax > vmin else 1.0
    scaled = np.clip((values - vmin) / span, 0, 1)
    scaled[~np.isfinite(values)] = 0
    return np.round(scaled * 255).astype("uint8"), vmin, vmax


def png_gray(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a 2-D uint8 array."""
    height, width = pixels.shape
    raw = np.empty((height, width + 1), "uint8")
    raw[:, 0] = 0  # filter type None on each row
    raw[:, 1:] = pixels

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
            + chunk(b"IEND", b""))
