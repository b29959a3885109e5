"""The shipped Slurm examples on a real Slurm 22.05 cluster (tests/slurm.py): slurmctld and
three slurmd in network namespaces, jobs submitted with sbatch. The daemons run as root
(SlurmUser=root); jobs run as root, and one as an ordinary user, which is the real use.

The examples run as shipped; only variables adapt them (RAMBURST_VENV, RAMBURST_INTERFACE,
RAMBURST_SIZE, RAMBURST_JOB_MOUNT with `{host}` since the simulated nodes share /tmp,
RAMBURST_APP, XDG_STATE_HOME for a state folder under the test's temp folder).
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import netns
import slurm
from conftest import RAMBURST, processes_mentioning

pytestmark = pytest.mark.ceph
why_not = slurm.available()
if why_not:
    pytestmark = [pytest.mark.ceph, pytest.mark.skip(reason=f"no Slurm test cluster: {why_not}")]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "slurm-job.sh"
EPILOG = ROOT / "examples" / "epilog.sh"
VENV = Path(RAMBURST).parent.parent

# The job's program, run on every node by the example (`srun --overlap ... $RAMBURST_APP MOUNT`).
APP = r'''#!{python}
import hashlib, json, os, socket, subprocess, sys, time
env = json.loads(subprocess.run(["{ramburst}", "env", "--state-dir", os.environ["RAMBURST_STATE_DIR"], "--json"],
                                capture_output=True, text=True, check=True).stdout)
os.environ.update(env)  # this node's view: its own mount
me, n = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
mnt, shared, mode = env["RAMBURST_MOUNT"], os.environ["SLURM_SUBMIT_DIR"], os.environ["TEST_APP_MODE"]
host = socket.gethostname()

def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"{{host}}: timed out waiting for {{path}}")
        time.sleep(0.1)

if mode == "share":
    assert open(f"{{mnt}}/inputs/in.txt").read() == "staged in\n"
    data = os.urandom(1 << 20)
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{{mnt}}/f{{me}}", "wb") as f:
        f.write(data)
    subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "put", f"o{{me}}", f"{{mnt}}/f{{me}}"], check=True)
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", config=Config(s3={{"addressing_style": "path"}}))
    if me == 0:
        s3.create_bucket(Bucket="job")
        open(f"{{shared}}/bucket", "w").close()
    wait_for(f"{{shared}}/bucket")
    s3.put_object(Bucket="job", Key=f"k{{me}}", Body=data)
    open(f"{{shared}}/written-{{me}}-{{host}}-{{digest}}", "w").close()
    other = (me + 1) % n
    wait_for(f"{{mnt}}/f{{other}}")
    names = [x for x in os.listdir(shared) if x.startswith(f"written-{{other}}-")]
    while not names:
        time.sleep(0.1)
        names = [x for x in os.listdir(shared) if x.startswith(f"written-{{other}}-")]
    _, _, writer, want = names[0].split("-", 3)
    got_fs = hashlib.sha256(open(f"{{mnt}}/f{{other}}", "rb").read()).hexdigest()
    got_pool = hashlib.sha256(subprocess.run(["rados", "-p", env["RAMBURST_POOL"], "get", f"o{{other}}", "-"],
                                             capture_output=True, check=True).stdout).hexdigest()
    got_s3 = hashlib.sha256(s3.get_object(Bucket="job", Key=f"k{{other}}")["Body"].read()).hexdigest()
    ok = got_fs == got_pool == got_s3 == want
    with open(f"{{mnt}}/results/read-{{me}}", "w") as f:
        f.write(f"{{writer}} {{host}} {{ok}}\n")
    sys.exit(int(os.environ.get("TEST_APP_EXIT", "0")))
elif mode == "wait":
    with open(f"{{mnt}}/results/partial-{{me}}", "w") as f:
        f.write(f"{{host}}\n")
    open(f"{{shared}}/started-{{me}}", "w").close()
    while True:
        time.sleep(1)
elif mode == "kill":
    sys.path.insert(0, "{root}")
    if me == 0:
        from ramburst.ceph.admin import load_rados
        r = load_rados().Rados(conffile=env["CEPH_CONF"], name="client.admin", conf={{"rados_osd_op_timeout": "60"}})
        r.connect()
        io = r.open_ioctx(env["RAMBURST_POOL"])
        digests = {{}}
        for i in range(100):
            b = os.urandom(65536)
            io.write_full(f"o{{i}}", b)
            digests[f"o{{i}}"] = hashlib.sha256(b).hexdigest()
        open(f"{{shared}}/written", "w").close()
        wait_for(f"{{shared}}/killed")
        bad = [k for k, v in digests.items() if hashlib.sha256(io.read(k, 1 << 20)).hexdigest() != v]
        with open(f"{{mnt}}/results/read-0", "w") as f:
            f.write(f"{{len(digests)}} {{len(bad)}}\n")
    elif me == n - 1:
        wait_for(f"{{shared}}/written")
        record = json.load(open(os.path.join(os.environ["RAMBURST_STATE_DIR"], "hosts", f"h{{me}}.json")))
        for p in record["processes"]:  # this node fails: every Ceph daemon on it dies at once
            try:
                os.kill(p["pid"], 9)
            except ProcessLookupError:
                pass
        open(f"{{shared}}/killed", "w").close()
'''


@pytest.fixture(scope="module")
def cluster():
    c = slurm.Cluster(3)
    with netns.exclusive("slurm"):  # fixed names: a second run on this machine waits
        try:
            c.start()
            print(f"\nSlurm test cluster (3 nodes) up in {c.startup_seconds:.2f} s", file=sys.stderr)
            yield c
        finally:
            c.stop()


def job_setup(tmp_path: Path, mode: str, **extra) -> tuple[Path, dict]:
    """A submit folder with inputs and the app, and the variables that adapt the example."""
    submit = tmp_path / "submit"
    (submit / "inputs").mkdir(parents=True)
    (submit / "inputs" / "in.txt").write_text("staged in\n")
    app = tmp_path / "app.py"
    app.write_text(APP.format(python=VENV / "bin" / "python", ramburst=RAMBURST, root=ROOT))
    app.chmod(0o755)
    env = {"RAMBURST_VENV": str(VENV), "RAMBURST_INTERFACE": "eth0", "RAMBURST_SIZE": "1G",
           "RAMBURST_JOB_MOUNT": str(tmp_path / "mnt-{host}"), "RAMBURST_APP": str(app),
           "XDG_STATE_HOME": str(tmp_path / "state"), "TEST_APP_MODE": mode, **extra}
    return submit, env


def check_job_gone(job: int, tmp_path: Path, uid: int = 0) -> None:
    """Nothing of the job's instance on any node: processes, RAM folders, mounts, state."""
    state = tmp_path / "state" / "ramburst" / f"job{job}"
    assert processes_mentioning(str(state)) == []
    assert processes_mentioning(str(tmp_path / "app.py")) == []
    assert sorted(Path("/dev/shm").glob(f"ramburst-{uid}-job{job}-*")) == []
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    assert not state.exists(), f"{state} left behind"


