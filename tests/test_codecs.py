"""Issue 16: the volume codecs (lossless predictive, SZ3/ZFP error-bounded) and their zarr v3 registration.

Fast tier: no daemons. Round trips are bit-exact on every dtype and awkward shape; the lossy bound is
checked by property tests; corrupted chunks must raise the codec's own error, never return wrong data.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ramburst.codecs as rc
from ramburst.codecs import CodecError, lossy, volume

INT_DTYPES = ["uint8", "uint16", "int16", "int8", "int32", "uint32", "float32"]
SHAPES = [(1,), (7,), (1, 1, 1), (2, 3, 4), (5, 7), (9, 1, 13), (17, 9, 33), (33, 40, 31), (3, 4, 5, 6)]


def volume_like(shape, dtype, seed=0):
    """Smooth field + noise + the dtype's extremes (so wrap-around and clipping are exercised)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    field = np.sin(sum(grids)) + 0.3 * rng.standard_normal(shape)
    if dt.kind == "f":
        a = (field * 1e3).astype(dt)
        a.flat[:: max(1, a.size // 5)] = [np.float32(-0.0), np.float32(3e38), np.float32(-1e-38)][a.size % 3]
        return a
    info = np.iinfo(dt)
    span = min(float(info.max) - float(info.min), 4000.0)
    a = np.clip(field * span / 4 + (float(info.min) + float(info.max)) / 2, info.min, info.max).astype(dt)
    a.flat[:: max(1, a.size // 7)] = info.max
    a.flat[1:: max(2, a.size // 5)] = info.min
    return a


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_item1_lossless_round_trip_bit_exact(dtype, shape):
    a = volume_like(shape, dtype)
    out = volume.decode(volume.encode(a))
    assert out.dtype == a.dtype and out.shape == a.shape
    assert out.tobytes() == a.tobytes()


@pytest.mark.parametrize("shape,mask", [((9, 10, 11), 0b111), ((10, 9, 1), 0b011), ((2, 2, 2), 0b111)], ids=str)
def test_item1_mirror_symmetric_volume_stores_half(shape, mask):
    a = volume_like(shape, "uint16", seed=5)
    for ax in range(3):
        a = np.maximum(a, np.flip(a, ax))
    buf = volume.encode(a)
    assert buf[12 + 5] == mask                        # header: the folded axes (not one of length 1)
    assert volume.decode(buf).tobytes() == a.tobytes()


def test_item1_noise_falls_back_to_shuffled_zstd():
    a = np.random.default_rng(0).integers(0, 2**16, (20, 20, 20), dtype=np.uint16)
    buf = volume.encode(a)
    assert buf[12 + 4] == volume.MODE_SHUFFLED
    assert volume.decode(buf).tobytes() == a.tobytes()


def test_item1_fitted_coefficients_sum_to_one_so_flat_regions_cost_nothing():
    """int16 is coded with a 32768 offset: coefficients off by 1/1024 in sum would bias every
    prediction by 32 units. They must sum to exactly 1 (2**shift) and predict a flat region exactly."""
    from ramburst.codecs import predict

    for seed in range(12):
        rng = np.random.default_rng(seed)
        base = 32768 + rng.normal(0, 300, (20, 20, 20)).cumsum(axis=2)
        feats = [(base + rng.normal(0, 40 * (i + 1), base.shape)).astype(np.int32) for i in range(6)]
        target = (base + rng.normal(0, 40, base.shape)).astype(np.int32)
        coef = predict.fit_coef(feats, target, predict.SHIFT[16])
        assert coef.sum() == 1 << predict.SHIFT[16], (seed, coef)
        flat = [np.full((4, 4, 4), 31000, np.int32)] * 6
        assert (predict.predict(flat, coef, predict.SHIFT[16], 16, np.int32) == 31000).all()


@pytest.mark.parametrize("dtype", [">i2", ">u2", ">f4"])
def test_item1_big_endian_input_keeps_its_values(dtype):
    a = volume_like((9, 10, 11), dtype[1:], seed=6).astype(dtype)
    out = volume.decode(volume.encode(a))
    assert np.array_equal(out, a) and out.dtype == a.dtype.newbyteorder("=")
    if dtype == ">f4":
        a = a / np.float32(1e30)       # finite values only
        for method in lossy.METHODS:
            assert np.max(np.abs(lossy.decode(lossy.encode(a, method, 1e-3)) - a)) <= 1e-3


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 3), (4, 7, 2), (9, 9, 9)], ids=str)
def test_item1_edge_padding_is_numpys(shape):
    from ramburst.codecs import predict

    a = np.random.default_rng(1).integers(0, 1000, shape).astype(np.uint16)
    assert np.array_equal(predict.pad_edges(a), np.pad(a, predict.PAD, mode="edge"))


@pytest.mark.parametrize("neighbours", [0, 2, 6, 12])
def test_item1_every_predictor_size_round_trips(neighbours):
    a = volume_like((20, 21, 22), "uint16", seed=3)
    assert volume.decode(volume.encode(a, kmin=neighbours)).tobytes() == a.tobytes()


def test_item1_predictive_codec_beats_plain_zstd_on_a_smooth_volume():
    import zstandard

    a = volume_like((48, 48, 48), "uint16", seed=1)
    ours = len(volume.encode(a))
    plain = len(zstandard.ZstdCompressor(level=19).compress(a.tobytes()))
    assert ours < plain


@pytest.mark.parametrize("method", lossy.METHODS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_item2_lossy_bound_never_exceeded(method, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=3)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1e3, 1e6]))
    rel = data.draw(st.sampled_from([1e-2, 1e-3, 1e-4]))
    dtype = data.draw(st.sampled_from(lossy.DTYPES))
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape).cumsum(axis=-1) * scale).astype(dtype)
    bound = rel * max(float(np.ptp(a)), scale)
    buf = lossy.encode(a, method, bound)
    out = lossy.decode(buf)
    assert out.shape == a.shape and out.dtype == a.dtype
    assert np.max(np.abs(out.astype(np.float64) - a.astype(np.float64))) <= bound
    assert lossy.header(buf)[2] == bound


