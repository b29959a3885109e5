"""What users consume on top of the daemons. REGISTRY is the one place a service is
registered; its order is the order of the hooks inside each phase of `up`."""
from __future__ import annotations

from collections.abc import Iterable

from .base import HostContext, Service
from .fs import FsService
from .metrics import MetricsService
from .pool import PoolService
from .s3 import S3Service

__all__ = ["REGISTRY", "HostContext", "Service", "selected"]

REGISTRY: dict[str, type[Service]] = {s.name: s for s in (PoolService, S3Service, FsService, MetricsService)}


def selected(names: Iterable[str]) -> tuple[Service, ...]:
    """Fresh units for one deployment (they hold its state: the S3 user job, credentials)."""
    names = set(names)
    return tuple(cls() for name, cls in REGISTRY.items() if name in names)
