"""Value mapping of the volume codec: every supported dtype as unsigned integers whose order follows the
values, any chunk shape as 3-D, and the zigzag that makes signed residuals small unsigned ones."""

from __future__ import annotations

import numpy as np

KINDS = {"uint8": (8, 0), "uint16": (16, 0), "int16": (16, 1), "float32": (32, 2), "int8": (8, 1),
         "uint32": (32, 0), "int32": (32, 1)}
KIND_NAMES = {v: k for k, v in KINDS.items()}


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