def test_item2_lossy_refuses_to_store_over_the_bound(monkeypatch):
    a = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    real = lossy._DEC["sz3"]
    monkeypatch.setitem(lossy._DEC, "sz3", lambda *args: real(*args) + np.float32(0.01))
    with pytest.raises(CodecError, match="exceeded the bound"):
        lossy.encode(a, "sz3", 1e-3)


def test_item2_quant_refuses_a_bound_finer_than_32_bits_can_hold():
    a = np.array([0.0, 1e12], np.float64)
    with pytest.raises(CodecError, match="32 bits"):
        lossy.encode(a, "quant", 1e-3)


def test_item2_lossy_refuses_nan_and_integers():
    with pytest.raises(CodecError, match="NaN"):
        lossy.encode(np.array([1.0, np.nan], np.float32), "zfp", 1e-3)
    with pytest.raises(CodecError, match="dtype"):
        lossy.encode(np.arange(10, dtype=np.uint16), "zfp", 1e-3)
    with pytest.raises(CodecError, match="bound"):
        lossy.encode(np.arange(10, dtype=np.float32), "sz3", 0.0)


def _write_array(path, dtype, serializer, shape=(37, 41, 29), chunks=(16, 16, 16)):
    import zarr

    a = volume_like(shape, dtype, seed=7)
    z = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, serializer=serializer,
                          compressors=None, fill_value=0)
    z[...] = a
    return a


READER = textwrap.dedent("""
    import sys, numpy as np, zarr
    if sys.argv[2] == "import":
        import ramburst.codecs  # noqa: F401  (registers the codecs; nothing else)
    z = zarr.open_array(sys.argv[1], mode="r")
    np.save(sys.stdout.buffer, z[...])
""")


def _read_with_plain_zarr(path, do_import=True):
    import io

    p = subprocess.run([sys.executable, "-c", READER, str(path), "import" if do_import else "no"],
                       capture_output=True, timeout=120)
    if p.returncode:
        return None, p.stderr.decode()
    return np.load(io.BytesIO(p.stdout)), ""


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_item3_zarr_array_with_edge_chunks_reads_back_through_plain_zarr(tmp_path, dtype):
    a = _write_array(tmp_path / "a.zarr", dtype, rc.VolumeCodec())
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"][0]["name"] == "ramburst.volume"
    out, err = _read_with_plain_zarr(tmp_path / "a.zarr")
    assert err == "" and out.dtype == a.dtype and out.tobytes() == a.tobytes()


@pytest.mark.parametrize("dtype", [">u2", ">i2", ">f4"])
def test_item3_big_endian_zarr_array_reads_back(tmp_path, dtype):
    """An array made with a big-endian dtype (as from a big-endian .npy) reads back through the same
    handle: the decoded chunk is native, the handle's dtype big-endian, and the chunk check refused
    that difference of byte order alone. Reopened, zarr v3 calls it native: same values."""
    import zarr

    a = _write_array(tmp_path / "be.zarr", dtype, rc.VolumeCodec(), shape=(9, 10, 11), chunks=(4, 8, 8))
    z = zarr.create_array(store=str(tmp_path / "be2.zarr"), shape=a.shape, chunks=(4, 8, 8), dtype=dtype,
                          serializer=rc.VolumeCodec(), compressors=None)
    z[...] = a
    back = z[...]
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, a)
    out, err = _read_with_plain_zarr(tmp_path / "be.zarr")
    assert err == "" and np.array_equal(out, a)


def test_item3_plain_zarr_without_the_import_does_not_know_the_codec(tmp_path):
    _write_array(tmp_path / "a.zarr", "uint8", rc.VolumeCodec(), shape=(8, 8, 8), chunks=(8, 8, 8))
    out, err = _read_with_plain_zarr(tmp_path / "a.zarr", do_import=False)
    assert out is None and "ramburst.volume" in err


