"""The chunk format of the lossless volume codec: header, per-step predictors, context-split residual streams.

Every chunk decodes alone: all it needs (shape, dtype, predictor coefficients, context thresholds, stream
lengths) is in its own header, and a CRC-32 over the whole body catches a flipped or truncated byte before
any of it is trusted.

Layout: ``b"RBVC" | u32 body length | u32 crc32(body) | body``; body = fixed header, predictor table,
base level (raw), then one zstd frame per (context, byte plane) of the zigzagged residuals.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import zstandard

from . import predict as P

MAGIC = b"RBVC"
VERSION = 1
BASE = 4                    # a level whose longest axis is <= BASE is stored raw
NCTX = 8                    # residual contexts (activity classes)
KINDS = {"uint8": (8, 0), "uint16": (16, 0), "int16": (16, 1), "float32": (32, 2), "int8": (8, 1),
         "uint32": (32, 0), "int32": (32, 1)}
KIND_NAMES = {v: k for k, v in KINDS.items()}


class CodecError(ValueError):
    """A chunk that is not ours, is truncated or corrupted, or data the codec cannot store as asked."""


# ---- value mapping: every supported dtype as unsigned integers whose order follows the values -------------

def to_unsigned(a: np.ndarray):
    bits, kind = KINDS[a.dtype.name]
    u = a.view(np.dtype(f"u{bits // 8}")).copy() if kind else a
    if kind == 1:
        u ^= np.array(1 << (bits - 1), u.dtype)
    elif kind == 2:                 # float: flip so that the bit patterns sort like the numbers
        neg = (u >> np.uint32(31)).astype(bool)
        u[neg] = ~u[neg]
        u[~neg] |= np.uint32(1 << 31)
    return u, bits


def from_unsigned(u: np.ndarray, name: str) -> np.ndarray:
    bits, kind = KINDS[name]
    if kind == 1:
        u ^= np.array(1 << (bits - 1), u.dtype)
    elif kind == 2:
        pos = (u >> np.uint32(31)).astype(bool)
        u[pos] &= np.uint32(0x7FFFFFFF)
        u[~pos] = ~u[~pos]
    return u.view(np.dtype(name))


def as_3d(shape):
    """Any chunk shape as 3-D: leading axes folded into the first, missing ones as length 1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 3:
        return (int(np.prod(shape[:-2])), shape[-2], shape[-1])
    return (1,) * (3 - len(shape)) + shape


def zigzag(r, bits, wdt):
    r &= wdt((1 << bits) - 1)
    r -= (r >> (bits - 1)) << bits          # to signed
    return (r << 1) ^ (r >> (8 * np.dtype(wdt).itemsize - 1))


def unzigzag(z):
    return (z >> 1) ^ -(z & 1)


# ---- encode ---------------------------------------------------------------------------------------------

def _pyramid(v):
    levels = []
    while max(v.shape) > BASE:
        levels.append(v)
        v = v[::2, ::2, ::2]
    return levels, np.ascontiguousarray(v)


def _encode_level(V, bits, ks, wdt, table, out):
    """Residuals of one level, step by step; per step the neighbourhood size (of ``ks``) whose residuals
    zstd-1 packs smallest, with least-squares coefficients unless the step is too small to fit."""
    shift = P.SHIFT[bits]
    subs = {q: np.ascontiguousarray(V[q[0]::2, q[1]::2, q[2]::2]) for q in ((0, 0, 0),) + P.STEPS}
    padded = {q: P.pad_edges(a) for q, a in subs.items() if a.size}
    probe = zstandard.ZstdCompressor(level=1)
    for step, p in enumerate(P.STEPS):
        target = subs[p]
        if not target.size:
            table.append((0, 0, None))
            continue
        best = None
        for k in ks if target.size >= P.MIN_FIT else ks[:1]:
            offs = P.neighbours(V.shape, step, k)
            feats = [P.neighbour_view(padded, p, o, target.shape) for o in offs]
            if target.size < P.MIN_FIT:
                coef, flag = P.fixed_coef(offs, shift), 1
            else:
                coef, flag = P.fit_coef(feats, target, shift), 2
            z = zigzag(target.astype(wdt) - P.predict(feats, coef, shift, bits, wdt), bits, wdt)
            cost = len(probe.compress(z.astype(f"<u{bits // 8}").tobytes())) if len(ks) > 1 else 0
            if best is None or cost < best[0]:
                best = (cost, (flag, k, coef), z, offs, feats)
        _, entry, z, offs, feats = best
        table.append(entry)
        out.append((z.ravel(), P.activity([feats[i] for i in P.nearest_shell(offs)], wdt).ravel()))


