"""A CephFS client in this process: libcephfs through ctypes, for the data path of `stage`.

Why not the FUSE mount: every call through ceph-fuse crosses the kernel twice and costs
ceph-fuse ~2 ms of CPU per small file; the same client library in-process creates, writes,
renames and reads back a 4 KiB file 3x faster and writes large files 2.5x faster (README).
Why not python3-cephfs: its utimes/futimens take float seconds, which cannot carry a
nanosecond mtime (1500000000.123456789 came back as .123456716), and stage keeps mtimes to
the nanosecond. The C calls used here exist in libcephfs2 since Ceph 14; ctypes releases the
GIL during each call, so the stage's threads run in parallel inside the library.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from ..errors import RamburstError
from .admin import client_variables_hidden
from .daemon import tool_env

OP_TIMEOUT = 20.0   # as the clients' OSD op timeout (conf.CLIENT_OP_TIMEOUT) and the watchdog's fs limit
GUARD_TICK = 0.5
WEDGED_AFTER = 10.0  # after the abort: pending calls still inside libcephfs
# What a process does when its client stays wedged (calls that no abort ends, which no Python
# thread can leave): None (the API's default) leaves those threads; `ramburst stage` exits.
on_wedged = None
EVICT_TIMEOUT = 15.0
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
CEPH_STATX_MODE = 0x1
CEPH_STATX_SIZE = 0x200
_lib = None
_lib_lock = threading.Lock()


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Statx(ctypes.Structure):
    """The head of struct ceph_statx (include/cephfs/ceph_ll_client.h) up to stx_size, padded."""
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("nlink", ctypes.c_uint32),
                ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("mode", ctypes.c_uint16),
                ("spare0", ctypes.c_uint16), ("ino", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("rest", ctypes.c_char * 256)]


def load() -> ctypes.CDLL:
    """libcephfs.so.2 (Debian: libcephfs2), with the signatures of the calls used here."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("cephfs") or "libcephfs.so.2"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise RamburstError("libcephfs is missing: sudo apt-get install libcephfs2") from None
        vp, cp, i64, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int
        sigs = {
            "ceph_create": [ctypes.POINTER(vp), cp], "ceph_conf_read_file": [vp, cp],
            "ceph_conf_set": [vp, cp, cp], "ceph_mount": [vp, cp], "ceph_unmount": [vp],
            "ceph_release": [vp], "ceph_open": [vp, cp, i, i], "ceph_close": [vp, i],
            "ceph_write": [vp, i, cp, i64, i64], "ceph_read": [vp, i, vp, i64, i64],
            "ceph_fsync": [vp, i, i], "ceph_ftruncate": [vp, i, i64], "ceph_fchmod": [vp, i, i],
            "ceph_futimens": [vp, i, ctypes.POINTER(Timespec)], "ceph_rename": [vp, cp, cp],
            "ceph_unlink": [vp, cp], "ceph_mkdirs": [vp, cp, i], "ceph_symlink": [vp, cp, cp],
            "ceph_readlink": [vp, cp, cp, i64], "ceph_chmod": [vp, cp, i], "ceph_sync_fs": [vp],
            "ceph_utimensat": [vp, i, cp, ctypes.POINTER(Timespec), i],
            "ceph_statx": [vp, cp, ctypes.POINTER(Statx), ctypes.c_uint, ctypes.c_uint],
        }
        for fn, args in sigs.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, i
        lib.ceph_get_instance_id.argtypes, lib.ceph_get_instance_id.restype = [vp], ctypes.c_uint64
        lib.ceph_abort_conn.argtypes, lib.ceph_abort_conn.restype = [vp], i
        _lib = lib
        return lib


def _times(mtime_ns: int):
    ts = (Timespec * 2)()
    for t in ts:
        t.tv_sec, t.tv_nsec = divmod(mtime_ns, 1_000_000_000)
    return ts


