"""Health, capacity and daemons of an instance, as data; the CLI renders it as text or JSON."""
from __future__ import annotations

from pathlib import Path

from .ceph.admin import AdminClient
from .ceph.asok import asok_command
from .ceph.fuse import is_mounted
from .config import format_size
from .errors import RamburstError
from .instance import InstanceState
from .layout import Layout
from .model import Instance
from .services import REGISTRY, selected
from .wait import http_status


class NotUp(RamburstError):
    exit_code = 1


def environment(state_dir: Path) -> dict[str, str]:
    """The variables a Ceph client needs to use the instance (what `ramburst env` exports)."""
    state = InstanceState(state_dir)
    inst = state.instance()
    if inst is None:
        raise NotUp(f"no instance at {state_dir}")
    env = {
        "CEPH_CONF": inst.conf,
        "CEPH_KEYRING": str(Layout(state_dir).keyring("client.admin")),
        "RAMBURST_NAME": inst.name,
        "RAMBURST_STATE_DIR": str(state_dir),
        "RAMBURST_MON_HOST": inst.mon_host,
    }
    for unit in selected(inst.services):
        env.update(unit.environment(inst, Path(state_dir), lambda: local_label(state)))
    return env


def local_label(state: InstanceState) -> str:
    """The label of this machine's host in the instance (h0 when none matches)."""
    from .host import local_addresses

    addresses = local_addresses()
    return next((h.label for h in state.hosts() if h.address in addresses), "h0")


def collect(state_dir: Path, timeout: float = 5, admin=None) -> dict:
    """The report `status` prints. `admin`: a connected client to reuse (anything with
    AdminClient's `command`), e.g. the dashboard's one connection; else one is opened here."""
    from contextlib import nullcontext

    state = InstanceState(state_dir)
    inst = state.instance()
    if inst is None:
        raise NotUp(f"instance at {state_dir} is not up (no state)")
    daemons = check_daemons(state, inst, timeout=min(2.0, timeout))
    report: dict = {
        "name": inst.name, "state": inst.state, "fsid": inst.fsid,
        "state_dir": str(state_dir), "mon_host": inst.mon_host, "pool": inst.pool,
        "services": list(inst.services), "device": inst.device, "replicas": inst.replicas,
        "checksums": inst.checksums,
        "endpoints": {u.name: where for u in selected(inst.services) if (where := u.endpoint(inst))},
        "daemons": daemons, "health": None, "checks": {}, "capacity": None, "osds": None,
        "error": None,
        "problems": [f"{d['name']} {d['state']}: {d['reason']}" for d in daemons if d["state"] != "running"],
    }
    if not any(d["state"] == "running" for d in daemons if d["name"].startswith("mon.")):
        report["error"] = "the monitor is not running or not answering"
        return report
    try:
        with nullcontext(admin) if admin is not None else AdminClient(Path(inst.conf), timeout=timeout) as admin:
            st = admin.command("status", timeout=timeout)
            report["health"] = st["health"]["status"]
            report["checks"] = {k: v["summary"]["message"] for k, v in st["health"].get("checks", {}).items()}
            osdmap = st.get("osdmap", {})
            report["osds"] = {"total": osdmap.get("num_osds"), "up": osdmap.get("num_up_osds"),
                              "in": osdmap.get("num_in_osds")}
            df = admin.command("df", timeout=timeout)
            stats = df.get("stats", {}) if isinstance(df, dict) else {}
            if stats.get("total_bytes"):
                dump = admin.command("osd dump", timeout=timeout)
                report["capacity"] = capacity(stats, dump, report["checks"], df.get("pools", []))
    except RamburstError as e:
        report["error"] = str(e)
    return report


