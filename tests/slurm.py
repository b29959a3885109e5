"""A real Slurm cluster for the tests: slurmctld plus N slurmd, each node in its own network
and UTS namespace, munge with a private key and socket, `srun --mpi=pmix`.

Node K is the network namespace `rbslK` with `eth0` at 10.78.0.K/24 on the bridge `rbsl-br`;
the controller listens on the bridge's address 10.78.0.254 in the root namespace, where the
tests call sbatch/squeue/scancel. Every file (config, keys, spool, logs) is under one folder;
every daemon is started and killed by pid; /etc/hosts lines are tagged; a leftover of a
crashed run (namespaces, links, hosts lines, daemons whose command line names this prefix's
folders) is removed before starting. Facts behind the settings: /work/shared/brief/FACTS.md.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from netns import remove_network

PREFIX = "rbsl"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.78.0.0/24"
CONTROLLER = ("10.78.0.254", f"{PREFIX}ctl")
TAG = "# ramburst-slurm-test"
MARK = "ramburst-slurm-test"  # in every daemon's config path, to find stale ones by command line
TOOLS = ("slurmctld", "slurmd", "munged", "srun", "sbatch", "scancel", "squeue", "scontrol",
         "ip", "nsenter", "unshare")


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, **kw)


def available() -> str | None:
    """Why a Slurm cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a Slurm test cluster needs root (network namespaces, slurmd)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/install.sh installs Slurm)"
    if not list(Path("/usr/lib").glob("*/slurm*/mpi_pmix.so")):
        return "Slurm's pmix plugin is missing"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is missing"
    return None


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    try:
        p = psutil.Process(pid)
        p.terminate()
        p.wait(timeout)
    except psutil.TimeoutExpired:
        p.kill()
    except psutil.NoSuchProcess:
        pass


def cleanup() -> None:
    """Remove every daemon, namespace, link and hosts line a run of this harness may have left."""
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if MARK in cmd and p.info["name"] in ("slurmctld", "slurmd", "munged", "slurmstepd"):
            kill_pid(p.pid)
    remove_network(PREFIX, TAG)
    for stale in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*/{MARK}"):
        shutil.rmtree(stale.parent, ignore_errors=True)


def make_folder() -> Path:
    """A folder outside pytest's (root-only) temp tree, so a job's ordinary user reaches it."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    folder.chmod(0o755)
    return folder


class Cluster:
    """slurmctld + `count` slurmd; `env` is what a client (sbatch, squeue) needs."""

    def __init__(self, count: int):
        self.folder = make_folder() / MARK  # removed whole by stop()
        self.names = [f"{PREFIX}{i}" for i in range(1, count + 1)]
        self.addresses = [f"10.78.0.{i}" for i in range(1, count + 1)]
        self.conf = self.folder / "slurm.conf"
        self.socket = self.folder / "munge" / "munge.socket"
        self.pids: dict[str, int] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.startup_seconds = 0.0

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> Cluster:
        cleanup()
        t0 = time.monotonic()
        # Readable by all but writable by root only: jobs of an ordinary user reach munged's
        # socket, the pmix sockets in the spool and the per-node TmpFS through these folders.
        self.folder.mkdir(parents=True)
        for d in ("munge", "state", "log", "spool", "tmpfs", "epilog.d"):
            (self.folder / d).mkdir(mode=0o700 if d in ("state", "log") else 0o755)
            os.chmod(self.folder / d, 0o700 if d in ("state", "log") else 0o755)
        os.chmod(self.folder, 0o755)
        self.network()
        self.start_munge()
        self.write_conf()
        self.start_daemons()
        self.startup_seconds = time.monotonic() - t0
        return self

    def network(self) -> None:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{CONTROLLER[0]}/24", "dev", BRIDGE)
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
            for name, addr in [*zip(self.names, self.addresses), (CONTROLLER[1], CONTROLLER[0])]:
                f.write(f"{addr} {name} {TAG}\n")

    def start_munge(self) -> None:
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        d = self.folder / "munge"
        proc = subprocess.Popen(["munged", "--foreground", "--force", f"--key-file={key}",
                                 f"--socket={self.socket}", f"--pid-file={d / 'munged.pid'}",
                                 f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.pids["munged"] = proc.pid
        self.wait(lambda: self.socket.exists(), 10, "munged's socket")

    def write_conf(self) -> None:
        f = self.folder
        # A fresh job-id range per cluster: job names (and RAM folders) never meet a leftover.
        nodes = "\n".join(f"NodeName={n} NodeAddr={a} NodeHostname={n} CPUs=2 RealMemory=4000 State=UNKNOWN"
                          for n, a in zip(self.names, self.addresses))
        self.conf.write_text(f"""\
