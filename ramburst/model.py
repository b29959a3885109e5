"""An instance as data: what `up` writes into instance.json and `status`, `env` and the API read."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Instance:
    name: str
    fsid: str
    state: str                      # "deploying" until `up` finished, then "up"
    pool: str
    services: tuple[str, ...]
    mon_host: str
    device: str
    checksums: bool
    replicas: int
    hosts: tuple[str, ...]          # host labels: h0, h1, ...
    osds: int
    osd_bytes: int
    mount: str | None               # may hold {host}: each host's label
    s3_endpoint: str | None
    conf: str
    up_pid: int
    created: float
    endpoints: Mapping[str, str] = field(default_factory=dict)  # service -> where, from its unit's facts

    def to_json(self) -> dict:
        """The keys of instance.json (InstanceState adds "format")."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(services=list(self.services), hosts=list(self.hosts), endpoints=dict(self.endpoints))
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> Instance:
        """A record without "checksums" predates the option: Ceph's default then, checksums on.
        Records without "endpoints" predate the service units: their services had none there."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("checksums", True)
        values["services"] = tuple(values.get("services", ()))
        values["hosts"] = tuple(values.get("hosts", ()))
        values["endpoints"] = dict(values.get("endpoints") or {})
        return cls(**values)
