"""Shared helpers: run the CLI as a user would, and prove that nothing was left behind."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

RAMBURST = str(Path(sys.executable).with_name("ramburst"))


def cli(*args: str, env: dict | None = None, timeout: float = 180, user: str | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """Run `ramburst ARGS` and capture its output."""
    cmd = [RAMBURST, *map(str, args)]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", "env", f"HOME={Path('~' + user).expanduser()}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kwargs)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def ram_roots(name: str, uid: int | None = None) -> list[Path]:
    return sorted(Path("/dev/shm").glob(f"ramburst-{os.getuid() if uid is None else uid}-{name}-*"))


def processes_mentioning(text: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if text in cmd and p.pid != os.getpid():
            found.append(f"{p.pid} {cmd}")
    return found


def mon_port(state_dir: Path) -> int | None:
    try:
        meta = json.loads((Path(state_dir) / "instance.json").read_text())
    except FileNotFoundError:
        return None
    return int(meta["mon_host"].rsplit(":", 1)[1].rstrip("]"))


def assert_nothing_left(name: str, state_dir: Path, port: int | None = None, uid: int | None = None) -> None:
    """No daemon, no RAM folder, no state folder, no mount, and the mon port is free again."""
    state_dir = Path(state_dir)
    assert processes_mentioning(str(state_dir / "ceph.conf")) == []
    assert ram_roots(name, uid) == [], f"{ram_roots(name, uid)} left behind"
    assert not state_dir.exists(), f"{state_dir} left behind"
    mounts = Path("/proc/mounts").read_text()
    assert str(state_dir) not in mounts and f"ramburst-{os.getuid() if uid is None else uid}-{name}-" not in mounts
    if port is not None:
        listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        assert port not in listening, f"port {port} still bound"


@pytest.fixture
def instance_dir(tmp_path):
    """A fresh instance name and state folder, taken down whatever the test did."""
    name = unique_name()
    state = tmp_path / name
    yield name, state
    cli("down", "--state-dir", state)


CEPH_PROGRAMS = {"ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "radosgw", "ceph-fuse", "radosgw-admin",
                 "rados", "ceph", "ramburst"}


def stray_ceph_processes(base: str) -> list[psutil.Process]:
    """Ceph programs (and ramburst) whose command line names this session's temp folder.
    Never pytest itself or its ancestors (a `--basetemp` path appears in the shells and the
    pytest command that started the session)."""
    me = psutil.Process()
    spared = {me.pid} | {p.pid for p in me.parents()}
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = p.info["cmdline"] or []
        if p.pid in spared or not cmdline:
            continue
        programs = {os.path.basename(a) for a in cmdline[:2]}  # `python .../ramburst` too
        if programs & CEPH_PROGRAMS and base in " ".join(cmdline):
            found.append(p)
    return found


@pytest.fixture
def fake_ceph_path(tmp_path, monkeypatch):
    """A stub for every Ceph binary first on PATH, for tests refused after the binary check
    (bad sizes, interfaces, plans, folders): they then pass on a host without Ceph too. A
    stub that is ever run fails loudly, so a test that gets further than it meant to fails."""
    from ramburst.host import CEPH_BINARIES

    stubs = tmp_path / "ceph-stubs"
    stubs.mkdir()
    for name in CEPH_BINARIES.values():
        stub = stubs / name
        stub.write_text(f"#!/bin/sh\necho '{name}: a stub of the test suite was run' >&2\nexit 1\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}")
    return stubs


@pytest.fixture(autouse=True, scope="session")
def no_stray_daemons(tmp_path_factory):
    """Safety net: a Ceph daemon still running from this session's folders at the end is
    killed (by pid) and reported, so one failed test never leaves processes on the machine."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    strays = []
    for p in stray_ceph_processes(base):
        strays.append(" ".join(p.info["cmdline"]))
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    assert strays == [], f"daemons left running: {strays}"


@contextlib.contextmanager
def traversable(path: Path, user: str):
    """Let `user` reach `path`: every ancestor folder it cannot enter gets o+x for the
    duration (a checkout under a 0700 home such as /root), restored afterwards."""
    changed: list[tuple[Path, int]] = []
    try:
        path = Path(path).absolute()
        for folder in [*reversed(path.parents), path]:
            probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(folder)])
            if probe.returncode != 0:
                mode = stat.S_IMODE(os.stat(folder).st_mode)
                changed.append((folder, mode))
                os.chmod(folder, mode | stat.S_IXOTH)
        yield
    finally:
        for folder, mode in reversed(changed):
            os.chmod(folder, mode)


def kill_processes_of(uid: int) -> None:
    for p in psutil.process_iter(["uids"]):  # processes of a throwaway account only, by pid
        if p.info["uids"] and p.info["uids"].real == uid:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


@contextlib.contextmanager
def throwaway_user(name: str):
    """A fresh unprivileged account that can run this checkout's ramburst, removed (with its
    home and processes) afterwards. Needs root."""
    subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
    try:
        with traversable(Path(RAMBURST).parent, name):
            ok = subprocess.run(["runuser", "-u", name, "--", "test", "-x", RAMBURST]).returncode == 0
            assert ok, f"{RAMBURST} must be executable by an ordinary user (check folder permissions)"
            yield pwd.getpwnam(name)
    finally:
        with contextlib.suppress(KeyError):
            kill_processes_of(pwd.getpwnam(name).pw_uid)
        subprocess.run(["userdel", "-r", name], capture_output=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Three simulated hosts (tests/netns.py) for one module: the machine-wide lock is held until
    the module ends, so keep such modules short."""
    import netns

    yield from netns.hosts_fixture(3, tmp_path_factory.mktemp("netns"))
