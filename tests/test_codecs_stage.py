"""Issue 16, the rest: `stage in --codec` (volumes in as compressed zarr arrays, out byte-identical),
`array info` showing the whole codec chain, and a resumed lossy import skipping its done units."""
from __future__ import annotations

import json
import re
import subprocess
import time

import numpy as np
import pytest

import ramburst

zarr = pytest.importorskip("zarr")
pytest.importorskip("ramburst.arrays")
from zarr.core.sync import sync  # noqa: E402

import ramburst.codecs  # noqa: E402, F401  (registers the codecs with zarr in this process too)

from conftest import RAMBURST, cli, unique_name  # noqa: E402

pytestmark = pytest.mark.ceph


def volume_like(shape, dtype, seed):
    """A smooth field with noise (what the predictive codec is for)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    field = np.sin(sum(grids)) * 1000 + 2000 + 5 * rng.standard_normal(shape)
    return field.astype(dtype)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("cst")
    with ramburst.deploy(name=name, state_dir=str(tmp_path_factory.mktemp("cstage") / name), size="1G",
                         services=("pool",)) as c:
        yield c


def keys(store, prefix: str) -> list[str]:
    async def collect():
        return [k async for k in store.list_prefix(prefix)]
    return sync(collect())


def test_item2_array_info_shows_the_serializer_and_the_whole_codec_chain(cluster, tmp_path):
    np.save(tmp_path / "v.npy", volume_like((32, 32, 32), "uint16", seed=1))
    r = cli("array", "import", "--state-dir", cluster.state_dir, "--namespace", "info", tmp_path / "v.npy", "v",
            "--chunks", "16,16,16", "--shards", "32,32,32", "--codec", "volume")
    assert r.returncode == 0, r.stderr
    r = cli("array", "info", "--state-dir", cluster.state_dir, "--namespace", "info", "v", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["serializer"] == {"name": "ramburst.volume", "configuration": {"level": 3, "neighbours": 2}}
    outer = d["codecs"]
    assert [c["name"] for c in outer] == ["sharding_indexed"], outer
    assert outer[0]["configuration"]["codecs"][0]["name"] == "ramburst.volume"


def test_item3_resumed_lossy_import_skips_the_units_already_done(cluster, tmp_path):
    """`kill -9` of a lossy import mid-way; the re-run must not rewrite what is stored within the bound
    (it compared decoded values with the source for equality, which a lossy unit never passes)."""
    data = np.random.default_rng(3).random((256, 256, 256), dtype=np.float32)  # 64 MiB, 256 units of 256 KiB
    np.save(tmp_path / "k.npy", data)
    args = ["array", "import", "--state-dir", cluster.state_dir, "--namespace", "lossy", tmp_path / "k.npy", "k",
            "--chunks", "1,256,256", "--jobs", "1", "--codec", "sz3:0.01"]
    proc = subprocess.Popen([RAMBURST, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = cluster.zarr_store(namespace="lossy", read_only=True)
    deadline = time.monotonic() + 120
    while len(keys(store, "k/c/")) < 10:
        assert proc.poll() is None and time.monotonic() < deadline, "import ended before it could be killed"
        time.sleep(0.01)
    proc.kill()
    proc.wait(30)
    listed = len(keys(store, "k/c/"))
    assert 10 <= listed < 256, listed
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    written, skipped = (int(w) for w in re.search(r"(\d+) units written, (\d+) already", r.stderr).groups())
    assert written + skipped == 256 and skipped >= listed and written <= 256 - listed, r.stderr
    out = zarr.open_array(store, path="k", mode="r")[...]
    assert np.max(np.abs(out.astype(np.float64) - data)) <= 0.01
    again = cli(*args)
    assert again.returncode == 0 and "0 units written, 256 already" in again.stderr, again.stderr
