"""`up` as a fixed list of phases. Each ends with comm.agree under its name, on every rank and
in the same order whatever a rank has to do, so a failure anywhere rolls back every rank and
no rank waits in a collective another never enters. Service units add their steps through
their hooks; `step_names` lists every step a deployment runs (RAMBURST_FAIL_AT names)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from ..services import Service, selected
from ..wait import Timeouts
from .deployment import Deployment, Role


def hooks(units: Iterable[Service], hook: str) -> tuple[str, ...]:
    return tuple(s for u in units for s in u.steps.get(hook, ()))


@dataclass(frozen=True)
class Phase:
    name: str                                           # the comm.agree text: "<name> failed on rank N"
    who: Role | None                                    # None: every host acts; PRIMARY: the others only agree
    act: Callable[[Deployment], Any]
    steps: Callable[[tuple[Service, ...]], tuple[str, ...]]
    gather: bool = False                                # allgather the results (OSD uuids)


def state_folder(dep: Deployment) -> None:
    dep.make_state_dir()
    dep.write_secrets_and_conf()


def ram_folder(dep: Deployment) -> None:
    dep.make_ram_dir(dep.config)
    for unit in dep.units:
        unit.prepare_host(dep)


def monitor_and_stores(dep: Deployment) -> dict[int, str]:
    """OSD stores are made in the workers while the primary starts the monitor and manager."""
    osds = dep.of_kind("osd")
    mkfs = [dep.submit(partial(dep.mkfs_osd, o)) for o in osds]
    if dep.role is Role.PRIMARY:
        dep.mkfs_mon()
        dep.start_mon()
        dep.start_mgr()
        dep.admin = dep.connect()
    for job in mkfs:
        job.result()
    return {int(o.id): o.uuid for o in osds}


def register_osds(dep: Deployment) -> None:
    uuids: dict[int, str] = {}
    for part in dep.gathered["monitor and OSD stores"]:
        uuids.update(part)
    dep.register_osds(dep.admin, uuids)


def start_osds(dep: Deployment) -> None:
    for osd in dep.of_kind("osd"):
        dep.start_osd(osd)
    dep.start_watchdog()


def services(dep: Deployment) -> None:
    for unit in dep.units:
        unit.create(dep)
    with dep.steps.step("osd-up", f"{len(dep.plan.osds)} OSD(s) up"):
        dep.admin.wait_osds_up(len(dep.plan.osds), Timeouts.OSDS_UP, check=dep.check_daemons, cancel=dep.steps.cancel)
    # After the OSDs: a radosgw whose first ops find no OSD waits for its objecter's 5 s tick
    # to learn the new map.
    for unit in dep.units:
        unit.start(dep)
    for unit in dep.units:
        unit.ready(dep)


def attach_hosts(dep: Deployment) -> None:
    for unit in dep.units:
        unit.attach_host(dep)


PRIMARY = Role.PRIMARY
PHASES = (
    Phase("state folder", PRIMARY, state_folder, lambda u: ("state-dir", "keys")),
    Phase("RAM folder", None, ram_folder, lambda u: ("ram-dir", *hooks(u, "prepare_host"))),
    Phase("monitor and OSD stores", None, monitor_and_stores,
          lambda u: ("mon-mkfs", "osd-mkfs", "mon-start", "mgr-start", "mon-ready"), gather=True),
    Phase("OSD registration", PRIMARY, register_osds, lambda u: ("osd-register",)),
    Phase("OSD start", None, start_osds, lambda u: ("osd-start", "watchdog-start")),
    Phase("services", PRIMARY, services,
          lambda u: (*hooks(u, "create"), "osd-up", *hooks(u, "start"), *hooks(u, "ready"))),
    Phase("fs mount", None, attach_hosts, lambda u: hooks(u, "attach_host")),
    Phase("finish", PRIMARY, Deployment.finish, lambda u: ()),
)


def run_phases(comm, dep: Deployment, phases: tuple[Phase, ...] = PHASES) -> None:
    for phase in phases:
        acts = phase.who is None or phase.who is dep.role
        result = comm.agree(phase.name, partial(phase.act, dep) if acts else None)
        if phase.gather:
            dep.gathered[phase.name] = comm.allgather(result)


def step_names(services: Iterable[str]) -> list[str]:
    """Every step of `up` with these services, in the order they run (worker steps included)."""
    units = selected(services)
    return [s for phase in PHASES for s in phase.steps(units)]
