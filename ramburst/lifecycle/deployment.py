"""The steps of `up` on one host: each that makes something pushes its undo onto an ExitStack."""
from __future__ import annotations

import os
import stat
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from enum import Enum
from typing import Any, Callable

from ..ceph import keys
from ..ceph.admin import AdminClient
from ..ceph.conf import Layout, render_conf
from ..ceph.daemon import Daemon
from ..ceph.fuse import FuseMount
from ..ceph.mds import MdsDaemon
from ..ceph.mgr import MgrDaemon
from ..ceph.mon import MonDaemon
from ..ceph.osd import OsdDaemon
from ..ceph.rgw import RgwDaemon
from ..ceph.watchdog import Watchdog
from ..config import Config
from ..errors import DeployError, UsageError
from ..files import make_private_folders, remove_ram_dir, remove_tree, save_failure_log
from ..instance import HostRecord, InstanceLock, InstanceState
from ..model import Instance
from ..plan import Plan
from ..process import ProcessRecord, stop_processes
from ..progress import Steps
from ..services import selected
from ..wait import Timeouts, wait_until
from .admission import check_memory

DAEMON_CLASSES = {"mon": MonDaemon, "mgr": MgrDaemon, "osd": OsdDaemon, "mds": MdsDaemon,
                  "rgw": RgwDaemon}


class Role(Enum):
    PRIMARY = "primary"  # rank 0: shared files, mon, mgr, cluster-wide service set-up
    MEMBER = "member"    # every other rank: its RAM folder, OSDs, mounts


def role_of(rank: int) -> Role:
    return Role.PRIMARY if rank == 0 else Role.MEMBER