def check_daemons(state: InstanceState, inst: Instance, timeout: float = 2.0) -> list[dict]:
    """Each recorded daemon checked by itself, all at once: its process (gone, zombie or
    stopped), then an answer within `timeout`. Ceph's own view lags: with one OSD the monitor
    marks a dead or stopped OSD down only after 900 s, and reports HEALTH_OK until then."""
    from concurrent.futures import ThreadPoolExecutor

    entries = [(h, p) for h in state.hosts() for p in h.processes]
    with ThreadPoolExecutor(max_workers=max(1, len(entries))) as pool:
        results = list(pool.map(lambda e: check_daemon(e[1], e[0], state.dir, inst, timeout), entries))
    return [{"name": p.name, "host": h.label, "address": h.address, "pid": p.pid, "state": st, "reason": why}
            for (h, p), (st, why) in zip(entries, results)]


def check_daemon(record, host, state_dir: Path, inst: Instance, timeout: float) -> tuple[str, str]:
    """(state, reason): running, stopped, dead or not answering."""
    import psutil

    proc = record.process()
    if proc is None:
        return "dead", f"process {record.pid} is gone (killed, crashed or exited)"
    try:
        status = proc.status()
    except psutil.Error:
        return "dead", f"process {record.pid} is gone (killed, crashed or exited)"
    if status == psutil.STATUS_ZOMBIE:  # its main thread has ended; the rest is on its way out
        return "dead", f"process {record.pid} is exiting (killed, crashed or exited)"
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return "stopped", (f"process {record.pid} is stopped (SIGSTOP or a debugger) and serves nothing; "
                           f"kill -CONT {record.pid} resumes it")
    kind = record.name.split(".", 1)[0]
    if kind == "fuse":
        return check_mounts([Path(m["path"]) for m in host.mounts], timeout)
    if kind == "watchdog":
        return check_heartbeat(Layout(state_dir).run, host.label)
    socket_path = Layout.asok(host.ram_dir, record.name)
    try:
        asok_command(socket_path, {"prefix": "version"}, timeout)
    except OSError as e:
        return "not answering", f"no answer on its admin socket {socket_path} within {timeout:.0f} s ({e})"
    if kind == "rgw" and inst.s3_endpoint and host.address in _local_addresses():
        return check_http(inst.s3_endpoint, timeout)
    return "running", "answers"


def check_heartbeat(run_dir: Path, host_label: str) -> tuple[str, str]:
    """The watchdog has no admin socket; it touches a heartbeat file every second."""
    import time

    from .ceph.watchdog import HEARTBEAT_STALE, heartbeat_path

    path = heartbeat_path(run_dir, host_label)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "not answering", f"no heartbeat at {path}"
    if age > HEARTBEAT_STALE:
        return "not answering", f"last heartbeat {age:.0f} s ago ({path})"
    return "running", "loops (heartbeat fresh)"


def _local_addresses() -> set[str]:
    from .host import local_addresses

    return set(local_addresses())


def check_http(endpoint: str, timeout: float) -> tuple[str, str]:
    try:
        http_status(endpoint, timeout)  # any HTTP answer: the frontend serves
    except OSError as e:
        return "not answering", f"no HTTP answer at {endpoint} within {timeout:.0f} s ({e})"
    return "running", f"answers HTTP at {endpoint}"


