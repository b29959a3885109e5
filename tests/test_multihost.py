"""Several hosts (network namespaces) in one cluster, launched with mpirun, as a batch job would."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

import netns
from conftest import RAMBURST, assert_nothing_left, unique_name

pytestmark = netns.marks()

PY = str(Path(RAMBURST).with_name("python"))


def check_gone(name: str, state: Path, mounts: list[Path] = ()) -> None:
    assert_nothing_left(name, state)
    text = Path("/proc/mounts").read_text()
    for m in mounts:
        assert str(m) not in text and not m.exists()


def env_on(hosts, host: str, state: Path) -> dict:
    r = hosts.run_in(host, RAMBURST, "env", "--state-dir", str(state), "--json")
    assert r.returncode == 0, r.stderr
    return {**os.environ, **json.loads(r.stdout)}


def test_three_hosts_share_pool_s3_and_fs(hosts, tmp_path):
    name = unique_name("mh")
    state, mnt = tmp_path / name, tmp_path / "mnt-{host}"
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state), "--service", "pool", "--service", "s3", "--service", "fs",
                      "--mount", str(mnt))
    mounts = [tmp_path / f"mnt-h{i}" for i in range(3)]
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        report = json.loads(hosts.run_in("rbmh2", RAMBURST, "status", "--state-dir", str(state), "--json").stdout)
        assert report["osds"] == {"total": 3, "up": 3, "in": 3}
        assert {d["address"] for d in report["daemons"] if d["name"].startswith("osd.")} == set(hosts.addresses)
        assert report["mon_host"].startswith("[v2:10.77.0.1:")
        # pool: written on host 1, read on host 3
        e1, e3 = env_on(hosts, "rbmh1", state), env_on(hosts, "rbmh3", state)
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(2 * 2**20))
        assert hosts.run_in("rbmh1", "rados", "-p", "ramburst", "put", "o", str(src), env=e1).returncode == 0
        got = hosts.run_in("rbmh3", "rados", "-p", "ramburst", "get", "o", str(tmp_path / "o.bin"), env=e3)
        assert got.returncode == 0 and (tmp_path / "o.bin").read_bytes() == src.read_bytes()
        # s3: the endpoint on host 1 is used from host 2 and host 3
        s3 = ("import boto3,sys; from botocore.config import Config; "
              "c=boto3.client('s3', config=Config(s3={'addressing_style':'path'})); ")
        put = "c.create_bucket(Bucket='multihost'); c.put_object(Bucket='multihost', Key='k', Body=b'from h1')"
        w = hosts.run_in("rbmh2", PY, "-c", s3 + put, env=env_on(hosts, "rbmh2", state))
        assert w.returncode == 0, w.stderr
        get = "print(c.get_object(Bucket='multihost', Key='k')['Body'].read().decode())"
        r = hosts.run_in("rbmh3", PY, "-c", s3 + get, env=e3)
        assert r.returncode == 0 and r.stdout.strip() == "from h1", r.stderr
        # fs: mounted on every host; a file written through host 1's mount is read through host 3's
        assert e1["RAMBURST_MOUNT"] == str(mounts[0]) and e3["RAMBURST_MOUNT"] == str(mounts[2])
        for m in mounts:
            assert str(m) in Path("/proc/mounts").read_text()
        (mounts[0] / "shared.txt").write_text("written on h0")
        deadline = time.monotonic() + 30
        while not (mounts[2] / "shared.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (mounts[2] / "shared.txt").read_text() == "written on h0"
    finally:
        down = hosts.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    check_gone(name, state, mounts)


def test_two_copies_survive_the_loss_of_a_host(hosts, tmp_path):
    name = unique_name("mh")
    state = tmp_path / name
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state), "--replicas", "2")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = env_on(hosts, "rbmh1", state)
        script = ("import os,sys,json,hashlib; sys.path.insert(0, %r); from ramburst.ceph.admin import load_rados; "
                  "r=load_rados(); c=r.Rados(conffile=os.environ['CEPH_CONF'], name='client.admin', "
                  "conf={'rados_osd_op_timeout':'60'}); c.connect(); io=c.open_ioctx('ramburst'); ")
        root = str(Path(__file__).resolve().parents[1])
        write = script % root + ("d={}\nfor i in range(200):\n b=os.urandom(65536); io.write_full('o%d'%i,b); "
                                 "d['o%d'%i]=hashlib.sha256(b).hexdigest()\nprint(json.dumps(d))")
        w = hosts.run_in("rbmh1", PY, "-c", write, env=env)
        assert w.returncode == 0, w.stderr
        digests = json.loads(w.stdout)
        # Every daemon of rank 2 dies, as when its node fails.
        record = json.loads((state / "hosts" / "h2.json").read_text())
        for p in record["processes"]:
            psutil.Process(p["pid"]).kill()
        read = script % root + ("import json\nd=json.loads(sys.stdin.read())\nbad=[k for k,v in d.items() "
                                "if hashlib.sha256(io.read(k, 1<<20)).hexdigest()!=v]\nprint(len(d), len(bad))")
        t0 = time.monotonic()
        r = __import__("subprocess").run(["nsenter", "--net=/var/run/netns/rbmh1", PY, "-c", read],
                                         input=json.dumps(digests), capture_output=True, text=True,
                                         env=env, timeout=180)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["200", "0"]
        assert time.monotonic() - t0 < 120
    finally:
        down = hosts.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    check_gone(name, state)


@pytest.mark.parametrize("step", ["osd-mkfs", "osd-start"])
def test_failure_on_one_rank_rolls_back_every_rank(hosts, tmp_path, step):
    name = unique_name("mh")
    state = tmp_path / name
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state), env={"RAMBURST_FAIL_AT": step, "RAMBURST_FAIL_RANK": "1"})
    assert up.returncode != 0
    assert f"failed on rank 1: failure injected at step {step}" in up.stderr
    assert "rolled back" in up.stderr
    check_gone(name, state)


def test_run_mpi_returns_the_command_status(hosts, tmp_path):
    name = unique_name("mh")
    state = tmp_path / name
    r = hosts.mpirun(RAMBURST, "run", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                     "--state-dir", str(state), "--", "sh", "-c",
                     'rados -p "$RAMBURST_POOL" put x /etc/hostname && rados -p "$RAMBURST_POOL" ls && exit 5')
    assert r.returncode == 5, r.stdout + r.stderr
    assert r.stdout.split().count("x") == 1  # the command ran once, on rank 0
    check_gone(name, state)


def test_distrax_host_count_is_checked_against_the_ranks(hosts, tmp_path):
    cfg = tmp_path / "distrax.cfg"
    cfg.write_text(f"[setup]\nbackend = ceph\nfolder = {tmp_path / 'st'}\ninterface = eth0\n"
                   "number_of_hosts = 2\nservice = pool\n")
    r = hosts.mpirun(RAMBURST, "up", "--mpi", "--config", str(cfg))
    assert r.returncode != 0
    assert "asks for 2 hosts but 3 are taking part" in r.stderr
    assert not (tmp_path / "st").exists()