def submit(cluster, tmp_path, mode, nodes=3, time_limit="5", **extra):
    folder, env = job_setup(tmp_path, mode, **extra)
    out = tmp_path / "job.out"
    t0 = time.monotonic()
    job = cluster.sbatch(EXAMPLE, f"--nodes={nodes}", f"--time={time_limit}", f"--output={out}",
                         env=env, cwd=folder)
    return job, folder, out, t0


@pytest.mark.parametrize("nodes", [1, 3])
def test_batch_job_example_pool_s3_fs_across_nodes(cluster, tmp_path, nodes):
    """The example as shipped: stage in, data written on one node and read on another through
    the fs, the pool and S3, stage out; the job's exit code is the program's; nothing left."""
    job, folder, out, t0 = submit(cluster, tmp_path, "share", nodes=nodes, TEST_APP_EXIT="7",
                                  **({"RAMBURST_REPLICAS": "1"} if nodes == 1 else {}))
    info = cluster.wait_job(job)
    wall = time.monotonic() - t0
    log = out.read_text()
    up = re.findall(r"up in [\d.]+ s(?: on \d+ hosts)?", log)
    print(f"\njob on {nodes} node(s): {wall:.1f} s from sbatch to idle nodes; {up}", file=sys.stderr)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "7:0", log
    reads = sorted((folder / "results").glob("read-*"))
    assert len(reads) == nodes, log
    hosts = set()
    for r in reads:
        writer, reader, ok = r.read_text().split()
        assert ok == "True", f"{r.name}: {r.read_text()}"
        hosts.add(reader)
        if nodes > 1:
            assert writer != reader  # written on one node, read on another
    assert len(hosts) == nodes
    check_job_gone(job, tmp_path)


def wait_started(folder: Path, nodes: int, job: int, cluster, timeout=180) -> None:
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("started-*"))) < nodes:
        assert cluster.job(job).get("JobState") in ("PENDING", "CONFIGURING", "RUNNING"), cluster.job(job)
        assert time.monotonic() < deadline, "the app never started on every node"
        time.sleep(0.3)


