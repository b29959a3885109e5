"""The per-host watchdog: what Ceph's own checks do too slowly for a store in RAM.

One small process per host, started by `up` after the OSDs and recorded like a daemon (so
`down` stops it and `status` lists it). It does two things:

1. **OSD guard.** An OSD checks its failsafe ratio against usage it re-reads once per
   heartbeat (0.5-1.4 s with `osd_heartbeat_interval = 1`), and the monitor's full flag comes
   later still; at RAM speed the writes in between overshoot into the backing store's
   headroom, and when that runs out BlueStore aborts the OSD on ENOSPC. The guard reads each
   local OSD's live `bluestore_allocated` counter over its admin socket every POLL seconds
   and, once it reaches the requested size, makes the OSD drop client writes at once
   (`injectfull failsafe`: exactly what the OSD does itself when its failsafe ratio trips).
   Ceph's failsafe drops only writes without FULL_TRY, so it also marks the OSD full
   (fullmark.py): ramburst's own FULL_TRY writers then refuse with ENOSPC at once, until
   the monitor flags the pool full and the OSD answers them ENOSPC itself. Deletes pass.
   Below RESUME of the size it lifts both again. Overshoot is then bounded by POLL x ingest
   plus the bytes already in flight (docs/faults.md).

2. **fs clients never stuck in the kernel.** ceph-fuse waits forever for an OSD or MDS that
   died, was stopped, or refuses writes (a full cluster); the process using the mount then
   sits in D state, which no signal ends. The watchdog asks ceph-fuse for its pending
   requests (its admin socket: `mds_requests`, `objecter_requests`); when one has waited
   STUCK_AFTER seconds, or ceph-fuse itself stops answering that long, it kills that
   ceph-fuse (by its record). The kernel then ends every request on the mount with ENOTCONN
   ("Transport endpoint is not connected"), and `down` unmounts it as usual.

3. **No dead client holds the fs.** A process killed with an in-process CephFS client mounted
   (`stage` into fs:, `Cluster.cephfs()`) leaves its MDS session behind, and the capabilities
   it held: the job's ceph-fuse then waits for them until the MDS gives up on the session
   (60 s at least), and item 2 would end the mount first. Such clients leave a note while
   mounted (ceph/libcephfs.py); each mount check, a note of this host whose process has ended
   gets its session evicted (`ceph tell mds.* client evict id=N`), so the mount goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ..instance import HostRecord
from ..layout import Layout
from ..process import started, stop_processes
from .asok import asok_command
from .daemon import Daemon
from .fullmark import mark, unmark
from .libcephfs import EVICT_TIMEOUT, evict, read_notes

POLL = 0.02
MOUNT_CHECK = 1.0
STUCK_AFTER = 20.0  # as rados_osd_op_timeout (conf.CLIENT_OP_TIMEOUT) for librados clients
RESUME = 0.98
ASOK_TIMEOUT = 1.0  # for a whole admin-socket answer (ceph/asok.py: no `ceph` CLI, well under 1 ms a poll)


class Watchdog(Daemon):
    """The watchdog of one host, run with the interpreter that runs ramburst."""

    kind = "watchdog"
    malloc_tuned = False

    def __init__(self, ident: str, conf: Path, log_dir: Path, osd_limit: int):
        super().__init__(ident, sys.executable, conf, log_dir)
        self.osd_limit = osd_limit

    def run_args(self) -> list[str]:
        return [self.binary, "-c", "from ramburst.ceph.watchdog import main; main()", "-c", str(self.conf),
                "--host", self.id, "--osd-limit", str(self.osd_limit)]


class OsdGuard:
    """Keeps one BlueStore OSD from taking writes past `limit` bytes of data."""

    def __init__(self, name: str, socket_path: Path, limit: int, run_dir: Path):
        self.name, self.socket, self.limit, self.run_dir = name, socket_path, limit, run_dir
        self.holding = False

    def allocated(self) -> int | None:
        try:
            answer = json.loads(asok_command(self.socket, {"prefix": "perf dump", "logger": "bluestore",
                                                           "counter": "bluestore_allocated"}, ASOK_TIMEOUT))
        except (OSError, ValueError):
            return None  # not up yet, gone, or stopped: nothing to guard right now
        return answer.get("bluestore", {}).get("bluestore_allocated")

    def check(self) -> None:
        used = self.allocated()
        if used is None:
            return
        if not self.holding and used >= self.limit:
            self._inject("failsafe")
            mark(self.run_dir, self.name)
            self.holding = True
            log(f"{self.name}: {used} bytes of data reach the size {self.limit}: writes refused")
        elif self.holding and used < RESUME * self.limit:
            unmark(self.run_dir, self.name)
            self._inject("none")
            self.holding = False
            log(f"{self.name}: {used} bytes of data: writes accepted again")

    def _inject(self, state: str) -> None:
        try:
            asok_command(self.socket, {"prefix": "injectfull", "type": state, "count": -1}, ASOK_TIMEOUT)
        except OSError as e:
            log(f"{self.name}: injectfull {state} failed: {e}")


def oldest_request_age(socket_path: Path) -> float:
    """Seconds the oldest request of a ceph-fuse to an MDS or OSD has been waiting."""
    ages = [0.0]
    # Several pending requests come as repeated "request" keys, so read the stamps as text.
    text = asok_command(socket_path, {"prefix": "mds_requests"}, ASOK_TIMEOUT).decode(errors="replace")
    now = datetime.now(timezone.utc)
    for stamp in re.findall(r'"sent_stamp": "([^"]+)"', text):
        ages.append((now - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")).total_seconds())
    osd = json.loads(asok_command(socket_path, {"prefix": "objecter_requests"}, ASOK_TIMEOUT) or b"{}")
    ages += [float(op.get("age", 0)) for op in osd.get("ops", [])]
    return max(ages)


class MountWatch:
    """Ends a host's ceph-fuse when a request of it has waited STUCK_AFTER seconds."""

    def __init__(self, socket_path: Path):
        self.socket = socket_path
        self.silent_since: float | None = None

    def stuck(self) -> str | None:
        try:
            age = oldest_request_age(self.socket)
        except FileNotFoundError:
            return None  # not mounted (yet)
        except (OSError, ValueError):
            now = time.monotonic()
            self.silent_since = self.silent_since or now
            if now - self.silent_since >= STUCK_AFTER:
                return f"ceph-fuse has not answered for {now - self.silent_since:.0f} s"
            return None
        self.silent_since = None
        if age >= STUCK_AFTER:
            return f"a ceph-fuse request has waited {age:.0f} s"
        return None


