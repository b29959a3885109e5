"""What every store shares: the stage folder's and temp files' names, and listing a local tree."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..model import Entry

STAGE_DIR = ".ramburst-stage"
TMP_SUFFIX = ".rbstage-tmp"
EXT_NS = "ramburst-extents"
UMASK = os.umask(0o022)
os.umask(UMASK)


def walk_tree(root: Path, top: str, errors: list[str]) -> list[Entry]:
    """Entries under `root`, named `top/...` (or relative when top is ""); symlinks are not followed."""
    entries: list[Entry] = []

    def add(path: Path, rel: str) -> None:
        try:
            st = path.lstat()
        except OSError as e:
            errors.append(f"{path}: {e.strerror}")
            return
        base = {"rel": rel, "mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode), "src": str(path)}
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(kind="l", link=os.readlink(path), **base))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(kind="d", **base))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(kind="f", size=st.st_size, **base))
        else:
            errors.append(f"{path}: not a regular file, folder or symlink: skipped")

    if top:
        add(root, top)
    if not root.is_dir() or root.is_symlink():
        return entries
    for folder, dirs, files in os.walk(root, onerror=lambda e: errors.append(f"{e.filename}: {e.strerror}")):
        here = Path(folder)
        rel_folder = here.relative_to(root).as_posix()
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d != STAGE_DIR]
            files = [f for f in files if f != STAGE_DIR]
        for name in sorted(dirs) + sorted(files):
            if name.endswith(TMP_SUFFIX):
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            add(here / name, f"{top}/{rel}" if top else rel)
    return entries



def merged_meta(meta: dict, rel: str, size: int) -> dict | None:
    m = meta.get("entries", {}).get(rel)
    return m if m and m["size"] == size and m["kind"] == "f" else None


class ObjectStore:
    """What the pool and S3 stores share: they hold files only (folders and symlinks live in the
    stage manifest, entries.json), report no free space (the store says when full), and keep the
    journal of stage `name` beside the data under PREFIX."""

    prefix = ""

    def put_other(self, e: Entry) -> None:
        pass  # folders and symlinks live in the stage manifest (entries.json)

    def free_bytes(self) -> int | None:
        return None

    def _state(self, name: str) -> str:
        return f"{self.prefix}{STAGE_DIR}/{name}/"


def journal_lines(get, keys: list[str]) -> list[str]:
    """The lines of the manifest and journal objects `keys`, in order; `get` returns None for a missing one."""
    lines: list[str] = []
    for key in keys:
        data = get(key)
        if data:
            lines += data.decode().splitlines()
    return lines


def with_manifest_entries(out: list[Entry], meta: dict) -> list[Entry]:
    """Add the folders and symlinks the stage manifest (entries.json) holds: object stores keep only files."""
    have = {e.rel for e in out}
    out += [Entry(**m) for rel, m in meta.get("entries", {}).items() if m["kind"] != "f" and rel not in have]
    return sorted(out, key=lambda e: e.rel)
