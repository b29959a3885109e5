"""The watchdog's "this OSD is at the requested size" marks, which ramburst's own clients read.

Why: the watchdog stops an OSD at the size with `injectfull failsafe`, but Ceph 16's failsafe
drops only writes WITHOUT LIBRADOS_OPERATION_FULL_TRY (PrimaryLogPG::do_op); a FULL_TRY write
is refused (ENOSPC) only once the monitor has flagged the pool full, which follows the OSD's
own report 0.6-1.4 s later. ramburst's writers (api.Cluster.put, the arrays store, stage) use
FULL_TRY, so at RAM speed they stored 25-36 % past the size in that window. So the watchdog
also leaves a mark, one empty file per OSD in `<state>/run/full/`, and those writers refuse
at once with ENOSPC while any mark exists (Ceph refuses the whole pool for one full OSD too).

Reading costs one stat of the folder per write: the names are read again only when the
folder's mtime changes (a mark made or removed) or changed within the last second.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / "full"


def mark(run_dir: Path, osd: str) -> None:
    try:
        d = folder(run_dir)
        d.mkdir(mode=0o700, exist_ok=True)
        (d / osd).touch()
    except OSError:
        pass  # the instance is being removed; the OSD's failsafe still holds


def unmark(run_dir: Path, osd: str) -> None:
    try:
        (folder(run_dir) / osd).unlink()
    except OSError:
        pass


class Marks:
    """The OSDs marked full in one instance, re-read only when the folder changed."""

    def __init__(self, run_dir: Path):
        self.path = folder(run_dir)
        self._stamp: int | None = None
        self._names: list[str] = []

    def full(self) -> list[str]:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except OSError:
            return []  # no mark was ever made (or the instance is gone)
        # Timestamps are coarse (a kernel tick): a mark made in the same tick as the last look
        # leaves the mtime as it was, so a folder changed within the last second is read again.
        if stamp != self._stamp or time.time_ns() - stamp < 10**9:
            try:
                self._names = sorted(os.listdir(self.path))
            except OSError:
                self._names = []
            self._stamp = stamp
        return self._names