ClusterName=rbsl
MailProg=/bin/true
FirstJobId={random.randint(1000, 60_000_000)}
SlurmctldHost={CONTROLLER[1]}({CONTROLLER[0]})
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={f / 'state'}
SlurmdSpoolDir={f / 'spool'}/%n
TmpFS={f / 'tmpfs'}/%n
SlurmctldPidFile={f / 'slurmctld.pid'}
SlurmdPidFile={f / 'spool'}/slurmd-%n.pid
SlurmctldLogFile={f / 'log' / 'slurmctld.log'}
SlurmdLogFile={f / 'log'}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
KillWait=30
MinJobAge=60
InactiveLimit=0
Epilog={f / 'epilog'}
{nodes}
PartitionName=rb Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")
        (f / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nConstrainCores=no\nConstrainRAMSpace=no\n"
                                      "ConstrainDevices=no\nConstrainSwapSpace=no\n")
        # Open MPI inside namespaces crashed in MPI_Init now and then without the subnet named;
        # TCP only (ob1, no UCX/libfabric/verbs probing: no such hardware here). Every step gets it.
        (f / "mpi.conf").write_text(f"PMIxEnv=OMPI_MCA_btl_tcp_if_include={SUBNET};"
                                    f"OMPI_MCA_oob_tcp_if_include={SUBNET};PMIX_MCA_gds=hash;"
                                    "OMPI_MCA_pml=ob1;OMPI_MCA_btl=self,tcp;OMPI_MCA_osc=^ucx\n")
        # The node Epilog runs the scripts an enabled test drops in epilog.d (none by default,
        # so the other tests prove a job cleans up *without* an epilog).
        epilog = f / "epilog"
        epilog.write_text(f'#!/bin/sh\nfor s in {f / "epilog.d"}/*; do [ -x "$s" ] && "$s"; done\nexit 0\n')
        epilog.chmod(0o755)

    def start_daemons(self) -> None:
        log = open(self.folder / "log" / "daemons.out", "ab")
        common = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": log, "start_new_session": True,
                  "env": self.env}
        # slurmctld must run on a host named like SlurmctldHost: a UTS namespace of its own.
        self.pids["slurmctld"] = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", f'hostname {CONTROLLER[1]} && exec slurmctld -D -i -f "{self.conf}"'],
            **common).pid
        for name in self.names:
            spool = self.folder / "spool" / name
            spool.mkdir()
            (self.folder / "tmpfs" / name).mkdir()
            # nsenter and unshare exec, and sh execs slurmd: the pid is slurmd's.
            self.pids[name] = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{name}", "unshare", "--uts", "sh", "-c",
                 f'hostname {name} && exec slurmd -D -N {name} -f "{self.conf}"'], **common).pid
        log.close()
        self.wait(lambda: self.idle() == set(self.names), 60, "every node idle")

    # -- use ------------------------------------------------------------------------------
    def idle(self) -> set[str]:
        r = sh("sinfo", "-h", "-N", "-o", "%N %t", check=False, env=self.env)
        return {line.split()[0] for line in r.stdout.splitlines() if line.split()[1:] == ["idle"]}

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for name, pid in self.pids.items():
                if not psutil.pid_exists(pid):
                    raise RuntimeError(f"{name} died while waiting for {what}; logs in {self.folder / 'log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: timed out; logs in {self.folder / 'log'}")
            time.sleep(0.1)

    def sbatch(self, script: Path, *args: str, env: dict | None = None, cwd: Path | None = None,
               user: str | None = None) -> int:
        as_user = ["runuser", "-u", user, "--"] if user else []
        r = sh(*as_user, "sbatch", "--parsable", *args, str(script), env={**self.env, **(env or {})},
               check=False, cwd=cwd)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        r = sh("scontrol", "show", "job", "-o", str(job_id), check=False, env=self.env)
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def wait_job(self, job_id: int, timeout: float = 300) -> dict[str, str]:
        """Wait until the job has ended and its nodes are idle again (epilog done)."""
        done = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
        self.wait(lambda: self.job(job_id).get("JobState") in done, timeout, f"job {job_id}")
        info = self.job(job_id)
        self.wait(lambda: self.idle() == set(self.names), 120, "nodes idle after the job")
        return info

    def wait_running(self, job_id: int, timeout: float = 120) -> None:
        self.wait(lambda: self.job(job_id).get("JobState") == "RUNNING", timeout, f"job {job_id} running")

    def scancel(self, *args: str) -> None:
        sh("scancel", *args, env=self.env)

    def run_in(self, node: str, *args: str, env: dict | None = None, timeout: float = 60):
        return subprocess.run(["nsenter", f"--net=/var/run/netns/{node}", *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})

    # -- tear-down ------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel what still runs (so ramburst tears down as on a real cluster), kill every
        daemon by pid (the nodes first), then remove everything else this harness made."""
        if self.pids.get("slurmctld") and psutil.pid_exists(self.pids["slurmctld"]):
            jobs = sh("squeue", "-h", "-o", "%i", check=False, env=self.env).stdout.split()
            if jobs:
                sh("scancel", *jobs, check=False, env=self.env)
                try:
                    self.wait(lambda: not sh("squeue", "-h", "-o", "%i", check=False, env=self.env).stdout.strip(),
                              60, "cancelled jobs to end")
                except (TimeoutError, RuntimeError):
                    pass
        for name in [*self.names, "slurmctld", "munged"]:
            pid = self.pids.pop(name, None)
            if pid is not None:
                kill_pid(pid)
        for p in psutil.process_iter(["pid", "name", "cmdline"]):  # slurmstepd of a killed job
            if p.info["name"] == "slurmstepd" and p.pid not in self.pids.values():
                try:
                    if str(self.folder) in " ".join(p.info["cmdline"] or []) or \
                            any(str(self.folder) in f.path for f in p.open_files()):
                        p.kill()
                except psutil.Error:
                    pass
        cleanup()
        shutil.rmtree(self.folder.parent, ignore_errors=True)
