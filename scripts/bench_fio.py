#!/usr/bin/env python3
"""fio on the fs mount and on plain tmpfs, same run, side by side (issue 17's table).

Deploys an instance with the fs service, runs each fio job on the mount and in a tmpfs folder
in /dev/shm, prints a table (MiB/s for 4M, IOPS for 4k) and removes everything.

    .venv/bin/python scripts/bench_fio.py [--size 2G] [--file 256M] [--runtime 10] [--buffered]
        [--fuse-arg=--client_oc_size=...]   (extra ceph-fuse options, to try settings)

Each job: fio --ioengine=psync --direct=1 --numjobs=1 --iodepth=1 on one file of --file bytes,
laid out first; random jobs run --runtime seconds.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ramburst  # noqa: E402
from ramburst.ceph import fuse as fuse_mod  # noqa: E402
from ramburst.config import parse_size  # noqa: E402

# name, fio rw, block size, what to report
JOBS = [
    ("seq write 4M", "write", "4M", "bw"),
    ("seq read 4M", "read", "4M", "bw"),
    ("rand write 4k", "randwrite", "4k", "iops"),
    ("rand read 4k", "randread", "4k", "iops"),
    ("mixed 4k 70/30 r/w", "randrw", "4k", "iops"),
]


def fio(folder: Path, rw: str, bs: str, size: int, runtime: int, direct: bool) -> dict:
    cmd = ["fio", "--name=j", f"--directory={folder}", "--filename=fio.dat", f"--rw={rw}", f"--bs={bs}",
           f"--size={size}", "--ioengine=psync", f"--direct={int(direct)}", "--numjobs=1",
           "--iodepth=1", "--output-format=json", "--group_reporting"]
    if rw.startswith("rand"):
        cmd += [f"--runtime={runtime}", "--time_based", "--rwmixread=70"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    job = out["jobs"][0]
    return {"bw": (job["read"]["bw_bytes"] + job["write"]["bw_bytes"]) / 2**20,
            "iops": job["read"]["iops"] + job["write"]["iops"]}


def fmt(v: float, what: str) -> str:
    return f"{v:,.0f} MiB/s" if what == "bw" else f"{v:,.0f} IOPS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2G", help="instance size (default 2G)")
    ap.add_argument("--file", default="256M", help="fio file size (default 256M)")
    ap.add_argument("--runtime", type=int, default=10, help="seconds per random job (default 10)")
    ap.add_argument("--buffered", action="store_true", help="direct=0 (page cache) instead of direct=1")
    ap.add_argument("--fuse-arg", action="append", default=[], help="extra ceph-fuse option (repeatable)")
    args = ap.parse_args()
    if shutil.which("fio") is None:
        sys.exit("bench_fio: fio is missing: sudo apt-get install fio")
    size = parse_size(args.file)
    if args.fuse_arg:  # trying settings: append them to the ceph-fuse command line
        base = fuse_mod.FuseMount.base_args
        fuse_mod.FuseMount.base_args = lambda self: base(self) + args.fuse_arg
    work = Path(tempfile.mkdtemp(prefix="ramburst-fio-"))
    shm = Path(tempfile.mkdtemp(prefix="ramburst-fio-tmpfs-", dir="/dev/shm"))
    rows = []
    try:
        with ramburst.deploy(name=f"fio{work.name[-6:]}", state_dir=str(work / "state"), size=args.size,
                             services=("fs",), mount=str(work / "mnt")) as cluster:
            for label, rw, bs, what in JOBS:
                on_fs = fio(cluster.mount, rw, bs, size, args.runtime, not args.buffered)
                on_tmpfs = fio(shm, rw, bs, size, args.runtime, not args.buffered)
                rows.append((label, fmt(on_fs[what], what), fmt(on_tmpfs[what], what),
                             on_fs[what] / on_tmpfs[what]))
                print(f"bench_fio: {label} done", file=sys.stderr)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    mode = "buffered" if args.buffered else "direct"
    print(f"| fio psync {mode}, file {args.file} | ramburst fs | tmpfs | ratio |")
    print("|---|---:|---:|---:|")
    for label, a, b, ratio in rows:
        print(f"| {label} | {a} | {b} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
