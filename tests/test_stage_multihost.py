"""Issue 13 on 3 simulated hosts: every MPI rank stages a share, balanced by the shared counter."""
from __future__ import annotations

import json
import os

import pytest
from test_stage import make_tree, snapshot

import netns
from conftest import RAMBURST, assert_nothing_left, unique_name

pytestmark = pytest.mark.ceph
why_not = netns.available()
if why_not:
    pytestmark = [pytest.mark.ceph, pytest.mark.skip(reason=f"simulated hosts unavailable: {why_not}")]
MiB = 2**20


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    yield from netns.hosts_fixture(3, tmp_path_factory.mktemp("netns"))


def test_item_three_hosts_round_trip_balanced(hosts, tmp_path):
    name = unique_name("bsm")
    state = tmp_path / name
    tree = make_tree(tmp_path / "src", big=20 * MiB)
    for i in range(3):
        (tree / f"large{i}").write_bytes(os.urandom(60 * MiB))
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state), "--service", "pool", "--service", "fs",
                      "--mount", str(tmp_path / "mnt-{host}"))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for target in ("pool:mh", "fs:/mh"):
            r = hosts.mpirun(RAMBURST, "stage", "in", str(tree), "--to", target, "--mpi", "--state-dir", str(state),
                             "--extent", "2M", "--threads", "4", "--json")
            assert r.returncode == 0, r.stdout + r.stderr
            s = json.loads(r.stdout)
            share = s["per_rank"]
            assert len(share) == 3 and sum(share) == s["bytes"] > 200 * MiB and s["errors"] == []
            assert max(share) - min(share) <= 0.10 * (sum(share) / 3), share
            dest = tmp_path / ("back-" + target.split(":")[0])
            r = hosts.mpirun(RAMBURST, "stage", "out", str(dest), "--from", target, "--mpi", "--state-dir", str(state),
                             "--extent", "2M", "--json")
            assert r.returncode == 0, r.stdout + r.stderr
            assert len([b for b in json.loads(r.stdout)["per_rank"] if b > 0]) == 3
            assert snapshot(dest) == snapshot(tree.parent)
        assert (tmp_path / "mnt-h1" / "mh" / "tree" / "large2").read_bytes() == (tree / "large2").read_bytes()
    finally:
        down = hosts.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(name, state)
