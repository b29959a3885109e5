"""An instance on disk: what `up` made, recorded as it is made, so `down` can always undo it.

state_dir/instance.json   the plan and whether `up` finished (written by the first host)
state_dir/hosts/<h>.json  per host: its RAM folder, its processes, its mounts
Each host writes only its own file, so hosts sharing the folder never race.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .ceph.daemon import ProcessRecord


def write_json(path: Path, data: dict) -> None:
    """Replace `path` atomically: a reader sees the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class HostRecord:
    path: Path
    label: str
    address: str
    ram_dir: str
    processes: list[ProcessRecord] = field(default_factory=list)
    mounts: list[dict] = field(default_factory=list)  # {path, created: [folders made]}

    def save(self) -> None:
        write_json(self.path, {
            "label": self.label, "address": self.address, "ram_dir": self.ram_dir,
            "processes": [p.to_json() for p in self.processes], "mounts": self.mounts,
        })

    def add_mount(self, path: str, created: list[str]) -> None:
        self.mounts.append({"path": path, "created": created})
        self.save()

    def add_process(self, record: ProcessRecord) -> None:
        self.processes.append(record)
        self.save()

    @classmethod
    def load(cls, path: Path) -> "HostRecord | None":
        data = read_json(path)
        if data is None:
            return None
        return cls(path, data["label"], data["address"], data["ram_dir"],
                   [ProcessRecord.from_json(p) for p in data.get("processes", [])],
                   list(data.get("mounts", [])))


class InstanceState:
    """Read and write the records of the instance whose state folder is `state_dir`."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.meta_path = self.dir / "instance.json"
        self.hosts_dir = self.dir / "hosts"

    def exists(self) -> bool:
        return self.dir.exists()

    def meta(self) -> dict | None:
        return read_json(self.meta_path)

    def write_meta(self, data: dict) -> None:
        write_json(self.meta_path, data)

    def host(self, label: str, address: str, ram_dir: Path) -> HostRecord:
        rec = HostRecord(self.hosts_dir / f"{label}.json", label, address, str(ram_dir))
        rec.save()
        return rec

    def hosts(self) -> list[HostRecord]:
        if not self.hosts_dir.is_dir():
            return []
        return [r for p in sorted(self.hosts_dir.glob("*.json")) if (r := HostRecord.load(p))]

    def processes(self) -> list[ProcessRecord]:
        return [p for h in self.hosts() for p in h.processes]

    def live_processes(self) -> list[ProcessRecord]:
        return [p for p in self.processes() if p.alive()]

    def is_up(self) -> bool:
        meta = self.meta()
        return bool(meta) and meta.get("state") == "up" and bool(self.live_processes())
