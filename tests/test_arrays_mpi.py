"""Issue 14: the collective array helpers on 3 simulated hosts under mpirun (kept short: the
host harness holds a machine-wide lock)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import netns
from conftest import RAMBURST, unique_name

pytest.importorskip("zarr")
pytest.importorskip("mpi4py")

pytestmark = netns.marks()

PY = str(Path(RAMBURST).with_name("python"))
JOB = str(Path(__file__).with_name("arrays_mpi_job.py"))
BENCH = str(Path(__file__).with_name("arrays_mpi_bench.py"))


def json_objects(text: str) -> list[dict]:
    """Every JSON object the ranks printed, each on a line of its own; mpirun can join two ranks'
    lines into one (seen in CI: '{"rank": 2, ...}{"rank": 1, ...}'), so read a line's objects one
    after another."""
    decoder, out = json.JSONDecoder(), []
    for line in text.splitlines():
        i = 0
        while line.startswith("{", i):
            obj, i = decoder.raw_decode(line, i)
            out.append(obj)
    return out


def test_item_mpi_load_apply_map_blocks_and_agreed_errors_on_three_hosts(hosts, tmp_path):
    name = unique_name("cmpi")
    state = tmp_path / name
    source = tmp_path / "src.npy"
    np.save(source, np.random.default_rng(8).random((90, 64)).astype("f4"))
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        job = hosts.mpirun(PY, JOB, str(state), str(source))
        assert job.returncode == 0, job.stdout + job.stderr
        ranks = sorted(json_objects(job.stdout),
                       key=lambda r: r["rank"])
        assert [r["rank"] for r in ranks] == [0, 1, 2], job.stdout
        assert all(r["load"] == {"written": 9, "skipped": 0, "bytes": 90 * 64 * 4} for r in ranks)
        assert [r["apply_units"] for r in ranks] == [3, 3, 3]  # 9 chunks dealt round-robin
        assert ranks[0]["equal"] is True
        for r in ranks:  # the error of rank 1 is raised on every rank, naming rank 1
            assert r["error"] and "failed on rank 1" in r["error"] and "bad block on purpose" in r["error"]
    finally:
        down = hosts.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr


@pytest.mark.skipif(not os.environ.get("RAMBURST_BENCH_ARRAYS_MPI"),
                    reason="a measurement, not a check: RAMBURST_BENCH_ARRAYS_MPI=<MiB> runs it")
def test_bench_three_hosts_aggregate_vs_one_process(hosts, tmp_path):
    """Prints (never asserts) aggregate write/read MB/s of 3 ranks on 3 hosts vs 1 rank."""
    mib = int(os.environ["RAMBURST_BENCH_ARRAYS_MPI"])
    name = unique_name("cmpib")
    state = tmp_path / name
    up = hosts.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", "1G", "--name", name,
                      "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for n in (1, 3, 1, 3):
            job = hosts.mpirun(PY, BENCH, str(state), str(mib), hosts=n)
            assert job.returncode == 0, job.stdout + job.stderr
            print("arrays-mpi-bench", job.stdout.strip())
    finally:
        down = hosts.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
