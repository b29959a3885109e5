"""s3 and fs next to the pool in one deployment, used by independent clients."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ramburst
from ramburst.lifecycle.phases import step_names
from ramburst.services import REGISTRY

from conftest import assert_nothing_left, cli, unique_name

pytestmark = pytest.mark.ceph
AWS = str(Path(sys.executable).with_name("aws"))


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """One instance with pool, s3 and fs, deployed once for the module (4G: each of the three
    gets a 1.2 GiB quota, room for the just-over-1-GiB file below)."""
    base = tmp_path_factory.mktemp("trio")
    name = unique_name("trio")
    state, mount = base / name, base / "mnt"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "4G",
            "--service", "pool", "--service", "s3", "--service", "fs", "--mount", mount)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, **json.loads(cli("env", "--state-dir", state, "--json").stdout)}
    yield name, state, mount, env
    assert cli("down", "--state-dir", state).returncode == 0
    assert_nothing_left(name, state)
    assert not mount.exists()


def test_environment_and_status(trio):
    name, state, mount, env = trio
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "RAMBURST_S3_CREDENTIALS",
                "RAMBURST_MOUNT", "RAMBURST_POOL", "S3CMD_CONFIG"):
        assert env.get(key), key
    creds = Path(env["RAMBURST_S3_CREDENTIALS"])
    assert creds.stat().st_mode & 0o777 == 0o600 and Path(env["S3CMD_CONFIG"]).stat().st_mode & 0o777 == 0o600
    assert env["AWS_SECRET_ACCESS_KEY"] in creds.read_text()
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    report = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    assert report["endpoints"] == {"pool": "ramburst", "s3": env["AWS_ENDPOINT_URL"], "fs": str(mount)}
    assert {d["name"] for d in report["daemons"]} >= {"mds.a", "rgw.h0", "fuse.h0"}
    text = cli("status", "--state-dir", state).stdout
    assert env["AWS_ENDPOINT_URL"] in text and str(mount) in text


def test_keys_are_fresh_per_deployment(trio, tmp_path):
    _, _, _, env = trio
    name = unique_name("fresh")
    state = tmp_path / name
    assert cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "s3").returncode == 0
    try:
        other = json.loads(cli("env", "--state-dir", state, "--json").stdout)
        assert other["AWS_ACCESS_KEY_ID"] != env["AWS_ACCESS_KEY_ID"]
        assert other["AWS_SECRET_ACCESS_KEY"] != env["AWS_SECRET_ACCESS_KEY"]
        assert "RAMBURST_POOL" not in other and "RAMBURST_MOUNT" not in other
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_boto3_multipart_list_delete(trio, tmp_path):
    from boto3.s3.transfer import TransferConfig

    name, state, _, _ = trio
    cluster = ramburst.attach(state_dir=state)
    s3 = cluster.s3_client()
    s3.create_bucket(Bucket="bucket3")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(70 * 2**20))
    s3.upload_file(str(big), "bucket3", "big.bin", Config=TransferConfig(multipart_threshold=8 * 2**20,
                                                                    multipart_chunksize=8 * 2**20))
    head = s3.head_object(Bucket="bucket3", Key="big.bin")
    assert head["ContentLength"] == 70 * 2**20 and "-" in head["ETag"]  # a multipart ETag
    back = tmp_path / "back.bin"
    s3.download_file("bucket3", "big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    s3.put_object(Bucket="bucket3", Key="small", Body=b"x")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bucket3")["Contents"]]
    assert keys == ["big.bin", "small"]
    for k in keys:
        s3.delete_object(Bucket="bucket3", Key=k)
    s3.delete_bucket(Bucket="bucket3")
    assert "bucket3" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_awscli_and_s3cmd_unchanged(trio, tmp_path):
    """Independent clients with nothing but the exported environment."""
    _, _, _, env = trio
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 * 2**20))

    def run(*cmd):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        return r.stdout

    run(AWS, "s3", "mb", "s3://cli")
    run(AWS, "s3", "cp", str(f), "s3://cli/f.bin")
    assert "f.bin" in run(AWS, "s3", "ls", "s3://cli/")
    # s3cmd reads the same store: what awscli wrote, s3cmd gets back byte for byte.
    run("s3cmd", "get", "s3://cli/f.bin", str(tmp_path / "g.bin"))
    assert (tmp_path / "g.bin").read_bytes() == f.read_bytes()
    run("s3cmd", "put", str(f), "s3://cli/h.bin")
    assert "h.bin" in run(AWS, "s3", "ls", "s3://cli/")
    run(AWS, "s3", "rm", "--recursive", "s3://cli/")
    run("s3cmd", "rb", "s3://cli")


def test_fs_files_and_folders(trio):
    _, _, mount, _ = trio
    d = mount / "a" / "b"
    d.mkdir(parents=True)
    p = d / "file.txt"
    with open(p, "wb") as f:
        f.write(b"hello ramburst\n")
        f.flush()
        os.fsync(f.fileno())
    assert p.read_bytes() == b"hello ramburst\n"
    p.rename(mount / "a" / "moved.txt")
    assert not p.exists() and (mount / "a" / "moved.txt").read_bytes() == b"hello ramburst\n"
    (mount / "a" / "moved.txt").unlink()
    shutil.rmtree(mount / "a")
    assert list(mount.iterdir()) == []


def test_fs_large_file_and_df(trio):
    _, _, mount, env = trio
    p = mount / "large.bin"
    chunk = os.urandom(8 * 2**20)
    h = hashlib.sha256()
    n = (1 * 2**30 + 64 * 2**20) // len(chunk)  # just over 1 GiB
    with open(p, "wb") as f:
        for _ in range(n):
            f.write(chunk)
            h.update(chunk)
        os.fsync(f.fileno())
    assert p.stat().st_size == n * len(chunk) > 2**30
    df = subprocess.run(["df", "-B1", str(mount)], capture_output=True, text=True, check=True).stdout
    fields = df.splitlines()[1].split()
    assert fields[0] == "ceph-fuse" and int(fields[2]) >= 2**30  # used counts the file
    check = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(2**24):
            check.update(block)
    assert check.digest() == h.digest()
    p.unlink()


def test_pool_next_to_the_services(trio):
    _, state, _, env = trio
    cluster = ramburst.attach(state_dir=state)
    try:
        assert cluster.mount is not None and cluster.s3["endpoint"] == env["AWS_ENDPOINT_URL"]
        cluster.put("p", b"pool data")
        assert cluster.get("p") == b"pool data"
        cluster.delete("p")
    finally:
        cluster.close()


def test_mountpoint_in_use_is_refused(trio, tmp_path):
    _, _, mount, _ = trio
    for target, why in ((mount, "is already mounted"), (Path("/etc"), "is not empty")):
        name = unique_name("mnt")
        state = tmp_path / name
        r = cli("up", "--name", name, "--state-dir", state, "--service", "fs", "--mount", target)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and why in r.stderr, r.stderr
        assert not state.exists()


def test_mount_without_fs_is_refused(tmp_path):
    r = cli("up", "--state-dir", tmp_path / "s", "--mount", tmp_path / "m")
    assert r.returncode == 2 and "--mount is for the fs service" in r.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "m").exists()


def test_down_with_a_file_held_open(tmp_path):
    name = unique_name("held")
    state, mount = tmp_path / name, tmp_path / "deep" / "mnt"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "fs", "--mount", mount)
    assert r.returncode == 0, r.stderr
    (mount / "open.txt").write_text("held")
    holder = subprocess.Popen(["sleep", "60"], stdin=open(mount / "open.txt"), cwd=mount)
    try:
        down = cli("down", "--state-dir", state)
        assert down.returncode == 0, down.stderr
        assert "lazily detached" in down.stderr
    finally:
        holder.kill()
        holder.wait()
    assert_nothing_left(name, state)
    assert not (tmp_path / "deep").exists()  # every folder up made is gone


NEW_STEPS = [s for s in step_names(REGISTRY) if s not in step_names(("pool",))]  # every service's steps


@pytest.mark.parametrize("step", NEW_STEPS)
def test_failure_at_each_service_step_rolls_back(instance_dir, tmp_path, step):
    name, state = instance_dir
    mount = tmp_path / "m"
    services = [a for service in REGISTRY for a in ("--service", service)]
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", *services, "--mount", mount,
            env={"RAMBURST_FAIL_AT": step})
    assert r.returncode == 1, r.stderr
    assert f"failure injected at step {step}" in r.stderr.splitlines()[-1]
    assert_nothing_left(name, state)
    assert not mount.exists()
    assert str(mount) not in Path("/proc/mounts").read_text()


def test_api_cluster_first_used_from_many_threads_at_once(trio):
    """Eight threads put through one new Cluster at the same moment: each put lands (before: all
    but one thread got RadosStateError "state configuring" from the lazily connected handle)."""
    import contextlib
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import ramburst

    _, state, _, _ = trio
    cluster = ramburst.attach(state_dir=state)
    start = threading.Barrier(8)

    def put(i: int) -> bytes:
        start.wait()
        cluster.put(f"threads{i}", b"x%d" % i)
        return cluster.get(f"threads{i}")

    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(put, range(8))) == [b"x%d" % i for i in range(8)]
    finally:
        for i in range(8):
            with contextlib.suppress(Exception):   # not written when the test failed
                cluster.delete(f"threads{i}")
        cluster.close()