def _thresholds(acts):
    """Context boundaries: 0 (flat neighbourhood) alone, then quantiles of the non-zero activity of the
    chunk (stored, so the decoder splits the same way)."""
    sample = np.concatenate([a[:: max(1, a.size // 20000)] for a in acts]) if acts else np.zeros(0)
    sample = sample[sample > 0]
    qs = np.quantile(sample, np.linspace(0, 1, NCTX)[1:-1], method="lower") if sample.size else []
    return np.unique(np.concatenate([[1], np.asarray(qs, np.int64) + 1]).astype(np.int64))


def contexts(thr, act):
    """Context of each activity value: a table lookup (searchsorted is 5x slower) unless the table would be huge."""
    top = int(thr[-1]) if len(thr) else 0
    if top > 1 << 16:
        return np.searchsorted(thr, act, side="right").astype(np.uint8)
    lut = np.searchsorted(thr, np.arange(top + 1), side="right").astype(np.uint8)
    return lut[np.minimum(act, top)]


def mirror_fold(u):
    """Halve every axis along which the volume is exactly its own mirror image (symmetric templates and
    atlases): a bit per axis in the header, one comparison pass per axis."""
    mask = 0
    for ax in range(3):
        n = u.shape[ax]
        if n >= 2 and np.array_equal(u, np.flip(u, ax)):
            mask |= 1 << ax
            u = u[(slice(None),) * ax + (slice(0, (n + 1) // 2),)]
    return np.ascontiguousarray(u), mask


def mirror_unfold(u, mask, shape3):
    for ax in range(3):
        if mask & (1 << ax):
            n = shape3[ax]
            u = np.concatenate([u, np.flip(u[(slice(None),) * ax + (slice(0, n // 2),)], ax)], axis=ax)
    if u.shape != shape3:
        raise CodecError("volume codec: mirror flags do not match the chunk shape")
    return u


def folded_shape(shape3, mask):
    return tuple((n + 1) // 2 if mask & (1 << ax) else n for ax, n in enumerate(shape3))


def _predictive_body(u, bits, ks, level):
    wdt = P.work_dtype(bits)
    levels, base = _pyramid(u)
    table, out = [], []
    for V in reversed(levels):
        _encode_level(V, bits, ks, wdt, table, out)
    thr = _thresholds([act for _, act in out])
    nplanes = bits // 8
    z = np.concatenate([zz for zz, _ in out]) if out else np.zeros(0, wdt)
    ctx = np.concatenate([contexts(thr, act) for _, act in out]) if out else np.zeros(0, np.uint8)
    order = np.argsort(ctx, kind="stable")
    counts = np.bincount(ctx, minlength=len(thr) + 1)
    zs = z[order].astype(np.dtype(f"<u{nplanes}"))
    planes = zs.view(np.uint8).reshape(-1, nplanes).T if zs.size else np.zeros((nplanes, 0), np.uint8)
    cz = zstandard.ZstdCompressor(level=level)
    frames = []
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for c in range(len(counts)):
        for b in range(nplanes):
            seg = np.ascontiguousarray(planes[b, bounds[c]:bounds[c + 1]])
            frames.append(cz.compress(seg.tobytes()) if seg.size else b"")
    tab = b"".join(struct.pack("<BB", flag, k) + (coef.astype("<i4").tobytes() if flag == 2 else b"")
                   for flag, k, coef in table)
    return struct.pack("<B", len(thr)) + struct.pack(f"<{len(thr)}q", *thr.tolist()) \
        + struct.pack(f"<{len(counts)}Q", *counts.tolist()) + struct.pack("<I", len(tab)) + tab \
        + base.astype(f"<u{nplanes}").tobytes() + struct.pack(f"<{len(frames)}I", *map(len, frames)) \
        + b"".join(frames)


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
    body, mode = _predictive_body(u, bits, ks, level), MODE_PREDICTIVE
    alt = _shuffled_body(u, bits, level)
    if len(alt) < len(body):
        body, mode = alt, MODE_SHUFFLED
    body = struct.pack("<BBBBBB", VERSION, bits, KINDS[a.dtype.name][1], len(shape), mode, mirror) \
        + struct.pack(f"<{len(shape)}Q", *shape) + body
    return MAGIC + struct.pack("<II", len(body), zlib.crc32(body)) + body


# ---- decode ---------------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise CodecError("volume codec: chunk truncated (header says more bytes than there are)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def check_frame(buf, magic=MAGIC) -> memoryview:
    """The body of a framed chunk after magic, length and CRC checks (CodecError otherwise)."""
    buf = memoryview(bytes(buf)) if not isinstance(buf, (bytes, memoryview)) else memoryview(buf)
    if len(buf) < 12 or bytes(buf[:4]) != magic:
        raise CodecError(f"not a {magic.decode()} chunk (bad magic or shorter than its header)")
    n, crc = struct.unpack("<II", buf[4:12])
    if len(buf) != 12 + n:
        raise CodecError(f"{magic.decode()} chunk truncated or padded: {len(buf) - 12} body bytes, header says {n}")
    body = buf[12:]
    if zlib.crc32(body) != crc:
        raise CodecError(f"{magic.decode()} chunk corrupted: checksum mismatch")
    return body


class _Streams:
    """Residuals of every context, decompressed once, handed out step by step in encoding order."""

    def __init__(self, frames, counts, nplanes, wdt):
        dz = zstandard.ZstdDecompressor()
        self.parts, self.pos = [], [0] * len(counts)
        for c, n in enumerate(counts):
            z = np.zeros(n, np.dtype(f"<u{nplanes}"))
            zb = z.view(np.uint8).reshape(-1, nplanes)
            for b in range(nplanes):
                f = frames[c * nplanes + b]
                try:
                    raw = dz.decompress(f, max_output_size=n) if n else b""
                except zstandard.ZstdError as e:
                    raise CodecError(f"volume codec: {e}") from e
                if len(raw) != n:
                    raise CodecError("volume codec: residual stream length does not match its header")
                zb[:, b] = np.frombuffer(raw, np.uint8)
            self.parts.append(z)
        self.wdt = wdt

    def take(self, ctx):
        counts = np.bincount(ctx, minlength=len(self.parts))
        if len(counts) > len(self.parts):
            raise CodecError("volume codec: context out of range")
        order = np.argsort(ctx, kind="stable")
        pieces = []
        for c, n in enumerate(counts):
            piece = self.parts[c][self.pos[c]:self.pos[c] + n]
            if piece.size != n:
                raise CodecError("volume codec: fewer residuals than voxels")
            self.pos[c] += n
            pieces.append(piece)
        z = np.empty(ctx.size, self.wdt)
        z[order] = np.concatenate(pieces)
        return z


def _decode_level(shape, coarse, bits, wdt, table, streams, thr):
    shift = P.SHIFT[bits]
    subs = {(0, 0, 0): coarse}
    padded = {(0, 0, 0): P.pad_edges(coarse)}
    for step, p in enumerate(P.STEPS):
        flag, kmin, coef = next(table)
        tshape = P.sub_shape(shape, p)
        if 0 in tshape:
            subs[p] = np.zeros(tshape, coarse.dtype)
            continue
        offs = P.neighbours(shape, step, kmin)
        feats = [P.neighbour_view(padded, p, o, tshape) for o in offs]
        if flag == 1:
            coef = P.fixed_coef(offs, shift)
        elif flag == 2:
            coef = np.frombuffer(coef(len(offs)), "<i4").astype(np.int64)
        else:
            raise CodecError("volume codec: predictor table does not match the chunk shape")
        pred = P.predict(feats, coef, shift, bits, wdt)
        act = P.activity([feats[i] for i in P.nearest_shell(offs)], wdt).ravel()
        z = streams.take(contexts(thr, act)).reshape(tshape)
        pred += unzigzag(z)
        pred &= wdt((1 << bits) - 1)
        subs[p] = pred.astype(coarse.dtype)
        padded[p] = P.pad_edges(subs[p])
    V = np.empty(shape, coarse.dtype)
    for q, a in subs.items():
        V[q[0]::2, q[1]::2, q[2]::2] = a
    return V


def _shapes(shape3):
    shapes = []
    while max(shape3) > BASE:
        shapes.append(shape3)
        shape3 = P.coarse_shape(shape3)
    return shapes, shape3


def decode(buf) -> np.ndarray:
    r = _Reader(check_frame(buf))
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
        v = _decode_predictive(r, bits, fshape)
    v = mirror_unfold(v.astype(udt.newbyteorder("="), copy=False), mirror, shape3)
    return from_unsigned(np.ascontiguousarray(v).reshape(shape).copy(), name)


def _decode_predictive(r, bits, fshape):
    (nthr,) = r.unpack("<B")
    thr = np.asarray(r.unpack(f"<{nthr}q"), np.int64)
    counts = r.unpack(f"<{nthr + 1}Q")
    (ntab,) = r.unpack("<I")
    tab = _Reader(r.take(ntab))
    nplanes, wdt = bits // 8, P.work_dtype(bits)
    shapes, bshape = _shapes(fshape)
    udt = np.dtype(f"<u{nplanes}")
    base = np.frombuffer(r.take(int(np.prod(bshape)) * nplanes), udt).reshape(bshape).astype(udt.newbyteorder("="))
    lens = r.unpack(f"<{len(counts) * nplanes}I")
    frames = [r.take(n) for n in lens]
    if r.pos != len(r.buf):
        raise CodecError("volume codec: trailing bytes after the last stream")
    streams = _Streams(frames, counts, nplanes, wdt)

    def table():
        while True:
            flag, k = tab.unpack("<BB")
            yield flag, k, (lambda n: tab.take(4 * n))

    tgen = table()
    v = base
    for s in reversed(shapes):
        v = _decode_level(s, v, bits, wdt, tgen, streams, thr)
    return v
