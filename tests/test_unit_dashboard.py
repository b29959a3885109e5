"""Units of the dashboard with no daemon behind them: the PNG encoder, the contrast, the
plane selection, the token gate and the Prometheus text."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from ramburst.dashboard import images  # noqa: E402
from ramburst.dashboard.app import TokenGate  # noqa: E402
from ramburst.dashboard.metrics import prometheus_text  # noqa: E402


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (512, 512), (3, 1000)])
def test_png_decodes_to_the_same_pixels(shape):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(images.png_gray(pixels))))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)


def test_contrast_by_percentiles_clips_outliers_and_survives_nan_and_flat_planes():
    plane = np.linspace(0, 100, 101).reshape(1, 101)
    plane[0, 0], plane[0, 1] = -1e9, np.nan
    gray, vmin, vmax = images.to_gray(plane, 5, 95)
    finite = plane[np.isfinite(plane)]
    assert (vmin, vmax) == tuple(np.percentile(finite, [5, 95]))
    assert gray[0, 0] == 0 and gray[0, 1] == 0 and gray[0, -1] == 255
    flat, _, _ = images.to_gray(np.full((4, 4), 7.0), 1, 99)
    assert flat.dtype == np.uint8 and (flat == 0).all()


def test_plane_picks_the_axis_and_refuses_what_is_out_of_range():
    vol = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(images.plane(vol[0], 1, 2), vol[0][:, 2, :])
    assert np.array_equal(images.plane(vol, 3, 4), vol[0, :, :, 4])  # index 0 on the extra leading axis
    for axis, index in ((4, 0), (0, 2), (1, -1)):
        with pytest.raises(ValueError):
            images.plane(vol, axis, index)
    with pytest.raises(ValueError):
        images.plane(np.arange(5), 0, 0)


def call(gate, query=b"", headers=()):
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    gate.app = app
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query,
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(gate(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_token_gate_refuses_without_the_token_and_sets_a_strict_cookie():
    gate = TokenGate(None, "s3cret-Token_1", "ramburst_dashboard_8000")
    assert call(gate)[0] == 403
    assert call(gate, b"token=s3cret-Token_2")[0] == 403
    assert call(gate, b"token=")[0] == 403
    assert call(gate, headers=[("cookie", "ramburst_dashboard_9000=s3cret-Token_1")])[0] == 403  # another port's
    status, headers = call(gate, b"token=s3cret-Token_1")
    assert status == 200
    assert headers["set-cookie"] == "ramburst_dashboard_8000=s3cret-Token_1; Path=/; HttpOnly; SameSite=Strict"
    status, headers = call(gate, headers=[("cookie", "a=b; ramburst_dashboard_8000=s3cret-Token_1")])
    assert status == 200 and "set-cookie" not in headers
    assert call(gate, headers=[("authorization", "Bearer s3cret-Token_1")])[0] == 200


def test_prometheus_text_escapes_labels_and_says_down():
    assert "ramburst_health_ok 0" in prometheus_text(None)
    snap = {"t": 1.0, "ok": False, "rates": {'we"ird\\pool': {"write_bytes_sec": 5.0}}, "pools": [],
            "status": {"daemons": [{"name": "osd.0", "host": "h0", "state": "dead"}], "capacity": None}}
    text = prometheus_text(snap)
    assert 'ramburst_daemon_up{daemon="osd.0",host="h0"} 0' in text
    assert 'ramburst_pool_write_bytes_sec{pool="we\\"ird\\\\pool"} 5.0' in text


def test_slab_cache_gives_the_planes_of_the_array_and_expires():
    zarr = pytest.importorskip("zarr")
    data = np.arange(3 * 10 * 6 * 7, dtype="float32").reshape(3, 10, 6, 7)
    z = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=(1, 4, 3, 7), dtype="float32")
    z[:] = data
    cache = images.SlabCache()
    for axis in range(4):
        for index in range(data.shape[axis]):
            assert np.array_equal(cache.plane("v", z, axis, index), images.plane(data, axis, index)), (axis, index)
    with pytest.raises(ValueError):
        cache.plane("v", z, 1, 10)
    z[0] = -data[0]
    assert cache.plane("v", z, 1, 5)[0, 0] == data[0, 5, 0, 0]  # cached: the old value, for ttl seconds
    cache.ttl = 0
    assert cache.plane("v", z, 1, 5)[0, 0] == -data[0, 5, 0, 0]


def test_default_address_is_the_instances_own_when_this_host_has_it(monkeypatch):
    import ramburst.host
    from ramburst.dashboard import default_address

    class Instance:
        env = {"RAMBURST_MON_HOST": "[v2:10.77.0.2:40001]"}

    monkeypatch.setattr(ramburst.host, "local_addresses", lambda: {"127.0.0.1", "10.77.0.2"})
    assert default_address(Instance()) == "10.77.0.2"
    monkeypatch.setattr(ramburst.host, "local_addresses", lambda: {"127.0.0.1", "10.77.0.3"})
    assert default_address(Instance()) == "127.0.0.1"  # another host of the instance
