"""Run the bench: deploy (or attach to) an instance, measure each path and tmpfs, clean up."""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from .. import orchestrator
from ..api import Cluster
from ..config import Config
from ..progress import Steps
from . import workloads as w
from .report import Row, attach_baselines


def time_deploys(config: Config, runs: int, steps: Steps) -> list[Row]:
    ups, downs = [], []
    for i in range(runs):
        t = time.perf_counter()
        orchestrator.up(config, show_progress=False)
        ups.append(time.perf_counter() - t)
        t = time.perf_counter()
        orchestrator.down(config.instance_dir, quiet=True)
        downs.append(time.perf_counter() - t)
        steps.info(f"deploy {i + 1}/{runs}: up {ups[-1]:.2f} s, down {downs[-1]:.2f} s")
    return [Row("deploy", "up", statistics.median(ups), "s"),
            Row("deploy", "down", statistics.median(downs), "s")]


def measure(cluster: Cluster, total: int, seconds: float, steps: Steps) -> list[Row]:
    """Every workload on tmpfs and on each service the instance has."""
    prefix = f"rbbench-{uuid.uuid4().hex[:6]}-"
    rows: list[Row] = []
    shm = Path(tempfile.mkdtemp(prefix="ramburst-bench-", dir="/dev/shm"))
    try:
        targets: list[tuple[w.Target, Path | None]] = [(w.FolderTarget("tmpfs", shm), shm)]
        if cluster.pool:
            targets.append((w.PoolTarget(cluster), None))
        if cluster.s3:
            targets.append((w.S3Target(cluster, prefix.rstrip("-")), None))
        if cluster.mount:
            folder = cluster.mount / prefix.rstrip("-")
            folder.mkdir()
            targets.append((w.FolderTarget("fs", folder), folder))
        for target, folder in targets:
            try:
                write, read = w.big_write_read(target, total, prefix)
                rows += [Row(target.name, "4MiB write", write, "MB/s"), Row(target.name, "4MiB read", read, "MB/s")]
                rows.append(Row(target.name, "4KiB writes", w.small_ops(target, seconds, prefix), "ops/s"))
                if folder is not None:
                    rows.append(Row(target.name, "create+stat+delete", w.metadata_ops(folder, 2000), "ops/s"))
                steps.info(f"{target.name} measured")
            finally:
                target.close()
                if folder is not None and folder != shm:
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    return attach_baselines(rows)


def run(config: Config | None, state_dir: Path | None, total: int, seconds: float, deploys: int,
        show_progress: bool = True) -> list[Row]:
    """Bench a running instance (state_dir) or deploy `config` for the bench and remove it."""
    steps = Steps(show_progress, prefix="bench: ")
    if state_dir is not None:
        cluster = Cluster(state_dir)
        try:
            return measure(cluster, total, seconds, steps)
        finally:
            cluster.close()
    rows = time_deploys(config, deploys, steps) if deploys else []
    orchestrator.up(config, show_progress=False)
    try:
        cluster = Cluster(config.instance_dir)
        try:
            rows += measure(cluster, total, seconds, steps)
        finally:
            cluster.close()
    finally:
        orchestrator.down(config.instance_dir, quiet=True)
    return rows
