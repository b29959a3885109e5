"""One Ceph daemon process: start it; recognising and stopping it is ramburst/process.py.

A started daemon is recorded as (pid, start time, binary, conf). `down` stops a pid only
when the live process still matches that record, so a recycled pid is never signalled.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil

from ..errors import DeployError
from ..process import ProcessRecord

# glibc malloc, which Debian's Ceph uses, maps every buffer over 128 KiB (a 4 MiB message)
# afresh and returns freed heap tops to the kernel at once, so each 4 MiB write paid for
# 1024 page faults and zeroing (42 % of the OSD's CPU in a 4 MiB write profile). Buffers up
# to 32 MiB come from the heap instead, up to 64 MiB of free heap is kept for reuse, and two
# arenas bound what is kept (docs/tuning.md: 4 MiB writes 1.4-1.7x faster, OSD RSS +150-300 MiB).
MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864:"
                   "glibc.malloc.arena_max=2")


# A Ceph client's variables: Ceph's own (CEPH_CONF, CEPH_KEYRING, CEPH_ARGS, ...) and what
# `ramburst env` exports. Ceph reads CEPH_KEYRING and CEPH_ARGS over the conf file, so after
# `eval "$(ramburst env --name a)"` a daemon of instance b that inherited them used a's keys.
CLIENT_VARIABLES = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "S3CMD_CONFIG",
    "RAMBURST_NAME", "RAMBURST_STATE_DIR", "RAMBURST_MON_HOST", "RAMBURST_POOL", "RAMBURST_S3_ENDPOINT",
    "RAMBURST_S3_CREDENTIALS", "RAMBURST_MOUNT", "RAMBURST_METRICS_URL",
})


def is_client_variable(name: str) -> bool:
    return name.startswith("CEPH_") or name in CLIENT_VARIABLES


# Held while admin.open_rados hides those variables from librados for an instant.
ENV_LOCK = threading.Lock()


def tool_env() -> dict[str, str]:
    """Our environment without a client's Ceph variables: for one-shot tools (mkfs, radosgw-admin)."""
    with ENV_LOCK:
        return {k: v for k, v in os.environ.items() if not is_client_variable(k)}


def daemon_env(tuned: bool = True) -> dict[str, str]:
    """The environment of a Ceph daemon: ours without a client's Ceph variables, with the
    malloc tunables added (a user's own GLIBC_TUNABLES come after them, so they win)."""
    env = tool_env()
    if tuned:
        current = env.get("GLIBC_TUNABLES", "")
        env["GLIBC_TUNABLES"] = f"{MALLOC_TUNABLES}:{current}" if current else MALLOC_TUNABLES
    return env


class Daemon:
    """A Ceph daemon of one kind; subclasses say how to make its data and what to run."""

    kind = ""
    malloc_tuned = True  # start with MALLOC_TUNABLES

    def __init__(self, ident: str, binary: str, conf: Path, log_dir: Path):
        self.id = ident
        self.binary = binary
        self.conf = conf
        self.log_dir = log_dir
        self.popen: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.id}"

    @property
    def out_path(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    def base_args(self) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-i", self.id]

    def run_args(self) -> list[str]:
        return self.base_args() + ["-f"]

    def run_tool(self, args: list[str], what: str, timeout: float = 120) -> None:
        """Run a one-shot command (mkfs...) with output kept in this daemon's .out file."""
        with open(self.out_path, "ab") as out:
            try:
                rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    timeout=timeout, env=tool_env()).returncode
            except subprocess.TimeoutExpired:
                raise DeployError(f"{what} for {self.name} took over {timeout:.0f} s",
                                  str(self.out_path)) from None
        if rc != 0:
            raise DeployError(f"{what} for {self.name} failed with exit code {rc}: "
                              f"{last_line(self.out_path)}", str(self.out_path))

    def start(self) -> ProcessRecord:
        """Start the daemon in the foreground of its own session, so it outlives `up`."""
        out = open(self.out_path, "ab")
        # SIGTERM stays blocked in the daemon (a mask survives exec): a scheduler's time limit
        # signals every process of the job, and the storage must stay up while `run` lets CMD
        # stage out; ramburst itself stops daemons with SIGKILL.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self.popen = subprocess.Popen(self.run_args(), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          close_fds=True, env=daemon_env(self.malloc_tuned))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            out.close()
        try:
            created = psutil.Process(self.popen.pid).create_time()
        except psutil.NoSuchProcess:
            created = 0.0
        return ProcessRecord(self.name, self.popen.pid, created, self.binary, str(self.conf))

    def check_running(self) -> None:
        """Raise if the daemon has already exited, with the last thing it said."""
        if self.popen is not None and self.popen.poll() is not None:
            raise DeployError(f"{self.name} exited with code {self.popen.returncode}: "
                              f"{last_line(self.out_path)}", str(self.log_dir / f"{self.name}.log"))


def last_line(path: Path) -> str:
    """The last informative line of a log, for a one-line error."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "(no output)"
    for ln in reversed(lines):
        if "error" in ln.lower() or "failed" in ln.lower() or "abort" in ln.lower():
            return ln[-300:]
    return lines[-1][-300:] if lines else "(no output)"
