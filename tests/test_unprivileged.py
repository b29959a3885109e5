"""The whole cycle as an ordinary user: no root, no sudo, no systemd, no kernel module."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import RAMBURST, assert_nothing_left, cli, mon_port, throwaway_user, unique_name

pytestmark = pytest.mark.ceph

USER = "ramburst-test"


@pytest.fixture(scope="module")
def plain_user():
    """A throwaway unprivileged account, removed with its home afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a test user needs root; the suite as a plain user covers this anyway")
    with throwaway_user(USER) as user:
        yield user


def test_cycle_as_plain_user(plain_user):
    name = unique_name("usr")
    home = plain_user.pw_dir
    state = os.path.join(home, ".local", "state", "ramburst", name)
    up = cli("up", "--name", name, "--size", "1G", "--service", "pool", "--service", "s3", user=USER)
    assert up.returncode == 0, up.stderr
    port = mon_port(state)
    try:
        for root, dirs, files in os.walk(state):
            for f in files + dirs:
                st = os.stat(os.path.join(root, f))
                assert st.st_uid == plain_user.pw_uid
        daemons = json.loads(cli("status", "--name", name, "--json", user=USER).stdout)["daemons"]
        for d in daemons:
            with open(f"/proc/{d['pid']}/status") as f:
                uid_line = next(line for line in f if line.startswith("Uid:"))
            assert int(uid_line.split()[1]) == plain_user.pw_uid, d
        env = json.loads(cli("env", "--name", name, "--json", user=USER).stdout)
        put = subprocess.run(["runuser", "-u", USER, "--", "env", *[f"{k}={v}" for k, v in env.items()],
                              "sh", "-c",
                              'echo data | rados -p "$RAMBURST_POOL" put o - && rados -p "$RAMBURST_POOL" get o -'],
                             capture_output=True, text=True, timeout=60)
        assert put.returncode == 0 and put.stdout == "data\n", put.stderr
        aws = os.path.join(os.path.dirname(RAMBURST), "aws")
        s3 = subprocess.run(["runuser", "-u", USER, "--", "env", f"HOME={home}", *[f"{k}={v}" for k, v in env.items()],
                             "sh", "-c", f'{aws} s3 mb s3://mine && echo x | {aws} s3 cp - s3://mine/x && {aws} s3 ls s3://mine'],
                            capture_output=True, text=True, timeout=120)
        assert s3.returncode == 0 and " x" in s3.stdout, s3.stderr
        assert os.stat(env["RAMBURST_S3_CREDENTIALS"]).st_uid == plain_user.pw_uid
    finally:
        down = cli("down", "--name", name, user=USER)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(name, state, port, uid=plain_user.pw_uid)


@pytest.fixture()
def fuse_for_users():
    """/dev/fuse as distributions ship it (0666); this machine's is 0600. Restored after."""
    mode = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


def test_item6a_fs_as_plain_user_on_a_stock_fuse_conf(plain_user, fuse_for_users):
    """A plain user mounts, owns the filesystem root and writes; fuse.conf stays stock (no
    user_allow_other), and nobody else (not even root) reaches the private mount."""
    import errno

    name = unique_name("ufs")
    home = plain_user.pw_dir
    state = os.path.join(home, ".local", "state", "ramburst", name)
    mount = os.path.join(home, "scratch", name)
    up = cli("up", "--name", name, "--size", "1G", "--service", "fs", "--mount", mount, user=USER)
    assert up.returncode == 0, up.stderr
    port = mon_port(state)
    try:
        work = subprocess.run(
            ["runuser", "-u", USER, "--", "python3", "-c",
             "import os, sys; m = sys.argv[1]; st = os.stat(m); "
             "open(os.path.join(m, 'f'), 'w').write('data'); os.mkdir(os.path.join(m, 'd')); "
             "print(st.st_uid, oct(st.st_mode & 0o777), os.getxattr(m, 'ceph.quota.max_bytes').decode(), "
             "open(os.path.join(m, 'f')).read())", mount],
            capture_output=True, text=True, timeout=60)
        assert work.returncode == 0, work.stderr
        uid, mode, quota, data = work.stdout.split()
        assert (int(uid), mode, data) == (plain_user.pw_uid, "0o700", "data")
        assert int(quota) == int(0.9 * 2**30)
        with pytest.raises(OSError) as e:  # no allow_other: root is refused too
            os.listdir(mount)
        assert e.value.errno == errno.EACCES
        assert "allow_other" not in next(line for line in open("/proc/mounts") if f" {mount} " in line)
    finally:
        down = cli("down", "--name", name, user=USER)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(mount)
    assert_nothing_left(name, state, port, uid=plain_user.pw_uid)


def test_item13_share_mount_refused_for_a_plain_user_without_user_allow_other(plain_user, fuse_for_users):
    name = unique_name("ush")
    state = os.path.join(plain_user.pw_dir, ".local", "state", "ramburst", name)
    r = cli("up", "--name", name, "--size", "1G", "--service", "fs", "--share-mount", user=USER)
    assert r.returncode == 2, r.stderr
    assert "user_allow_other" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.exists(state)
    assert not os.path.exists(os.path.join(plain_user.pw_dir, "ramburst", name))
