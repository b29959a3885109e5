"""Issue 10, items 3, 5b, 6 and 7: what outside probes broke, tried the way they broke it.

3: a second local user watches every process's argv (and environ) during `up` for a secret.
5b: S3 data written and deleted three times the store's size must come back.
6: a client's loaded Ceph environment must not leak into the next `up`, `status`, `down`.
7: `status` must notice a daemon killed or stopped.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import ramburst

from conftest import assert_nothing_left, cli, throwaway_user, unique_name

pytestmark = pytest.mark.ceph

WATCHER = "rbBwatch"

# Run by the second user with the system python: every argv and (where readable) every
# environment seen until the stop file appears, written out as JSON lines of hex.
WATCH_SCRIPT = r"""
import os, sys, json
stop = sys.argv[1]
seen = set()
passes = 0
while not os.path.exists(stop):
    passes += 1
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        for what in ('cmdline', 'environ'):
            try:
                with open('/proc/%s/%s' % (pid, what), 'rb') as f:
                    data = f.read()
            except OSError:
                continue
            if data:
                seen.add((what, data))
json.dump({'passes': passes, 'seen': [[w, d.hex()] for w, d in seen]}, sys.stdout)
"""

# Run by the second user: every file under the given folders that it can open for reading.
READ_SCRIPT = r"""
import os, sys
for top in sys.argv[1:]:
    for root, dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, 'rb') as f:
                    f.read(1)
                print(path)
            except OSError:
                pass
"""


@pytest.fixture(scope="module")
def outsider():
    """A second, unprivileged local user, removed with its home afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a second user needs root")
    with throwaway_user(WATCHER) as user:
        yield user


