"""Bring an instance up: `up` acts out a plan step by step.

Each step that makes something pushes its undo onto an ExitStack; if a later step fails, or a
signal arrives, the stack unwinds and removes it all. Slow steps overlap: OSD stores are made
while the monitor starts.
"""
from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

from .. import host as hostmod
from ..config import Config
from ..errors import DeployError, Interrupted, RamburstError, UsageError
from ..files import failure_log_path
from ..mpi import LocalComm
from ..plan import new_ram_token, plan_cluster
from ..progress import CANCELLED, Steps
from .admission import memory_promise, prepare_instance_dir, validate
from .deployment import Deployment


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