class DeadClients:
    """Evicts the MDS session of each in-process CephFS client of this host whose process ended
    without unmounting (its note is still in `folder`), or that its own guard aborted. Each
    eviction runs in a thread of its own: the OSD guard's loop never waits for the `ceph` command."""

    def __init__(self, folder: Path, conf: Path):
        self.folder, self.conf = folder, conf
        self.pending: set[Path] = set()
        self.unanswered: set[Path] = set()

    def check(self) -> None:
        for path, note in read_notes(self.folder):
            if path not in self.pending and (note.get("aborted") or started(note["pid"], note["create_time"]) is None):
                self.pending.add(path)
                threading.Thread(target=self._evict, args=(path, note), daemon=True).start()

    def _evict(self, path: Path, note: dict) -> None:
        try:
            why = evict(self.conf, Layout.of_conf(self.conf).keyring("client.admin"), note["gid"])
            if why and "timed out" in why.lower():   # the MDS does not answer (e.g. a full store): said once
                if path not in self.unanswered:
                    self.unanswered.add(path)
                    log(f"evicting fs client {note['gid']} of process {note['pid']}: no answer from the MDS "
                        f"within {EVICT_TIMEOUT:.0f} s; trying again every check")
                return
            gone = "was aborted" if note.get("aborted") else "ended without unmounting"
            log(f"fs client {note['gid']} of process {note['pid']} {gone}: "
                + (f"eviction failed ({why})" if why else "evicted"))
            path.unlink(missing_ok=True)
        finally:
            self.pending.discard(path)


HEARTBEAT_STALE = 5.0  # seconds without a beat before `status` calls the watchdog not answering


def heartbeat_path(run_dir: Path, host: str) -> Path:
    """Touched once per mount check (every MOUNT_CHECK s): the watchdog has no admin socket,
    so this is how `status` sees that it still loops rather than merely exists."""
    return run_dir / f"watchdog.{host}.alive"


def beat(path: Path) -> None:
    try:
        with open(path, "a"):
            pass
        os.utime(path)
    except OSError:
        pass  # the state folder is going away


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} watchdog: {message}", flush=True)


def run(conf: Path, host: str, osd_limit: int) -> None:
    layout = Layout.of_conf(conf)
    run_dir = layout.run
    record_path = layout.host_record(host)
    guards: dict[str, OsdGuard] = {}
    watch: MountWatch | None = None
    dead_clients = DeadClients(layout.fs_clients(host), conf)
    next_mount_check = 0.0
    while True:
        now = time.monotonic()
        if now >= next_mount_check:
            next_mount_check = now + MOUNT_CHECK
            record = HostRecord.load(record_path)
            if record is None:
                return  # the instance is being removed
            beat(heartbeat_path(run_dir, host))
            dead_clients.check()
            watch = watch or MountWatch(layout.asok(record.ram_dir, f"fuse.{host}"))
            for p in record.processes:
                if osd_limit and p.name.startswith("osd.") and p.name not in guards:
                    guards[p.name] = OsdGuard(p.name, layout.asok(record.ram_dir, p.name), osd_limit,
                                              run_dir)
            fuse = [p for p in record.processes if p.name.startswith("fuse.") and p.alive()]
            why = watch.stuck() if fuse else None
            if why:
                log(f"{why}: ending ceph-fuse, so clients of the mount get ENOTCONN")
                stop_processes(fuse)
                watch = MountWatch(watch.socket)
        for guard in guards.values():
            guard.check()
        time.sleep(POLL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ramburst-watchdog")
    parser.add_argument("-c", dest="conf", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--osd-limit", type=int, required=True, help="0: no OSD guard (memstore)")
    args = parser.parse_args(argv)
    log(f"watching host {args.host}: OSD data limit {args.osd_limit} bytes, fs requests {STUCK_AFTER:.0f} s")
    try:
        run(args.conf, args.host, args.osd_limit)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
