"""One librados connection polled once a second into a ring buffer of the last ~15 minutes.

Every page and every live stream reads the buffer; none of them talks to the cluster for
health or rates, so ten open tabs cost the cluster what one does."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from .. import status as status_mod
from ..errors import RamburstError
from ..layout import Layout

PERIOD = 1.0          # seconds between polls
HISTORY = 900         # points kept: 15 minutes at one a second
RATE_KEYS = ("write_bytes_sec", "read_bytes_sec", "write_op_per_sec", "read_op_per_sec")


class RadosAdmin:
    """AdminClient's `command` on a handle that is already connected (status.collect takes it);
    answers are kept for one poll, so `df` and `osd dump` are asked once a second, not twice."""

    def __init__(self, rados):
        self.rados = rados
        self.answers: dict = {}

    def command(self, prefix: str, timeout: float = 5, inbuf: bytes = b"", **args):
        cmd = json.dumps({"prefix": prefix, "format": "json", **args}, sort_keys=True)
        if cmd not in self.answers:
            rc, out, err = self.rados.mon_command(cmd, inbuf, timeout=max(1, int(timeout)))
            if rc != 0:
                raise RamburstError(f"ceph {prefix} failed: {err.strip() or rc}")
            self.answers[cmd] = json.loads(out) if out else None
        return self.answers[cmd]


def pool_rates(pool_stats: list) -> dict[str, dict[str, float]]:
    """Per pool client I/O rates from `osd pool stats` (the mgr's, refreshed every `mgr stats period`)."""
    rates = {}
    for p in pool_stats or []:
        io = p.get("client_io_rate", {}) or {}
        rates[p["pool_name"]] = {k: float(io.get(k, 0)) for k in RATE_KEYS}
    return rates


def pool_table(df: dict, osd_dump: dict) -> list[dict]:
    """Each pool's use, objects, quotas and FULL flag (`df` and `osd dump`)."""
    flags = {p["pool_name"]: p for p in osd_dump.get("pools", [])}
    rows = []
    for p in df.get("pools", []):
        d = flags.get(p["name"], {})
        st = p.get("stats", {})
        rows.append({"name": p["name"], "stored": st.get("stored", st.get("bytes_used", 0)),
                     "used": st.get("bytes_used", 0), "objects": st.get("objects", 0),
                     "max_avail": st.get("max_avail", 0),
                     "quota_bytes": d.get("quota_max_bytes", 0), "quota_objects": d.get("quota_max_objects", 0),
                     "full": "full" in (d.get("flags_names") or "").split(",") or "full_quota" in
                     (d.get("flags_names") or "").split(",")})
    return rows


def read_stage(state_dir: Path) -> dict | None:
    """The progress of a running (or the last) stage-in/out, as its writer left it."""
    try:
        return json.loads(Layout(state_dir).stage_progress.read_text())
    except (FileNotFoundError, ValueError, OSError):
        return None


class Collector:
    """Polls in two threads: the status (mon and processes, milliseconds) once a second, and
    the pools' rates, which come from the mgr: right after a deploy its first answer took 5.5 s
    here, and a dead mgr costs a timeout; neither may delay a red health. `latest` is the
    newest snapshot, `history` the ring buffer."""

    def __init__(self, state_dir: Path, rados, period: float = PERIOD, size: int = HISTORY):
        self.state_dir = Path(state_dir)
        self.admin = RadosAdmin(rados)
        self.rates_admin = RadosAdmin(rados)
        self.period = period
        self.history: deque = deque(maxlen=size)
        self.latest: dict | None = None
        self.rates: tuple[dict, str | None] = ({}, None)  # (per pool, error) from the rates thread
        self.seq = 0
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._every_period, args=(fn,), name=f"dashboard-{fn.__name__}",
                                          daemon=True) for fn in (self.poll_and_publish, self.poll_rates)]

    def start(self) -> Collector:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.changed:
            self.changed.notify_all()
        for t in self._threads:
            t.join(10)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _every_period(self, fn) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            fn()
            self._stop.wait(max(0.05, self.period - (time.monotonic() - started)))

    def poll_rates(self) -> None:
        self.rates_admin.answers.clear()
        try:
            self.rates = (pool_rates(self.rates_admin.command("osd pool stats", timeout=2)), None)
        except (RamburstError, ValueError) as e:
            self.rates = ({}, str(e))

    def poll_and_publish(self) -> None:
        snap = self.poll()
        with self.changed:
            self.seq += 1
            self.latest = {**snap, "seq": self.seq}
            self.history.append(point(snap))
            self.changed.notify_all()

    def wait_first(self, timeout: float) -> dict | None:
        with self.changed:
            self.changed.wait_for(lambda: self._stop.is_set() or self.latest is not None, timeout)
            return self.latest

    def poll(self) -> dict:
        """One snapshot: the status `ramburst status` prints, the pools, the newest rates."""
        snap: dict = {"t": time.time(), "error": None, "pools": [], "rates": {}, "ok": False}
        self.admin.answers.clear()
        try:
            snap["status"] = status_mod.collect(self.state_dir, timeout=2, admin=self.admin)
        except RamburstError as e:
            snap["status"] = None
            snap["error"] = str(e)
            return snap
        snap["stage"] = read_stage(self.state_dir)
        snap["ok"] = status_mod.is_up(snap["status"]) and snap["status"]["health"] != "HEALTH_ERR"
        if snap["status"]["health"] is not None:
            try:  # answered already for `collect` (kept for this poll)
                snap["pools"] = pool_table(self.admin.command("df", timeout=2),
                                           self.admin.command("osd dump", timeout=2))
            except (RamburstError, ValueError) as e:
                snap["error"] = str(e)
            snap["rates"], error = self.rates
            snap["error"] = snap["error"] or error
        return snap


def point(snap: dict) -> dict:
    """What the ring buffer keeps of a snapshot: time, rates per pool, capacity used."""
    cap = (snap.get("status") or {}).get("capacity") or {}
    return {"t": snap["t"], "rates": snap.get("rates", {}), "used": cap.get("used_bytes"),
            "ok": snap.get("ok", False)}
