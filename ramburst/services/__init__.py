"""What users consume on top of the daemons. REGISTRY is the one place a service is
registered; its order is the order of the hooks inside each phase of `up`."""
from __future__ import annotations

from collections.abc import Iterable

from .base import DaemonWant, HostContext, Service
from .fs import FsService
from .metrics import MetricsService
from .pool import PoolService
from .s3 import S3Service

__all__ = ["REGISTRY", "DaemonWant", "HostContext", "Service", "quota_shares", "selected", "wants"]

REGISTRY: dict[str, type[Service]] = {s.name: s for s in (PoolService, S3Service, FsService, MetricsService)}


def selected(names: Iterable[str]) -> tuple[Service, ...]:
    """Fresh units for one deployment (they hold its state: the S3 user job, credentials)."""
    names = set(names)
    return tuple(cls() for name, cls in REGISTRY.items() if name in names)


def wants(names: Iterable[str]) -> tuple[DaemonWant, ...]:
    """The daemons these services add to the plan (plan_cluster's `wants`), in registry order."""
    return tuple(w for unit in selected(names) for w in unit.daemons)


def quota_shares(names: Iterable[str]) -> tuple[str, ...]:
    """The services that each get an equal share of the store as their quota (plan_cluster's
    `quota_shares`): those with their own share, and those beside them only when there are."""
    units = selected(names)
    own = [u.name for u in units if u.quota == "own"]
    return tuple(u.name for u in units if u.quota == "own" or (u.quota == "beside" and own))