@pytest.fixture
def open_folder():
    """A folder other users can enter (like a shared scratch), so only ramburst's own modes
    keep them out of the instance's files."""
    path = Path(tempfile.mkdtemp(prefix="rbB-open-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)])


def _secrets(state: Path) -> dict[str, str]:
    found = {}
    for line in (state / "s3" / "credentials").read_text().splitlines():
        if line.startswith(("aws_access_key_id", "aws_secret_access_key")):
            k, v = line.split("=", 1)
            found[k.strip()] = v.strip()
    for keyring in (state / "keys").glob("*.keyring"):
        for line in keyring.read_text().splitlines():
            if line.strip().startswith("key ="):
                found[f"cephx {keyring.name}"] = line.split("=", 1)[1].strip()
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_item3_s3_secret_never_on_a_command_line(outsider, open_folder):
    """A second local user reading /proc/*/cmdline and /proc/*/environ during `up` never sees
    a secret, and cannot read any file of the instance; secret files are 0600 in 0700 folders."""
    name = unique_name("Bsec")
    state, mount = open_folder / name, open_folder / "mnt"
    stop = open_folder / "stop"
    watcher = subprocess.Popen(["runuser", "-u", WATCHER, "--", "/usr/bin/python3", "-c", WATCH_SCRIPT,
                                str(stop)], stdout=subprocess.PIPE)
    try:
        time.sleep(1)  # the watcher is scanning before `up` starts
        r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "pool",
                "--service", "s3", "--service", "fs", "--mount", mount)
        assert r.returncode == 0, r.stderr
        stop.touch()
        seen = json.loads(watcher.communicate(timeout=60)[0])
        secrets = _secrets(state)
        assert "aws_secret_access_key" in secrets and any(k.startswith("cephx") for k in secrets)
        cmdlines = [bytes.fromhex(d) for w, d in seen["seen"] if w == "cmdline"]
        # The watcher was quick enough to see the short-lived tools of `up`.
        assert any(b"radosgw-admin" in c for c in cmdlines), "the watcher never saw radosgw-admin run"
        assert any(b"ceph-fuse" in c for c in cmdlines)
        for what, data in seen["seen"]:
            text = bytes.fromhex(data)
            for label, secret in secrets.items():
                assert secret.encode() not in text, \
                    f"{label} visible to another user in /proc/*/{what}: {text[:300]!r}"

        # Files: the outsider can read none, and the secret files are 0600 in 0700 folders.
        ram_dirs = [h["ram_dir"] for h in (json.loads(p.read_text()) for p in (state / "hosts").glob("*.json"))]
        readable = subprocess.run(["runuser", "-u", WATCHER, "--", "/usr/bin/python3", "-c", READ_SCRIPT,
                                   str(state), *ram_dirs], capture_output=True, text=True, timeout=60)
        assert readable.stdout == "", f"another user can read: {readable.stdout}"
        secret_files = [state / "ceph.conf", state / "s3" / "credentials", state / "s3" / "s3cfg",
                        *(state / "keys").glob("*.keyring")]
        for path in secret_files:
            assert _mode(path) == 0o600, f"{path} is {oct(_mode(path))}"
            assert _mode(path.parent) == 0o700, f"{path.parent} is {oct(_mode(path.parent))}"
        assert _mode(state) == 0o700
        for d in ram_dirs:
            # The RAM folder sits directly in the sticky, world-writable RAM dir; it is the
            # one that must be private (its daemon data folders are inside it).
            assert _mode(Path(d)) == 0o700 and Path(d).parent == Path("/dev/shm")
    finally:
        stop.touch()
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def _env_of(state: Path) -> dict[str, str]:
    r = cli("env", "--state-dir", state, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _fsid(state: Path) -> str:
    return json.loads((state / "instance.json").read_text())["fsid"]


def test_item6_loaded_environment_does_not_leak_into_the_next_up(tmp_path, monkeypatch):
    """`up a`, load a's environment (plus CEPH_ARGS pointing at a), `up b`: b deploys, and
    status/env/down of each, and the Python API, talk to the instance they name."""
    a, b = unique_name("Benva"), unique_name("Benvb")
    sa, sb = tmp_path / a, tmp_path / b
    r = cli("up", "--name", a, "--state-dir", sa, "--size", "1G", "--service", "pool", "--service", "s3")
    assert r.returncode == 0, r.stderr
    try:
        loaded = _env_of(sa)
        loaded["CEPH_ARGS"] = f"--keyring {loaded['CEPH_KEYRING']} --mon-host {loaded['RAMBURST_MON_HOST']}"
        r = cli("up", "--name", b, "--state-dir", sb, "--size", "1G", "--service", "pool", "--service", "s3",
                "--service", "fs", "--mount", tmp_path / "mnt", env=loaded)
        assert r.returncode == 0, r.stderr
        for state in (sa, sb):
            st = cli("status", "--state-dir", state, "--json", env=loaded)
            assert st.returncode == 0, st.stdout + st.stderr
            report = json.loads(st.stdout)
            assert report["fsid"] == _fsid(state) and report["health"] is not None, report
            assert json.loads(cli("env", "--state-dir", state, "--json", env=loaded).stdout)["CEPH_CONF"] \
                == str(state / "ceph.conf")
        # b's daemons carry none of a's variables.
        for rec in json.loads((sb / "hosts" / "h0.json").read_text())["processes"]:
            environ = Path(f"/proc/{rec['pid']}/environ").read_bytes().split(b"\0")
            leaked = [v for v in environ if v.split(b"=", 1)[0].decode() in loaded]
            assert leaked == [], f"{rec['name']} inherited {leaked}"
        # The Python API in a process whose environment is a's.
        for k, v in loaded.items():
            monkeypatch.setenv(k, v)
        cluster = ramburst.attach(state_dir=sb)
        try:
            assert cluster.rados().get_fsid() == _fsid(sb)
            cluster.put("o", b"b's data")
            assert cluster.get("o") == b"b's data"
            assert cluster.status()["fsid"] == _fsid(sb)
            s3 = cluster.s3_client()
            s3.create_bucket(Bucket="only-in-b")
        finally:
            cluster.close()
        buckets = ramburst.attach(state_dir=sa).s3_client().list_buckets()["Buckets"]
        assert "only-in-b" not in [x["Name"] for x in buckets]
        # down b with a's environment loaded leaves a up.
        assert cli("down", "--state-dir", sb, env=loaded).returncode == 0
        assert_nothing_left(b, sb)
        assert cli("status", "--state-dir", sa, env=loaded).returncode == 0
    finally:
        cli("down", "--state-dir", sb)
        cli("down", "--state-dir", sa)
    assert_nothing_left(a, sa)


def test_item6_up_as_another_user_ignores_the_callers_ceph_variables(outsider, tmp_path):
    """Like `su user` without `-`: root's loaded environment (whose keyring that user cannot
    even read) must not stop that user's `up`, `status` and `down`."""
    a = unique_name("Benvr")
    sa = tmp_path / a
    r = cli("up", "--name", a, "--state-dir", sa, "--size", "1G")
    assert r.returncode == 0, r.stderr
    name = unique_name("Benvu")
    state = Path(outsider.pw_dir) / ".local" / "state" / "ramburst" / name
    try:
        loaded = _env_of(sa)
        loaded["CEPH_ARGS"] = f"--keyring {loaded['CEPH_KEYRING']}"
        up = cli("up", "--name", name, "--size", "1G", user=WATCHER, env=loaded)
        assert up.returncode == 0, up.stderr
        st = cli("status", "--name", name, "--json", user=WATCHER, env=loaded)
        assert st.returncode == 0, st.stdout + st.stderr
        assert json.loads(st.stdout)["fsid"] == _fsid(state)
    finally:
        down = cli("down", "--name", name, user=WATCHER, env=loaded)
        cli("down", "--state-dir", sa)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(name, state, uid=outsider.pw_uid)
    assert_nothing_left(a, sa)


class Instance7:
    """One pool+s3+fs instance for the item 7 tests, redeployed only after a kill."""

    def __init__(self, base: Path):
        self.base = base
        self.count = 0
        self.name = self.state = None
        self.broken = False  # a daemon was killed: deploy afresh at once

    def deploy(self) -> None:
        self.count += 1
        self.name = unique_name("Bst")
        self.state = self.base / self.name
        r = cli("up", "--name", self.name, "--state-dir", self.state, "--size", "1G", "--service", "pool",
                "--service", "s3", "--service", "fs", "--mount", self.base / f"mnt{self.count}")
        assert r.returncode == 0, r.stderr

    def remove(self) -> None:
        if self.state is not None:
            assert cli("down", "--state-dir", self.state).returncode == 0
            assert_nothing_left(self.name, self.state)
            self.state = None

    def healthy(self) -> None:
        """Wait until status says healthy again (after SIGCONT), else deploy afresh."""
        deadline = time.monotonic() + 30
        while self.state is not None and not self.broken and time.monotonic() < deadline:
            if cli("status", "--state-dir", self.state).returncode == 0:
                return
            time.sleep(1)
        self.remove()
        self.deploy()
        self.broken = False
        st = cli("status", "--state-dir", self.state)
        assert st.returncode == 0, st.stdout + st.stderr


@pytest.fixture(scope="module")
def instance7(tmp_path_factory):
    inst = Instance7(tmp_path_factory.mktemp("item7"))
    yield inst
    inst.remove()


KINDS = ["mon", "mgr", "osd", "mds", "rgw", "fuse"]


@pytest.mark.parametrize("sig,kind", [(s, k) for s in ("STOP", "KILL") for k in KINDS])
def test_item7_status_reports_a_killed_or_stopped_daemon(instance7, sig, kind):
    """A daemon killed with -9 or stopped with -STOP: `status` exits 1 and names it, with the
    reason, in text and JSON (Ceph itself still said HEALTH_OK, '1 up')."""
    instance7.healthy()
    state = instance7.state
    before = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    target = next(d for d in before["daemons"] if d["name"].startswith(kind + "."))
    os.kill(target["pid"], getattr(signal, "SIG" + sig))
    try:
        if sig == "KILL":
            try:
                psutil.Process(target["pid"]).wait(10)
            except psutil.NoSuchProcess:
                pass
        st = cli("status", "--state-dir", state, "--json", timeout=60)
        assert st.returncode == 1, st.stdout
        report = json.loads(st.stdout)
        mine = next(d for d in report["daemons"] if d["name"] == target["name"])
        assert mine["state"] == {"STOP": "stopped", "KILL": "dead"}[sig], mine
        assert mine["reason"] and str(target["pid"]) in mine["reason"], mine
        assert any(p.startswith(target["name"]) for p in report["problems"]), report["problems"]
        text = cli("status", "--state-dir", state, timeout=60)
        assert text.returncode == 1
        assert f"{target['name']} {mine['state']}: " in text.stdout, text.stdout
    finally:
        if sig == "STOP":
            os.kill(target["pid"], signal.SIGCONT)
        else:
            instance7.broken = True


def _data_pool(conf: Path) -> tuple[int, int]:
    """(bytes stored, objects) in radosgw's data pool, as the cluster reports them."""
    from ramburst.ceph.admin import AdminClient

    with AdminClient(conf, timeout=10) as admin:
        for pool in admin.command("df")["pools"]:
            if pool["name"] == "default.rgw.buckets.data":
                return pool["stats"]["stored"], pool["stats"]["objects"]
    return 0, 0


def _wait_freed(conf: Path, limit: int, what: str, timeout: float = 60) -> None:
    """Liveness bound, not a timing claim: radosgw's default waits two hours and more."""
    deadline = time.monotonic() + timeout
    while (held := _data_pool(conf))[0] > limit:
        assert time.monotonic() < deadline, \
            f"{what}: deleted S3 data not freed after {timeout:.0f} s: the data pool still holds " \
            f"{held[0] / 2**20:.0f} MiB in {held[1]} objects"
        time.sleep(0.5)


def test_item5b_deleted_s3_data_is_freed_within_seconds(tmp_path):
    """Write and delete three times the store's size through S3 (plain, overwritten, multipart
    completed and aborted, buckets removed): the space comes back and the store ends near empty."""
    name = unique_name("Bgc")
    state = tmp_path / name
    size = 2**30
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "s3")
    assert r.returncode == 0, r.stderr
    conf = state / "ceph.conf"
    try:
        s3 = ramburst.attach(state_dir=state).s3_client()
        chunk = os.urandom(16 * 2**20)
        part = os.urandom(5 * 2**20)
        written, round_no = 0, 0
        while written < 3 * size:
            round_no += 1
            bucket = f"gc{round_no}"
            s3.create_bucket(Bucket=bucket)
            for i in range(8):  # 8 x 16 MiB, each overwritten once: 256 MiB
                for _ in range(2):
                    s3.put_object(Bucket=bucket, Key=f"o{i}", Body=chunk)
                    written += len(chunk)
            for kind in ("complete", "abort"):  # 2 x 4 x 5 MiB in parts
                up = s3.create_multipart_upload(Bucket=bucket, Key=f"mp-{kind}")
                parts = []
                for n in range(1, 5):
                    etag = s3.upload_part(Bucket=bucket, Key=f"mp-{kind}", UploadId=up["UploadId"],
                                          PartNumber=n, Body=part)["ETag"]
                    parts.append({"PartNumber": n, "ETag": etag})
                    written += len(part)
                if kind == "complete":
                    s3.complete_multipart_upload(Bucket=bucket, Key=f"mp-{kind}", UploadId=up["UploadId"],
                                                 MultipartUpload={"Parts": parts})
                else:
                    s3.abort_multipart_upload(Bucket=bucket, Key=f"mp-{kind}", UploadId=up["UploadId"])
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)
            _wait_freed(conf, size // 2, f"after round {round_no} ({written / 2**30:.2f} GiB written)")
        _wait_freed(conf, size // 50, f"at the end ({written / 2**30:.2f} GiB written and deleted)")
        report = json.loads(cli("status", "--state-dir", state, "--json").stdout)
        assert report["capacity"]["state"] == "ok", report["capacity"]
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_item7_status_capacity_says_what_used_includes(instance7):
    """On a real instance: `used` is split into objects and BlueStore's own metadata."""
    instance7.healthy()
    cluster = ramburst.attach(state_dir=instance7.state)
    try:
        cluster.put("cap-probe", os.urandom(8 * 2**20))
    finally:
        cluster.close()
    deadline = time.monotonic() + 30
    while True:  # usage reaches the manager within a few seconds
        cap = json.loads(cli("status", "--state-dir", instance7.state, "--json").stdout)["capacity"]
        if cap and cap.get("objects_bytes", 0) >= 8 * 2**20 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert cap["objects_bytes"] >= 8 * 2**20 and cap["metadata_bytes"] > 0, cap
    assert cap["objects_bytes"] + cap["metadata_bytes"] == cap["used_bytes"]
    text = cli("status", "--state-dir", instance7.state).stdout
    assert "of objects (all copies) +" in text and "BlueStore's own metadata" in text, text


def test_item7_status_capacity_over_100_percent_is_explained():
    """The figures an outside probe saw ("1.8 GiB used of 1.2 GiB (146%)"): the text and JSON
    say what the overshoot is. A unit of formatting, no daemon behind it."""
    from ramburst import status

    gib = 2**30
    stats = {"total_bytes": int(1.2 * gib / 0.95), "total_used_raw_bytes": int(1.8 * gib)}
    pools = [{"name": "ramburst", "stats": {"bytes_used": int(1.5 * gib)}}]
    cap = status.capacity(stats, {"full_ratio": 0.95}, {"OSD_FULL": "1 full osd(s)"}, pools)
    assert cap["over_bytes"] == cap["used_bytes"] - cap["usable_bytes"] > 0.5 * gib
    assert cap["objects_bytes"] == int(1.5 * gib)
    assert cap["objects_bytes"] + cap["metadata_bytes"] == cap["used_bytes"]
    report = {"name": "x", "state": "up", "fsid": "f", "health": "HEALTH_ERR", "checks": {}, "problems": [],
              "error": None, "capacity": cap, "osds": None, "replicas": 1, "device": "file",
              "checksums": False, "endpoints": {}, "mon_host": "m", "daemons": []}
    text = status.render_text(report)
    line = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith("capacity"))
    assert "(150%)" in text.splitlines()[line]
    explanation = "\n".join(text.splitlines()[line + 1:line + 3])
    assert "1.5 GiB of objects" in explanation and "307.2 MiB of BlueStore's own metadata" in explanation, text
    assert "past the full mark" in explanation, text