def check_stopped_cleanly(folder: Path, out: Path, nodes: int) -> str:
    log = out.read_text()
    for rank in range(nodes):  # every rank took the signal and tore down
        assert f"rank {rank}: stopped by signal 15; everything removed, exit 143" in log, log
    staged = sorted(p.name for p in (folder / "results").glob("partial-*"))
    assert staged == [f"partial-{r}" for r in range(nodes)], log  # stage-out read the mount after SIGTERM
    return log


def test_scancel_every_rank_stops_and_stages_out_without_epilog(cluster, tmp_path):
    job, folder, out, _ = submit(cluster, tmp_path, "wait", RAMBURST_GRACE="15")
    wait_started(folder, 3, job, cluster)
    cluster.scancel(str(job))
    info = cluster.wait_job(job)
    assert info["JobState"] == "CANCELLED"
    check_stopped_cleanly(folder, out, 3)
    check_job_gone(job, tmp_path)


def test_time_limit_every_rank_stops_and_stages_out_without_epilog(cluster, tmp_path):
    """`--time=1`: Slurm's SIGTERM reaches every process of the job; every rank agrees, CMD
    stages out within its grace, every node unmounts and stops its daemons; exit 143."""
    job, folder, out, t0 = submit(cluster, tmp_path, "wait", time_limit="1", RAMBURST_GRACE="15")
    wait_started(folder, 3, job, cluster)
    info = cluster.wait_job(job, timeout=240)
    assert info["JobState"] == "TIMEOUT", info
    log = check_stopped_cleanly(folder, out, 3)
    print("\ntime-limit run, job log:\n" + "\n".join(line for line in log.splitlines() if "ramburst" in line
                                                       or "srun" in line or "slurmstepd" in line), file=sys.stderr)
    check_job_gone(job, tmp_path)


def test_node_lost_mid_job_with_two_copies_loses_nothing(cluster, tmp_path):
    job, folder, out, _ = submit(cluster, tmp_path, "kill")
    info = cluster.wait_job(job)
    log = out.read_text()
    assert info["JobState"] == "COMPLETED", log
    assert (folder / "results" / "read-0").read_text().split() == ["100", "0"], log
    check_job_gone(job, tmp_path)


def test_epilog_removes_an_instance_the_job_left_up(cluster, tmp_path):
    """Step by step in the batch script (`srun ramburst up --mpi`), the job ends without
    `down`: the shipped node Epilog removes every node's part."""
    _, env = job_setup(tmp_path, "none")
    hook = cluster.folder / "epilog.d" / "ramburst"
    hook.write_text(f"#!/bin/sh\nexport RAMBURST_STATE_ROOT={tmp_path / 'state' / 'ramburst'} "
                    f"RAMBURST_VENV={VENV}\nexec {EPILOG}\n")
    hook.chmod(0o755)
    script = tmp_path / "up-only.sh"
    script.write_text("#!/bin/bash\nset -euo pipefail\n"
                      f'srun --mpi=pmix -N "$SLURM_NNODES" --ntasks-per-node=1 {RAMBURST} up --mpi '
                      '--interface eth0 --size 1G --name "job$SLURM_JOB_ID" --service fs '
                      f'--mount "{tmp_path}/mnt-{{host}}"\n'
                      f'ls "{tmp_path}/state/ramburst/job$SLURM_JOB_ID/hosts"\n')
    try:
        job = cluster.sbatch(script, "--nodes=3", "--ntasks-per-node=1", "--time=5",
                             f"--output={tmp_path / 'job.out'}", env=env, cwd=tmp_path)
        info = cluster.wait_job(job)
    finally:
        hook.unlink()
    log = (tmp_path / "job.out").read_text()
    assert info["JobState"] == "COMPLETED", log
    assert log.split()[-3:] == ["h0.json", "h1.json", "h2.json"], log  # it was up on 3 nodes
    check_job_gone(job, tmp_path)


def test_early_signal_to_the_batch_shell_stops_before_the_limit(cluster, tmp_path):
    """`--signal=B:TERM@30`: only the batch shell gets SIGTERM before the limit; the example
    forwards it through srun to every rank, which stage out and remove everything; the job
    ends with 143 before Slurm's own time limit."""
    folder, env = job_setup(tmp_path, "wait", RAMBURST_GRACE="15")
    out = tmp_path / "job.out"
    job = cluster.sbatch(EXAMPLE, "--nodes=3", "--time=2", "--signal=B:TERM@30", f"--output={out}",
                         env=env, cwd=folder)
    wait_started(folder, 3, job, cluster)
    info = cluster.wait_job(job, timeout=240)
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "143:0"), out.read_text()
    check_stopped_cleanly(folder, out, 3)
    check_job_gone(job, tmp_path)


