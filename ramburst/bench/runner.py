"""Run the bench: deploy (or attach to) an instance, measure each path and tmpfs, clean up."""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

from .. import lifecycle
from ..api import Cluster
from ..config import Config
from ..progress import Steps
from . import workloads as w
from .report import Row, attach_baselines


def time_deploys(config: Config, runs: int, steps: Steps) -> list[Row]:
    ups, downs = [], []
    for i in range(runs):
        t = time.perf_counter()
        lifecycle.up(config, show_progress=False)
        ups.append(time.perf_counter() - t)
        t = time.perf_counter()
        lifecycle.down(config.instance_dir, quiet=True)
        downs.append(time.perf_counter() - t)
        steps.info(f"deploy {i + 1}/{runs}: up {ups[-1]:.2f} s, down {downs[-1]:.2f} s")
    return [Row.of("deploy", "up", ups, "s"), Row.of("deploy", "down", downs, "s")]


def measure(cluster: Cluster, total: int, seconds: float, steps: Steps, passes: int = 3) -> list[Row]:
    """Every workload on tmpfs and on each service the instance has.

    One warm-up pass of the 4 MiB workload per path first (it allocates the RAM pages of the
    store, the page cache and the allocators' heaps, which a first pass pays for), then
    `passes` passes in which the paths take turns, so tmpfs and each service are measured
    under the same conditions; figures are medians over the passes."""
    prefix = f"rbbench-{uuid.uuid4().hex[:6]}-"
    shm = Path(tempfile.mkdtemp(prefix="ramburst-bench-", dir="/dev/shm"))
    targets: list[tuple[w.Target, Path | None]] = []
    samples: dict[tuple[str, str, str], list[float]] = {}

    def record(path: str, workload: str, unit: str, value: float) -> None:
        samples.setdefault((path, workload, unit), []).append(value)

    try:
        targets.append((w.FolderTarget("tmpfs", shm), shm))
        if cluster.pool:
            targets.append((w.PoolTarget(cluster), None))
        if cluster.s3:
            targets.append((w.S3Target(cluster, prefix.rstrip("-")), None))
        if cluster.mount:
            folder = cluster.mount / prefix.rstrip("-")
            folder.mkdir()
            targets.append((w.FolderTarget("fs", folder, drop_cache=True), folder))
        for target, _ in targets:
            w.big_write_read(target, total, f"{prefix}warm-")
        steps.info("warm-up pass done")
        for i in range(passes):
            for target, folder in targets:
                write, read = w.big_write_read(target, total, prefix)
                record(target.name, "4MiB write", "MB/s", write)
                record(target.name, "4MiB read", "MB/s", read)
                record(target.name, "4KiB writes", "ops/s", w.small_ops(target, seconds, prefix))
                if folder is not None:
                    record(target.name, "create+stat+delete", "ops/s", w.metadata_ops(folder, 2000))
            record("tcp-loopback", "4MiB read", "MB/s", w.tcp_stream(total))
            steps.info(f"pass {i + 1}/{passes} measured")
    finally:
        for target, folder in targets:
            try:
                target.close()
            finally:
                if folder is not None and folder != shm:
                    shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    return attach_baselines([Row.of(p, wl, values, unit) for (p, wl, unit), values in samples.items()])


def run(config: Config | None, state_dir: Path | None, total: int, seconds: float, deploys: int,
        show_progress: bool = True, passes: int = 3) -> list[Row]:
    """Bench a running instance (state_dir) or deploy `config` for the bench and remove it."""
    steps = Steps(show_progress, prefix="bench: ")
    if state_dir is not None:
        cluster = Cluster(state_dir)
        try:
            return measure(cluster, total, seconds, steps, passes)
        finally:
            cluster.close()
    rows = time_deploys(config, deploys, steps) if deploys else []
    lifecycle.up(config, show_progress=False)
    try:
        cluster = Cluster(config.instance_dir)
        try:
            rows += measure(cluster, total, seconds, steps, passes)
        finally:
            cluster.close()
    finally:
        lifecycle.down(config.instance_dir, quiet=True)
    return rows
