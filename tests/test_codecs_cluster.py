"""Issue 16, integration: `ramburst array import --codec` compresses on the way into a real cluster."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ramburst

zarr = pytest.importorskip("zarr")
pytest.importorskip("ramburst.arrays")
import ramburst.codecs  # noqa: E402, F401  (registers the codecs with zarr in this process too)

from conftest import cli, unique_name  # noqa: E402
from helpers import volume_like  # noqa: E402

pytestmark = pytest.mark.ceph


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("dcod")
    with ramburst.deploy(name=name, state_dir=str(tmp_path_factory.mktemp("codecs") / name), size="512M",
                         services=("pool",)) as c:
        yield c


def _import(cluster, *args):
    return cli("array", "import", "--state-dir", cluster.state_dir, "--namespace", "codec", *args)


READER = textwrap.dedent("""
    import sys, numpy as np, zarr
    import ramburst.arrays, ramburst.codecs  # noqa: F401
    store = ramburst.arrays.store(state_dir=sys.argv[1], namespace="codec", read_only=True)
    np.save(sys.stdout.buffer, zarr.open_array(store, path=sys.argv[2], mode="r")[...])
""")


def _read_elsewhere(cluster, array):
    import io

    p = subprocess.run([sys.executable, "-c", READER, str(cluster.state_dir), array], capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return np.load(io.BytesIO(p.stdout))


def test_item6_import_with_the_volume_codec_is_lossless_and_smaller(cluster, tmp_path):
    vol = volume_like((64, 80, 72), "uint16", seed=11)
    np.save(tmp_path / "v.npy", vol)
    r = _import(cluster, tmp_path / "v.npy", "vol", "--chunks", "32,32,32", "--codec", "volume")
    assert r.returncode == 0, r.stderr
    z = zarr.open_array(cluster.zarr_store(namespace="codec", read_only=True), path="vol", mode="r")
    assert z.serializer.to_dict()["name"] == "ramburst.volume"
    assert z.nbytes_stored() < vol.nbytes / 2
    out = _read_elsewhere(cluster, "vol")
    assert out.dtype == vol.dtype and out.tobytes() == vol.tobytes()
    again = _import(cluster, tmp_path / "v.npy", "vol", "--chunks", "32,32,32", "--codec", "volume")
    assert again.returncode == 0 and "0 units written" in again.stderr, again.stderr


def test_item6_import_with_a_lossy_codec_holds_its_bound(cluster, tmp_path):
    f = (volume_like((40, 30, 20), "float32", seed=12) / 1e3).astype(np.float32)
    np.save(tmp_path / "f.npy", f)
    r = _import(cluster, tmp_path / "f.npy", "f", "--chunks", "16,16,16", "--codec", "sz3:0.01")
    assert r.returncode == 0, r.stderr
    z = zarr.open_array(cluster.zarr_store(namespace="codec", read_only=True), path="f", mode="r")
    assert z.serializer.to_dict() == {"name": "ramburst.sz3", "configuration": {"abs": 0.01}}
    out = _read_elsewhere(cluster, "f")
    assert np.max(np.abs(out.astype(np.float64) - f)) <= 0.01


def test_item6_bad_codec_one_line_exit_2_nothing_created(cluster, tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((4, 4, 4), np.float64))
    np.save(tmp_path / "i.npy", np.zeros((4, 4, 4), np.uint8))
    for src, spec in [("d.npy", "volume"), ("i.npy", "sz3:0.1"), ("i.npy", "sz3"), ("i.npy", "zfp:-1"),
                      ("i.npy", "lz4"), ("i.npy", "volume:x")]:
        r = _import(cluster, tmp_path / src, "bad", "--codec", spec)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (spec, r.stderr)
    from zarr.core.sync import sync

    store = cluster.zarr_store(namespace="codec", read_only=True)

    async def keys():
        return [k async for k in store.list_prefix("bad")]
    assert sync(keys()) == []
