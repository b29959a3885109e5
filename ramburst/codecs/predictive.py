"""The predictive body of a volume chunk: a pyramid of levels, each predicted step by step from the coarser
one (predictors in ``predict``), the zigzagged residuals split by context (neighbourhood activity) and
stored as one zstd frame per (context, byte plane).

Body layout: context thresholds, per-context counts, predictor table, base level (raw), frame lengths,
frames.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from . import predict as P
from .frame import CodecError, Reader
from .values import unzigzag, zigzag

BASE = 4                    # a level whose longest axis is <= BASE is stored raw
NCTX = 8                    # residual contexts (activity classes)


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



def predictive_body(u, bits, ks, level):
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


# ---- decode ---------------------------------------------------------------------------------------------

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



def decode_predictive(r, bits, fshape):
    (nthr,) = r.unpack("<B")
    thr = np.asarray(r.unpack(f"<{nthr}q"), np.int64)
    counts = r.unpack(f"<{nthr + 1}Q")
    (ntab,) = r.unpack("<I")
    tab = Reader(r.take(ntab))
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
