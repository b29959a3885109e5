"""Volume codecs as zarr v3 codecs: ``import ramburst.codecs`` registers them with zarr and numcodecs.

- ``ramburst.volume``: lossless, multi-resolution prediction fitted per chunk (Kompressor's shape), for
  uint8/uint16/int16 volumes (and int8/uint32/int32/float32 through the same bit-pattern path);
- ``ramburst.sz3`` / ``ramburst.zfp`` / ``ramburst.quant``: error-bounded lossy floats, the bound verified
  on every write (quant: uniform quantisation + the volume codec).
"""

from .frame import CodecError
from .zarr_codecs import QuantCodec, SZ3Codec, VolumeCodec, ZFPCodec, register

register()

__all__ = ["CodecError", "QuantCodec", "SZ3Codec", "VolumeCodec", "ZFPCodec", "codec_from_spec", "serializer_for"]


def codec_from_spec(spec: str):
    """``volume``, ``volume:19`` (zstd level), ``sz3:1e-3``, ``zfp:1e-3``, ``quant:1e-3`` (absolute bound)."""
    name, _, arg = spec.partition(":")
    try:
        if name == "volume":
            return VolumeCodec(level=int(arg)) if arg else VolumeCodec()
        if name in LOSSY:
            if not arg:
                raise ValueError(f"{name} needs an absolute error bound, e.g. {name}:1e-3")
            return LOSSY[name](abs=float(arg))
    except ValueError as e:
        raise CodecError(f"codec {spec!r}: {e}") from e
    raise CodecError(f"codec {spec!r}: unknown (volume[:level], sz3:BOUND, zfp:BOUND, quant:BOUND)")


LOSSY = {"sz3": SZ3Codec, "zfp": ZFPCodec, "quant": QuantCodec}


def serializer_for(spec: str, dtype):
    """The codec of ``spec`` after checking that it takes ``dtype`` (CodecError otherwise)."""
    import numpy as np

    from . import lossy, volume

    codec = codec_from_spec(spec)
    name = np.dtype(dtype).name
    allowed = volume.KINDS if isinstance(codec, VolumeCodec) else lossy.DTYPES
    if name not in allowed:
        raise CodecError(f"codec {spec!r} does not take {name} data (it takes {', '.join(allowed)})")
    return codec
