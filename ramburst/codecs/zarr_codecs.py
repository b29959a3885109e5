"""The codecs as zarr v3 array->bytes codecs, plus numcodecs classes with the same ids.

Encoding and decoding run in worker threads (as zarr's own zstd/blosc codecs do): numpy and zstd release
the GIL, so chunks overlap with each other and with the store's I/O.

Registered on ``import ramburst.codecs``; an array written with them names them in its zarr.json
(``"name": "ramburst.volume"`` ...), so plain zarr reads it back once this package is imported.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numcodecs
import numpy as np
from numcodecs.abc import Codec as NumcodecsCodec
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from . import lossy, volume


def _ndarray(chunk_array):
    return np.asarray(chunk_array.as_numpy_array())


class _ChunkCodec(ArrayBytesCodec):
    """What the volume and lossy codecs share: a dtype check, and encode/decode of one chunk in
    a worker thread with the decoded chunk checked against the array's shape and dtype. A
    subclass names its `dtypes`, `_encode(ndarray) -> bytes` and `_decode(bytes) -> ndarray`."""

    is_fixed_size = False
    dtypes: tuple = ()

    def validate(self, *, shape, dtype, chunk_grid):
        name = dtype.to_native_dtype().name
        if name not in self.dtypes:
            raise ValueError(f"{self.name}: dtype {name} not supported (one of {', '.join(self.dtypes)})")

    async def _encode_single(self, chunk_array, chunk_spec):
        data = await asyncio.to_thread(self._encode, _ndarray(chunk_array))
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        out = await asyncio.to_thread(_decode_checked, self._decode, chunk_bytes, chunk_spec)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(out)

    def compute_encoded_size(self, input_byte_length, chunk_spec):
        raise NotImplementedError


@dataclass(frozen=True)
class VolumeCodec(_ChunkCodec):
    """Lossless multi-resolution predictive codec for integer (and float32) volumes."""

    name = "ramburst.volume"
    dtypes = tuple(volume.KINDS)
    level: int = 3
    neighbours: int = 2            # 0: 2 or 6 per prediction step, whichever packs smaller (5x slower)

    @classmethod
    def from_dict(cls, data):
        _, conf = parse_named_configuration(data, cls.name, require_configuration=False)
        return cls(**(conf or {}))

    def to_dict(self):
        return {"name": self.name, "configuration": {"level": self.level, "neighbours": self.neighbours}}

    def _encode(self, arr):
        return volume.encode(arr, kmin=self.neighbours, level=self.level)

    def _decode(self, data):
        return volume.decode(data)


def _decode_checked(decode, chunk_bytes, chunk_spec):
    out = decode(chunk_bytes.to_bytes())
    want = chunk_spec.dtype.to_native_dtype()
    if out.shape != tuple(chunk_spec.shape) or out.dtype != want.newbyteorder("="):
        raise volume.CodecError(f"chunk holds {out.dtype}{list(out.shape)}, the array wants "
                                f"{want}{list(chunk_spec.shape)}")
    return out.astype(want, copy=False)    # decoded values are native; a big-endian array keeps its order


@dataclass(frozen=True)
class _LossyCodec(_ChunkCodec):
    """Error-bounded lossy float codec: ``abs`` is the absolute bound, verified on every write."""

    dtypes = tuple(lossy.DTYPES)
    method = ""
    abs: float = 1e-3

    def __post_init__(self):
        if not (isinstance(self.abs, (int, float)) and self.abs > 0 and np.isfinite(self.abs)):
            raise ValueError(f"{self.name}: abs must be a positive number, not {self.abs!r}")

    @classmethod
    def from_dict(cls, data):
        _, conf = parse_named_configuration(data, cls.name, require_configuration=True)
        return cls(**conf)

    def to_dict(self):
        return {"name": self.name, "configuration": {"abs": float(self.abs)}}

    def _encode(self, arr):
        return lossy.encode(arr, self.method, self.abs)

    def _decode(self, data):
        return lossy.decode(data)


@dataclass(frozen=True)
class SZ3Codec(_LossyCodec):
    name = "ramburst.sz3"
    method = "sz3"


@dataclass(frozen=True)
class ZFPCodec(_LossyCodec):
    name = "ramburst.zfp"
    method = "zfp"


@dataclass(frozen=True)
class QuantCodec(_LossyCodec):
    name = "ramburst.quant"
    method = "quant"


ZARR_CODECS = (VolumeCodec, SZ3Codec, ZFPCodec, QuantCodec)


# ---- numcodecs: the same ids for numcodecs users (get_codec({"id": "ramburst.volume", ...})) -------------

class NumcodecsVolume(NumcodecsCodec):
    """numcodecs view of the volume codec; ``encode`` needs an ndarray (the shape is part of the chunk)."""

    codec_id = "ramburst.volume"

    def __init__(self, level=3, neighbours=2):
        self.level, self.neighbours = level, neighbours

    def encode(self, buf):
        return volume.encode(np.asarray(buf), kmin=self.neighbours, level=self.level)

    def decode(self, buf, out=None):
        return _into(volume.decode(bytes(buf)), out)


class _NumcodecsLossy(NumcodecsCodec):
    method = ""

    def __init__(self, abs=1e-3):
        self.abs = abs

    def encode(self, buf):
        return lossy.encode(np.asarray(buf), self.method, self.abs)

    def decode(self, buf, out=None):
        return _into(lossy.decode(bytes(buf)), out)


class NumcodecsSZ3(_NumcodecsLossy):
    codec_id, method = "ramburst.sz3", "sz3"


class NumcodecsZFP(_NumcodecsLossy):
    codec_id, method = "ramburst.zfp", "zfp"


def _into(arr, out):
    if out is None:
        return arr
    np.copyto(np.asarray(out).reshape(arr.shape), arr)
    return out


class NumcodecsQuant(_NumcodecsLossy):
    codec_id, method = "ramburst.quant", "quant"


NUMCODECS = (NumcodecsVolume, NumcodecsSZ3, NumcodecsZFP, NumcodecsQuant)


def register():
    import zarr.registry

    for cls in ZARR_CODECS:
        zarr.registry.register_codec(cls.name, cls)
    for cls in NUMCODECS:
        numcodecs.register_codec(cls)
