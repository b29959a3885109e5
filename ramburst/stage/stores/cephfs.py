"""A folder of the instance's CephFS as a stage store, written and read through libcephfs in
this process instead of the ceph-fuse mount (ramburst/ceph/libcephfs.py says why).

The layout is the mount's, to the byte: the same temp names (`.NAME.rbstage-tmp` in the file's
folder, renamed once whole), the same journal folder; the listing of a stage-out source and the
journal still go through the mount (a handful of calls), only the per-file work moves here.
The client is opened on first use in each rank and closed when the stage ends, so the job's
mount sees every file at once (it holds no capability the mount would have to wait for).
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from ..model import Entry
from .common import TMP_SUFFIX
from .fs import Tree

WRITE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL


class CephFSTree(Tree):
    """The folder `fs_path` of the CephFS (mounted here at `mount_path`)."""

    # As a target the write ack is the check, as for the pool (stores/pool.py): with no client cache
    # a write returns only once the OSDs acknowledge the committed bytes (the xxh3 journaled is of
    # those bytes), and a file is fsynced before its rename. `--read-back` still reads all back.
    trusts_ack = True

    def __init__(self, cluster, mount_path: Path, fs_path: str, label: str):
        super().__init__(mount_path, label, durable=False)
        self.cluster = cluster
        self.base = fs_path.rstrip("/")
        self._client = None
        self._lock = threading.Lock()

    @property
    def fs(self):
        with self._lock:
            if self._client is None:
                # No client object cache: a write returns once the OSDs hold it, and the verify
                # pass reads what the OSDs hold, not this client's copy.
                self._client = self.cluster.cephfs({"client_oc": "false"})
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def cpath(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else (self.base or "/")

    def ctmp(self, rel: str) -> str:
        head, _, name = rel.rpartition("/")
        return self.cpath(f"{head}/.{name}{TMP_SUFFIX}" if head else f".{name}{TMP_SUFFIX}")

    # -- source (the listing is the mount's: Tree.entries)
    def read(self, e: Entry, off: int, n: int) -> bytes:
        if not n:
            return b""
        fd = self.fs.open(self.cpath(e.rel), os.O_RDONLY)
        try:
            return self.fs.pread(fd, n, off)
        finally:
            self.fs.close_fd(fd)

    # -- target
    def prepare(self, entries: list[Entry]) -> None:
        """Every folder once (libcephfs makes missing parents); a file or symlink where a folder
        goes is replaced, as in a local tree."""
        fs = self.fs
        fs.mkdirs(self.cpath(""))
        made = {""}
        for e in entries:
            folder = e.rel if e.kind == "d" else e.rel.rpartition("/")[0]
            if folder in made:
                continue
            if e.kind == "d":
                mode = fs.lmode(self.cpath(folder))
                if mode is not None and not stat.S_ISDIR(mode):
                    fs.unlink(self.cpath(folder))
            fs.mkdirs(self.cpath(folder))
            made.add(folder)

    def _final(self, e: Entry, fd: int, tmp, whole: bool = False) -> None:
        fs = self.fs
        try:
            if not whole:
                fs.ftruncate(fd, e.size)
            fs.fchmod(fd, e.mode)  # the creator holds the file's caps: these two stay in the client
            fs.futimens(fd, e.mtime_ns)
            fs.fsync(fd)  # size, mode and mtime at the MDS before the name is final: the client
            # dies with this process, and what it had not flushed would die with it
        finally:
            fs.close_fd(fd)
        fs.rename(tmp, self.cpath(e.rel))

    def write_whole(self, e: Entry, data: bytes) -> str:
        self.cluster.check_room()  # an OSD stopped at the size: NoSpace now, not a write that waits
        fs, tmp = self.fs, self.ctmp(e.rel)
        try:
            fd = fs.open(tmp, WRITE_NEW, 0o600)
        except FileExistsError:  # left by a killed run
            fs.unlink(tmp)
            fd = fs.open(tmp, WRITE_NEW, 0o600)
        try:
            fs.pwrite(fd, data, 0)
        except BaseException:
            fs.close_fd(fd)
            raise
        self._final(e, fd, tmp, whole=True)
        return ""

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        self.cluster.check_room()
        fd = self.fs.open(self.ctmp(e.rel), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            self.fs.pwrite(fd, data, off)
        finally:
            self.fs.close_fd(fd)
        return ""

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        tmp = self.ctmp(e.rel)
        self._final(e, self.fs.open(tmp, os.O_WRONLY), tmp)

    def flush(self) -> None:
        if self._client is not None:
            self._client.sync_fs()

    def restamp(self, entries: list[Entry]) -> None:
        """Mode and mtime again on files a killed stage made final. When a process dies with its
        client mounted, the MDS (once the watchdog evicts the session) recovers the size of every
        file the client could write from the OSD objects, and sets their mtimes to the objects'
        (the time of the write), even of files fsynced and renamed long before. Size and bytes
        are right; the mtime is not, so the resume sets it again (and the mode, to be sure)."""
        fs = self.fs
        for e in entries:
            try:
                fs.chmod(self.cpath(e.rel), e.mode)
                fs.lutimens(self.cpath(e.rel), e.mtime_ns)
            except FileNotFoundError:
                continue  # removed since: copied again by this run

    def unclean(self, name: str) -> bool:
        """Whether stage `name` last ended without closing its journal (killed, or failed)."""
        return any(self._state(name).glob("journal.*"))

    def put_other(self, e: Entry) -> None:
        """Symlinks and folder modes/mtimes, to the nanosecond."""
        fs, p = self.fs, self.cpath(e.rel)
        if e.kind == "l":
            mode = fs.lmode(p)
            if mode is not None:
                if stat.S_ISLNK(mode) and fs.readlink(p) == e.link:
                    fs.lutimens(p, e.mtime_ns)
                    return
                fs.unlink(p)
            fs.symlink(e.link, p)
            fs.lutimens(p, e.mtime_ns)
        elif e.kind == "d":
            fs.chmod(p, e.mode)
            fs.lutimens(p, e.mtime_ns)

    def size_of(self, e: Entry) -> int | None:
        try:
            return self.fs.size(self.cpath(e.rel))
        except FileNotFoundError:
            return None

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        fd = self.fs.open(self.cpath(e.rel), os.O_RDONLY)
        try:
            return self.fs.pread(fd, n + 1 if off == 0 and n == e.size else n, off)
        finally:
            self.fs.close_fd(fd)
