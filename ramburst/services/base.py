"""What a service is to the rest of ramburst: one unit per `--service` word.

A unit adds steps to the phases of `up` (lifecycle/phases.py) through its hooks, says which
binaries and daemons it needs, what `status` shows and what `env` exports. Hooks get the
host's deployment (lifecycle/deployment.py) as `host` and use only these of its members, so
services never import lifecycle: plan, host (HostPlan), layout, steps, undo, record, mount,
binaries, admin (primary only, after the monitor answers), of_kind(kind), start(daemon) ->
ProcessRecord, check_daemons(), submit(fn) -> Future (the deployment's worker threads).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..config import Config
from ..model import Instance


class Service:
    name: ClassVar[str] = ""                                  # the --service word
    label: ClassVar[str] = ""                                 # status: "  <name>  <label> <where>"
    binaries: ClassVar[tuple[str, ...]] = ()                  # host.check_binaries kinds
    daemons: ClassVar[Mapping[str, int]] = {}                 # per host, counted for the memory promise
    ports: ClassVar[int] = 0                                  # free ports drawn on the primary's address
    steps: ClassVar[Mapping[str, tuple[str, ...]]] = {}       # hook -> its step names (RAMBURST_FAIL_AT)

    def check(self, config: Config, host_label: str) -> None:
        """Raise UsageError before anything is made."""

    # up, in phase order; hooks default to nothing
    def prepare_host(self, host: Any) -> None:
        """"RAM folder" phase, every host."""

    def create(self, host: Any) -> None:
        """"services" phase on the primary, before the OSDs are up."""

    def start(self, host: Any) -> None:
        """"services" phase on the primary, once the OSDs are up."""

    def ready(self, host: Any) -> None:
        """"services" phase on the primary, after every unit started."""

    def attach_host(self, host: Any) -> None:
        """"fs mount" phase, every host."""

    def facts(self, plan: Any) -> Mapping[str, str]:
        """Extra keys of instance.json's "endpoints" (where clients find the service)."""
        return {}

    # after up
    def endpoint(self, inst: Instance) -> str | None:
        """Where the service is, from instance.json (status)."""
        return inst.endpoints.get(self.name)

    def environment(self, inst: Instance, state_dir: Path, host_label: Callable[[], str]) -> dict[str, str]:
        """The client variables `ramburst env` exports for this service."""
        return {}
