"""Helpers shared between test modules (a test module never imports another one)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from ramburst.config import build_config
from ramburst.plan import plan_cluster
from ramburst.services import quota_shares, wants

OBJ = 4 * 2**20


def make_plan(tmp_path, services=("pool",), hosts=("127.0.0.1",), **options):
    """A plan as `up` makes it, with fixed ids, its folders under tmp_path (no daemons)."""
    config = replace(build_config(size="1G", services=services, state_dir=str(tmp_path / "state"), name="t1",
                                  **options), ram_dir=tmp_path / "ram")
    return plan_cluster(config, list(hosts), "00000000-0000-0000-0000-000000000001", 40001,
                        40002 if "s3" in services else None, "abcdef0123456789", wants=wants(services),
                        quota_shares=quota_shares(services))


def fill(conf: str, pool: str, limit_bytes: int, timeout: float = 5) -> tuple[dict[str, str], list[str]]:
    """Write 4 MiB objects with 16 writers until writes fail; return {acknowledged: sha256}, errors."""
    from ramburst.ceph.admin import load_rados

    rados = load_rados()
    cluster = rados.Rados(conffile=conf, name="client.admin",
                          conf={"rados_osd_op_timeout": str(timeout)})
    cluster.connect(timeout=10)
    acked: dict[str, str] = {}
    errors: list[str] = []
    try:
        io = cluster.open_ioctx(pool)

        def put(i: int) -> None:
            if errors:
                return
            data = os.urandom(OBJ)
            try:
                io.write_full(f"fill-{i}", data)
                acked[f"fill-{i}"] = hashlib.sha256(data).hexdigest()
            except rados.Error as e:
                errors.append(f"{type(e).__name__}: {e}")

        with ThreadPoolExecutor(16) as pool_:
            list(pool_.map(put, range(limit_bytes // OBJ)))
        io.close()
    finally:
        cluster.shutdown()
    return acked, errors


def run_in_thread(fn, name: str = "deployer") -> tuple[threading.Thread, dict]:
    """Start fn in a thread that is not the main one; the dict gets its "value" or "error"."""
    out: dict = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["error"] = e

    t = threading.Thread(target=body, name=name)
    t.start()
    return t, out


def in_thread(fn, timeout: float = 30) -> dict:
    """fn's "value" or "error", run in another thread and joined."""
    t, out = run_in_thread(fn)
    t.join(timeout)
    assert not t.is_alive()
    return out


def wait_until_up(state, proc, timeout=60):
    """Until the instance record of a background `run`/`up` says up (the process must live)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = state / "instance.json"
        if meta.exists() and json.loads(meta.read_text())["state"] == "up":
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("instance never came up")


def volume_like(shape, dtype, seed):
    """A smooth field with noise (what the predictive codec is for)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    field = np.sin(sum(grids)) * 1000 + 2000 + 5 * rng.standard_normal(shape)
    return field.astype(dtype)


def kill_9_once(proc, done, what: str, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `done()` is true (some of its work has landed); fails if it ended first."""
    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} ended before it could be killed"
        time.sleep(0.01)
    proc.kill()
    proc.wait(30)
