"""An instance on disk: what `up` made, recorded as it is made, so `down` can always undo it.

state_dir/instance.json   the plan and whether `up` finished (written by the first host)
state_dir/hosts/<h>.json  per host: its RAM folder, its processes, its mounts
Each host writes only its own file, so hosts sharing the folder never race.

A folder is an instance only if it is a real folder (not a symlink) owned by the caller whose
instance.json (a regular file, also the caller's) carries FORMAT: `up` writes it first thing
into the folder it has just made. `down`, `status`, `env` and `up` act on nothing else, so a
wrong --state-dir, --name or DisTRaX `folder` can never remove a folder that is not one.

One `up` or `down` at a time: each holds an exclusive flock on the state folder itself
(InstanceLock), so there is no lock file to leave behind or to plant a symlink at.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DeployError, UsageError
from .layout import Layout
from .model import Instance
from .process import ProcessRecord
from .wait import wait_until

FORMAT = "ramburst-instance/1"


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
    def load(cls, path: Path) -> HostRecord | None:
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
        self.layout = Layout(self.dir)
        self.meta_path = self.layout.instance_file
        self.hosts_dir = self.layout.hosts

    def exists(self) -> bool:
        return os.path.lexists(self.dir)

    def not_instance_reason(self) -> str | None:
        """Why the folder is not an instance this user may act on (None: it is one)."""
        try:
            st = os.lstat(self.dir)
        except FileNotFoundError:
            return "it does not exist"
        if stat.S_ISLNK(st.st_mode):
            return "it is a symlink"
        if not stat.S_ISDIR(st.st_mode):
            return "it is not a folder"
        if st.st_uid != os.geteuid():
            return f"it is owned by uid {st.st_uid}, not by you"
        try:
            mst = os.lstat(self.meta_path)
        except FileNotFoundError:
            return "it has no instance.json"
        if not stat.S_ISREG(mst.st_mode) or mst.st_uid != os.geteuid():
            return "its instance.json is not a file of yours"
        meta = self.meta()
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            return "its instance.json is not ramburst's"
        return None

    def check_instance(self) -> None:
        """Refuse (exit 2, nothing touched) a folder that is not provably an instance."""
        why = self.not_instance_reason()
        if why is not None:
            raise UsageError(f"{self.dir} is not a ramburst instance ({why}); nothing was touched")

    def meta(self) -> dict | None:
        return read_json(self.meta_path)

    def instance(self) -> Instance | None:
        data = self.meta()
        return Instance.from_json(data) if data is not None else None

    def write_instance(self, inst: Instance) -> None:
        self.write_meta(inst.to_json())

    def write_meta(self, data: dict) -> None:
        write_json(self.meta_path, {"format": FORMAT, **data})

    def host(self, label: str, address: str, ram_dir: Path) -> HostRecord:
        rec = HostRecord(self.layout.host_record(label), label, address, str(ram_dir))
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


def lock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file open at `fd`, from /proc/locks (Linux)."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "->" not in parts and len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == ident:
                    return int(parts[4])
    except OSError:
        pass
    return None


class InstanceLock:
    """An exclusive flock on the state folder, held by `up` for its whole run and by `down`.

    Re-entrant within one thread (`up` calls `down` to clear a dead instance); another thread
    of the process opens its own descriptor, and flock refuses it like another process. The
    folder is opened with O_NOFOLLOW|O_DIRECTORY, so a symlink is never locked or followed.
    """

    _local = threading.local()

    @classmethod
    def _held(cls) -> dict[str, int]:
        """The folders this thread holds."""
        if not hasattr(cls._local, "held"):
            cls._local.held = {}
        return cls._local.held

    def __init__(self, state_dir: Path, name: str | None = None):
        self.path = str(Path(state_dir).absolute())
        self.name = name or Path(state_dir).name
        self.fd: int | None = None
        self.nested = False

    def acquire(self, wait: float = 0) -> InstanceLock:
        """Take the lock; `wait` > 0 retries that long (for the `up` that has just made the
        folder, against another process that only looks at it for a moment)."""
        if self.path in InstanceLock._held():
            self.nested = True
            return self
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                why = "it is a symlink or not a folder"
            elif e.errno == errno.ENOENT:
                why = "it does not exist"
            else:
                why = e.strerror
            raise UsageError(f"{self.path} is not a ramburst instance ({why}); nothing was touched") from None

        def locked() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            except OSError as e:
                # NFS turns flock into a POSIX write lock, which a folder opened read-only
                # cannot take (EBADF): go on unlocked there rather than refuse to work.
                if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
            return True

        try:
            wait_until(locked, wait, f"the lock of {self.name}", interval=0.01)
        except DeployError:
            pid = lock_holder(fd)
            os.close(fd)
            raise UsageError(f"instance {self.name!r} is being deployed or removed by "
                             f"{f'pid {pid}' if pid else 'another process'}; nothing was touched") from None
        self.fd = fd
        InstanceLock._held()[self.path] = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            InstanceLock._held().pop(self.path, None)
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
