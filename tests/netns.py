"""Simulated hosts on this machine: network namespaces on a bridge, reached by mpirun.

Each host is a network namespace `rbmhN` with an interface `eth0` at 10.77.0.N/24 on the
bridge `rbmh-br` (10.77.0.254 in the root namespace, where mpirun runs). Hosts share the
filesystem and process table, as nodes share a home directory, and see only their own
network. Names resolve through /etc/hosts lines tagged `# ramburst-test`. Traffic goes
only to these addresses, and everything is removed afterwards.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PREFIX = "rbmh"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.77.0.0/24"
TAG = "# ramburst-test"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def available() -> str | None:
    """Why simulated hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "mpirun"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is missing"
    return None


@contextlib.contextmanager
def exclusive(what: str) -> Iterator[None]:
    """Hold a machine-wide lock while a harness with fixed names (namespaces, subnet) is up, so
    that two test runs on one machine (two checkouts, CI beside a developer) wait for each
    other instead of deleting each other's hosts. The lock file lives outside any TMPDIR."""
    with open(f"/run/lock/ramburst-test-{what}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cleanup() -> None:
    """Remove every namespace, link and hosts line this harness may have left (also stale ones)."""
    remove_network(PREFIX, TAG)


def remove_network(prefix: str, tag: str) -> None:
    """Delete the network namespaces and links named `prefix*` and the /etc/hosts lines tagged
    `tag` (shared with the Slurm harness, which uses its own prefix and tag)."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            sh("ip", "netns", "delete", name, check=False)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(prefix):
            sh("ip", "link", "delete", name, check=False)
    hosts = Path("/etc/hosts")
    text = hosts.read_text()
    kept = "".join(line for line in text.splitlines(keepends=True) if tag not in line)
    if kept != text:
        hosts.write_text(kept)


def marks() -> list:
    """`pytestmark` of a module on simulated hosts: it runs Ceph, and is skipped where hosts cannot be made."""
    why = available()
    return [pytest.mark.ceph] + ([pytest.mark.skip(reason=f"simulated hosts unavailable: {why}")] if why else [])


def hosts_fixture(count: int, folder: Path) -> Iterator[Hosts]:
    """Body of a module-scoped fixture: `count` simulated hosts, machine-wide exclusive, always
    removed (create() runs inside, so a set-up that fails half-way is removed too)."""
    with exclusive("multihost"):
        try:
            yield Hosts(count, folder).create()
        finally:
            cleanup()


class Hosts:
    def __init__(self, count: int, folder: Path):
        self.names = [f"{PREFIX}{i}" for i in range(1, count + 1)]
        self.addresses = [f"10.77.0.{i}" for i in range(1, count + 1)]
        self.agent = folder / "netns-agent"

    def create(self) -> Hosts:
        cleanup()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", "10.77.0.254/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for i, (name, addr) in enumerate(zip(self.names, self.addresses), start=1):
            outer, inner = f"{PREFIX}{i}a", f"{PREFIX}{i}b"
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "master", BRIDGE, "up")
            sh("ip", "link", "set", inner, "netns", name)
            sh("ip", "-n", name, "link", "set", inner, "name", "eth0")
            sh("ip", "-n", name, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", name, "link", "set", "eth0", "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        with open("/etc/hosts", "a") as f:
            for name, addr in zip(self.names, self.addresses):
                f.write(f"{addr} {name} {TAG}\n")
        # Each simulated host gets its own TMPDIR: the hosts share the filesystem and the
        # hostname, so Open MPI's daemons would otherwise make and remove their session
        # folders under the same /tmp/ompi.<hostname>.<uid>, and one's cleanup can race
        # another's mkdir ("A call to mkdir was unable to create the desired directory").
        self.agent.write_text('#!/bin/sh\nhost="$1"; shift\n'
                              f'TMPDIR="{self.agent.parent}/tmp-$host"; export TMPDIR; mkdir -p "$TMPDIR"\n'
                              'exec nsenter --net=/var/run/netns/"$host" sh -c "$*"\n')
        self.agent.chmod(0o755)
        return self

    def mpirun(self, *args: str, hosts: int | None = None, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(**self.mpirun_args(*args, hosts=hosts, env=env), capture_output=True, text=True,
                              timeout=timeout)

    def mpirun_args(self, *args: str, hosts: int | None = None, env: dict | None = None) -> dict:
        """The `args` and `env` of subprocess.run/Popen for mpirun ARGS on the first `hosts` hosts
        (Popen: a test that signals the ranks while they run)."""
        names = self.names[:hosts] if hosts else self.names
        cmd = ["mpirun", "--allow-run-as-root", "--mca", "plm_rsh_agent", str(self.agent),
               "-H", ",".join(names), "-np", str(len(names)),
               "--mca", "btl", "tcp,self", "--mca", "oob_tcp_if_include", SUBNET,
               "--mca", "btl_tcp_if_include", SUBNET, "--mca", "routed", "direct", *args]
        full_env = {**os.environ, "PMIX_MCA_gds": "hash", "OMPI_MCA_rmaps_base_oversubscribe": "1",
                    **(env or {})}
        return {"args": cmd, "env": full_env}

    def run_in(self, host: str, *args: str, env: dict | None = None, timeout: float = 120):
        return subprocess.run(["nsenter", f"--net=/var/run/netns/{host}", *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})
