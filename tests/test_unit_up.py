"""`up` end to end on fakes (tests/fakes.py): its real phases, steps, agree calls and rollback,
with each rank a thread and each daemon a sleeping process; no Ceph binary on PATH."""
from __future__ import annotations

import threading
from dataclasses import replace

import psutil
import pytest

import ramburst.progress
from ramburst import host as hostmod
from ramburst.config import build_config
from ramburst.errors import DeployError
from ramburst.lifecycle import down, up
from ramburst.lifecycle.phases import PHASES, step_names

import fakes

WORKER_STEPS = {"osd-mkfs"}  # run on the deployment's worker threads, beside the monitor's steps
MEMBER_STEPS = ["ram-dir", "osd-mkfs", "osd-start", "watchdog-start"]  # what a rank > 0 does for a pool


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Fakes installed, PATH without Ceph, steps recorded per deployment (by its cancel event)."""
    monkeypatch.setenv("PATH", fakes.no_ceph_path(tmp_path))
    journal = fakes.Journal()
    steps: list[tuple[threading.Event, str, str]] = []
    real_inject = ramburst.progress.inject

    def inject(step, cancel=None):
        steps.append((cancel, threading.current_thread().name, step))
        real_inject(step, cancel)

    monkeypatch.setattr(ramburst.progress, "inject", inject)
    (tmp_path / "ram").mkdir()
    yield monkeypatch, journal, steps
    leftover = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(
        p.info["cmdline"] or [])]
    for p in psutil.process_iter(["cmdline"]):
        if str(tmp_path) in " ".join(p.info["cmdline"] or []):
            p.kill()
    assert leftover == [], "fake daemons left running"


def config_for(tmp_path, **options):
    options.setdefault("size", "1G")
    return replace(build_config(state_dir=str(tmp_path / "state"), name="u1", **options),
                   ram_dir=tmp_path / "ram")


def steps_of(steps, cancel, main_only=False):
    return [s for c, thread, s in steps if c is cancel and not (main_only and s in WORKER_STEPS)]


def test_item5_one_host_runs_the_steps_of_step_names_in_order(tmp_path, world):
    monkeypatch, journal, steps = world
    fakes.install(monkeypatch, journal)
    cancel = threading.Event()
    meta = up(config_for(tmp_path), show_progress=False, cancel=cancel)
    try:
        assert meta["state"] == "up" and meta["services"] == ["pool"]
        expected = step_names(("pool",))
        assert steps_of(steps, cancel, main_only=True) == [s for s in expected if s not in WORKER_STEPS]
        assert sorted(steps_of(steps, cancel)) == sorted(expected)
        assert {t for c, t, s in steps if s in WORKER_STEPS} != {"MainThread"}
        assert not (tmp_path / "state" / "keys" / "initial.keyring").exists()
    finally:
        assert down(tmp_path / "state", quiet=True)
    assert not (tmp_path / "state").exists() and list((tmp_path / "ram").iterdir()) == []


def test_item5_two_ranks_each_run_their_roles_phases(tmp_path, world):
    monkeypatch, journal, steps = world
    fakes.install(monkeypatch, journal)
    cancels = [threading.Event(), threading.Event()]
    config = config_for(tmp_path, replicas=2)
    out = fakes.run_ranks(2, lambda comm: up(config, show_progress=False, comm=comm, cancel=cancels[comm.rank]))
    try:
        assert [r.get("error") for r in out] == [None, None]
        expected = step_names(("pool",))
        assert steps_of(steps, cancels[0], main_only=True) == [s for s in expected if s not in WORKER_STEPS]
        assert steps_of(steps, cancels[1]) == MEMBER_STEPS  # no state folder, monitor, OSD registration, pool
        assert set(steps_of(steps, cancels[0])) | set(steps_of(steps, cancels[1])) == set(expected)
        # The same collectives in the same order on every rank: none waits in one another skips.
        assert out[0]["log"] == out[1]["log"]
        assert [w for k, w in out[0]["log"] if k == "agree"] == ["checks", "planning", "instance check",
                                                                 *[p.name for p in PHASES]]
        assert out[0]["value"]["hosts"] == ["h0", "h1"] and out[0]["value"]["osds"] == 2
    finally:
        monkeypatch.setattr(hostmod, "local_addresses", lambda: {"127.0.0.1", "127.0.0.2"})
        assert down(tmp_path / "state", quiet=True)


def host_of(what: str, osds_per_host: int = 2) -> str:
    """The host of a journal entry: labels as named, OSD n on host n // osds_per_host, mon/mgr on h0."""
    name = what.split(":", 1)[1]
    if name[-2:] in ("h0", "h1"):
        return name[-2:]
    if name.startswith("osd."):
        return f"h{int(name[4:]) // osds_per_host}"
    return "h0"


def test_item5_a_failure_on_a_member_unwinds_every_rank_in_reverse(tmp_path, world):
    monkeypatch, journal, steps = world
    fakes.install(monkeypatch, journal, fail_start={"osd.3"})  # h1's second OSD
    config = config_for(tmp_path, replicas=2, osds=2, size="2G")
    out = fakes.run_ranks(2, lambda comm: up(config, show_progress=False, comm=comm))
    for rank in out:
        assert isinstance(rank.get("error"), DeployError)
        assert rank["error"].message == "OSD start failed on rank 1: fake osd.3 refused to start; rolled back"
    made_h0 = journal.of(host_of, "h0", "made")
    assert made_h0 == ["state-dir:h0", "ram-dir:h0", "process:mon.a", "process:mgr.x", "admin:h0",
                       "process:osd.0", "process:osd.1", "process:watchdog.h0"]
    assert journal.of(host_of, "h1", "made") == ["ram-dir:h1", "process:osd.2"]
    for host in ("h0", "h1"):
        assert journal.of(host_of, host, "undone") == journal.of(host_of, host, "made")[::-1], host
    assert not (tmp_path / "state").exists() and list((tmp_path / "ram").iterdir()) == []
    assert (tmp_path / "state.failed.log").exists()  # the logs of the rolled-back up
