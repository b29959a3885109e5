"""ramburst's own Prometheus text (`--prometheus`): health, daemons, capacity and pool rates
from the collector's newest snapshot, for a site's monitoring without Ceph's exporter."""
from __future__ import annotations


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus_text(snap: dict | None) -> str:
    lines = ["# HELP ramburst_health_ok 1 when every daemon runs and Ceph is not HEALTH_ERR",
             "# TYPE ramburst_health_ok gauge"]
    if not snap or not snap.get("status"):
        return "\n".join([*lines, "ramburst_health_ok 0", ""])
    st = snap["status"]
    lines.append(f"ramburst_health_ok {1 if snap.get('ok') else 0}")
    lines += ["# HELP ramburst_daemon_up 1 when the daemon's process answers", "# TYPE ramburst_daemon_up gauge"]
    for d in st.get("daemons", []):
        lines.append(f'ramburst_daemon_up{{daemon="{_label(d["name"])}",host="{_label(d["host"])}"}} '
                     f'{1 if d["state"] == "running" else 0}')
    cap = st.get("capacity") or {}
    for key in ("usable_bytes", "used_bytes", "avail_bytes"):
        if key in cap:
            lines += [f"# TYPE ramburst_capacity_{key} gauge", f"ramburst_capacity_{key} {cap[key]}"]
    for key in ("write_bytes_sec", "read_bytes_sec", "write_op_per_sec", "read_op_per_sec"):
        lines.append(f"# TYPE ramburst_pool_{key} gauge")
        for pool, rates in sorted(snap.get("rates", {}).items()):
            lines.append(f'ramburst_pool_{key}{{pool="{_label(pool)}"}} {rates.get(key, 0)}')
    for p in snap.get("pools", []):
        lines.append(f'ramburst_pool_stored_bytes{{pool="{_label(p["name"])}"}} {p["stored"]}')
        lines.append(f'ramburst_pool_objects{{pool="{_label(p["name"])}"}} {p["objects"]}')
    lines.append(f"ramburst_snapshot_timestamp_seconds {snap['t']}")
    return "\n".join(lines) + "\n"