def rank_process(node: str, job_state: Path) -> psutil.Process:
    """The `ramburst run --mpi` process of the job on `node` (found by its network namespace)."""
    netns = os.stat(f"/var/run/netns/{node}").st_ino
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if len(cmd) > 2 and cmd[1].endswith("/ramburst") and cmd[2] == "run" and \
                job_state.name in cmd:
            try:
                if os.stat(f"/proc/{p.pid}/ns/net").st_ino == netns:
                    return p
            except OSError:
                pass
    raise AssertionError(f"no ramburst run rank on {node}")


def test_sigterm_to_one_rank_stops_every_rank(cluster, tmp_path):
    """A signal on rank 2 alone: rank 0 (running CMD) and rank 1 learn of it at the next poll,
    CMD stages out, every rank tears down and exits 143."""
    job, folder, out, _ = submit(cluster, tmp_path, "wait", RAMBURST_GRACE="15")
    wait_started(folder, 3, job, cluster)
    rank_process("rbsl3", tmp_path / "state" / "ramburst" / f"job{job}").send_signal(15)
    info = cluster.wait_job(job)
    log = out.read_text()
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "143:0"), log
    assert "rank 0: signal 15 on rank(s) 2: stopping CMD" in log, log
    check_stopped_cleanly(folder, out, 3)
    check_job_gone(job, tmp_path)


USER = "rbDslurm"


@pytest.fixture(scope="module")
def slurm_user():
    """An ordinary account for one job, removed with its home and processes afterwards."""
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    try:
        yield pwd.getpwnam(USER)
    finally:
        uid = pwd.getpwnam(USER).pw_uid
        for p in psutil.process_iter(["uids"]):  # processes of this throwaway account only, by pid
            if p.info["uids"] and p.info["uids"].real == uid:
                p.kill()
        subprocess.run(["userdel", "-r", USER], capture_output=True)


def test_batch_job_as_an_ordinary_user(cluster, slurm_user):
    """The real use: a job of an ordinary user. Pool and S3 only: /dev/fuse is root-only on
    this machine (the fs service then refuses with one line; the root jobs cover fs). Objects
    written from every node are read on rank 0's; the instance is the user's; nothing is left."""
    work = Path(tempfile.mkdtemp(prefix="rbsl-user-"))
    try:
        work.chmod(0o755)
        cmd = work / "cmd.sh"  # every node writes an object, rank 0's node lists them
        cmd.write_text("#!/bin/bash\nset -euo pipefail\n"
                       'srun --overlap -N "$SLURM_NNODES" --ntasks-per-node=1 '
                       'sh -c \'rados -p "$RAMBURST_POOL" put "o$SLURM_PROCID" /etc/hostname\'\n'
                       'rados -p "$RAMBURST_POOL" ls | sort | tr "\\n" " "; echo\n')
        cmd.chmod(0o755)
        script = work / "job.sh"
        script.write_text("#!/bin/bash\n"
                          f'srun --mpi=pmix -N "$SLURM_NNODES" --ntasks-per-node=1 {RAMBURST} run --mpi '
                          f'--interface eth0 --size 1G --name "job$SLURM_JOB_ID" --service pool --service s3 '
                          f'-- {cmd}\n')
        (work / "state").mkdir()
        subprocess.run(["chown", "-R", f"{USER}:", str(work)], check=True)
        env = {"HOME": slurm_user.pw_dir, "USER": USER, "LOGNAME": USER, "XDG_STATE_HOME": str(work / "state"),
               "TMPDIR": str(work)}
        out = work / "job.out"
        job = cluster.sbatch(script, "--nodes=3", "--ntasks-per-node=1", "--time=5", f"--output={out}",
                             env=env, cwd=work, user=USER)
        info = cluster.wait_job(job)
        log = out.read_text()
        assert (info["JobState"], info["ExitCode"], info["UserId"].split("(")[0]) == \
            ("COMPLETED", "0:0", USER), log
        assert "o0 o1 o2" in log, log
        assert f"/dev/shm/ramburst-{slurm_user.pw_uid}-job{job}-" in log, log  # the user's own RAM folder
        check_job_gone(job, work, uid=slurm_user.pw_uid)
    finally:
        shutil.rmtree(work, ignore_errors=True)