class Deployment:
    """The steps of `up` for one host of a plan; `undo` collects how to reverse each. Service
    hooks get it as their `services.HostContext` (test_unit_services checks it implements it)."""

    def __init__(self, plan: Plan, host_label: str, binaries: dict[str, str], steps: Steps,
                 undo: ExitStack, locks: ExitStack | None = None, role: Role | None = None,
                 config: Config | None = None):
        self.plan = plan
        self.role = role or (Role.PRIMARY if host_label == "h0" else Role.MEMBER)
        self.config = config
        self.units = selected(plan.services)
        self.host = plan.host(host_label)
        self.mount = plan.mount_for(host_label)
        self.layout = Layout(plan)
        self.binaries = binaries
        self.steps = steps
        self.undo = undo
        self.locks = locks if locks is not None else undo  # held until `up` returns
        self.state = InstanceState(plan.state_dir)
        self.record: HostRecord | None = None
        self.daemons: dict[str, Daemon] = {}
        for d in self.host.daemons:
            if d.kind == "fuse":
                unit = FuseMount(d.id, binaries["fuse"], self.layout.conf, self.layout.logs, self.mount,
                                 self.host.ram_dir, shared=plan.share_mount)
            else:
                unit = DAEMON_CLASSES[d.kind](d.id, binaries[d.kind], self.layout.conf, self.layout.logs)
                if d.kind == "osd" and self.plan.device == "memstore":
                    # memstore keeps the data in its heap: a heap kept from shrinking would
                    # hold twice the data and never give it back (docs/tuning.md).
                    unit.malloc_tuned = False
            self.daemons[d.name] = unit
        self.admin: AdminClient | None = None  # the primary's, once the monitor answers
        self.gathered: dict[str, list] = {}   # allgathered phase results, by phase name
        self.final_meta: dict | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[Future] = []

    def of_kind(self, kind: str) -> list:
        return [d for d in self.daemons.values() if d.kind == kind]

    # --- shared files (first host) ---------------------------------------------------

    def make_state_dir(self) -> None:
        """Made exclusively and locked at once; its record (with the format marker) is the
        first thing written, so `down` can tell it is an instance."""
        with self.steps.step("state-dir", f"state folder {self.plan.state_dir}"):
            make_private_folders(self.plan.state_dir.parent)
            try:
                os.mkdir(self.plan.state_dir, 0o700)
            except FileExistsError:
                InstanceLock(self.plan.state_dir, self.plan.name).acquire().release()  # busy: says by whom
                raise UsageError(f"state folder {self.plan.state_dir} already exists") from None
            # ours by the mkdir: wait out another `up` or `down` that only looks at it
            self.locks.enter_context(InstanceLock(self.plan.state_dir, self.plan.name).acquire(
                wait=Timeouts.LOCK_AFTER_MKDIR))
            self.undo.callback(remove_tree, self.plan.state_dir)
            self.undo.callback(save_failure_log, self.plan.state_dir)
            self.state.write_instance(self.instance("deploying"))
            for d in (self.layout.keys, self.layout.logs, self.layout.run, self.layout.hosts):
                d.mkdir(mode=0o700)

    def instance(self, state: str) -> Instance:
        p = self.plan
        return Instance(
            name=p.name, fsid=p.fsid, state=state, pool=p.pool, services=tuple(p.services), mon_host=p.mon_host,
            device=p.device, checksums=p.checksums, replicas=p.replicas, hosts=tuple(h.label for h in p.hosts),
            osds=len(p.osds), osd_bytes=p.osd_bytes, mount=str(p.mount) if p.mount else None,
            s3_endpoint=f"http://{p.mon_address}:{p.rgw_port}" if p.rgw_port else None,
            conf=str(self.layout.conf), up_pid=os.getpid(), created=time.time(),
            endpoints={k: v for u in self.units for k, v in u.facts(p).items()},
        )

    def meta(self, state: str) -> dict:
        return self.instance(state).to_json()

    def write_secrets_and_conf(self) -> None:
        with self.steps.step("keys", "fresh keys and ceph.conf"):
            entities = list(dict.fromkeys(["mon.", "client.admin"] + [
                d.entity for h in self.plan.hosts for d in h.daemons if d.kind != "mon"]))
            secrets = {e: keys.new_secret() for e in entities}
            for entity, secret in secrets.items():
                if entity == "mon.":
                    for mon in (d for h in self.plan.hosts for d in h.daemons if d.kind == "mon"):
                        keys.write_private(self.layout.keyring(mon.name), keys.render_keyring({entity: secret}))
                else:
                    keys.write_private(self.layout.keyring(entity), keys.render_keyring({entity: secret}))
            keys.write_private(self.layout.initial_keyring, keys.render_keyring(secrets))
            keys.write_private(self.layout.conf, render_conf(self.plan, self.layout))

    # --- this host ---------------------------------------------------------------------

    def make_ram_dir(self, config: Config | None = None) -> None:
        """Made fresh (random name, plain mkdir: never one that exists), checked, and only
        then registered for removal. With `config`, admission is checked again now that this
        instance's promise is visible, so instances started at the same moment see each other."""
        path = self.host.ram_dir
        with self.steps.step("ram-dir", f"RAM folder {path}"):
            self.record = self.state.host(self.host.label, self.host.address, path)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                raise DeployError(f"RAM folder {path} exists already; it was not made by this instance") from None
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                raise DeployError(f"RAM folder {path} is not a private folder of this user")
            self.undo.callback(remove_ram_dir, path)
            if config is not None:
                check_memory(config, own_prefix=path.name.rsplit("-", 2)[0] + "-")

    def start(self, daemon: Daemon) -> ProcessRecord:
        record = daemon.start()
        self.record.add_process(record)
        self.undo.callback(stop_processes, [record])
        return record

    @contextmanager
    def workers(self):
        """Worker threads for slow steps (OSD mkfs, the S3 user). On the way out, failed or
        not, queued jobs are cancelled and running ones joined: before undo removes what they
        work in."""
        with ThreadPoolExecutor(max_workers=max(2, len(self.of_kind("osd")))) as pool:
            self._pool = pool
            try:
                yield
            except BaseException:
                self.steps.cancel.set()
                raise
            finally:
                for job in self._jobs:
                    job.cancel()

    def submit(self, fn: Callable[[], Any]) -> Future:
        job = self._pool.submit(fn)
        self._jobs.append(job)
        return job

    def mkfs_mon(self) -> None:
        for mon in self.of_kind("mon"):
            with self.steps.step("mon-mkfs", f"{mon.name} store made"):
                mon.mkfs(self.layout.data(self.host.label, mon.name), self.layout.initial_keyring)

    def mkfs_osd(self, osd: OsdDaemon) -> None:
        with self.steps.step("osd-mkfs", f"{osd.name} {self.plan.device} store made"):
            osd.mkfs(self.layout.data(self.host.label, osd.name))

    def start_mon(self) -> None:
        for mon in self.of_kind("mon"):
            with self.steps.step("mon-start", f"{mon.name} started on {self.plan.mon_host}"):
                self.start(mon)

    def start_mgr(self) -> None:
        for mgr in self.of_kind("mgr"):
            with self.steps.step("mgr-start", f"{mgr.name} started"):
                mgr.prepare(self.layout.data(self.host.label, mgr.name))
                self.start(mgr)

    def connect(self) -> AdminClient:
        with self.steps.step("mon-ready", "monitor answers"):
            mons = self.of_kind("mon")
            last: list[str] = []

            def attempt() -> AdminClient | None:
                for m in mons:  # a dead monitor fails the step now, not after the timeout
                    m.check_running()
                try:
                    return AdminClient(self.layout.conf, timeout=5)
                except DeployError as e:
                    last[:] = [e.message]
                    return None

            # No pause between attempts: the client's connect itself waits up to 5 s.
            admin = wait_until(attempt, Timeouts.MON_ANSWERS, "the monitor", interval=0, failure=lambda: last[0])
            self.undo.callback(admin.close)
            return admin

    def register_osds(self, admin: AdminClient, uuids: dict[int, str]) -> None:
        """Every host's OSDs, by id and the uuid their store was made with."""
        with self.steps.step("osd-register", f"{len(uuids)} OSD(s) registered"):
            for osd_id, osd_uuid in sorted(uuids.items()):
                admin.osd_new(osd_uuid, osd_id)

    def start_osd(self, osd: OsdDaemon) -> None:
        with self.steps.step("osd-start", f"{osd.name} started"):
            self.start(osd)

    def start_watchdog(self) -> None:
        """The host's watchdog (ceph/watchdog.py): stops a fast fill before BlueStore runs out
        of room, and ends a ceph-fuse whose requests wait on a dead or stopped backend."""
        with self.steps.step("watchdog-start", "watchdog started"):
            # memstore never aborts on ENOSPC (it grows its heap; the ratios bound it): no guard.
            limit = self.plan.osd_bytes if self.plan.device == "file" else 0
            self.start(Watchdog(self.host.label, self.layout.conf, self.layout.logs, limit))

    def check_daemons(self) -> None:
        for d in self.daemons.values():
            d.check_running()

    def finish(self) -> None:
        """The primary marks the instance up and drops the initial keyring (every key in one)."""
        self.final_meta = self.meta("up")
        self.state.write_meta(self.final_meta)  # = write_instance; the dict is what `up` returns
        os.unlink(self.layout.initial_keyring)
