"""The plan: which daemons run on which host, as plain data. Nothing here has side effects."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
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

    @property
    def entity(self) -> str:
        """The cephx identity: radosgw is a client of the cluster, ceph-fuse mounts as admin."""
        if self.kind == "rgw":
            return f"client.rgw.{self.id}"
        if self.kind == "fuse":
            return "client.admin"
        return self.name


@dataclass(frozen=True)
class DaemonWant:
    """A daemon a service adds to the plan, declared on its unit (services/*.py `daemons`):
    plan_cluster lays these out and knows no service by name."""

    kind: str                  # a ceph/ daemon kind: mds, rgw, fuse
    every_host: bool = False   # False: on the primary (h0) only, after mon and mgr; True: on every host, after its OSDs
    ident: str = "{host}"      # the daemon's id; "{host}" stands for the host label (h0, h1 ...)

    def spec(self, label: str) -> DaemonSpec:
        return DaemonSpec(self.kind, self.ident.replace("{host}", label))


# The primary's daemons start in this order and ceph.conf lists them so (the MDS before
# radosgw, whatever the order of the services); a kind not named here comes after these.
PRIMARY_ORDER = ("mon", "mgr", "mds", "rgw")


@dataclass(frozen=True)
class HostPlan:
    label: str  # stable name of the host inside the instance: h0, h1, ...
    address: str  # the address every daemon on this host binds
    ram_dir: Path  # node-local RAM folder for this host's daemon data
    daemons: tuple[DaemonSpec, ...]

    def of_kind(self, kind: str) -> list[DaemonSpec]:
        return [d for d in self.daemons if d.kind == kind]


# Capacity safety. Ceph's full ratios react within about a second (the OSD refreshes its
# statfs once per heartbeat, then the monitor flags the pool full); RAM takes writes at GB/s,
# so an OSD whose backing store is exactly the requested size is filled before the flag is
# up, and BlueStore aborts on ENOSPC. The store is therefore made FULL_HEADROOM larger than
# asked (a sparse tmpfs file: RAM is used only if written) and the ratios are set so that the
# requested size is where writes stop. BLUESTORE_META is what BlueStore reports used when
# empty (its RocksDB space); it is sparse too, so it is added on top rather than taken away.
FULL_HEADROOM = 2**30
BLUESTORE_META = 320 * 2**20


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
    rgw_port: int | None = None
    checksums: bool = False
    share_mount: bool = False
    ports: dict = field(default_factory=dict)  # service name -> its port on mon_address (metrics)
    quota_shares: tuple[str, ...] = ()  # the services that each get a quota share (services.quota_shares)

    @property
    def mon_host(self) -> str:
        return f"[v2:{self.mon_address}:{self.mon_port}]"

    @property
    def osds(self) -> list[DaemonSpec]:
        return [d for h in self.hosts for d in h.of_kind("osd")]

    @property
    def store_meta(self) -> int:
        return BLUESTORE_META if self.device == "file" else 0

    @property
    def block_bytes(self) -> int:
        """Size of each OSD's backing store: the requested share plus headroom."""
        return self.osd_bytes + self.store_meta + FULL_HEADROOM

    def full_ratios(self) -> dict[str, float]:
        """Ceph's ratios (of block_bytes) that put 'full' at the requested size."""
        base = (self.osd_bytes + self.store_meta) / self.block_bytes
        return {"nearfull": round(0.85 * base, 4), "backfillfull": round(0.90 * base, 4),
                "full": round(0.95 * base, 4), "failsafe": round(base, 4)}

    @property
    def usable_bytes(self) -> int:
        """What users can store: the requested RAM of all hosts over the number of copies."""
        return self.osd_bytes * len(self.osds) // self.replicas

    def has_quota(self, service: str) -> bool:
        return service in self.quota_shares

    @property
    def service_quota_bytes(self) -> int:
        """Quota of each service holding a share (s3, fs, and the pool beside them): together
        they stay below 'full', so one service filling up never leaves another (or CephFS
        deletes) waiting on a full cluster."""
        return int(0.9 * self.usable_bytes / max(1, len(self.quota_shares)))

    def mount_for(self, label: str) -> Path | None:
        """This host's mountpoint: `{host}` in --mount stands for the host label (h0, h1 ...),
        for hosts that share one filesystem view (as simulated hosts do)."""
        return Path(str(self.mount).replace("{host}", label)) if self.mount else None

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


def new_ram_token() -> str:
    """The random part of an instance's RAM folder names (drawn on rank 0, broadcast)."""
    return secrets.token_hex(8)


def ram_folder(config: Config, token: str, label: str, promise: int) -> Path:
    """One host's RAM folder: unguessable (token), and saying what it may grow to (promise,
    read by other instances' admission; format in ramburst/host.py)."""
    return config.ram_dir / f"ramburst-{os.getuid()}-{config.name}-{token}-{label}-{promise}B"


def plan_cluster(config: Config, addresses: list[str], fsid: str, mon_port: int,
                 rgw_port: int | None = None, ram_token: str | None = None, promise: int = 0,
                 ports: dict | None = None, wants: Iterable[DaemonWant] = (),
                 quota_shares: Iterable[str] = ()) -> Plan:
    """Lay out mon and mgr on the first host, `config.osds` OSDs on every host, and the
    daemons the selected services want (`services.wants`): mds and radosgw on the first
    host, a ceph-fuse mount on every host. `quota_shares` (`services.quota_shares`): who
    gets a share of the store as its quota."""
    if config.hosts is not None and config.hosts != len(addresses):
        raise UsageError(f"the config asks for {config.hosts} hosts but {len(addresses)} "
                         f"{'is' if len(addresses) == 1 else 'are'} taking part")
    total_osds = config.osds * len(addresses)
    failure_domain = "host" if len(addresses) > 1 else "osd"
    places = len(addresses) if failure_domain == "host" else total_osds
    if config.replicas > places:
        raise UsageError(f"replicas {config.replicas} needs at least {config.replicas} "
                         f"{failure_domain}s, but the plan has {places}")
    wants = tuple(wants)
    primary = sorted((w for w in wants if not w.every_host),
                     key=lambda w: PRIMARY_ORDER.index(w.kind) if w.kind in PRIMARY_ORDER else len(PRIMARY_ORDER))
    hosts = []
    next_osd = 0
    token = ram_token or new_ram_token()
    for i, address in enumerate(addresses):
        label = f"h{i}"
        daemons: list[DaemonSpec] = []
        if i == 0:
            daemons += [DaemonSpec("mon", "a"), DaemonSpec("mgr", "x"), *(w.spec(label) for w in primary)]
        for _ in range(config.osds):
            daemons.append(DaemonSpec("osd", str(next_osd)))
            next_osd += 1
        daemons += [w.spec(label) for w in wants if w.every_host]
        hosts.append(HostPlan(label, address, ram_folder(config, token, label, promise), tuple(daemons)))
    return Plan(
        name=config.name, fsid=fsid, state_dir=config.instance_dir,
        mon_address=addresses[0], mon_port=mon_port, pool=config.pool,
        replicas=config.replicas, pg_num=pg_count(total_osds, config.replicas),
        device=config.device, osd_bytes=config.osd_bytes, services=config.services,
        hosts=tuple(hosts), mount=config.mount_path, failure_domain=failure_domain,
        rgw_port=rgw_port if any(w.kind == "rgw" for w in wants) else None, checksums=config.checksums,
        share_mount=config.share_mount, ports=dict(ports or {}), quota_shares=tuple(quota_shares),
    )
