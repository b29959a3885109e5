"""The plan: which daemons run on which host, as plain data. Nothing here has side effects."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import UsageError


@dataclass(frozen=True)
class DaemonSpec:
    kind: str  # mon, mgr, osd, mds, rgw
    id: str

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.id}"


@dataclass(frozen=True)
class HostPlan:
    label: str  # stable name of the host inside the instance: h0, h1, ...
    address: str  # the address every daemon on this host binds
    ram_dir: Path  # node-local RAM folder for this host's daemon data
    daemons: tuple[DaemonSpec, ...]

    def of_kind(self, kind: str) -> list[DaemonSpec]:
        return [d for d in self.daemons if d.kind == kind]


@dataclass(frozen=True)
class Plan:
    name: str
    fsid: str
    state_dir: Path
    mon_address: str
    mon_port: int
    pool: str
    replicas: int
    pg_num: int
    device: str
    osd_bytes: int
    services: tuple[str, ...]
    hosts: tuple[HostPlan, ...]
    mount: Path | None = None
    failure_domain: str = field(default="osd")

    @property
    def mon_host(self) -> str:
        return f"[v2:{self.mon_address}:{self.mon_port}]"

    @property
    def osds(self) -> list[DaemonSpec]:
        return [d for h in self.hosts for d in h.of_kind("osd")]

    def host(self, label: str) -> HostPlan:
        for h in self.hosts:
            if h.label == label:
                return h
        raise KeyError(label)


def pg_count(osds: int, replicas: int) -> int:
    """A power of two near 32 PG copies per OSD: enough parallelism, quick to create."""
    target = max(8, (osds * 32) // replicas)
    n = 1
    while n * 2 <= target:
        n *= 2
    return n


def ram_root(config: Config) -> Path:
    """Where this instance keeps RAM data on every host: per user, name and state folder,
    so two instances never share it, even with the same name in different state folders."""
    tag = hashlib.sha1(str(config.instance_dir).encode()).hexdigest()[:6]
    return config.ram_dir / f"ramburst-{os.getuid()}-{config.name}-{tag}"


def plan_cluster(config: Config, addresses: list[str], fsid: str, mon_port: int) -> Plan:
    """Lay out mon and mgr on the first host and `config.osds` OSDs on every host."""
    if config.hosts is not None and config.hosts != len(addresses):
        raise UsageError(f"the config asks for {config.hosts} hosts but {len(addresses)} "
                         f"{'is' if len(addresses) == 1 else 'are'} taking part")
    total_osds = config.osds * len(addresses)
    failure_domain = "host" if len(addresses) > 1 else "osd"
    places = len(addresses) if failure_domain == "host" else total_osds
    if config.replicas > places:
        raise UsageError(f"replicas {config.replicas} needs at least {config.replicas} "
                         f"{failure_domain}s, but the plan has {places}")
    hosts = []
    next_osd = 0
    root = ram_root(config)
    for i, address in enumerate(addresses):
        daemons: list[DaemonSpec] = []
        if i == 0:
            daemons += [DaemonSpec("mon", "a"), DaemonSpec("mgr", "x")]
        for _ in range(config.osds):
            daemons.append(DaemonSpec("osd", str(next_osd)))
            next_osd += 1
        hosts.append(HostPlan(f"h{i}", address, root / f"h{i}", tuple(daemons)))
    return Plan(
        name=config.name, fsid=fsid, state_dir=config.instance_dir,
        mon_address=addresses[0], mon_port=mon_port, pool=config.pool,
        replicas=config.replicas, pg_num=pg_count(total_osds, config.replicas),
        device=config.device, osd_bytes=config.osd_bytes, services=config.services,
        hosts=tuple(hosts), mount=config.mount, failure_domain=failure_domain,
    )
