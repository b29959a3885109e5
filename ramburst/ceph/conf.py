"""The generated ceph.conf: every path inside the instance, every setting tuned for RAM.

Each non-default setting is listed with why it is set; docs/tuning.md says more.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

from ..layout import Layout as StateLayout
from ..plan import Plan


class Layout(StateLayout):
    """Paths of one instance: the shared state folder (layout.py) and each host's RAM folder."""

    def __init__(self, plan: Plan):
        super().__init__(plan.state_dir)
        self.plan = plan

    def data(self, host_label: str, daemon_name: str) -> Path:
        return self.plan.host(host_label).ram_dir / daemon_name


CLIENT_OP_TIMEOUT = 20

# Ceph formats debug messages up to each subsystem's second level (e.g. osd 1/5) into an
# in-memory log even when they are not written. Not gathering them cut the CPU per small op
# by 20-40 % (ceph-fuse, radosgw, MDS, OSD; docs/tuning.md). Errors are still logged; what
# is lost is the recent-events dump a crashing daemon would write into its log.
QUIET_SUBSYSTEMS = (
    "asok", "auth", "bdev", "bluefs", "bluestore", "buffer", "client", "context", "crush",
    "finisher", "fuse", "heartbeatmap", "journal", "journaler", "kstore", "lockdep", "mds",
    "mds_balancer", "mds_locker", "mds_log", "mds_log_expire", "mds_migrator", "memdb", "mgr",
    "mgrc", "mon", "monc", "ms", "objectcacher", "objecter", "optracker", "osd", "paxos",
    "perfcounter", "rados", "rgw", "rocksdb", "striper", "throttle", "timer",
)


# The SSE-KMS key id S3 clients name (SSEKMSKeyId); its key is fresh per deployment.
KMS_KEY_ID = "ramburst"


def rgw_crypt_settings() -> dict[str, object]:
    """Server-side encryption on the job's plain-HTTP endpoint (docs/conformance.md).

    radosgw refuses SSE over HTTP by default so a key never crosses a network in clear; the
    endpoint here is loopback or the job's private network, so SSE-C keys cross only that.
    SSE-KMS uses radosgw's 'testing' backend with one fresh 256-bit key, kept in ceph.conf
    (0600, like the keyrings): it protects against nothing on this host, but lets code that
    asks for SSE-KMS run unchanged."""
    key = base64.b64encode(os.urandom(32)).decode()
    return {"rgw crypt require ssl": "false",
            "rgw crypt s3 kms backend": "testing",
            "rgw crypt s3 kms encryption keys": f"{KMS_KEY_ID}={key}"}


def _fmt(settings: dict[str, object]) -> str:
    return "".join(f"\t{k} = {v}\n" for k, v in settings.items())


