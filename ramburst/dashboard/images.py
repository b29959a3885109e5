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


class SlabCache:
    """Scrubbing reads neighbouring planes: each plane request reads whole chunks anyway, so
    keep the chunk-aligned slab it came from (all planes of those chunks along the axis) for a
    few seconds. Bounded in bytes (the node's RAM holds the cluster) and by age (arrays can
    change while someone looks)."""

    def __init__(self, max_bytes: int = 128 << 20, max_slab: int = 64 << 20, ttl: float = 10.0):
        import threading
        from collections import OrderedDict

        self.max_bytes, self.max_slab, self.ttl = max_bytes, max_slab, ttl
        self.slabs: OrderedDict = OrderedDict()  # key -> (loaded at, start, ndarray)
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.slabs.clear()

    def plane(self, key: str, array, axis: int, index: int) -> np.ndarray:
        import time

        plane(_Shape(array), axis, index)  # the range checks, before any read
        chunk = array.chunks[axis]
        start = index // chunk * chunk
        stop = min(array.shape[axis], start + chunk)
        kept = [d for d in range(array.ndim) if d != axis]
        slab_bytes = (stop - start) * array.dtype.itemsize
        for d in kept[-2:]:
            slab_bytes *= array.shape[d]
        if array.ndim == 2 or slab_bytes > self.max_slab:
            return plane(array, axis, index)
        now = time.monotonic()
        with self.lock:
            hit = self.slabs.get((key, axis, start))
            if hit and now - hit[0] < self.ttl:
                self.slabs.move_to_end((key, axis, start))
                return np.take(hit[2], index - start, axis=axis - sum(1 for d in kept[:-2] if d < axis))
        sel: list = [slice(None)] * array.ndim
        sel[axis] = slice(start, stop)
        for d in kept[:-2]:
            sel[d] = 0
        slab = np.asarray(array[tuple(sel)])
        with self.lock:
            self.slabs[(key, axis, start)] = (now, start, slab)
            while sum(s[2].nbytes for s in self.slabs.values()) > self.max_bytes:
                self.slabs.popitem(last=False)
        return np.take(slab, index - start, axis=axis - sum(1 for d in kept[:-2] if d < axis))


class _Shape:
    """Just enough of an array for `plane`'s checks without reading it."""

    def __init__(self, array):
        self.ndim, self.shape = array.ndim, array.shape

    def __getitem__(self, sel):
        return np.zeros((1, 1))
