"""Stand-ins for MPI and Ceph, so `up` runs its real phases, steps and rollback in seconds on
any host (no Ceph binaries, no mpirun): each rank is a thread, each daemon a sleeping Python
process that is started, recorded and killed exactly as a daemon is."""
from __future__ import annotations

import os
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from ramburst.ceph.daemon import Daemon
from ramburst.errors import DeployError
from ramburst.mpi import Comm


class ThreadGroup:
    """What the ranks of one fake MPI job share: a barrier and a slot per rank."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list = [None] * size


class ThreadComm(Comm):
    """One rank of a ThreadGroup. Comm.agree is inherited unchanged: its error handling is
    what is under test. Every collective is logged as (kind, what) to compare the ranks."""

    def __init__(self, group: ThreadGroup, rank: int):  # no mpi4py
        self.group, self.rank, self.size = group, rank, group.size
        self.log: list[tuple[str, str]] = []

    def allgather(self, value):
        self.log.append(("allgather", ""))
        g = self.group
        g.slots[self.rank] = value
        g.barrier.wait()
        out = list(g.slots)
        g.barrier.wait()  # nobody writes the next round's slot before all have read this one
        return out

    def bcast(self, value, root: int = 0):
        self.log.append(("bcast", ""))
        return self.allgather(value)[root]

    def barrier(self) -> None:
        self.group.barrier.wait()

    def agree(self, what, fn=None):
        self.log.append(("agree", what))
        return super().agree(what, fn)


def run_ranks(size: int, body) -> list[dict]:
    """body(comm) on `size` ranks, each its own thread; per rank {"value"} or {"error"}, and "log"."""
    group = ThreadGroup(size)
    comms = [ThreadComm(group, r) for r in range(size)]
    out: list[dict] = [{} for _ in range(size)]

    def rank(r: int) -> None:
        try:
            out[r]["value"] = body(comms[r])
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out[r]["error"] = e
        out[r]["log"] = comms[r].log

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank{r}") for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a rank hangs (a collective another rank never entered?)"
    return out


class Journal:
    """What `up` made and undid, in order, from every thread: ("made" | "undone", "kind:name"),
    e.g. ("made", "process:osd.0"), ("undone", "ram-dir:h1")."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, kind: str, what: str) -> None:
        with self.lock:
            self.events.append((kind, what))

    def of(self, host_of, host: str, kind: str) -> list[str]:
        return [w for k, w in self.events if k == kind and host_of(w) == host]


def fake_daemon_class(kind: str, journal: Journal, fail_start: set[str]):
    class FakeDaemon(Daemon):
        """A Python process sleeping with the conf on its command line: ProcessRecord knows
        it, stop_processes kills it, like a Ceph daemon."""

        malloc_tuned = False

        def __init__(self, ident, binary, conf, log_dir, *args, **kwargs):
            super().__init__(ident, sys.executable, conf, log_dir)
            self.uuid = str(uuid.uuid4())

        def run_args(self) -> list[str]:
            return [self.binary, "-c", "import time; time.sleep(300)", str(self.conf), self.name]

        def mkfs(self, data_dir: Path, *args) -> None:
            data_dir.mkdir(parents=True, exist_ok=True)

        def prepare(self, data_dir: Path) -> None:
            data_dir.mkdir(parents=True, exist_ok=True)

        def start(self):
            if self.name in fail_start:
                raise DeployError(f"fake {self.name} refused to start")
            record = super().start()
            journal.add("made", f"process:{self.name}")
            return record

    FakeDaemon.kind = kind
    return FakeDaemon


class FakeIoctx:
    def __init__(self, store: dict):
        self.store = store

    def write_full(self, name, data):
        self.store[name] = data

    def read(self, name, length):
        return self.store[name][:length]

    def remove_object(self, name):
        del self.store[name]


def fake_admin_class(journal: Journal):
    class FakeAdmin:
        """client.admin without a monitor: commands are logged, the pool is a dict."""

        def __init__(self, conf, timeout=5):
            self.commands: list[tuple] = []
            self.pools: dict[str, dict] = {}
            journal.add("made", "admin:h0")

        def osd_new(self, osd_uuid, osd_id):
            self.commands.append(("osd new", osd_id))

        def create_pool(self, pool, pg_num):
            self.pools[pool] = {}

        def command(self, prefix, **kwargs):
            self.commands.append((prefix, kwargs))
            return {}

        def wait_osds_up(self, count, timeout, check=None, cancel=None):
            if check is not None:
                check()

        @contextmanager
        def ioctx(self, pool):
            yield FakeIoctx(self.pools[pool])

        def close(self):
            journal.add("undone", "admin:h0")

    return FakeAdmin


def install(monkeypatch, journal: Journal, fail_start: set[str] = frozenset()) -> None:
    """Make `ramburst.up` deploy fakes: daemons, the admin client, the host checks; and log
    every undo (process stops, folder removals) into `journal`."""
    from ramburst.lifecycle import bringup, deployment

    for kind in ("mon", "mgr", "osd"):
        monkeypatch.setitem(deployment.DAEMON_CLASSES, kind, fake_daemon_class(kind, journal, set(fail_start)))
    monkeypatch.setattr(deployment, "Watchdog",
                        lambda host, conf, logs, limit: fake_daemon_class("watchdog", journal, set(fail_start))(
                            host, None, conf, logs))
    monkeypatch.setattr(deployment, "AdminClient", fake_admin_class(journal))
    binaries = dict.fromkeys(("mon", "mgr", "osd"), sys.executable)
    # rank N is host hN on 127.0.0.N+1 (all of 127/8 is loopback)
    monkeypatch.setattr(bringup, "validate", lambda config, label: (dict(binaries), f"127.0.0.{int(label[1:]) + 1}"))

    real_stop, real_ram, real_tree = deployment.stop_processes, deployment.remove_ram_dir, deployment.remove_tree

    def stop(records, *args, **kwargs):
        for r in records:
            journal.add("undone", f"process:{r.name}")
        return real_stop(records, *args, **kwargs)

    def remove_ram(path):
        journal.add("undone", f"ram-dir:{Path(path).name.split('-')[-2]}")
        return real_ram(path)

    def remove_state(path):
        journal.add("undone", "state-dir:h0")
        return real_tree(path)

    monkeypatch.setattr(deployment, "stop_processes", stop)
    monkeypatch.setattr(deployment, "remove_ram_dir", remove_ram)
    monkeypatch.setattr(deployment, "remove_tree", remove_state)
    monkeypatch.setattr(deployment, "check_memory", lambda *a, **k: None)  # the machine's memory is not under test

    made_ram, made_state = deployment.Deployment.make_ram_dir, deployment.Deployment.make_state_dir

    def make_ram_dir(self, *args):
        made_ram(self, *args)
        journal.add("made", f"ram-dir:{self.host.label}")

    def make_state_dir(self):
        made_state(self)
        journal.add("made", "state-dir:h0")

    monkeypatch.setattr(deployment.Deployment, "make_ram_dir", make_ram_dir)
    monkeypatch.setattr(deployment.Deployment, "make_state_dir", make_state_dir)


def no_ceph_path(tmp_path) -> str:
    """A PATH with no Ceph binary on it: the interpreter's folder and an empty one."""
    empty = tmp_path / "no-ceph-bin"
    empty.mkdir(exist_ok=True)
    return os.pathsep.join([str(Path(sys.executable).parent), str(empty)])
