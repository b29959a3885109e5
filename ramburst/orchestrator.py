"""Bring an instance up and take it down: the orchestrator of the daemon units.

`up` acts out a plan step by step. Each step that makes something pushes its undo onto an
ExitStack; if a later step fails, or a signal arrives, the stack unwinds and removes it
all. Slow steps overlap: OSD stores are made while the monitor starts.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from . import host as hostmod
from .ceph import keys
from .ceph.admin import AdminClient
from .ceph.conf import Layout, render_conf
from .ceph.daemon import Daemon, stop_processes
from .ceph.mgr import MgrDaemon
from .ceph.mon import MonDaemon
from .ceph.osd import OsdDaemon
from .config import Config
from .errors import DeployError, Interrupted, RamburstError, UsageError
from .instance import HostRecord, InstanceState
from .plan import FULL_HEADROOM, Plan, plan_cluster
from .progress import CANCELLED, Steps
from .services import pool as pool_service

DAEMON_CLASSES = {"mon": MonDaemon, "mgr": MgrDaemon, "osd": OsdDaemon}


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
    """Gather the daemon logs into one file beside the state folder before it is removed."""
    logs = sorted((state_dir / "log").glob("*")) if (state_dir / "log").is_dir() else []
    if not logs:
        return None
    dest = failure_log_path(state_dir)
    with open(dest, "w") as out:
        for p in logs:
            out.write(f"===== {p.name} =====\n")
            out.write(p.read_text(errors="replace")[-200_000:])
            out.write("\n")
    os.chmod(dest, 0o600)
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Deployment:
    """The steps of `up` for one host of a plan; `undo` collects how to reverse each."""

    def __init__(self, plan: Plan, host_label: str, binaries: dict[str, str], steps: Steps,
                 undo: ExitStack):
        self.plan = plan
        self.host = plan.host(host_label)
        self.layout = Layout(plan)
        self.binaries = binaries
        self.steps = steps
        self.undo = undo
        self.state = InstanceState(plan.state_dir)
        self.record: HostRecord | None = None
        self.daemons: dict[str, Daemon] = {
            d.name: DAEMON_CLASSES[d.kind](d.id, binaries[d.kind], self.layout.conf, self.layout.logs)
            for d in self.host.daemons
        }

    def of_kind(self, kind: str) -> list:
        return [d for d in self.daemons.values() if d.kind == kind]

    # --- shared files (first host) ---------------------------------------------------

    def make_state_dir(self) -> None:
        with self.steps.step("state-dir", f"state folder {self.plan.state_dir}"):
            self.plan.state_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.plan.state_dir.mkdir(mode=0o700)
            except FileExistsError:
                raise UsageError(f"state folder {self.plan.state_dir} already exists") from None
            self.undo.callback(remove_tree, self.plan.state_dir)
            self.undo.callback(save_failure_log, self.plan.state_dir)
            for d in (self.layout.keys, self.layout.logs, self.layout.run, self.layout.hosts):
                d.mkdir(mode=0o700)
            self.state.write_meta(self.meta("deploying"))

    def meta(self, state: str) -> dict:
        p = self.plan
        return {
            "name": p.name, "fsid": p.fsid, "state": state, "pool": p.pool,
            "services": list(p.services), "mon_host": p.mon_host, "device": p.device,
            "replicas": p.replicas, "hosts": [h.label for h in p.hosts],
            "osds": len(p.osds), "osd_bytes": p.osd_bytes,
            "mount": str(p.mount) if p.mount else None,
            "conf": str(self.layout.conf), "up_pid": os.getpid(), "created": time.time(),
        }

    def write_secrets_and_conf(self) -> None:
        with self.steps.step("keys", "fresh keys and ceph.conf"):
            entities = ["mon.", "client.admin"] + [
                d.name for h in self.plan.hosts for d in h.daemons if d.kind != "mon"]
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

    def make_ram_dir(self) -> None:
        with self.steps.step("ram-dir", f"RAM folder {self.host.ram_dir}"):
            root = self.host.ram_dir.parent
            self.record = self.state.host(self.host.label, self.host.address, self.host.ram_dir)
            self.undo.callback(remove_tree_and_empty_parent, self.host.ram_dir)
            root.mkdir(mode=0o700, exist_ok=True)
            self.host.ram_dir.mkdir(mode=0o700)

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

    def register_osd(self, admin: AdminClient, osd: OsdDaemon) -> None:
        with self.steps.step("osd-register", f"{osd.name} registered"):
            admin.osd_new(osd.uuid, int(osd.id))

    def start_osd(self, osd: OsdDaemon) -> None:
        with self.steps.step("osd-start", f"{osd.name} started"):
            self.start(osd)

    def check_daemons(self) -> None:
        for d in self.daemons.values():
            d.check_running()


def validate(config: Config) -> tuple[dict[str, str], str]:
    """Everything that can be checked before anything is made: binaries, interface, memory."""
    binaries = hostmod.check_binaries(["mon", "mgr", "osd"])
    address = hostmod.interface_address(config.interface)
    counts = {"mon": 1, "mgr": 1, "osd": config.osds}
    hostmod.check_memory(config.size, FULL_HEADROOM * config.osds, counts, config.ram_dir)
    return binaries, address


def prepare_instance_dir(config: Config, steps: Steps) -> None:
    """Refuse a name that is up; clear away the remains of one that died (killed `up`, crash)."""
    state = InstanceState(config.instance_dir)
    if not state.exists():
        return
    meta = state.meta() or {}
    how = (f"ramburst down --name {config.name}" if config.state_dir is None
           else f"ramburst down --state-dir {config.instance_dir}")
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


def up(config: Config, show_progress: bool = True) -> dict:
    """Deploy the instance `config` describes on this host; return its instance.json data."""
    steps = Steps(show_progress)
    binaries, address = validate(config)
    plan = plan_cluster(config, [address], str(uuid.uuid4()), hostmod.free_port(address))
    CANCELLED.clear()
    with signals_raise():
        prepare_instance_dir(config, steps)
        try:
            with ExitStack() as undo:
                dep = Deployment(plan, "h0", binaries, steps, undo)
                dep.make_state_dir()
                dep.write_secrets_and_conf()
                dep.make_ram_dir()
                osds = dep.of_kind("osd")
                with ThreadPoolExecutor(max_workers=max(2, len(osds))) as pool:
                    mkfs = [pool.submit(dep.mkfs_osd, o) for o in osds]
                    try:
                        dep.mkfs_mon()
                        dep.start_mon()
                        dep.start_mgr()
                        admin = dep.connect()
                        for osd, job in zip(osds, mkfs):
                            dep.register_osd(admin, osd)
                            job.result()
                            dep.start_osd(osd)
                    except BaseException:
                        CANCELLED.set()
                        raise
                    finally:
                        for job in mkfs:
                            job.cancel()
                with steps.step("pool-create", f"pool {plan.pool} created ({plan.pg_num} PGs)"):
                    pool_service.create_pool(admin, plan)
                with steps.step("osd-up", f"{len(osds)} OSD(s) up"):
                    admin.wait_osds_up(len(osds), 60, check=dep.check_daemons)
                with steps.step("pool-verify", f"pool {plan.pool} stores and returns data"):
                    pool_service.verify_pool(admin, plan.pool)
                meta = dep.meta("up")
                dep.state.write_meta(meta)
                os.unlink(dep.layout.keys / "initial.keyring")
                undo.pop_all()
                admin.close()
        except (UsageError, Interrupted):
            raise
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None
        except Exception as e:  # a step failed, or a Ceph binding error: one line, rolled back
            log = failure_log_path(plan.state_dir)
            cause = getattr(e, "message", str(e)) if isinstance(e, RamburstError) else f"{type(e).__name__}: {e}"
            raise DeployError(f"{cause}; rolled back", str(log) if log.exists() else None) from None
    steps.info(f"up in {steps.elapsed():.2f} s")
    return meta


def remove_tree_and_empty_parent(path: Path) -> None:
    remove_tree(path)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def down(state_dir: Path, steps: Steps | None = None, quiet: bool = False) -> bool:
    """Remove everything the instance in `state_dir` made on this host. Idempotent.

    Works from the records alone, so a half-made, crashed or killed instance goes too.
    Returns False when there was nothing to remove.
    """
    steps = steps or Steps(not quiet)
    state = InstanceState(state_dir)
    if not state.exists():
        return False
    hosts = state.hosts()
    stopped = stop_processes([p for h in hosts for p in h.processes])
    steps.info(f"stopped {', '.join(stopped) or 'no running daemons'}")
    for h in hosts:
        remove_tree_and_empty_parent(Path(h.ram_dir))
    remove_tree(state_dir)
    try:
        failure_log_path(state_dir).unlink()
    except FileNotFoundError:
        pass
    if not quiet:
        steps.info(f"down in {steps.elapsed():.2f} s")
    return True
