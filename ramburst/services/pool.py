"""The pool service: a replicated RADOS pool, ready when it stores and returns an object."""
from __future__ import annotations

import os

from ..ceph.admin import AdminClient
from ..errors import DeployError
from ..plan import Plan
from .base import HostContext, Service


def create_pool(admin: AdminClient, plan: Plan) -> None:
    admin.create_pool(plan.pool, plan.pg_num)
    if plan.has_quota("pool"):
        # Its share next to s3 and fs: the monitor flags the pool full (clients get EDQUOT with
        # FULL_TRY, others wait), before the OSDs fill and stall the other services too. The
        # flag lags a fill at RAM speed by seconds; the watchdog bounds that case.
        admin.command("osd pool set-quota", pool=plan.pool, field="max_bytes",
                      val=str(plan.service_quota_bytes))


def verify_pool(admin: AdminClient, pool: str) -> None:
    """Write an object, read it back, remove it: the pool takes I/O end to end."""
    payload = os.urandom(4096)
    with admin.ioctx(pool) as ioctx:
        ioctx.write_full("ramburst.ready", payload)
        back = ioctx.read("ramburst.ready", len(payload))
        ioctx.remove_object("ramburst.ready")
    if back != payload:
        raise DeployError(f"pool {pool} returned different bytes than were written")


class PoolService(Service):
    name, label = "pool", "pool"
    # Alone the pool may fill the requested size (the watchdog keeps the OSD alive at full).
    quota = "beside"
    steps = {"create": ("pool-create",), "ready": ("pool-verify",)}

    def create(self, host: HostContext) -> None:
        with host.steps.step("pool-create", f"pool {host.plan.pool} created ({host.plan.pg_num} PGs)"):
            create_pool(host.admin, host.plan)

    def ready(self, host: HostContext) -> None:
        with host.steps.step("pool-verify", f"pool {host.plan.pool} stores and returns data"):
            verify_pool(host.admin, host.plan.pool)

    def endpoint(self, inst) -> str | None:
        return inst.pool

    def environment(self, inst, state_dir, host_label) -> dict[str, str]:
        return {"RAMBURST_POOL": inst.pool}