def render_conf(plan: Plan, layout: Layout) -> str:
    single_copy = plan.replicas == 1
    ratios = plan.full_ratios()
    glob = {
        "fsid": plan.fsid,
        "mon host": plan.mon_host,
        "mon initial members": "a",
        # Security: cephx everywhere, no insecure global_id reclaim.
        "auth cluster required": "cephx",
        "auth service required": "cephx",
        "auth client required": "cephx",
        "auth allow insecure global id reclaim": "false",
        # Every file inside the instance; nothing under /var or /etc, so no root needed.
        "keyring": f"{layout.keys}/$name.keyring",
        "run dir": str(layout.run),
        "admin socket": "$run_dir/$name.asok",
        "log file": f"{layout.logs}/$name.log",
        "mon cluster log file": f"{layout.logs}/cluster.log",
        "pid file": "",
        "crash dir": f"{layout.state}/crash",
        # msgr2 only: one port per daemon.
        "ms bind msgr1": "false",
        "ms bind msgr2": "true",
        # Pools: the requested replica count, spread over hosts (or OSDs on one host).
        "osd pool default size": plan.replicas,
        "osd pool default min size": 1,
        "osd pool default pg autoscale mode": "off",
        "osd crush chooseleaf type": 1 if plan.failure_domain == "host" else 0,
        "mon allow pool size one": "true",
        "mon allow pool delete": "true",
        "mon warn on pool no redundancy": "false" if single_copy else "true",
        "mon pg warn min per osd": 0,
        # Pools that radosgw and CephFS create: few PGs, quick to create on a small cluster.
        "osd pool default pg num": 8,
        "osd pool default pgp num": 8,
        # Deploy speed: commit cluster-map changes every 50 ms instead of every second.
        "paxos propose interval": 0.05,
        "paxos min wait": 0.01,
        "mon osd prime pg temp": "false",
        # A dead host's OSDs are marked down within ~8 s (not 20), so clients of a replicated
        # pool move on to the surviving copies quickly (read by OSDs and the monitor alike).
        "osd heartbeat grace": 8,
        # Short-lived cluster: no crash reports or telemetry to the outside.
        "mgr initial modules": "iostat",
        # Capacity safety (see plan.FULL_HEADROOM): full at the requested size, with the
        # backing store larger by a sparse headroom that absorbs writes in flight.
        "mon osd nearfull ratio": ratios["nearfull"],
        "mon osd backfillfull ratio": ratios["backfillfull"],
        "mon osd full ratio": ratios["full"],
        # S3 users get a quota (plan.service_quota_bytes), so a full store is a clean S3 error
        # (QuotaExceeded) from radosgw's own accounting rather than a paused write.
        "rgw user default quota max size": plan.service_quota_bytes,
        # Usage statistics every second, so `status` and the full flags are current.
        "mgr stats period": 1,
        # No debug messages formatted into memory (QUIET_SUBSYSTEMS).
        **{f"debug {name}": "0/0" for name in QUIET_SUBSYSTEMS},
    }
    sections = [("global", glob)]

    osd = {
        "osd objectstore": "bluestore" if plan.device == "file" else "memstore",
        # The OSD drops writes itself past the requested size, without waiting for the monitor,
        # and re-reads its usage every second (the heartbeat) instead of every 6.
        "osd failsafe full ratio": ratios["failsafe"],
        "osd heartbeat interval": 1,
        # BlueStore on a tmpfs file: BlueStore creates and sizes the (sparse) file itself.
        "bluestore block create": "true",
        "bluestore block size": plan.block_bytes,
        # tmpfs reports itself as rotational; RAM behaves like the fastest SSD.
        "bluestore debug enforce settings": "ssd",
        "bluestore min alloc size": 4096,
        # A 4 MiB write becomes 4 writes to the tmpfs file instead of 64 (the SSD default is
        # 64 KiB blobs): replacing existing 4 MiB objects ran 40 % faster, new ones no slower.
        "bluestore max blob size": 2**20,
        # No fsck: the store is new (mkfs) and lives for one job (mount).
        "bluestore fsck on mkfs": "false",
        "bluestore fsck on mount": "false",
        # Every close of the block file waits out one aio poll; the OSD opens and closes it
        # once per op shard at start-up (5 x 250 ms by default). 5 ms polls cost no measurable CPU.
        "bdev aio poll ms": 5,
        # Integrity (docs/tuning.md): tmpfs keeps no checksums either, and the data lives in
        # (ECC) RAM for one job, so by default neither BlueStore's per-block crc32c nor the
        # OSD's whole-object data digest is computed on write and verified on read (13 % of
        # the CPU of a 4 MiB read). --checksums turns both back on. msgr2 frames keep their
        # crc32c either way, so data on the wire stays checked.
        "bluestore csum type": "crc32c" if plan.checksums else "none",
        "osd skip data digest": "false" if plan.checksums else "true",
        # Data is already in RAM: a small cache for metadata only, not a second copy.
        "bluestore cache autotune": "false",
        "bluestore cache size": 64 * 2**20,
        "osd memory target": 896 * 2**20,
        # Memstore holds objects in the OSD's heap and never refuses a write itself: its size
        # only feeds statfs, so the same ratios stop writes at the requested size.
        "memstore device bytes": plan.block_bytes,
        "memstore page set": "false",
    }
    sections.append(("osd", osd))
    sections.append(("mon", {"mon data avail warn": 5, "mon data avail crit": 1}))
    # Clients (rados, librados programs, ceph-fuse, radosgw) give up instead of waiting forever,
    # e.g. on a write paused because the store is full or after the cluster went away.
    sections.append(("client", {"log file": "/dev/null", "admin socket": "",
                                "rados osd op timeout": CLIENT_OP_TIMEOUT,
                                "rados mon op timeout": CLIENT_OP_TIMEOUT,
                                "client mount timeout": CLIENT_OP_TIMEOUT}))
    for host in plan.hosts:
        for d in host.daemons:
            s: dict[str, object] = {"public addr": host.address}
            if d.kind == "mon":
                # The exact address and port, so the monmap names this mon and no default port is used.
                s = {"public addrv": plan.mon_host, "mon data": layout.data(host.label, d.name)}
            elif d.kind == "mgr":
                s["mgr data"] = layout.data(host.label, d.name)
            elif d.kind == "osd":
                s["osd data"] = layout.data(host.label, d.name)
                s["cluster addr"] = host.address
                s["host"] = host.label
                s["crush location"] = f"root=default host={host.label}"
            elif d.kind == "mds":
                s["mds data"] = layout.data(host.label, d.name)
            elif d.kind == "rgw":
                s.update({
                    # tcp_nodelay: without it a small GET waited out the client's 40 ms delayed
                    # ACK (Nagle): 178 GETs/s of 4 KiB with 8 in flight, 1,043 with it
                    "rgw frontends": f"beast endpoint={host.address}:{plan.rgw_port} tcp_nodelay=1",
                    "rgw data": layout.data(host.label, d.name),
                    "log file": layout.log(d.name),
                    # Start-up: no usage log, lifecycle runs rarely.
                    "rgw enable usage log": "false",
                    "rgw lc debug interval": -1,
                    # The space of deleted and overwritten S3 objects (their tails, multipart
                    # parts) comes back within ~3 s, not after radosgw's 2 h wait + 1 h period:
                    # a RAM store filled by delete-heavy work otherwise ran full of garbage. A
                    # GET of an object deleted or replaced while it is read has 2 s to finish.
                    # Cost: an idle instance's OSD +1.5 % and radosgw +0.5 % of a core (the
                    # pass over the 32 GC shards each second); `up` time unchanged.
                    "rgw gc obj min wait": 2,
                    "rgw gc processor period": 1,
                    "rgw gc processor max time": 10,
                    # A write the cluster pauses (full store) becomes an S3 error in seconds.
                    "rados osd op timeout": 10,
                    **rgw_crypt_settings(),
                })
            elif d.kind == "fuse":
                continue  # ceph-fuse mounts as client.admin with the [client] settings
            # Each daemon's admin socket in its host's RAM folder: a short path (Layout.asok).
            s["admin socket"] = Layout.asok(host.ram_dir, d.name)
            sections.append((d.entity, s))
    return "".join(f"[{name}]\n{_fmt(s)}\n" for name, s in sections)
