"""The fs service: a CephFS (two small pools, one MDS) mounted with ceph-fuse on every host."""
from __future__ import annotations

import os
from pathlib import Path

from ..ceph.admin import AdminClient, client_variables_hidden, load_binding, load_rados
from ..ceph.fuse import check_mountpoint, create_mountpoint, fuse_allows_other, is_mounted, unmount
from ..errors import DeployError, UsageError
from ..files import remove_folders
from ..layout import Layout
from ..plan import Plan
from ..process import stop_processes
from ..wait import Timeouts, wait_until
from .base import DaemonWant, HostContext, Service

FS_NAME = "ramburst"


def create_filesystem(admin: AdminClient, plan: Plan) -> None:
    meta, data = f"cephfs.{FS_NAME}.meta", f"cephfs.{FS_NAME}.data"
    admin.command("osd pool create", pool=meta, pg_num=8, pgp_num=8, pool_type="replicated")
    admin.command("osd pool create", pool=data, pg_num=plan.pg_num, pgp_num=plan.pg_num,
                  pool_type="replicated")
    admin.command("fs new", fs_name=FS_NAME, metadata=meta, data=data)


def wait_mds_active(admin: AdminClient, timeout: float, check=None, cancel=None) -> None:
    def active() -> bool:
        return any(i.get("state") == "up:active" for fs in admin.command("fs dump").get("filesystems", [])
                   for i in fs["mdsmap"].get("info", {}).values())

    wait_until(active, timeout, "an active MDS", interval=0.05, check=check, cancel=cancel,
               failure=lambda: f"no MDS became active within {timeout:.0f} s")


def load_cephfs():
    """The `cephfs` binding (python3-cephfs); it needs `rados` loaded first."""
    load_rados()
    return load_binding("cephfs", "python3-cephfs")


def prepare_root(conf: Path, max_bytes: int, shared: bool, uid: int | None = None,
                 gid: int | None = None) -> None:
    """Give the filesystem's root to the deploying user and set the quota, before any mount.

    CephFS makes its root root:root 0755, so a plain user could neither write there nor set
    the quota through the mount. client.admin may act as any uid (its MDS caps have no uid
    limit), so libcephfs does both as uid 0. The root is 0700 unless the mount is shared.
    """
    cephfs = load_cephfs()
    keyring = Layout.of_conf(conf).keyring("client.admin")
    with client_variables_hidden():  # a loaded client environment must not pick the cluster
        fs = cephfs.LibCephFS(conffile=str(conf), auth_id="admin", conf={"keyring": str(keyring)})
    try:
        fs.conf_set("client_mount_uid", "0")
        fs.conf_set("client_mount_gid", "0")
        fs.mount(filesystem_name=FS_NAME.encode())
        fs.chown("/", os.getuid() if uid is None else uid, os.getgid() if gid is None else gid)
        fs.chmod("/", 0o755 if shared else 0o700)
        # A CephFS quota at the fs share: ceph-fuse answers EDQUOT itself when it is reached,
        # before the OSDs fill. It counts file sizes, so a sparse extend past it is refused
        # too; a pool quota (bytes stored) reacted too late at RAM speed (docs/conformance.md).
        fs.setxattr("/", "ceph.quota.max_bytes", str(max_bytes).encode(), 0)
        fs.unmount()
    except cephfs.Error as e:
        raise DeployError(f"cannot prepare the filesystem root: {e}") from None
    finally:
        fs.shutdown()


class FsService(Service):
    """A CephFS with one MDS on the primary, mounted by ceph-fuse on every host."""

    name, label = "fs", "mounted at"
    binaries = ("mds", "fuse")
    daemons = (DaemonWant("mds", ident="a"), DaemonWant("fuse", every_host=True))
    quota = "own"
    steps = {"prepare_host": ("mountpoint",), "create": ("fs-create", "mds-start"),
             "ready": ("mds-ready", "fs-root"), "attach_host": ("fs-mount",)}

    def check(self, config, host_label) -> None:
        check_mountpoint(Path(str(config.mount_path).replace("{host}", host_label)))
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            raise UsageError("the fs service needs read and write access to /dev/fuse "
                             "(ask for it, or use --service pool/s3)")
        if config.share_mount and os.geteuid() != 0 and not fuse_allows_other():
            raise UsageError("--share-mount needs 'user_allow_other' in /etc/fuse.conf "
                             "(ask the admin, or leave the mount private)")

    def prepare_host(self, host: HostContext) -> None:
        if host.mount is None:
            return
        with host.steps.step("mountpoint", f"mountpoint {host.mount}"):
            check_mountpoint(host.mount)
            made = create_mountpoint(host.mount, 0o755 if host.plan.share_mount else 0o700)
            host.undo.callback(remove_folders, made)
            host.record.add_mount(str(host.mount), made)

    def create(self, host: HostContext) -> None:
        for mds in host.of_kind("mds"):
            with host.steps.step("fs-create", "CephFS created"):
                create_filesystem(host.admin, host.plan)
            with host.steps.step("mds-start", f"{mds.name} started"):
                mds.prepare(host.layout.data(host.host.label, mds.name))
                host.start(mds)

    def ready(self, host: HostContext) -> None:
        if host.of_kind("mds"):
            with host.steps.step("mds-ready", "MDS active"):
                wait_mds_active(host.admin, Timeouts.MDS_ACTIVE, check=host.check_daemons, cancel=host.steps.cancel)
            with host.steps.step("fs-root", "filesystem root owned by you, quota set"):
                prepare_root(host.layout.conf, host.plan.service_quota_bytes, host.plan.share_mount)

    def attach_host(self, host: HostContext) -> None:
        """Mount on this host (root and quota were set by `ready`)."""
        fuses = host.of_kind("fuse")
        if not fuses:
            return
        fuse = fuses[0]
        with host.steps.step("fs-mount", f"CephFS mounted at {host.mount}"):
            fuse_record = host.start(fuse)
            host.undo.callback(unmount, host.mount, Timeouts.UNMOUNT, lambda: stop_processes([fuse_record]))
            wait_until(lambda: is_mounted(host.mount), Timeouts.MOUNTED, f"the mount at {host.mount}",
                       check=fuse.check_running, cancel=host.steps.cancel)

    def endpoint(self, inst) -> str | None:
        return inst.mount

    def environment(self, inst, state_dir, host_label) -> dict[str, str]:
        return {"RAMBURST_MOUNT": inst.mount.replace("{host}", host_label())} if inst.mount else {}
