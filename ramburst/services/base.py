"""What a service is to the rest of ramburst: one unit per `--service` word.

A unit adds steps to the phases of `up` (lifecycle/phases.py) through its hooks, says which
binaries and daemons it needs, what `status` shows and what `env` exports. Hooks see the host
they run on only as a `HostContext`: lifecycle's Deployment implements it, and services never
import lifecycle (lifecycle imports them: the other way round would close a circle).
"""
from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

from ..config import Config
from ..model import Instance
from ..plan import DaemonWant

if TYPE_CHECKING:
    from ..ceph.admin import AdminClient
    from ..ceph.conf import Layout
    from ..ceph.daemon import Daemon
    from ..instance import HostRecord
    from ..plan import HostPlan, Plan
    from ..process import ProcessRecord
    from ..progress import Steps


@runtime_checkable
class HostContext(Protocol):
    """What a service hook may use of the host it runs on during `up`."""

    plan: Plan
    host: HostPlan                  # this host's part of the plan
    layout: Layout                  # every path: state folder and this plan's RAM folders
    steps: Steps                    # `with host.steps.step(name, text)`: progress, fault injection, cancel
    undo: ExitStack                 # push how to reverse what a hook made (unwound in reverse on failure)
    binaries: Mapping[str, str]     # kind -> checked path (host.check_binaries)
    record: HostRecord | None       # this host's record (processes, mounts), from the "RAM folder" phase on
    mount: Path | None              # this host's fs mountpoint
    admin: AdminClient | None       # the primary's, once the monitor answers; None on members

    def of_kind(self, kind: str) -> list[Daemon]:
        """This host's daemons of one kind, as the plan laid them out."""

    def start(self, daemon: Daemon) -> ProcessRecord:
        """Start it, record it, and push its stop onto undo."""

    def check_daemons(self) -> None:
        """Raise if a daemon of this host has died (passed to waits as `check`)."""

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run fn on the deployment's worker threads (joined before undo unwinds)."""


class Service:
    name: ClassVar[str] = ""                                  # the --service word
    label: ClassVar[str] = ""                                 # status: "  <name>  <label> <where>"
    binaries: ClassVar[tuple[str, ...]] = ()                  # host.check_binaries kinds
    daemons: ClassVar[tuple[DaemonWant, ...]] = ()            # laid out by the plan, counted for the memory promise
    quota: ClassVar[str] = ""                                 # "own": a share of the store; "beside": one
                                                              # only next to an "own" (services.quota_shares)
    ports: ClassVar[int] = 0                                  # free ports drawn on the primary's address
    steps: ClassVar[Mapping[str, tuple[str, ...]]] = {}       # hook -> its step names (RAMBURST_FAIL_AT)

    def check(self, config: Config, host_label: str) -> None:
        """Raise UsageError before anything is made."""

    # up, in phase order; hooks default to nothing
    def prepare_host(self, host: HostContext) -> None:
        """"RAM folder" phase, every host."""

    def create(self, host: HostContext) -> None:
        """"services" phase on the primary, before the OSDs are up."""

    def start(self, host: HostContext) -> None:
        """"services" phase on the primary, once the OSDs are up."""

    def ready(self, host: HostContext) -> None:
        """"services" phase on the primary, after every unit started."""

    def attach_host(self, host: HostContext) -> None:
        """"fs mount" phase, every host."""

    def facts(self, plan: Plan) -> Mapping[str, str]:
        """Extra keys of instance.json's "endpoints" (where clients find the service)."""
        return {}

    # after up
    def endpoint(self, inst: Instance) -> str | None:
        """Where the service is, from instance.json (status)."""
        return inst.endpoints.get(self.name)

    def environment(self, inst: Instance, state_dir: Path, host_label: Callable[[], str]) -> dict[str, str]:
        """The client variables `ramburst env` exports for this service."""
        return {}
