"""Bring an instance up and take it down: the orchestrator of the daemon units.

`up` acts out a plan step by step. Each step that makes something pushes its undo onto an
ExitStack; if a later step fails, or a signal arrives, the stack unwinds and removes it
all. Slow steps overlap: OSD stores are made while the monitor starts.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from . import host as hostmod
from .ceph import keys
from .ceph.admin import AdminClient
from .ceph.conf import Layout, render_conf
from .ceph.daemon import Daemon, stop_processes, wait_for
from .ceph.mgr import MgrDaemon
from .ceph.fuse import FuseMount, check_mountpoint, create_mountpoint, fuse_allows_other, is_mounted, unmount
from .ceph.mds import MdsDaemon
from .ceph.mon import MonDaemon
from .ceph.osd import OsdDaemon
from .ceph.rgw import RgwDaemon
from .ceph.watchdog import Watchdog
from .config import Config, default_state_root
from .errors import DeployError, Interrupted, RamburstError, UsageError
from .instance import HostRecord, InstanceLock, InstanceState
from .plan import FULL_HEADROOM, Plan, new_ram_token, plan_cluster
from .mpi import LocalComm
from .progress import CANCELLED, Steps
from .services import fs as fs_service
from .services import pool as pool_service
from .services import s3 as s3_service

DAEMON_CLASSES = {"mon": MonDaemon, "mgr": MgrDaemon, "osd": OsdDaemon, "mds": MdsDaemon,
                  "rgw": RgwDaemon}


@contextmanager
def signals_raise():
    """Turn SIGINT and SIGTERM into an exception in the main thread, so undo runs."""
    previous = {}

    def handler(signum, frame):
        # Ignore further signals while the first one unwinds the stack.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        CANCELLED.set()
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def failure_log_path(state_dir: Path) -> Path:
    return state_dir.with_name(state_dir.name + ".failed.log")


def save_failure_log(state_dir: Path) -> Path | None:
    """Gather the daemon logs into one file beside the state folder before it is removed.

    Written to a fresh 0600 temporary file, then renamed over the predictable name: a
    symlink planted there is replaced, never followed; where the rename is not allowed
    (someone else's file in a sticky folder) there is no log rather than a wrong one."""
    logs = sorted((state_dir / "log").glob("*")) if (state_dir / "log").is_dir() else []
    if not logs:
        return None
    dest = failure_log_path(state_dir)
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w") as out:
            for p in logs:
                out.write(f"===== {p.name} =====\n")
                out.write(p.read_text(errors="replace")[-200_000:])
                out.write("\n")
        os.replace(tmp, dest)
    except OSError:
        os.unlink(tmp)
        return None
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def owned_folder(path: Path) -> bool:
    """A real folder (not a symlink) of this user."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def remove_ram_dir(path: Path) -> None:
    """Remove a RAM folder `up` made: only a real folder of ours named like one, never
    through a symlink (rmtree itself does not follow symlinks inside)."""
    path = Path(path)
    prefix = f"ramburst-{os.getuid()}-"
    if path.name.startswith(prefix) and owned_folder(path):
        remove_tree(path)
    elif path.parent.name.startswith(prefix) and owned_folder(path.parent) and owned_folder(path):
        remove_tree_and_empty_parent(path)  # the layout before per-host folders: root/h0


def make_private_folders(folder: Path) -> None:
    """mkdir -p with every folder it makes 0700 whatever the umask (the state root holds
    every instance's keys)."""
    missing = []
    p = Path(folder)
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


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


def validate(config: Config, host_label: str = "h0") -> tuple[dict[str, str], str]:
    """Everything that can be checked before anything is made: binaries, interface, memory,
    the mountpoint."""
    kinds = ["mon", "mgr", "osd"]
    if "s3" in config.services:
        kinds += ["rgw", "rgw-admin"]
    if "fs" in config.services:
        kinds += ["mds", "fuse"]
        check_mountpoint(Path(str(config.mount_path).replace("{host}", host_label)))
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            raise UsageError("the fs service needs read and write access to /dev/fuse "
                             "(ask for it, or use --service pool/s3)")
        if config.share_mount and os.geteuid() != 0 and not fuse_allows_other():
            raise UsageError("--share-mount needs 'user_allow_other' in /etc/fuse.conf "
                             "(ask the admin, or leave the mount private)")
    binaries = hostmod.check_binaries(kinds)
    address = hostmod.interface_address(config.interface)
    check_memory(config)
    if "s3" in config.services:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise UsageError("the s3 service needs boto3: pip install boto3") from None
    return binaries, address


def daemon_counts(config: Config) -> dict[str, int]:
    counts = {"mon": 1, "mgr": 1, "osd": config.osds}
    if "s3" in config.services:
        counts["rgw"] = 1
    if "fs" in config.services:
        counts.update(mds=1, fuse=1)
    return counts


def memory_promise(config: Config) -> int:
    """What one host of this instance may grow to (written into its RAM folder's name)."""
    # memstore holds each object in the OSD's heap at about twice its size (docs/tuning.md).
    data = config.size * (2 if config.device == "memstore" else 1)
    return hostmod.memory_needed(data, FULL_HEADROOM * config.osds, daemon_counts(config))


def check_memory(config: Config, own_prefix: str | None = None) -> None:
    data = config.size * (2 if config.device == "memstore" else 1)
    hostmod.check_memory(data, FULL_HEADROOM * config.osds, daemon_counts(config), config.ram_dir,
                         own_prefix=own_prefix)


def prepare_instance_dir(config: Config, steps: Steps) -> None:
    """Refuse a name that is up or a folder that is no instance; clear away the remains of
    an instance that died (killed `up`, crash)."""
    state = InstanceState(config.instance_dir)
    if not state.exists():
        return
    with InstanceLock(config.instance_dir, config.name):
        if _being_created(state):
            raise UsageError(f"instance {config.name!r} is being deployed by another process; nothing was touched")
        state.check_instance()
        _clear_dead_instance(config, state, steps)


def _being_created(state: InstanceState) -> bool:
    """A folder of ours made in the last seconds and still without its record: another `up`
    between its mkdir and its first write."""
    try:
        st = os.lstat(state.dir)
    except FileNotFoundError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not os.path.lexists(state.meta_path)
            and time.time() - st.st_mtime < 5
            and all(n.startswith(f".{state.meta_path.name}.") for n in os.listdir(state.dir)))


def _clear_dead_instance(config: Config, state: InstanceState, steps: Steps) -> None:
    meta = state.meta() or {}
    how = (f"ramburst down --name {config.name}" if config.state_dir is None
           else f"ramburst down --state-dir {shlex.quote(str(config.instance_dir))}")
    if _up_still_running(meta):
        raise UsageError(f"instance {config.name!r} is being deployed right now by process {meta['up_pid']}")
    if meta.get("state") == "up" and state.live_processes():
        raise UsageError(f"instance {config.name!r} is already up; take it down with: {how}")
    steps.info(f"removing the remains of a dead instance {config.name!r}")
    down(config.instance_dir, steps=steps, quiet=True)


def _up_still_running(meta: dict) -> bool:
    pid = meta.get("up_pid")
    if not pid or meta.get("state") == "up" or pid == os.getpid():
        return False
    try:
        import psutil

        p = psutil.Process(pid)
        return p.create_time() <= meta.get("created", 0) + 1 and "ramburst" in " ".join(p.cmdline())
    except Exception:
        return False


def up(config: Config, show_progress: bool = True, comm=None) -> dict:
    """Deploy the instance `config` describes; with an MPI `comm`, each rank is one host.

    Rank 0 makes the shared files and runs mon, mgr (mds, radosgw); every rank makes its OSD
    stores at the same time, starts its OSDs and mounts the fs. Each phase ends with
    comm.agree, so a failure on any rank rolls back every rank.
    """
    comm = comm or LocalComm()
    first = comm.rank == 0
    steps = Steps(show_progress and (first or os.environ.get("RAMBURST_ALL_RANKS_PROGRESS") == "1"),
                  prefix=f"rank {comm.rank}: " if comm.size > 1 else "")
    binaries, address = comm.agree("checks", lambda: validate(config, f"h{comm.rank}"))
    addresses = comm.allgather(address)
    if len(set(addresses)) != len(addresses):
        raise UsageError(f"two ranks share the address {address} of --interface {config.interface}: "
                         "start one rank per host (e.g. mpirun --map-by ppr:1:node)")
    ids = comm.bcast((str(uuid.uuid4()), hostmod.free_port(address),
                      hostmod.free_port(address) if "s3" in config.services else None,
                      new_ram_token()) if first else None)
    plan = comm.agree("planning", lambda: plan_cluster(config, addresses, *ids, promise=memory_promise(config)))
    CANCELLED.clear()
    held: dict = {}
    with signals_raise(), ExitStack() as locks:
        comm.agree("instance check", (lambda: prepare_instance_dir(config, steps)) if first else None)
        try:
            with ExitStack() as undo:
                dep = Deployment(plan, f"h{comm.rank}", binaries, steps, undo, locks)
                if first:
                    comm.agree("state folder", lambda: (dep.make_state_dir(), dep.write_secrets_and_conf()))
                else:
                    comm.agree("state folder")
                comm.agree("RAM folder", lambda: (dep.make_ram_dir(config), dep.make_mountpoint()))
                osds = dep.of_kind("osd")
                with ThreadPoolExecutor(max_workers=max(2, len(osds))) as pool:
                    mkfs = [pool.submit(dep.mkfs_osd, o) for o in osds]
                    try:
                        def core():
                            if first:
                                dep.mkfs_mon()
                                dep.start_mon()
                                dep.start_mgr()
                                held["admin"] = dep.connect()
                            for job in mkfs:
                                job.result()
                            return {int(o.id): o.uuid for o in osds}

                        uuids = {}
                        for part in comm.allgather(comm.agree("monitor and OSD stores", core)):
                            uuids.update(part)
                        comm.agree("OSD registration", (lambda: dep.register_osds(held["admin"], uuids))
                                   if first else None)
                        comm.agree("OSD start", lambda: ([dep.start_osd(o) for o in osds], dep.start_watchdog()))

                        def services():
                            if not first:
                                return
                            admin = held["admin"]
                            dep.create_pool(admin)
                            dep.start_fs(admin)
                            with steps.step("osd-up", f"{len(plan.osds)} OSD(s) up"):
                                admin.wait_osds_up(len(plan.osds), 60, check=dep.check_daemons)
                            # After the OSDs: a radosgw whose first ops find no OSD waits for
                            # its objecter's 5 s tick to learn the new map.
                            held["user"] = dep.start_s3(pool)
                            dep.verify_pool(admin)
                            dep.ready_s3(held["user"])
                            dep.wait_mds(admin)

                        comm.agree("services", services)
                        comm.agree("fs mount", lambda: dep.mount_fs(held.get("admin")))
                    except BaseException:
                        CANCELLED.set()
                        raise
                    finally:
                        for job in mkfs + ([held["user"]] if held.get("user") else []):
                            job.cancel()
                meta = dep.meta("up")
                if first:
                    dep.state.write_meta(meta)
                    os.unlink(dep.layout.keys / "initial.keyring")
                comm.agree("finish")
                undo.pop_all()
                if "admin" in held:
                    held["admin"].close()
        except (UsageError, Interrupted):
            raise
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None
        except Exception as e:  # a step failed, or a Ceph binding error: one line, rolled back
            log = failure_log_path(plan.state_dir)
            cause = getattr(e, "message", str(e)) if isinstance(e, RamburstError) else f"{type(e).__name__}: {e}"
            raise DeployError(f"{cause}; rolled back", str(log) if log.exists() else None) from None
    steps.info(f"up in {steps.elapsed():.2f} s" + (f" on {comm.size} hosts" if comm.size > 1 else ""))
    return meta


def remove_folders(made: list[str]) -> None:
    """Remove folders `up` created (innermost first), only while they are empty."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:
            break


def remove_tree_and_empty_parent(path: Path) -> None:
    remove_tree(path)
    try:
        path.parent.rmdir()
    except OSError:
        pass


DOWN_LOCK_WAIT = 60.0  # seconds a `down` waits for another host's `down` of the same instance


def down(state_dir: Path, steps: Steps | None = None, quiet: bool = False, comm=None) -> bool:
    """Remove everything the instance in `state_dir` made on this host. Idempotent.

    Works from the records alone, so a half-made, crashed or killed instance goes too. Each
    host removes what its own record lists (recognised by its addresses); the shared state
    folder goes once no host record is left. With an MPI `comm`, every rank does its host and
    rank 0 then removes the state folder. Returns False when there was nothing to remove.
    """
    comm = comm or LocalComm()
    steps = steps or Steps(not quiet and comm.rank == 0)
    state = InstanceState(state_dir)
    existed = any(comm.allgather(state.exists()))
    if not existed:
        return False
    with ExitStack() as locks:
        def check():
            if comm.rank == 0:
                # Another `down` (each node's epilog removes its own part, all at once) is
                # waited for; an `up` still deploying is refused at once.
                deploying = state.exists() and _up_still_running(state.meta() or {})
                locks.enter_context(InstanceLock(state_dir).acquire(wait=0 if deploying else DOWN_LOCK_WAIT))
            if state.exists():
                state.check_instance()

        comm.agree("instance check", check)
        return _down_checked(state_dir, state, steps, quiet, comm)


def _down_checked(state_dir: Path, state: InstanceState, steps: Steps, quiet: bool, comm) -> bool:
    mine = local_hosts(state.hosts())
    comm.agree("unmount", lambda: unmount_hosts(mine, steps))  # every host, before any daemon stops
    comm.agree("down", lambda: remove_hosts(mine, steps))
    comm.barrier()
    if comm.rank == 0:
        left = state.hosts()
        if left:
            names = ", ".join(f"{h.label} ({h.address})" for h in left)
            raise RamburstError(f"removed this host's part; still up elsewhere: {names}. Run "
                                f"`ramburst down` there, or all at once with `mpirun ... ramburst down --mpi`")
        remove_tree(state_dir)
        log = failure_log_path(Path(state_dir))
        try:
            if os.lstat(log).st_uid == os.geteuid():
                log.unlink()
        except FileNotFoundError:
            pass
        if Path(state_dir).parent == default_state_root():
            try:
                default_state_root().rmdir()  # only when no other instance or log is left in it
            except OSError:
                pass
        if not quiet:
            steps.info(f"down in {steps.elapsed():.2f} s")
    return True


def local_hosts(hosts: list[HostRecord]) -> list[HostRecord]:
    """The host records that belong to this machine (by address; a single-host instance on
    loopback is always local)."""
    addresses = hostmod.local_addresses()
    return [h for h in hosts if h.address in addresses]


def unmount_hosts(hosts: list[HostRecord], steps: Steps) -> None:
    """First step of down: unmount while every daemon still runs, so ceph-fuse can finish."""
    for h in hosts:
        fuses = [p for p in h.processes if p.name.startswith("fuse.")]
        for m in h.mounts:
            if is_mounted(Path(m["path"])):
                how = unmount(Path(m["path"]), abort=lambda: stop_processes(fuses))
                steps.info(f"{m['path']}: {how}")
                if how == "failed":
                    raise RamburstError(f"cannot unmount {m['path']}; processes using it: "
                                        f"fuser -vm {m['path']}; then run down again")


def remove_hosts(hosts: list[HostRecord], steps: Steps) -> None:
    stopped = stop_processes([p for h in hosts for p in h.processes])
    steps.info(f"stopped {', '.join(stopped) or 'no running daemons'}")
    for h in hosts:
        remove_ram_dir(Path(h.ram_dir))
        for m in h.mounts:
            remove_folders(m["created"])
        h.path.unlink(missing_ok=True)
