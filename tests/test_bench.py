"""`ramburst bench`: the row logic without daemons, and one quick real run."""
from __future__ import annotations

import json

import pytest

from ramburst.bench.report import Row, attach_baselines, table, to_json

from conftest import cli


def test_ratios_against_tmpfs_of_the_same_workload():
    rows = attach_baselines([Row("tmpfs", "4MiB write", 1000, "MB/s"), Row("tmpfs", "4MiB read", 4000, "MB/s"),
                             Row("pool", "4MiB write", 600, "MB/s"), Row("pool", "4MiB read", 1000, "MB/s"),
                             Row("s3", "4KiB writes", 50, "ops/s"), Row("deploy", "up", 1.2, "s")])
    by = {(r.path, r.workload): r for r in rows}
    assert by[("pool", "4MiB write")].ratio == pytest.approx(0.6)
    assert by[("pool", "4MiB read")].ratio == pytest.approx(0.25)
    assert by[("s3", "4KiB writes")].ratio is None  # no tmpfs figure for it in this run
    assert by[("deploy", "up")].ratio is None and by[("tmpfs", "4MiB read")].ratio is None
    text = table(rows)
    assert "| pool | 4MiB write | 600 MB/s | 1,000 MB/s | 0.60 |" in text
    assert "| deploy | up | 1.20 s | - | - |" in text and "tmpfs |" not in text.split("\n", 2)[2]
    data = json.loads(to_json(rows, {"mib": 1}))
    assert data["mib"] == 1 and data["rows"][2]["ratio"] == pytest.approx(0.6)


def test_ratio_is_the_median_of_per_pass_ratios():
    # tmpfs and pool measured in the same three passes; the machine was slow in pass 2.
    rows = attach_baselines([Row.of("tmpfs", "4MiB write", [1000, 400, 1100], "MB/s"),
                             Row.of("pool", "4MiB write", [500, 300, 440], "MB/s")])
    pool = rows[1]
    assert pool.value == 440 and pool.baseline == 1000
    assert pool.ratio == pytest.approx(0.5)  # median of 0.5, 0.75, 0.4, not 440/1000
    assert pool.ratio_range == (pytest.approx(0.4), pytest.approx(0.75))
    assert "| pool | 4MiB write | 440 MB/s | 1,000 MB/s | 0.50 | 0.40-0.75 |" in table(rows)


def test_tcp_ceiling_measures_a_real_stream():
    from ramburst.bench import workloads

    assert workloads.tcp_stream(64 * 2**20) > 0


@pytest.mark.ceph
def test_bench_on_a_running_instance(instance_dir, tmp_path):
    name, state = instance_dir
    mount = tmp_path / "m"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "2G", "--service", "pool", "--service", "s3",
            "--service", "fs", "--mount", mount)
    assert r.returncode == 0, r.stderr
    b = cli("bench", "--state-dir", state, "--mib", "32", "--seconds", "0.5", "--passes", "1", "--json",
            "--plot", tmp_path / "b.png", timeout=300)
    assert b.returncode == 0, b.stderr
    rows = json.loads(b.stdout)["rows"]
    seen = {(r["path"], r["workload"]) for r in rows}
    for path in ("tmpfs", "pool", "s3", "fs"):
        for workload in ("4MiB write", "4MiB read", "4KiB writes"):
            assert (path, workload) in seen
    assert ("fs", "create+stat+delete") in seen and ("tcp-loopback", "4MiB read") in seen
    assert all(r["value"] > 0 for r in rows)
    assert all(r["ratio"] > 0 for r in rows if r["path"] != "tmpfs")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    # The bench leaves the user's data and the instance as they were.
    assert list(mount.iterdir()) == []
    assert cli("status", "--state-dir", state).returncode == 0
    env = json.loads(cli("env", "--state-dir", state, "--json").stdout)
    import os
    import subprocess

    ls = subprocess.run(["rados", "-p", "ramburst", "ls"], env={**os.environ, **env}, capture_output=True,
                        text=True, timeout=60)
    assert ls.returncode == 0 and ls.stdout == ""


def test_bench_of_a_missing_instance(tmp_path):
    r = cli("bench", "--state-dir", tmp_path / "none")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no instance" in r.stderr


@pytest.mark.ceph
def test_cpu_per_mib_script_runs_and_cleans_up():
    import glob
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    before = set(glob.glob("/dev/shm/ramburst-*"))
    r = subprocess.run([sys.executable, str(root / "scripts" / "bench_cpu.py"), "--service", "pool", "--mib", "32",
                        "--passes", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in r.stdout.splitlines()
            if line.startswith("| pool") or line.startswith("| tmpfs")}
    assert set(rows) == {("tmpfs", "4 MiB write"), ("tmpfs", "4 MiB read"), ("pool", "4 MiB write"),
                         ("pool", "4 MiB read")}
    osd_cpu = float(rows[("pool", "4 MiB write")].split("|")[5])  # the OSD did the work
    assert osd_cpu > 0
    assert set(glob.glob("/dev/shm/ramburst-*")) == before


@pytest.mark.ceph
def test_osd_counters_script_reports_the_data_path():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "bench_counters.py"), "--mib", "32", "--size", "2G"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(): line.split("|") for line in r.stdout.splitlines()
            if line.startswith("| osd.") or line.startswith("| bluestore.")}
    # 8 objects of 4 MiB written and read once each, as counted by the OSD itself
    assert int(rows["osd.op_w_latency"][2]) == 8 and int(rows["osd.op_r_latency"][2]) == 8
    assert float(rows["osd.op_w_latency"][3]) > 0 and "bluestore.state_aio_wait_lat" in rows
