"""Issue 13 on 3 simulated hosts: every MPI rank stages a share, balanced by the shared counter."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import psutil
from test_stage import make_tree, snapshot

import netns
from conftest import RAMBURST, assert_nothing_left, unique_name

pytestmark = netns.marks()
MiB = 2**20


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


def rank_processes(parent: psutil.Process, name: str) -> list[psutil.Process]:
    """The `ramburst run` ranks of instance `name` under our mpirun (orted starts them)."""
    found = []
    for p in parent.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if len(cmd) > 2 and cmd[1].endswith("ramburst") and "run" in cmd and name in cmd:
            found.append(p)
    return found


def test_item1_run_mpi_stages_in_and_out_on_every_rank_within_a_time_limit(hosts, tmp_path):
    """`run --mpi --stage-in --stage-out` on 3 hosts, stopped by SIGTERM on one rank (as a time
    limit does): every rank copies a balanced share both ways, before `down`, byte-identical."""
    name = unique_name("bsr")
    state = tmp_path / name
    tree = make_tree(tmp_path / "src", big=4 * MiB)
    for i in range(3):  # 6 extents of 32 MiB (run uses the default extent): 2 a rank when balanced
        (tree / f"large{i}").write_bytes(os.urandom(64 * MiB))
    dest, marker = tmp_path / "results", tmp_path / "written"
    job = (f'echo result > {tmp_path}/r.txt && rados -p "$RAMBURST_POOL" put out/result.txt {tmp_path}/r.txt && '
           f'rados -p "$RAMBURST_POOL" stat tree/large2 && touch {marker} && sleep 600')
    p = subprocess.Popen(**hosts.mpirun_args(RAMBURST, "run", "--mpi", "--interface", "eth0", "--size", "1G",
                                             "--name", name, "--state-dir", str(state), "--grace", "3",
                                             "--stage-in", str(tree), "--stage-out", str(dest),
                                             "--", "sh", "-c", job),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while not marker.exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.2)
        ranks = rank_processes(psutil.Process(p.pid), name)
        assert len(ranks) == 3, ranks
        ranks[1].send_signal(signal.SIGTERM)  # one rank is told: all of them must stop, stage out, go
        out, err = p.communicate(timeout=400)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 128 + signal.SIGTERM, err
    for direction in ("in", "out"):
        m = re.search(rf"staged {direction} .*per rank ([\d./]+) MiB", err)
        assert m, err
        share = [float(x) for x in m.group(1).split("/")]
        print(m.group(0))
        assert len(share) == 3 and min(share) > 0, m.group(0)
        assert max(share) - min(share) <= 0.10 * sum(share) / 3, m.group(0)
    assert err.index("staged out") < err.index("everything removed"), err
    assert (dest / "out" / "result.txt").read_text() == "result\n"
    assert snapshot(dest / "tree") == snapshot(tree)
    assert_nothing_left(name, state)