@pytest.mark.parametrize("codec", [rc.SZ3Codec(abs=1e-2), rc.ZFPCodec(abs=1e-3), rc.QuantCodec(abs=1e-3)],
                         ids=["sz3", "zfp", "quant"])
def test_item3_lossy_zarr_array_bound_in_metadata_and_held(tmp_path, codec):
    a = _write_array(tmp_path / "l.zarr", "float32", codec, shape=(30, 20, 17), chunks=(16, 16, 16))
    meta = json.loads((tmp_path / "l.zarr" / "zarr.json").read_text())
    assert meta["codecs"][0] == {"name": codec.name, "configuration": {"abs": codec.abs}}
    out, err = _read_with_plain_zarr(tmp_path / "l.zarr")
    assert err == ""
    assert np.max(np.abs(out.astype(np.float64) - a)) <= codec.abs


def test_item3_volume_codec_inside_shards(tmp_path):
    import zarr

    a = volume_like((40, 33, 20), "uint16", seed=8)
    z = zarr.create_array(store=str(tmp_path / "sh.zarr"), shape=a.shape, chunks=(8, 16, 16), shards=(16, 32, 32),
                          dtype=a.dtype, serializer=rc.VolumeCodec(), compressors=None)
    z[...] = a
    out, err = _read_with_plain_zarr(tmp_path / "sh.zarr")
    assert err == "" and out.tobytes() == a.tobytes()


def test_item3_tiny_chunks_round_trip(tmp_path):
    a = _write_array(tmp_path / "t.zarr", "int16", rc.VolumeCodec(level=1), shape=(5, 6, 7), chunks=(1, 2, 3))
    out, err = _read_with_plain_zarr(tmp_path / "t.zarr")
    assert err == "" and out.tobytes() == a.tobytes()


def test_item3_numcodecs_registration():
    import numcodecs

    a = volume_like((6, 7, 8), "uint16")
    c = numcodecs.get_codec({"id": "ramburst.volume", "level": 5})
    assert c.decode(c.encode(a)).tobytes() == a.tobytes()
    z = numcodecs.get_codec({"id": "ramburst.zfp", "abs": 1e-2})
    f = a.astype(np.float32)
    assert np.max(np.abs(z.decode(z.encode(f)) - f)) <= 1e-2


@pytest.mark.parametrize("kind", ["volume", "lossy"])
def test_item4_truncated_or_corrupted_chunks_raise_codec_error(kind):
    a = volume_like((12, 13, 14), "float32" if kind == "lossy" else "uint16", seed=2)
    buf = volume.encode(a) if kind == "volume" else lossy.encode(a, "sz3", 1.0)
    dec = volume.decode if kind == "volume" else lossy.decode
    bad = [buf[:-1], buf[: len(buf) // 2], buf[:11], b"", b"XXXX" + buf[4:], buf + b"\0"]
    for i in (13, len(buf) // 2, len(buf) - 1):
        flipped = bytearray(buf)
        flipped[i] ^= 0x10
        bad.append(bytes(flipped))
    for b in bad:
        with pytest.raises(CodecError):
            dec(b)


def test_item4_corrupted_chunk_in_a_zarr_array_fails_reading(tmp_path):
    import zarr

    _write_array(tmp_path / "c.zarr", "uint16", rc.VolumeCodec(), shape=(20, 20, 20), chunks=(10, 10, 10))
    chunk = tmp_path / "c.zarr" / "c" / "1" / "0" / "1"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    z = zarr.open_array(str(tmp_path / "c.zarr"), mode="r")
    assert z[:10, :10, :10].shape == (10, 10, 10)
    with pytest.raises(CodecError, match="checksum"):
        z[...]


def test_item4_a_chunk_of_another_shape_is_refused(tmp_path):
    import zarr

    _write_array(tmp_path / "s.zarr", "uint8", rc.VolumeCodec(), shape=(8, 8, 8), chunks=(4, 4, 4))
    other = volume.encode(np.zeros((4, 4, 5), np.uint8))
    (tmp_path / "s.zarr" / "c" / "0" / "0" / "0").write_bytes(other)
    with pytest.raises(CodecError, match="wants"):
        zarr.open_array(str(tmp_path / "s.zarr"), mode="r")[...]


@pytest.mark.parametrize("spec,ok", [("volume", True), ("volume:19", True), ("sz3:1e-3", True),
                                     ("zfp:0.5", True), ("quant:1e-4", True), ("sz3", False), ("zfp:-1", False),
                                     ("volume:x", False), ("lz4", False)])
def test_item5_codec_spec(spec, ok):
    if ok:
        assert rc.codec_from_spec(spec).to_dict()["name"].startswith("ramburst.")
    else:
        with pytest.raises(CodecError):
            rc.codec_from_spec(spec)
