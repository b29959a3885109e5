"""A local folder as a store: a SRC, a stage-out DEST, or a folder in the fs mount.

A file is written to `.NAME.rbstage-tmp` in its folder, fsynced, then renamed: nothing is ever
half-written under its final name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..model import Entry
from .common import STAGE_DIR, TMP_SUFFIX, UMASK, walk_tree


class Tree:
    """A local folder (a source SRC, a stage-out DEST, or a folder in the fs mount)."""

    kind = "fs"

    def __init__(self, root: Path, label: str | None = None, durable: bool = True):
        self.root = Path(root)
        self.label = label or str(root)
        self.durable = durable  # fsync each file; else one syncfs per rank when the copy ends

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        return walk_tree(self.root, "", errors)

    def read(self, e: Entry, off: int, n: int) -> bytes:
        fd = os.open(e.src or self.root / e.rel, os.O_RDONLY)
        try:
            return os.pread(fd, n, off) if n else b""
        finally:
            os.close(fd)

    # -- target
    def path(self, rel: str) -> Path:
        return self.root / rel

    def tmp(self, rel: str) -> Path:
        p = self.path(rel)
        return p.with_name(f".{p.name}{TMP_SUFFIX}")

    def prepare(self, entries: list[Entry]) -> None:
        """Make every folder once (a file's parent only when no folder entry made it): through
        ceph-fuse a mkdir of an existing folder is a round trip plus a stat, and asking once per
        file cost 5.6 s of a 10,000-file stage."""
        self.root.mkdir(parents=True, exist_ok=True)
        made = {self.root}
        for e in entries:
            if e.kind == "d":
                p = self.path(e.rel)
                if p.is_symlink() or (p.exists() and not p.is_dir()):
                    p.unlink()
                p.mkdir(parents=True, exist_ok=True)
                made.add(p)
            elif (parent := self.path(e.rel).parent) not in made:
                parent.mkdir(parents=True, exist_ok=True)
                made.add(parent)

    def _final(self, e: Entry, fd: int, tmp: Path, whole: bool = False) -> None:
        if not whole:
            os.ftruncate(fd, e.size)
        if self.durable:
            os.fsync(fd)
        if not whole or e.mode & UMASK:  # a fresh file got its mode at creation, unless umask took bits
            os.fchmod(fd, e.mode)
        os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        os.close(fd)
        os.replace(tmp, self.path(e.rel))

    def write_whole(self, e: Entry, data: bytes) -> str:
        tmp = self.tmp(e.rel)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode)
        except FileExistsError:  # left by a killed run: its mode may differ
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            raise
        self._final(e, fd, tmp, whole=True)
        return ""

    def begin(self, e: Entry) -> str:
        return ""

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        fd = os.open(self.tmp(e.rel), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, off)
            if self.durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return ""

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        tmp = self.tmp(e.rel)
        self._final(e, os.open(tmp, os.O_WRONLY), tmp)

    def flush(self) -> None:
        """Without per-file fsync: push this client's cached writes out (syncfs on the mount)."""
        if self.durable or not self.root.exists():
            return
        import ctypes

        fd = os.open(self.root, os.O_RDONLY)
        try:
            ctypes.CDLL(None, use_errno=True).syncfs(fd)
        finally:
            os.close(fd)

    def put_other(self, e: Entry) -> None:
        """Symlinks and folder modes/mtimes (folders last, deepest first)."""
        p = self.path(e.rel)
        if e.kind == "l":
            if p.is_symlink() or p.exists():
                if p.is_symlink() and os.readlink(p) == e.link:
                    os.utime(p, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
                    return
                p.unlink()
            os.symlink(e.link, p)
            os.utime(p, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        elif e.kind == "d":
            os.chmod(p, e.mode)
            os.utime(p, ns=(e.mtime_ns, e.mtime_ns))

    def size_of(self, e: Entry) -> int | None:
        try:
            return self.path(e.rel).lstat().st_size
        except FileNotFoundError:
            return None

    # A whole file is read back with one byte more than expected, so a longer file shows in the read
    # and needs no stat of its own: through ceph-fuse every call is a round trip to the client.
    sized_reads = True

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        fd = os.open(self.path(e.rel), os.O_RDONLY)
        try:
            return os.pread(fd, n + 1 if off == 0 and n == e.size else n, off)
        finally:
            os.close(fd)

    def free_bytes(self) -> int | None:
        p = self.root
        while not p.exists():
            p = p.parent
        st = os.statvfs(p)
        return st.f_bavail * st.f_frsize

    def remove_extra(self, keep: set[str]) -> list[str]:
        """--delete: remove what the source no longer has (never the stage folder)."""
        removed = []
        for e in sorted(walk_tree(self.root, "", []), key=lambda x: x.rel, reverse=True):
            if e.rel not in keep:
                p = self.path(e.rel)
                p.rmdir() if e.kind == "d" else p.unlink()
                removed.append(e.rel)
        return removed

    # -- journal, when this tree is the cluster side (a folder in the fs mount)
    def _state(self, name: str) -> Path:
        return self.root / STAGE_DIR / name

    def state_lines(self, name: str) -> list[str]:
        folder = self._state(name)
        lines: list[str] = []
        for f in [folder / "manifest"] + sorted(folder.glob("journal.*")):
            if f.exists():
                lines += f.read_text().splitlines()
        return lines

    def state_append(self, name: str, tag: str, text: str) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"journal.{tag}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text.encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def state_compact(self, name: str, lines: list[str]) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("journal.*"))
        tmp = folder / "manifest.tmp"
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, folder / "manifest")
        for f in old:
            f.unlink()

    def meta_get(self, name: str) -> dict:
        try:
            return json.loads((self._state(name) / "entries.json").read_text())
        except FileNotFoundError:
            return {}

    def meta_put(self, name: str, meta: dict) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "entries.tmp").write_text(json.dumps(meta))
        os.replace(folder / "entries.tmp", folder / "entries.json")


class Sources(Tree):
    """The SRC arguments of `stage in`: each one becomes a top-level entry named by its basename."""

    def __init__(self, paths: list[Path]):
        super().__init__(Path("/"), " ".join(map(str, paths)))
        self.paths = paths

    def entries(self, errors: list[str]) -> list[Entry]:
        out: list[Entry] = []
        for p in self.paths:
            out += walk_tree(p, p.name, errors)
        return out
