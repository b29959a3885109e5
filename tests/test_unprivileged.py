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
                              "sh", "-c", 'echo data | rados -p "$RAMBURST_POOL" put o - && rados -p "$RAMBURST_POOL" get o -'],
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
