"""The steps of `up` on one host: each that makes something pushes its undo onto an ExitStack."""
from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from ..ceph import keys
from ..ceph.admin import AdminClient
from ..ceph.conf import Layout, render_conf
from ..ceph.daemon import Daemon, wait_for
from ..ceph.fuse import (
    FuseMount,
    check_mountpoint,
    create_mountpoint,
    is_mounted,
    unmount,
)
from ..ceph.mds import MdsDaemon
from ..ceph.mgr import MgrDaemon
from ..ceph.mon import MonDaemon
from ..ceph.osd import OsdDaemon
from ..ceph.rgw import RgwDaemon
from ..ceph.watchdog import Watchdog
from ..config import Config
from ..errors import DeployError, UsageError
from ..files import (
    make_private_folders,
    remove_folders,
    remove_ram_dir,
    remove_tree,
    save_failure_log,
)
from ..instance import HostRecord, InstanceLock, InstanceState
from ..plan import Plan
from ..process import stop_processes
from ..progress import Steps
from ..services import fs as fs_service
from ..services import pool as pool_service
from ..services import s3 as s3_service
from .admission import check_memory

DAEMON_CLASSES = {"mon": MonDaemon, "mgr": MgrDaemon, "osd": OsdDaemon, "mds": MdsDaemon,
                  "rgw": RgwDaemon}


