"""Error-bounded lossy float compression: SZ3 (pysz), ZFP (zfpy) and ``quant`` (uniform quantisation to
steps of just under twice the bound, then the lossless volume codec on the integers: Kompressor's idea
with the error budget spent up front) behind one framed chunk format.

Both promise an absolute error bound; neither is trusted: every chunk is decoded right after encoding and
its maximum error measured, and a chunk over the bound (or with a NaN/inf that did not survive) is refused
with CodecError instead of being stored. The bound and the measured error travel in the chunk header.
"""

from __future__ import annotations

import struct

import numpy as np

from . import volume
from .frame import CodecError, check_frame, frame
from .values import as_3d

MAGIC = b"RBLZ"
METHODS = ("sz3", "zfp", "quant")
DTYPES = ("float32", "float64")


def _sz3(a, bound):
    from pysz import sz, szConfig, szErrorBoundMode

    conf = szConfig(*a.shape)
    conf.errorBoundMode = szErrorBoundMode.ABS
    conf.absErrorBound = float(bound)
    comp, _ = sz.compress(np.ascontiguousarray(a), conf)
    return bytes(comp)


def _unsz3(payload, dtype, shape):
    from pysz import sz

    out, _ = sz.decompress(np.frombuffer(payload, np.uint8).copy(), dtype, shape)
    return np.asarray(out, dtype).reshape(shape)


def _zfp(a, bound):
    import zfpy

    return zfpy.compress_numpy(np.ascontiguousarray(a), tolerance=float(bound))


def _unzfp(payload, dtype, shape):
    import zfpy

    return np.asarray(zfpy.decompress_numpy(bytes(payload)), dtype).reshape(shape)


def _quant(a, bound):
    lo = float(a.min())
    step = 2 * (bound - 2 * float(np.spacing(np.abs(a).astype(a.dtype).max())))  # room for float rounding
    if step <= 0:
        raise CodecError(f"lossy codec: bound {bound:.3g} is below the data's own precision")
    q = np.rint((a.astype(np.float64) - lo) / step)
    if q.max(initial=0) >= 2**32:
        raise CodecError("lossy codec: range / bound needs more than 32 bits for quant; use sz3 or zfp")
    q = q.astype(np.uint16 if q.max(initial=0) < 2**16 else np.uint32)
    return struct.pack("<dd", lo, step) + volume.encode(q, kmin=2, level=9)


def _unquant(payload, dtype, shape):
    if len(payload) < 16:
        raise CodecError("lossy codec: quant payload truncated")
    lo, step = struct.unpack("<dd", payload[:16])
    q = volume.decode(payload[16:])
    return (q.astype(np.float64) * step + lo).astype(dtype).reshape(shape)


_ENC = {"sz3": _sz3, "zfp": _zfp, "quant": _quant}
_DEC = {"sz3": _unsz3, "zfp": _unzfp, "quant": _unquant}


def max_abs_error(a, b) -> float:
    """Largest |a-b| in float64; NaN/inf must come back identical or the error is infinite."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    fin = np.isfinite(a64)
    if not np.array_equal(fin, np.isfinite(b64)) or not np.array_equal(a64[~fin], b64[~fin], equal_nan=True):
        return float("inf")
    return float(np.max(np.abs(a64[fin] - b64[fin]), initial=0.0))


def encode(a: np.ndarray, method: str, bound: float) -> bytes:
    if method not in METHODS:
        raise CodecError(f"lossy codec: method {method!r} unknown (one of {', '.join(METHODS)})")
    if a.dtype.name not in DTYPES:
        raise CodecError(f"lossy codec: dtype {a.dtype} not supported (one of {', '.join(DTYPES)})")
    if not (bound > 0 and np.isfinite(bound)):
        raise CodecError(f"lossy codec: the absolute error bound must be a positive number, not {bound!r}")
    shape = a.shape
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))     # big-endian input: values, not bytes
    v = a.reshape(as_3d(shape))
    if not np.isfinite(v).all():
        raise CodecError("lossy codec: NaN or inf in the data; store it with the lossless codec")
    payload = _ENC[method](v, bound)
    back = _DEC[method](payload, a.dtype, v.shape)
    err = max_abs_error(v, back)
    if not err <= bound:
        raise CodecError(f"lossy codec: {method} exceeded the bound ({err:.6g} > {bound:.6g}); chunk not stored")
    body = struct.pack("<BBddB", METHODS.index(method), DTYPES.index(a.dtype.name), bound, err, len(shape)) \
        + struct.pack(f"<{len(shape)}Q", *shape) + payload
    return frame(body, MAGIC)


def header(buf):
    """(method, dtype, bound, measured max error, shape, payload) of a chunk, after the frame checks."""
    body = check_frame(buf, MAGIC)
    fixed = struct.calcsize("<BBddB")
    if len(body) < fixed:
        raise CodecError("lossy codec: chunk truncated")
    m, d, bound, err, ndim = struct.unpack("<BBddB", body[:fixed])
    if m >= len(METHODS) or d >= len(DTYPES) or len(body) < fixed + 8 * ndim:
        raise CodecError("lossy codec: bad header")
    shape = struct.unpack(f"<{ndim}Q", body[fixed:fixed + 8 * ndim])
    return METHODS[m], DTYPES[d], bound, err, shape, body[fixed + 8 * ndim:]


def decode(buf) -> np.ndarray:
    method, dtype, _, _, shape, payload = header(buf)
    try:
        out = _DEC[method](payload, np.dtype(dtype), as_3d(shape))
    except CodecError:
        raise
    except Exception as e:      # the libraries' own errors on a payload that passed the CRC (other version)
        raise CodecError(f"lossy codec: {method} could not decode the chunk: {e}") from e
    return out.reshape(shape)