def check_mounts(mounts: list[Path], timeout: float) -> tuple[str, str]:
    """A stat of each mount in a child process that is killed, never waited on, past the
    timeout: a stat on a hung FUSE mount can block forever."""
    import subprocess

    for mount in mounts:
        if not is_mounted(mount):
            return "not answering", f"{mount} is not mounted any more"
        probe = subprocess.Popen(["stat", "-c", "%i", str(mount)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = probe.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            probe.kill()
            return "not answering", f"a stat of {mount} got no answer within {timeout:.0f} s"
        if probe.returncode != 0:
            return "not answering", f"a stat of {mount} failed: {err.decode(errors='replace').strip()}"
    return "running", "the mount answers"


def capacity(stats: dict, osd_dump: dict, checks: dict, pools: list | None = None) -> dict:
    """Usage against what users can write: the backing stores are larger than the requested
    size by a headroom (plan.FULL_HEADROOM), and the full ratio marks the requested size.
    `used` counts BlueStore's own metadata (RocksDB, WAL) besides the objects, and can pass
    `usable`: writes in flight when the full mark was reached land in the headroom."""
    raw_total = stats["total_bytes"]
    usable = int(raw_total * osd_dump.get("full_ratio", 0.95))
    used = stats.get("total_used_raw_bytes", 0)
    if "OSD_FULL" in checks or "POOL_FULL" in checks or "OSD_BACKFILLFULL" in checks:
        state = "full"
    elif "OSD_NEARFULL" in checks or "POOL_NEARFULL" in checks:
        state = "nearfull"
    else:
        state = "ok"
    data = sum(p.get("stats", {}).get("bytes_used", 0) for p in (pools or []))
    data = min(data, used)
    return {"usable_bytes": usable, "used_bytes": used, "avail_bytes": max(0, usable - used),
            "raw_bytes": raw_total, "state": state,
            "objects_bytes": data, "metadata_bytes": used - data, "over_bytes": max(0, used - usable),
            "includes": "objects in every pool (all copies) and BlueStore's own metadata (RocksDB, WAL); "
                        "writes that were in flight when the full mark was reached can land past it, "
                        "in each OSD's headroom"}


def is_up(report: dict) -> bool:
    return report["state"] == "up" and report["health"] is not None and not report["problems"]


def render_text(report: dict) -> str:
    lines = [f"instance  {report['name']}  ({report['state']}, fsid {report['fsid']})"]
    health = report["health"] or f"unreachable: {report['error']}"
    lines.append(f"health    {health}")
    for check, message in report["checks"].items():
        lines.append(f"          {check}: {message}")
    if report["problems"]:
        lines.append(f"daemons   {len(report['problems'])} not working (status exits 1)")
        for problem in report["problems"]:
            lines.append(f"          {problem}")
    cap = report["capacity"]
    if cap:
        lines += _capacity_lines(cap)
    elif report["health"]:
        lines.append("capacity  (not reported yet: the manager is starting)")
    if report["osds"]:
        o = report["osds"]
        lines.append(f"osds      {o['up']} up, {o['in']} in, of {o['total']}")
    copies = f"{report['replicas']} cop{'y' if report['replicas'] == 1 else 'ies'}"
    sums = "checksums on" if report["checksums"] else "no checksums"
    lines.append(f"services  ({copies}, device {report['device']}, {sums})")
    for service, where in report["endpoints"].items():
        label = REGISTRY[service].label if service in REGISTRY else service
        lines.append(f"  {service:<6}  {label} {where}")
    lines.append(f"monitor   {report['mon_host']}")
    lines.append("daemons")
    for d in report["daemons"]:
        lines.append(f"  {d['name']:<10} {d['host']:<4} {d['address']:<15} pid {d['pid']:<8} {d['state']}"
                     + (f" ({d['reason']})" if d["state"] != "running" else ""))
    return "\n".join(lines)


def _capacity_lines(cap: dict) -> list[str]:
    pct = 100 * cap["used_bytes"] / max(1, cap["usable_bytes"])
    lines = [f"capacity  {format_size(cap['used_bytes'])} used of {format_size(cap['usable_bytes'])} "
             f"({pct:.0f}%), {format_size(cap['avail_bytes'])} available"]
    if "objects_bytes" in cap:
        lines.append(f"          used = {format_size(cap['objects_bytes'])} of objects (all copies) + "
                     f"{format_size(cap['metadata_bytes'])} of BlueStore's own metadata")
    if cap.get("over_bytes"):
        lines.append(f"          {format_size(cap['over_bytes'])} past the full mark: writes in flight when "
                     "it was reached, landed in the OSDs' headroom (not lost, not more room)")
    if cap["state"] == "full":
        lines.append("          FULL: writes are refused (clients get an error after "
                     "their op timeout); delete data, or deploy with a larger --size")
    elif cap["state"] == "nearfull":
        lines.append("          NEAR FULL: writes will be refused soon")
    return lines
