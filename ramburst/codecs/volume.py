"""The chunk format of the lossless volume codec: the fixed header, and the choice between two bodies.

Every chunk decodes alone: all it needs (shape, dtype, predictor coefficients, context thresholds, stream
lengths) is in its own header, and a CRC-32 over the whole body catches a flipped or truncated byte before
any of it is trusted.

Layout: ``b"RBVC" | u32 body length | u32 crc32(body) | body`` (``frame``); body = fixed header (version,
bits, value kind, ndim, mode, mirror flags, shape), then either the predictive body (``predictive``: predictor
table, base level, one zstd frame per (context, byte plane) of the zigzagged residuals) or, when smaller,
the byte-shuffled zstd of the values. Value mapping in ``values``, mirror folding in ``mirror``.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from .frame import CodecError, Reader, check_frame, frame
from .mirror import folded_shape, mirror_fold, mirror_unfold
from .predictive import BASE, NCTX, contexts, decode_predictive, predictive_body
from .values import KIND_NAMES, KINDS, as_3d, from_unsigned, to_unsigned, unzigzag, zigzag

__all__ = ["BASE", "KINDS", "KIND_NAMES", "MAGIC", "MODE_PREDICTIVE", "MODE_SHUFFLED", "NCTX", "VERSION",
           "CodecError", "as_3d", "check_frame", "contexts", "decode", "encode", "folded_shape", "from_unsigned",
           "mirror_fold", "mirror_unfold", "to_unsigned", "unzigzag", "zigzag"]

MAGIC = b"RBVC"
VERSION = 1


def _shuffled_body(u, bits, level):
    """The fallback: byte planes of the raw values, zstd (what blosc2 bytes-shuffle does)."""
    planes = u.astype(f"<u{bits // 8}").view(np.uint8).reshape(-1, bits // 8).T
    return zstandard.ZstdCompressor(level=level).compress(np.ascontiguousarray(planes).tobytes())


MODE_PREDICTIVE, MODE_SHUFFLED = 0, 1


def encode(a: np.ndarray, kmin: int = 2, level: int = 3) -> bytes:
    """Lossless. ``kmin``: neighbours per predictor (at least; 0 = choose 2 or 6 per step), ``level``: zstd
    level of the streams. The chunk is stored as plain byte-shuffled zstd instead when that is smaller."""
    if a.dtype.name not in KINDS:
        raise CodecError(f"volume codec: dtype {a.dtype} not supported (one of {', '.join(KINDS)})")
    shape = a.shape
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))     # big-endian input: values, not bytes
    u, bits = to_unsigned(a.reshape(as_3d(shape)))
    u, mirror = mirror_fold(u)
    ks = (2, 6) if kmin == 0 else (kmin,)
    body, mode = predictive_body(u, bits, ks, level), MODE_PREDICTIVE
    alt = _shuffled_body(u, bits, level)
    if len(alt) < len(body):
        body, mode = alt, MODE_SHUFFLED
    body = struct.pack("<BBBBBB", VERSION, bits, KINDS[a.dtype.name][1], len(shape), mode, mirror) \
        + struct.pack(f"<{len(shape)}Q", *shape) + body
    return frame(body, MAGIC)


def decode(buf) -> np.ndarray:
    r = Reader(check_frame(buf, MAGIC))
    version, bits, kind, ndim, mode, mirror = r.unpack("<BBBBBB")
    if version != VERSION or (bits, kind) not in KIND_NAMES or mode > 1 or mirror > 7:
        raise CodecError(f"volume codec: unknown version {version}, value kind {bits}/{kind} or mode {mode}")
    name = KIND_NAMES[(bits, kind)]
    shape = r.unpack(f"<{ndim}Q")
    shape3 = as_3d(shape)
    fshape = folded_shape(shape3, mirror)
    udt = np.dtype(f"<u{bits // 8}")
    if mode == MODE_SHUFFLED:
        try:
            want = int(np.prod(fshape)) * udt.itemsize
            raw = zstandard.ZstdDecompressor().decompress(r.take(len(r.buf) - r.pos), max_output_size=want)
        except zstandard.ZstdError as e:
            raise CodecError(f"volume codec: {e}") from e
        if len(raw) != want:
            raise CodecError("volume codec: stored volume length does not match its shape")
        v = np.frombuffer(raw, np.uint8).reshape(udt.itemsize, -1).T.copy().view(udt).reshape(fshape)
    else:
        v = decode_predictive(r, bits, fshape)
    v = mirror_unfold(v.astype(udt.newbyteorder("="), copy=False), mirror, shape3)
    return from_unsigned(np.ascontiguousarray(v).reshape(shape).copy(), name)
