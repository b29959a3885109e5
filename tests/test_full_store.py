"""A full store: a clear client error in bounded time, no daemon abort, acknowledged data intact.

Before the fix, `rados bench` filled a BlueStore OSD on a tmpfs file faster than Ceph's full
ratios react, and the OSD aborted on ENOSPC (FACTS.md). These tests write at full speed
past the requested size, through librados with 16 writers, on every device.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import ramburst
from ramburst.ceph.admin import load_rados
from ramburst.plan import BLUESTORE_META, FULL_HEADROOM

from conftest import cli
from helpers import OBJ, fill

pytestmark = pytest.mark.ceph



def read_back(conf: str, pool: str, acked: dict[str, str]) -> list[str]:
    rados = load_rados()
    cluster = rados.Rados(conffile=conf, name="client.admin")
    cluster.connect(timeout=10)
    bad = []
    try:
        io = cluster.open_ioctx(pool)
        for name, digest in acked.items():
            if hashlib.sha256(io.read(name, OBJ + 1)).hexdigest() != digest:
                bad.append(name)
        io.close()
    finally:
        cluster.shutdown()
    return bad


@pytest.mark.parametrize("device", ["file", "memstore"])
def test_pool_full_errors_and_keeps_data(instance_dir, device):
    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--device", device)
    assert r.returncode == 0, r.stderr
    conf = str(state / "ceph.conf")
    t0 = time.monotonic()
    acked, errors = fill(conf, "ramburst", limit_bytes=3 * 2**30)
    elapsed = time.monotonic() - t0
    assert errors, "writing 3 GiB into a 1 GiB store must fail"
    assert elapsed < 120
    # It stopped near the requested size: writes in flight while the OSD noticed may pass it,
    # by no more than the headroom the memory check reserved for them.
    stored = len(acked) * OBJ
    if device == "file":  # the watchdog stops BlueStore within 20 ms of the size
        assert 0.5 * 2**30 < stored <= 2**30 + FULL_HEADROOM, stored
        ram = sum(f.stat().st_blocks * 512 for f in Path("/dev/shm").glob(f"ramburst-*-{name}-*/**/*") if f.is_file())
        assert ram <= 2**30 + FULL_HEADROOM + BLUESTORE_META, ram
    else:
        # memstore has no live usage counter for the watchdog: Ceph's ratios stop it about a
        # heartbeat late (2.2 GiB stored in a 1 GiB store measured in a CI run; docs/faults.md).
        assert 0.5 * 2**30 < stored <= 3 * 2**30, stored

    report = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    assert all(d["state"] == "running" for d in report["daemons"]), report["daemons"]
    assert report["capacity"]["state"] == "full", report
    assert "OSD_FULL" in report["checks"] or "POOL_FULL" in report["checks"]
    text = cli("status", "--state-dir", state).stdout
    assert "FULL: writes are refused" in text

    assert read_back(conf, "ramburst", acked) == []

    # An ordinary client with the exported environment gets an error, not a hang.
    env = {**os.environ, **json.loads(cli("env", "--state-dir", state, "--json").stdout)}
    t0 = time.monotonic()
    put = subprocess.run(["rados", "-p", "ramburst", "put", "one-more", "/etc/hostname"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert put.returncode != 0
    assert time.monotonic() - t0 < 60

    # A full store takes deletes that say so (as `rados rm --force-full` does), and then writes.
    assert subprocess.run(["rados", "-p", "ramburst", "rm", "--force-full", next(iter(acked))],
                          env=env, timeout=60).returncode == 0
    # The Python API says "no space" at once, and deletes on a full store.
    rados = load_rados()
    cluster = ramburst.attach(state_dir=state)
    try:
        t0 = time.monotonic()
        with pytest.raises(rados.NoSpace):
            cluster.put("api-object", b"x" * 4096)
        assert time.monotonic() - t0 < 10
        # Delete half of the acknowledged objects, and the writes that landed although their
        # client gave up waiting (timed out under load, so not in `acked`): those hold space too.
        with cluster.ioctx() as io:
            present = [o.key for o in io.list_objects()]
        unacked = [n for n in present if n not in acked]
        for name_ in list(acked)[1: len(acked) // 2] + unacked:
            cluster.delete(name_)
        deadline = time.monotonic() + 60
        while True:
            try:
                cluster.put("after-delete", b"x" * 4096)
                break
            except rados.NoSpace:
                assert time.monotonic() < deadline, (
                    f"store did not accept writes after deleting {len(acked) // 2 - 1} of {len(acked)} "
                    f"acknowledged objects and {len(unacked)} unacknowledged ones")
                time.sleep(0.5)
        assert cluster.get("after-delete") == b"x" * 4096
        assert read_back(conf, "ramburst", dict(list(acked.items())[len(acked) // 2:])) == []
    finally:
        cluster.close()


def running_daemons(state) -> set[str]:
    report = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    return {d["name"] for d in report["daemons"] if d["state"] == "running"}


def fill_fs(mount, limit: int) -> tuple[dict[str, str], OSError | None]:
    digests, failure = {}, None
    for i in range(limit // OBJ):
        data = os.urandom(OBJ)
        try:
            with open(mount / f"f{i}", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            digests[f"f{i}"] = hashlib.sha256(data).hexdigest()
        except OSError as e:
            failure = e
            break
    return digests, failure


def delete_and_write_again(mount, names) -> None:
    """Deleting files makes room again (CephFS frees space and quota usage asynchronously)."""
    for fname in names:
        (mount / fname).unlink()
    deadline = time.monotonic() + 60
    while True:
        try:
            (mount / "again").write_bytes(b"room")
            return
        except OSError:
            assert time.monotonic() < deadline, "no room after deleting files"
            time.sleep(1)


def test_fs_full_gives_a_quota_error_and_keeps_files(instance_dir, tmp_path):
    import errno

    name, state = instance_dir
    mount = tmp_path / "m"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "fs", "--mount", mount)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    digests, failure = fill_fs(mount, 3 * 2**30)  # 3 GiB of 4 MiB files into a 1 GiB store
    assert failure is not None and failure.errno in (errno.EDQUOT, errno.ENOSPC), failure
    assert time.monotonic() - t0 < 120
    assert 0.5 * 2**30 < len(digests) * OBJ <= 2**30
    assert running_daemons(state) >= {"mon.a", "mgr.x", "osd.0", "mds.a", "fuse.h0"}
    for fname, digest in digests.items():
        assert hashlib.sha256((mount / fname).read_bytes()).hexdigest() == digest, fname
    delete_and_write_again(mount, list(digests)[:20])


def test_s3_and_fs_each_stop_at_their_share(instance_dir, tmp_path):
    """Sharing one store, fs and s3 each get a quota; filling one leaves the other a clean error
    of its own, and the cluster never reaches 'full' (where CephFS could not even delete)."""
    import errno

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    name, state = instance_dir
    mount = tmp_path / "m"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "fs", "--service", "s3",
            "--mount", mount)
    assert r.returncode == 0, r.stderr
    digests, failure = fill_fs(mount, 2**30)
    assert failure is not None and failure.errno == errno.EDQUOT, failure
    cluster = ramburst.attach(state_dir=state)
    s3 = boto3.client("s3", endpoint_url=cluster.s3["endpoint"], aws_access_key_id=cluster.s3["access_key"],
                      aws_secret_access_key=cluster.s3["secret_key"], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    s3.create_bucket(Bucket="share")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        for i in range(64):
            s3.put_object(Bucket="share", Key=f"o{i}", Body=os.urandom(4 * OBJ))
    assert e.value.response["Error"]["Code"] == "QuotaExceeded"
    assert time.monotonic() - t0 < 60
    report = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    assert "OSD_FULL" not in report["checks"]
    delete_and_write_again(mount, list(digests)[:20])


def test_s3_full_gives_quota_exceeded_and_keeps_objects(instance_dir):
    from botocore.config import Config
    from botocore.exceptions import ClientError

    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "s3")
    assert r.returncode == 0, r.stderr
    cluster = ramburst.attach(state_dir=state)
    import boto3

    s3 = boto3.client("s3", endpoint_url=cluster.s3["endpoint"], aws_access_key_id=cluster.s3["access_key"],
                      aws_secret_access_key=cluster.s3["secret_key"], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    s3.create_bucket(Bucket="fill")
    digests, error = {}, None
    t0 = time.monotonic()
    for i in range(3 * 64):  # 3 GiB of 16 MiB objects
        data = os.urandom(16 * 2**20)
        try:
            s3.put_object(Bucket="fill", Key=f"o{i}", Body=data)
            digests[f"o{i}"] = hashlib.sha256(data).hexdigest()
        except ClientError as e:
            error = e
            break
    assert error is not None and error.response["Error"]["Code"] == "QuotaExceeded", error
    assert time.monotonic() - t0 < 120
    assert 0.5 * 2**30 < len(digests) * 16 * 2**20 <= 2**30
    assert running_daemons(state) >= {"mon.a", "mgr.x", "osd.0", "rgw.h0"}
    for key, digest in digests.items():
        assert hashlib.sha256(s3.get_object(Bucket="fill", Key=key)["Body"].read()).hexdigest() == digest


def test_item_s11_api_put_at_full_speed_stops_at_the_size_with_no_space(instance_dir):
    """The API's put (FULL_TRY) at full speed into a 1 GiB store: every refusal is
    rados.NoSpace (never the 20 s TimedOut), what is stored stays within in-flight bytes of
    --size, the OSD lives. Before: `injectfull failsafe` drops only writes WITHOUT FULL_TRY
    (Ceph 16 PrimaryLogPG::do_op), and the OSD answers FULL_TRY with ENOSPC only once the
    monitor has flagged the pool full, 0.6-1.4 s later: 1.34-1.46 GB were stored meanwhile."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
    assert r.returncode == 0, r.stderr
    rados = load_rados()
    cluster = ramburst.attach(state_dir=state)
    cluster.rados()  # connect once, before the writers share it
    block = os.urandom(OBJ)
    acked, errors, lock = [], [], threading.Lock()

    def put(i: int) -> None:
        if errors:
            return
        try:
            cluster.put(f"p{i}", block)
            with lock:
                acked.append(i)
        except rados.Error as e:
            errors.append(e)

    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(3 * 2**30 // OBJ)))
        assert errors, "3 GiB into a 1 GiB store must fail"
        assert all(isinstance(e, rados.NoSpace) for e in errors), {type(e).__name__ for e in errors}
        with cluster.ioctx() as io:
            stored = sum(io.stat(o.key)[0] for o in io.list_objects())
        # in flight when the watchdog stopped the OSD (16 x 4 MiB) plus one 20 ms poll at GB/s
        assert 0.5 * 2**30 < stored <= 2**30 + 192 * 2**20, stored
        with pytest.raises(rados.NoSpace):
            cluster.put("one-more", b"x" * 4096)
        cluster.delete("p0")  # deletes still pass
    finally:
        cluster.close()
    assert running_daemons(state) >= {"mon.a", "mgr.x", "osd.0"}
    assert "ENOSPC" not in (state / "log" / "osd.0.log").read_text(errors="replace")