class Deployment:
    """The steps of `up` for one host of a plan; `undo` collects how to reverse each."""

    def __init__(self, plan: Plan, host_label: str, binaries: dict[str, str], steps: Steps,
                 undo: ExitStack, locks: ExitStack | None = None):
        self.plan = plan
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
                                 shared=plan.share_mount)
            else:
                unit = DAEMON_CLASSES[d.kind](d.id, binaries[d.kind], self.layout.conf, self.layout.logs)
                if d.kind == "osd" and self.plan.device == "memstore":
                    # memstore keeps the data in its heap: a heap kept from shrinking would
                    # hold twice the data and never give it back (docs/tuning.md).
                    unit.malloc_tuned = False
            self.daemons[d.name] = unit
        self.s3: s3_service.S3Credentials | None = None

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
            self.locks.enter_context(InstanceLock(self.plan.state_dir, self.plan.name).acquire(wait=5))
            self.undo.callback(remove_tree, self.plan.state_dir)
            self.undo.callback(save_failure_log, self.plan.state_dir)
            self.state.write_meta(self.meta("deploying"))
            for d in (self.layout.keys, self.layout.logs, self.layout.run, self.layout.hosts):
                d.mkdir(mode=0o700)

    def meta(self, state: str) -> dict:
        p = self.plan
        return {
            "name": p.name, "fsid": p.fsid, "state": state, "pool": p.pool,
            "services": list(p.services), "mon_host": p.mon_host, "device": p.device,
            "checksums": p.checksums,
            "replicas": p.replicas, "hosts": [h.label for h in p.hosts],
            "osds": len(p.osds), "osd_bytes": p.osd_bytes,
            "mount": str(p.mount) if p.mount else None,
            "s3_endpoint": f"http://{p.mon_address}:{p.rgw_port}" if p.rgw_port else None,
            "conf": str(self.layout.conf), "up_pid": os.getpid(), "created": time.time(),
        }

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
            keys.write_private(self.layout.keys / "initial.keyring", keys.render_keyring(secrets))
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

    def start(self, daemon: Daemon) -> None:
        record = daemon.start()
        self.record.add_process(record)
        self.undo.callback(stop_processes, [record])

    def mkfs_mon(self) -> None:
        for mon in self.of_kind("mon"):
            with self.steps.step("mon-mkfs", f"{mon.name} store made"):
                mon.mkfs(self.layout.data(self.host.label, mon.name), self.layout.keys / "initial.keyring")

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
            deadline = time.monotonic() + 30
            while True:
                for m in mons:
                    m.check_running()
                try:
                    admin = AdminClient(self.layout.conf, timeout=5)
                    break
                except DeployError:
                    if time.monotonic() > deadline:
                        raise
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

    # --- services ------------------------------------------------------------------------

    def create_pool(self, admin: AdminClient) -> None:
        if "pool" in self.plan.services:
            with self.steps.step("pool-create", f"pool {self.plan.pool} created ({self.plan.pg_num} PGs)"):
                pool_service.create_pool(admin, self.plan)

    def verify_pool(self, admin: AdminClient) -> None:
        if "pool" in self.plan.services:
            with self.steps.step("pool-verify", f"pool {self.plan.pool} stores and returns data"):
                pool_service.verify_pool(admin, self.plan.pool)

    def start_s3(self, pool: ThreadPoolExecutor):
        """Start radosgw; once it answers, create the S3 user (in the background; running
        radosgw-admin while radosgw sets up its zone makes both wait ~5 s on each other)."""
        rgws = self.of_kind("rgw")
        if not rgws:
            return None
        rgw = rgws[0]
        with self.steps.step("rgw-start", f"radosgw started on {self.host.address}:{self.plan.rgw_port}"):
            endpoint = f"http://{self.host.address}:{self.plan.rgw_port}"
            rgw.prepare(self.layout.data(self.host.label, rgw.name))
            self.start(rgw)

        def make_user():
            with self.steps.step("rgw-ready", "radosgw answers"):
                s3_service.wait_http(endpoint, 60, check=rgw.check_running)
            with self.steps.step("s3-user", f"S3 user {s3_service.S3_USER} with fresh keys"):
                self.s3 = s3_service.create_user(self.binaries["rgw-admin"], self.layout.conf, endpoint,
                                                 self.layout.logs / "radosgw-admin.log")
                s3_service.write_credentials(self.plan.state_dir / "s3", self.s3)
        return pool.submit(make_user)

    def ready_s3(self, user_job) -> None:
        if user_job is None:
            return
        user_job.result()
        with self.steps.step("s3-ready", f"S3 endpoint {self.s3.endpoint} answers signed requests"):
            s3_service.wait_ready(self.s3, 60, check=self.check_daemons)

    def start_fs(self, admin: AdminClient) -> None:
        for mds in self.of_kind("mds"):
            with self.steps.step("fs-create", "CephFS created"):
                fs_service.create_filesystem(admin, self.plan)
            with self.steps.step("mds-start", f"{mds.name} started"):
                mds.prepare(self.layout.data(self.host.label, mds.name))
                self.start(mds)

    def make_mountpoint(self) -> None:
        if self.mount is None:
            return
        with self.steps.step("mountpoint", f"mountpoint {self.mount}"):
            check_mountpoint(self.mount)
            made = create_mountpoint(self.mount, 0o755 if self.plan.share_mount else 0o700)
            self.undo.callback(remove_folders, made)
            self.record.add_mount(str(self.mount), made)

    def wait_mds(self, admin: AdminClient) -> None:
        if self.of_kind("mds"):
            with self.steps.step("mds-ready", "MDS active"):
                fs_service.wait_mds_active(admin, 60, check=self.check_daemons)
            with self.steps.step("fs-root", "filesystem root owned by you, quota set"):
                fs_service.prepare_root(self.layout.conf, self.plan.service_quota_bytes,
                                        self.plan.share_mount)

    def mount_fs(self, admin: AdminClient | None) -> None:
        """Mount on this host (root and quota were set by wait_mds)."""
        fuses = self.of_kind("fuse")
        if not fuses:
            return
        fuse = fuses[0]
        with self.steps.step("fs-mount", f"CephFS mounted at {self.mount}"):
            self.start(fuse)
            fuse_record = self.record.processes[-1]
            self.undo.callback(unmount, self.mount, 5, lambda: stop_processes([fuse_record]))
            wait_for(lambda: is_mounted(self.mount), 60, f"the mount at {self.mount}",
                     check=fuse.check_running)
