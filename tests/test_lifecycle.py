"""up -> use through the rados CLI and the Python API -> status -> down -> nothing left."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import ramburst

from conftest import assert_nothing_left, cli, mon_port, unique_name

pytestmark = pytest.mark.ceph


def client_env(state_dir) -> dict:
    out = cli("env", "--state-dir", state_dir, "--json")
    assert out.returncode == 0, out.stderr
    return {**os.environ, **json.loads(out.stdout)}


def daemon_asok(state_dir, daemon: str, host: str = "h0"):
    """A daemon's admin socket: in its host's RAM folder (ramburst.layout.Layout.asok)."""
    ram_dir = json.loads((state_dir / "hosts" / f"{host}.json").read_text())["ram_dir"]
    return os.path.join(ram_dir, f"{daemon}.asok")


def osd_setting(state_dir, option: str) -> str:
    out = subprocess.run(["ceph", "--admin-daemon", daemon_asok(state_dir, "osd.0"), "config", "get", option],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[option]


@pytest.mark.parametrize("device,checksums", [("file", False), ("memstore", False), ("file", True)])
def test_full_cycle(tmp_path, device, checksums):
    name = unique_name("cyc")
    state = tmp_path / name
    up = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--device", device,
             "--checksums" if checksums else "--no-checksums")
    assert up.returncode == 0, up.stderr
    assert "up in" in up.stderr  # progress with elapsed time on stderr
    port = mon_port(state)
    try:
        # Secrets: fresh, private.
        assert state.stat().st_mode & 0o777 == 0o700
        for f in (state / "keys").iterdir():
            assert f.stat().st_mode & 0o777 == 0o600, f
        assert (state / "ceph.conf").stat().st_mode & 0o777 == 0o600

        # Any Ceph client works with the exported environment.
        env = client_env(state)
        assert env["RAMBURST_POOL"] == "ramburst" and env["RAMBURST_NAME"] == name
        payload = tmp_path / "in.bin"
        payload.write_bytes(os.urandom(3 * 2**20 + 17))
        subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "put", "obj", str(payload)], env=env, check=True,
                       timeout=60)
        got = tmp_path / "out.bin"
        subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "get", "obj", str(got)], env=env, check=True, timeout=60)
        assert got.read_bytes() == payload.read_bytes()

        # The Python API on the same instance sees the same object and can write its own.
        cluster = ramburst.attach(state_dir=state)
        try:
            ioctx = cluster.ioctx()
            assert ioctx.read("obj", 2**23) == payload.read_bytes()
            ioctx.write_full("from-python", b"hello")
            ioctx.close()
        finally:
            cluster.close()
        listed = subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "ls"], env=env, capture_output=True,
                                text=True, check=True, timeout=60).stdout.split()
        assert sorted(listed) == ["from-python", "obj"]

        st = cli("status", "--state-dir", state)
        assert st.returncode == 0, st.stderr
        assert "HEALTH_OK" in st.stdout or "HEALTH_WARN" in st.stdout
        assert "osd.0" in st.stdout and "running" in st.stdout
        js = json.loads(cli("status", "--state-dir", state, "--json").stdout)
        assert js["state"] == "up" and js["osds"]["up"] == 1 and js["device"] == device
        assert {d["name"] for d in js["daemons"]} == {"mon.a", "mgr.x", "osd.0", "watchdog.h0"}
        assert all(d["state"] == "running" and d["pid"] > 0 for d in js["daemons"])
        assert js["checksums"] is checksums and ("checksums on" if checksums else "no checksums") in st.stdout

        # The RAM tuning is what the running OSD uses (docs/tuning.md).
        assert osd_setting(state, "bluestore_csum_type") == ("crc32c" if checksums else "none")
        assert osd_setting(state, "osd_skip_data_digest") == ("false" if checksums else "true")
        if device == "file":
            assert osd_setting(state, "bluestore_max_blob_size") == "1048576"
        assert osd_setting(state, "debug_osd") == "0/0" and osd_setting(state, "debug_ms") == "0/0"
        osd_pid = next(d["pid"] for d in js["daemons"] if d["name"] == "osd.0")
        environ = open(f"/proc/{osd_pid}/environ", "rb").read().decode(errors="replace")
        assert ("GLIBC_TUNABLES=glibc.malloc.mmap_threshold=" in environ) is (device == "file")
    finally:
        down = cli("down", "--state-dir", state)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(name, state, port)
    again = cli("down", "--state-dir", state)
    assert again.returncode == 0 and "nothing to remove" in again.stderr
    st = cli("status", "--state-dir", state)
    assert st.returncode != 0 and st.stderr.count("\n") == 1


def test_python_context_manager(tmp_path):
    name = unique_name("api")
    state = tmp_path / name
    with ramburst.deploy(name=name, state_dir=str(state), size="1G") as cluster:
        port = mon_port(state)
        assert cluster.env["CEPH_CONF"] == str(state / "ceph.conf")
        assert cluster.env["RAMBURST_POOL"] == cluster.pool == "ramburst"
        io = cluster.ioctx()
        io.write_full("x", b"1" * 4096)
        assert io.read("x") == b"1" * 4096
        io.close()
        assert cluster.status()["health"] is not None
    assert_nothing_left(name, state, port)


def test_run_tears_down_and_returns_the_command_status(tmp_path):
    name = unique_name("run")
    state = tmp_path / name
    script = ('rados -p "$RAMBURST_POOL" put o /etc/hostname && rados -p "$RAMBURST_POOL" ls '
              '&& echo "$CEPH_CONF" > ' + str(tmp_path / "conf.txt") + ' && exit 7')
    r = cli("run", "--name", name, "--state-dir", state, "--size", "1G", "--", "sh", "-c", script)
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == ["o"]
    assert (tmp_path / "conf.txt").read_text().strip() == str(state / "ceph.conf")
    assert_nothing_left(name, state)


def test_run_with_a_missing_command(tmp_path):
    name = unique_name("run")
    state = tmp_path / name
    r = cli("run", "--name", name, "--state-dir", state, "--size", "1G", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert "cannot run no-such-command-xyz" in r.stderr
    assert_nothing_left(name, state)


def test_two_instances_side_by_side(tmp_path):
    names = [unique_name("two"), unique_name("two")]
    states = [tmp_path / n for n in names]
    try:
        for n, s in zip(names, states):
            r = cli("up", "--name", n, "--state-dir", s, "--size", "1G")
            assert r.returncode == 0, r.stderr
        ports = [mon_port(s) for s in states]
        assert ports[0] != ports[1]
        envs = [client_env(s) for s in states]
        for i, env in enumerate(envs):
            subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "put", f"only-in-{i}", "/etc/hostname"],
                           env=env, check=True, timeout=60)
        for i, env in enumerate(envs):
            ls = subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "ls"], env=env, capture_output=True,
                                text=True, check=True, timeout=60).stdout.split()
            assert ls == [f"only-in-{i}"]
        # Taking one down leaves the other working.
        assert cli("down", "--state-dir", states[0]).returncode == 0
        assert_nothing_left(names[0], states[0], ports[0])
        assert cli("status", "--state-dir", states[1]).returncode == 0
        subprocess.run(["rados", "-p", "ramburst", "stat", "only-in-1"], env=envs[1], check=True, timeout=60)
    finally:
        for s in states:
            cli("down", "--state-dir", s)
    assert_nothing_left(names[1], states[1])


def test_name_already_up_is_refused(tmp_path):
    name = unique_name("dup")
    state = tmp_path / name
    assert cli("up", "--name", name, "--state-dir", state, "--size", "1G").returncode == 0
    try:
        before = sorted(p.name for p in state.rglob("*"))
        r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and "already up" in r.stderr
        assert sorted(p.name for p in state.rglob("*")) == before
        assert cli("status", "--state-dir", state).returncode == 0
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_distrax_config_as_it_is(tmp_path):
    """`ramburst up/status/down --config distrax.cfg` work like `distrax -a create/remove`."""
    folder = tmp_path / "my_ceph"
    cfg = tmp_path / "distrax.cfg"
    cfg.write_text(f"[setup]\nbackend = ceph\nfolder = {folder}\ninterface = lo\nnumber_of_hosts = 1\n"
                   "service = pool\n\n[ram]\ntype = brd\nnumber = 2\nsize_in_gb = 1\n")
    up = cli("up", "--config", cfg)
    assert up.returncode == 0, up.stderr
    assert "type = brd: using a tmpfs file" in up.stderr
    try:
        report = json.loads(cli("status", "--config", cfg, "--json").stdout)
        assert report["pool"] == "distrax" and report["osds"]["up"] == 2
        assert (folder / "ceph.conf").exists()
    finally:
        assert cli("down", "--config", cfg).returncode == 0
    assert_nothing_left("default", folder)


def test_deep_state_folder_keeps_every_admin_socket(tmp_path):
    """A state folder deeper than a UNIX socket path allows (107 bytes) once made Ceph skip
    every admin socket: `status` saw silent daemons and the watchdog ended a healthy
    ceph-fuse after 20 s. The sockets now live in the short RAM folder."""
    name = unique_name("deep")
    state = tmp_path / ("d" * 60) / ("e" * 40) / name
    mount = tmp_path / "m"
    up = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "pool",
             "--service", "fs", "--mount", mount)
    assert up.returncode == 0, up.stderr
    port = mon_port(state)
    try:
        assert len(str(state / "run" / "fuse.h0.asok")) > 107
        for daemon in ("mon.a", "mgr.x", "osd.0", "mds.a", "fuse.h0"):
            sock = daemon_asok(state, daemon)
            assert len(sock) <= 107 and os.path.exists(sock), sock
        time.sleep(22)  # past the watchdog's 20 s: a silent ceph-fuse would have been ended
        st = cli("status", "--state-dir", state)
        assert st.returncode == 0, st.stdout + st.stderr
        (mount / "f").write_text("still here")
        assert (mount / "f").read_text() == "still here"
    finally:
        down = cli("down", "--state-dir", state)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(name, state, port)
