"""The pool service: a replicated RADOS pool, ready when it stores and returns an object."""
from __future__ import annotations

import os

from ..ceph.admin import AdminClient
from ..errors import DeployError
from ..plan import Plan


def create_pool(admin: AdminClient, plan: Plan) -> None:
    admin.create_pool(plan.pool, plan.pg_num)
    if plan.pool_has_quota:
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