def _die_with_parent() -> None:
    """In the child: SIGKILL when the thread that started it ends (the watchdog killed by `down`)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def evict(conf: Path, keyring: Path, gid: int, timeout: float = EVICT_TIMEOUT) -> str:
    """Evict the MDS session of client `gid` (`ceph tell mds.* client evict`): its capabilities go
    back to the MDS at once, its pending requests fail. Returns "" or what went wrong."""
    try:
        r = subprocess.run(["ceph", "-c", str(conf), "--id", "admin", "--keyring", str(keyring),
                            "--connect-timeout", str(int(timeout)), "tell", "mds.*", "client", "evict", f"id={gid}"],
                           env=tool_env(), capture_output=True, text=True, timeout=timeout,
                           preexec_fn=_die_with_parent)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return "" if r.returncode == 0 else (r.stderr.strip()[-200:] or f"exit {r.returncode}")


def write_note(folder: Path, gid: int) -> Path:
    """The note of a mounted client: {"pid", "create_time", "gid"} in `folder`/PID.GID.json."""
    import psutil

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    me = psutil.Process()
    path = folder / f"{me.pid}.{gid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time(), "gid": gid}))
    os.replace(tmp, path)
    return path


def read_notes(folder: Path) -> list[tuple[Path, dict]]:
    out = []
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return out
    for name in names:
        if name.endswith(".json"):
            try:
                out.append((folder / name, json.loads((folder / name).read_text())))
            except (OSError, ValueError):
                continue  # being written or removed
    return out


class CephFS:
    """One mounted libcephfs client. Paths are absolute in the filesystem ("/a/b"); errors are
    OSError with the errno libcephfs gave (EDQUOT at the quota, ENOENT, EACCES...), as from os.

    No call waits forever. Requests to the MDS have no timeout in libcephfs, and the MDS's own
    journal waits forever for an OSD that refuses writes (a store filled at its size) or is
    gone; for the mount, the watchdog ends such a wait by ending ceph-fuse. Here a guard thread
    aborts the client (`ceph_abort_conn`: every pending call returns an error at once) when a
    call has waited `op_timeout` seconds; every call after that fails at once too.

    `register`: a folder where the client leaves a note (its process, its MDS session id) while
    it is mounted. A process killed with a client mounted, or a client aborted, leaves its MDS
    session behind, holding capabilities that every other client (the job's ceph-fuse mount)
    then waits for, up to the MDS's session timeout (60 s at least); the host's watchdog evicts
    the session of a note whose process has ended or that says "aborted" (ceph/watchdog.py)."""

    def __init__(self, conf: Path, keyring: Path, settings: dict[str, str] | None = None,
                 register: Path | None = None, op_timeout: float = OP_TIMEOUT):
        self.lib = load()
        self.note: Path | None = None
        self.gid: int | None = None
        self.op_timeout = op_timeout
        self.aborted = ""               # why the guard aborted the client
        self._inflight: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cm = ctypes.c_void_p()
        with client_variables_hidden():  # a loaded client environment must not pick another cluster
            self._ok(self.lib.ceph_create(ctypes.byref(self.cm), b"admin"), "create")
            try:
                self._ok(self.lib.ceph_conf_read_file(self.cm, str(conf).encode()), str(conf))
                for k, v in {"keyring": str(keyring), **(settings or {})}.items():
                    self._ok(self.lib.ceph_conf_set(self.cm, k.encode(), str(v).encode()), k)
                self._call("mount", self.lib.ceph_mount, b"/")
            except BaseException:
                self.lib.ceph_release(self.cm)
                raise
        self.gid = self.lib.ceph_get_instance_id(self.cm)
        if register is not None:
            self.note = write_note(register, self.gid)
        threading.Thread(target=self._guard, name="cephfs-guard", daemon=True).start()

    @staticmethod
    def _ok(rc: int, what: str) -> int:
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc), what)
        return rc

    def _call(self, what: str, fn, *args, ok=(), raw: bool = False) -> int:
        """fn(cm, *args), timed by the guard; a negative result (unless listed in `ok` or `raw`) raises."""
        if self.aborted:
            raise OSError(errno.ETIMEDOUT, self.aborted, what)
        key = threading.get_ident()
        with self._lock:
            self._inflight[key] = (time.monotonic(), what)
        try:
            rc = fn(self.cm, *args)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        if rc < 0 and self.aborted:
            raise OSError(errno.ETIMEDOUT, self.aborted, what)
        return rc if raw or -rc in ok else self._ok(rc, what)

    def _guard(self) -> None:
        while not self._stop.wait(GUARD_TICK):
            with self._lock:
                oldest = min(self._inflight.values(), default=None)
            if oldest is not None and time.monotonic() - oldest[0] >= self.op_timeout:
                why = (f"no answer from the CephFS for {self.op_timeout:.0f} s ({oldest[1]}): a store "
                       f"full at its size, or a daemon gone; client aborted")
                threading.Thread(target=self.abort, args=(why,), daemon=True).start()
                # The abort can itself wait (a call blocked inside libcephfs holding its lock, seen
                # with a store filled under a stage): then the process's own last resort decides.
                if not self._stop.wait(WEDGED_AFTER) and self._inflight and on_wedged is not None:
                    on_wedged(why + "; the abort did not end the pending calls")
                return

    def abort(self, why: str) -> None:
        """End every pending and later call with an error; the watchdog evicts the session."""
        self.aborted = why
        if self.note is not None:
            try:
                note = json.loads(self.note.read_text())
                self.note.write_text(json.dumps({**note, "aborted": why}))
            except OSError:
                pass
        self.lib.ceph_abort_conn(self.cm)

    def close(self) -> None:
        """Unmount (flushes what this client holds, gives back its capabilities) and release.

        The unmount runs in a thread of its own: it flushes to the MDS, which may never answer
        (above). If it has not returned within `op_timeout`, the client is aborted; a call that
        even then does not return is left to its thread (the process can still exit), and the
        handle is not released under it. An aborted client's note stays for the watchdog."""
        if not self.cm:
            return
        done = threading.Event()
        failed: list[OSError] = []

        def unmount() -> None:
            try:
                if not self.aborted:
                    self._call("unmount", self.lib.ceph_unmount)
            except OSError as e:
                failed.append(e)
            finally:
                done.set()

        threading.Thread(target=unmount, name="cephfs-unmount", daemon=True).start()
        if not done.wait(self.op_timeout + 2 * GUARD_TICK) and not self.aborted:
            self.abort(f"unmount did not end within {self.op_timeout:.0f} s; client aborted")
        stuck = not done.wait(GUARD_TICK * 4)
        self._stop.set()
        if stuck or self._inflight:
            return   # never release a handle a thread is still inside
        cm, self.cm = self.cm, ctypes.c_void_p()
        self.lib.ceph_release(cm)
        if self.note is not None and not self.aborted:
            self.note.unlink(missing_ok=True)
        if failed and not self.aborted:
            raise failed[0]

    # -- files
    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return self._call(path, self.lib.ceph_open, path.encode(), flags, mode)

    def close_fd(self, fd: int) -> None:
        self._call("close", self.lib.ceph_close, fd)

    def pwrite(self, fd: int, data, off: int) -> None:
        buf = bytes(data) if not isinstance(data, bytes) else data
        done = 0
        while done < len(buf):
            chunk = buf[done:] if done else buf
            n = self._call("write", self.lib.ceph_write, fd, chunk, len(chunk), off + done)
            if n == 0:
                raise OSError(errno.EIO, "libcephfs wrote 0 bytes", "write")
            done += n

    def pread(self, fd: int, n: int, off: int) -> bytearray:
        """Up to `n` bytes at `off` (fewer at the end of the file), read straight into the buffer returned."""
        buf = bytearray(n)
        view = (ctypes.c_char * n).from_buffer(buf) if n else None
        got = 0
        while got < n:
            r = self._call("read", self.lib.ceph_read, fd, ctypes.byref(view, got), n - got, off + got)
            if r == 0:
                break
            got += r
        del view  # the buffer can be cut only once nothing points into it
        del buf[got:]
        return buf

    def fsync(self, fd: int, dataonly: bool = False) -> None:
        self._call("fsync", self.lib.ceph_fsync, fd, int(dataonly))

    def ftruncate(self, fd: int, size: int) -> None:
        self._call("ftruncate", self.lib.ceph_ftruncate, fd, size)

    def fchmod(self, fd: int, mode: int) -> None:
        self._call("fchmod", self.lib.ceph_fchmod, fd, mode)

    def futimens(self, fd: int, mtime_ns: int) -> None:
        """atime and mtime to `mtime_ns`, to the nanosecond."""
        self._call("futimens", self.lib.ceph_futimens, fd, _times(mtime_ns))

    # -- names
    def rename(self, old: str, new: str) -> None:
        self._call(new, self.lib.ceph_rename, old.encode(), new.encode())

    def unlink(self, path: str) -> None:
        self._call(path, self.lib.ceph_unlink, path.encode())

    def mkdirs(self, path: str, mode: int = 0o777) -> None:
        """`path` and its missing parents; there already is fine (a file there: the next call says)."""
        self._call(path, self.lib.ceph_mkdirs, path.encode(), mode, ok=(errno.EEXIST,))

    def chmod(self, path: str, mode: int) -> None:
        self._call(path, self.lib.ceph_chmod, path.encode(), mode)

    def symlink(self, target: str, path: str) -> None:
        self._call(path, self.lib.ceph_symlink, target.encode(), path.encode())

    def readlink(self, path: str) -> str:
        buf = ctypes.create_string_buffer(4096)
        n = self._call(path, self.lib.ceph_readlink, path.encode(), buf, 4096)
        return buf.raw[:n].decode(errors="surrogateescape")

    def lutimens(self, path: str, mtime_ns: int) -> None:
        """Times of `path` itself (a symlink is not followed), to the nanosecond."""
        self._call(path, self.lib.ceph_utimensat, AT_FDCWD, path.encode(), _times(mtime_ns), AT_SYMLINK_NOFOLLOW)

    def _statx(self, path: str, mask: int) -> Statx:
        st = Statx()
        self._call(path, self.lib.ceph_statx, path.encode(), ctypes.byref(st), mask, AT_SYMLINK_NOFOLLOW)
        return st

    def size(self, path: str) -> int:
        return self._statx(path, CEPH_STATX_SIZE).size

    def lmode(self, path: str) -> int | None:
        """st_mode of `path` itself (a symlink is not followed), None if nothing is there."""
        try:
            return self._statx(path, CEPH_STATX_MODE).mode
        except FileNotFoundError:
            return None

    def sync_fs(self) -> None:
        self._call("sync_fs", self.lib.ceph_sync_fs)
