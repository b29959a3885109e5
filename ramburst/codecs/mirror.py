"""Mirror folding of the volume codec: a volume that is its own mirror image along an axis is stored half."""

from __future__ import annotations

import numpy as np

from .frame import CodecError


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
