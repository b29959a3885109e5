"""Multi-resolution prediction of a 3-D integer volume (Kompressor's shape, least squares instead of a net).

A level keeps its half-resolution lattice ``v[::2, ::2, ::2]`` (coded recursively as the next level) and
predicts the other seven sub-lattices in a fixed order, each from neighbours that are already known when
decoding: the coarse lattice and the sub-lattices of the earlier steps. Inside one step nothing depends on
anything else of the same step, so a whole step is a handful of numpy passes, encode and decode alike.

The predictor of a step is linear with integer coefficients fitted to the chunk itself (least squares on a
sample, quantised to ``2**-shift``) and stored in the chunk, or a fixed interpolation when the step is too
small to fit. Arithmetic is integer (int32 for 8/16-bit data, int64 for 32-bit), so encoder and decoder
compute the very same prediction on every machine; an overflow wraps the same way on both sides.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product

import numpy as np

STEPS = ((0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 1))
PAD = 2                 # neighbour offsets reach 2, i.e. one coarse cell on each side
MIN_FIT = 64            # fewer target voxels than this: fixed interpolation, no fit
SHIFT = {8: 13, 16: 10, 32: 12}


def work_dtype(bits: int):
    return np.int64 if bits > 16 else np.int32


def sub_shape(shape, q):
    return tuple((s - qi + 1) // 2 for s, qi in zip(shape, q))


def coarse_shape(shape):
    return sub_shape(shape, (0, 0, 0))


@lru_cache(maxsize=4096)     # pure in (shape, step, k); recomputing it was half the decode time of a 64^3 chunk
def neighbours(shape, step: int, min_features: int):
    """Offsets of the known neighbours a step predicts from: whole distance shells, nearest first,
    until at least ``min_features`` (an empty sub-lattice, e.g. across an axis of length 1, is no neighbour)."""
    p = STEPS[step]
    known = {(0, 0, 0), *STEPS[:step]}
    shells: dict[int, list] = {}
    for o in product(range(-2, 3), repeat=3):
        q = tuple((pi + oi) % 2 for pi, oi in zip(p, o))
        if o == (0, 0, 0) or q not in known or 0 in sub_shape(shape, q):
            continue
        shells.setdefault(sum(x * x for x in o), []).append(o)
    out: list = []
    for r2 in sorted(shells):
        if len(out) >= min_features:
            break
        out += sorted(shells[r2])
    return tuple(out)


def neighbour_view(padded: dict, p, o, tshape):
    """The neighbour at offset ``o`` of every voxel of sub-lattice ``p``: a slice of a padded sub-lattice."""
    q = tuple((pi + oi) % 2 for pi, oi in zip(p, o))
    d = tuple((pi + oi - qi) // 2 for pi, oi, qi in zip(p, o, q))
    a = padded[q]
    return a[tuple(slice(PAD + di, PAD + di + t) for di, t in zip(d, tshape))]


def pad_edges(a):
    """np.pad(a, PAD, mode="edge") for 3-D arrays without its per-call overhead (a fifth of a 64^3 decode)."""
    out = np.empty(tuple(n + 2 * PAD for n in a.shape), a.dtype)
    out[PAD:-PAD, PAD:-PAD, PAD:-PAD] = a
    for ax in range(3):
        lo = [slice(None)] * 3
        src = [slice(None)] * 3
        lo[ax], src[ax] = slice(0, PAD), slice(PAD, PAD + 1)
        out[tuple(lo)] = out[tuple(src)]
        lo[ax], src[ax] = slice(-PAD, None), slice(-PAD - 1, -PAD)
        out[tuple(lo)] = out[tuple(src)]
    return out


def fixed_coef(offsets, shift: int) -> np.ndarray:
    """Mean of the nearest shell: linear interpolation between the known neighbours."""
    near = nearest_shell(offsets)
    coef = np.zeros(len(offsets), np.int64)
    for i in near:
        coef[i] = (1 << shift) // len(near)
    return coef


def fit_coef(feats, target, shift: int, sample: int = 12000) -> np.ndarray:
    """Least squares on a regular sub-sample, then two IRLS rounds towards least absolute error
    (residual entropy follows the L1 error of a Laplacian far better than the L2 one). The coefficients
    sum to exactly 1 (fitted as y - f_K = sum c_i (f_i - f_K)): a flat region is predicted exactly
    whatever its level, which matters most for int16 data stored with a 32768 offset."""
    n = target.size
    step = max(1, int(np.ceil((n / sample) ** (1 / 3) - 1e-9)))     # at most ~sample voxels
    sl = (slice(None, None, step),) * 3
    last = feats[-1][sl].ravel().astype(np.float64)
    y = target[sl].ravel().astype(np.float64) - last
    X = np.stack([f[sl].ravel() for f in feats[:-1]], axis=1).astype(np.float64) - last[:, None]
    one = 1 << shift
    if X.shape[1] == 0:
        return np.array([one], np.int64)
    w = np.ones_like(y)
    ridge = 1e-6 * np.eye(X.shape[1]) * max(1.0, float(np.mean(X * X)))
    for _ in range(2):      # normal equations: K is small (lstsq was 90 % of the encode time)
        Xw = X * w[:, None]
        c = np.linalg.solve(Xw.T @ X + ridge, Xw.T @ y)
        w = 1.0 / np.maximum(np.abs(y - X @ c), 1.0)
    c = np.clip(np.rint(c * one), -(1 << 16), 1 << 16).astype(np.int64)
    return np.append(c, one - c.sum())


def predict(feats, coef, shift: int, bits: int, wdt):
    acc = np.zeros(feats[0].shape, wdt)
    tmp = np.empty_like(acc)
    for f, c in zip(feats, coef):
        if c == 0:
            continue
        if c == 1 << shift:
            np.add(acc, f, out=acc, casting="unsafe")
            continue
        np.multiply(f, wdt(c), out=tmp, casting="unsafe")
        acc += tmp
    acc += wdt(1 << (shift - 1))
    acc >>= shift
    np.clip(acc, 0, (1 << bits) - 1, out=acc)
    return acc


def activity(feats, wdt):
    """Spread of the nearest known neighbours: the context that splits residuals by expected size."""
    hi = np.maximum.reduce(feats)
    lo = np.minimum.reduce(feats)
    return hi.astype(wdt) - lo


def nearest_shell(offsets):
    r2 = [sum(x * x for x in o) for o in offsets]
    return [i for i, r in enumerate(r2) if r == min(r2)]
