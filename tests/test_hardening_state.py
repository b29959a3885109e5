"""Issue 10 (hardening): what outside probes broke in the state and RAM folders.

Each test is named after its item. The security ones act as a second, unprivileged local
user (created here, removed afterwards) against root's instance, as an attacker would.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import RAMBURST, assert_nothing_left, cli, ram_roots, throwaway_user, unique_name

ATTACKER = "rbAhardening"
FORMAT_MARKER = "ramburst-instance/1"


@pytest.fixture(scope="module")
def attacker():
    if os.geteuid() != 0:
        pytest.skip("a second local user is needed to play the attacker; creating one needs root")
    with throwaway_user(ATTACKER) as user:
        yield user


def as_user(user: str, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, **kwargs)


def one_line_refusal(r: subprocess.CompletedProcess, expect: str = "") -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ramburst: error: "), r.stderr
    assert expect in lines[0], lines[0]


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- item 1: nothing is removed unless it is provably an instance --------------------------

def test_item1_down_refuses_a_name_that_is_a_path(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    for name in (str(victim), "..", ".", "a/b", "rel\n"):
        r = cli("down", "--name", name, env={"XDG_STATE_HOME": str(tmp_path / "x")})
        one_line_refusal(r, "name")
    assert (victim / "precious").read_text() == "keep me"


def test_item1_down_dotdot_leaves_the_state_root_alone(tmp_path):
    root = tmp_path / "x" / "ramburst"
    (root / "other").mkdir(parents=True)
    (root / "other" / "file").write_text("x")
    r = cli("down", "--name", "..", env={"XDG_STATE_HOME": str(tmp_path / "x")})
    one_line_refusal(r)
    assert (root / "other" / "file").exists()


def test_item1_down_config_folder_dot_leaves_the_working_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("x")
    (work / "distrax.cfg").write_text("[setup]\nbackend = ceph\nfolder = .\nservice = pool\n")
    r = cli("down", "--config", "distrax.cfg", cwd=work)
    one_line_refusal(r, "not a ramburst instance")
    assert snapshot(work) == ["data.txt", "distrax.cfg"]


@pytest.mark.parametrize("command", ["down", "status", "env"])
def test_item1_commands_refuse_a_folder_that_is_not_an_instance(tmp_path, command):
    folder = tmp_path / "looks-like-one"
    (folder / "hosts").mkdir(parents=True)
    (folder / "instance.json").write_text(json.dumps({"name": "x", "state": "up"}))  # no marker
    (folder / "notes.txt").write_text("x")
    before = snapshot(folder)
    one_line_refusal(cli(command, "--state-dir", folder), "not a ramburst instance")
    assert snapshot(folder) == before


@pytest.mark.ceph
def test_item1_up_refuses_an_existing_folder_with_files(tmp_path):
    name = unique_name("hA")
    state = tmp_path / "existing"
    state.mkdir()
    (state / "thesis.tex").write_text("years of work")
    try:
        r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
        one_line_refusal(r, "not a ramburst instance")
        assert snapshot(state) == ["thesis.tex"]
        assert ram_roots(name) == []
    finally:
        if (state / "ceph.conf").exists():  # the old code deployed over it
            cli("down", "--state-dir", state)


def test_item1_down_refuses_an_instance_of_another_user(tmp_path, attacker):
    folder = tmp_path / "theirs"
    (folder / "hosts").mkdir(parents=True)
    (folder / "instance.json").write_text(json.dumps({"format": FORMAT_MARKER, "name": "x", "state": "up"}))
    for p in [folder, *folder.rglob("*")]:
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    one_line_refusal(cli("down", "--state-dir", folder), "owned by")
    assert (folder / "instance.json").exists()


@pytest.mark.parametrize("mode", [0o700, 0o777])
@pytest.mark.usefixtures("fake_ceph_path")  # refused after the binary check: no Ceph needed
def test_item1_up_into_a_folder_another_user_made(tmp_path, attacker, mode):
    """--state-dir in a shared folder where another user got there first: refused, untouched."""
    from conftest import traversable

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    theirs = shared / "job"
    with traversable(shared, ATTACKER):
        as_user(ATTACKER, "mkdir", "-m", oct(mode)[2:], str(theirs), check=True)
    name = unique_name("hA")
    for command in (["up", "--name", name, "--size", "1G"], ["down"], ["status"], ["env"]):
        one_line_refusal(cli(*command, "--state-dir", theirs), "not a ramburst instance")
    assert os.lstat(theirs).st_uid == attacker.pw_uid and ram_roots(name) == []
    assert not os.path.lexists(str(theirs) + ".failed.log")


def test_item1_down_refuses_a_symlinked_state_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "file").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(real)
    one_line_refusal(cli("down", "--state-dir", link), "symlink")
    assert (real / "file").exists() and link.is_symlink()


# --- item 2: the RAM folder cannot be taken over by another local user --------------------

def old_predictable_ram_root(name: str, state: Path) -> Path:
    tag = hashlib.sha1(str(state).encode()).hexdigest()[:6]
    return Path(f"/dev/shm/ramburst-{os.getuid()}-{name}-{tag}")


@pytest.mark.ceph
@pytest.mark.parametrize("trap", ["folder", "symlink"])
def test_item2_ram_folder_cannot_be_taken_over_by_another_user(tmp_path, attacker, trap):
    """Another user pre-creates the RAM folder's path (a 0777 folder, or a symlink into their
    home); root's instance must still keep every byte in folders only root can enter."""
    name = unique_name("hA")
    state = tmp_path / name
    trap_path = old_predictable_ram_root(name, state)
    loot = Path(attacker.pw_dir) / f"loot-{trap}"
    as_user(ATTACKER, "mkdir", "-m", "0777", str(loot), check=True)
    if trap == "folder":
        as_user(ATTACKER, "mkdir", "-m", "0777", str(trap_path), check=True)
    else:
        as_user(ATTACKER, "ln", "-s", str(loot), str(trap_path), check=True)
    try:
        check_no_takeover(name, state, trap_path, loot, attacker)
    finally:
        # The trap is the other user's: removed as that user, whatever the test found.
        as_user(ATTACKER, "rm", "-rf", str(trap_path))
        subprocess.run(["rm", "-rf", str(trap_path)], check=False)


def check_no_takeover(name: str, state: Path, trap_path: Path, loot: Path, attacker) -> None:
    try:
        r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
        assert r.returncode == 0, r.stderr
        assert list(loot.iterdir()) == [], "root wrote into the other user's folder"
        ours = [p for p in ram_roots(name) if p != trap_path]
        assert ours, "no RAM folder of root's own"
        for p in ours:
            st = os.lstat(p)
            assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700, p
        hosts = [json.loads(h.read_text()) for h in (state / "hosts").glob("*.json")]
        assert all(not Path(h["ram_dir"]).is_relative_to(trap_path) for h in hosts), hosts
        assert as_user(ATTACKER, "ls", str(ours[0])).returncode != 0
    finally:
        cli("down", "--state-dir", state)
    assert [p for p in ram_roots(name) if p != trap_path] == []
    assert list(loot.iterdir()) == []
    assert os.lstat(trap_path).st_uid == attacker.pw_uid, "the other user's folder is theirs to remove"


def test_item2_failure_log_never_follows_a_symlink(tmp_path):
    from ramburst.files import failure_log_path, save_failure_log

    state = tmp_path / "s"
    (state / "log").mkdir(parents=True)
    (state / "log" / "mon.a.log").write_text("a log line\n")
    target = tmp_path / "precious"
    target.write_text("keep me")
    failure_log_path(state).symlink_to(target)
    log = save_failure_log(state)
    assert target.read_text() == "keep me"
    if log is not None:
        st = os.lstat(log)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert "a log line" in log.read_text()


def test_item2_ram_folder_removal_never_follows_a_symlink(tmp_path):
    from ramburst import files

    target = tmp_path / "target"
    target.mkdir()
    (target / "file").write_text("x")
    link = Path("/dev/shm") / f"ramburst-{os.getuid()}-hAlink-{secrets.token_hex(4)}"
    link.symlink_to(target)
    try:
        remove = getattr(files, "remove_ram_dir", None) or files.remove_tree_and_empty_parent
        remove(link / "h0" if remove is files.remove_tree_and_empty_parent else link)
        assert (target / "file").exists()
        remove(link)
        assert (target / "file").exists() and target.is_dir()
    finally:
        link.unlink(missing_ok=True)


# --- item 10: bad input is one line, exit 2, nothing created -------------------------------

def refused(tmp_path, args, expect="", env=None, cwd=None, state=None):
    name = unique_name("hA")
    state = state or tmp_path / name
    r = cli(*args, "--name", name, "--state-dir", state, "--size", "1G", env=env, cwd=cwd)
    one_line_refusal(r, expect)
    assert r.stdout == ""
    assert not Path(state).exists()
    assert ram_roots(name) == []
    assert not Path(str(state) + ".failed.log").exists()


def test_item10_newline_in_name_and_pool(tmp_path):
    for bad in ("rel\n", "a\nb"):
        r = cli("up", "--name", bad, "--state-dir", tmp_path / "s", "--size", "1G")
        one_line_refusal(r, "name")
        r = cli("env", "--name", bad)
        one_line_refusal(r, "name")
    refused(tmp_path, ["up", "--pool", "x\n"], "pool")


@pytest.mark.parametrize("body,expect", [
    (b"services = 5\n", "services"),
    (b'services = ["pool", 5]\n', "services"),
    (b'osds = "\xc2\xb3"\n', "osds"),
    (b'size = "1G"\nname = "\xff\xfe"\n', "UTF-8"),
    (b'ram_dir = "/etc"\n', "unknown key 'ram_dir'"),
    (b"hosts = 2\n", "unknown key 'hosts'"),
    (b'state_dir = ["a"]\n', "state_dir"),
    (b'mount = 5\nservices = ["fs"]\n', "mount"),
])
def test_item10_bad_toml_is_one_line(tmp_path, body, expect):
    f = tmp_path / "c.toml"
    f.write_bytes(body)
    refused(tmp_path, ["up", "--config", f], expect)


@pytest.mark.parametrize("body,expect", [
    (b"[setup]\nbackend = ceph\ninterface = %(x)s\n", "interface '%(x)s' does not exist"),
    (b"[setup]\nbackend = ceph\ninterface = \xff\n", "UTF-8"),
    (b"[SETUP]\nbackend = ceph\nnumber_of_hosts = 3\n", "asks for 3 hosts"),
    (b"[Setup]\nbackend = ceph\nnumber_of_hosts = 3\n", "asks for 3 hosts"),
    (b"[setup]\nbackend = ceph\n[SETUP]\nnumber_of_hosts = 3\n", "setup"),
])
@pytest.mark.usefixtures("fake_ceph_path")
def test_item10_bad_distrax_ini_is_one_line(tmp_path, body, expect):
    f = tmp_path / "distrax.cfg"
    f.write_bytes(body)
    refused(tmp_path, ["up", "--config", f], expect)


@pytest.mark.parametrize("part", ["a#b", "a;b", "a$name", 'a"b', "a\\b", "a\tb"])
def test_item10_state_folder_ceph_conf_cannot_carry(tmp_path, part):
    refused(tmp_path, ["up"], "ceph.conf", state=tmp_path / part / "s")
    assert not (tmp_path / part).exists()


def test_item10_mount_path_ceph_fuse_cannot_take(tmp_path):
    for bad in ("with space", "a#b", "a;touch x", "a$(id)", "it's", "a&b"):
        refused(tmp_path, ["up", "--service", "fs", "--mount", tmp_path / bad], "mount")
        assert not (tmp_path / bad).exists()


# --- item 11: memory admission counts what other instances may still grow to -------------

@pytest.mark.ceph
def test_item11_admission_counts_other_instances_promises(tmp_path, attacker):
    """Another user's instance has promised (nearly) all of the available memory: a new
    instance must be refused, though nothing has been written yet."""
    promise = psutil.virtual_memory().available - 2**30
    other = Path(f"/dev/shm/ramburst-{attacker.pw_uid}-other-{secrets.token_hex(8)}-h0-{promise}B")
    as_user(ATTACKER, "mkdir", "-m", "0700", str(other), check=True)
    name = unique_name("hA")
    state = tmp_path / name
    try:
        r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
        one_line_refusal(r, "promised")
        assert not state.exists() and ram_roots(name) == []
    finally:
        if state.exists():
            cli("down", "--state-dir", state)
        as_user(ATTACKER, "rmdir", str(other))


@pytest.mark.ceph
def test_item11_instances_started_together_see_each_other(tmp_path, attacker):
    """Room for one more instance, two started at once: at most one is admitted (each
    checks again once its own promise is visible), the other is refused in one line."""
    from ramburst import host
    from ramburst.config import build_config
    from ramburst.lifecycle.admission import memory_promise

    need = memory_promise(build_config(size="1G")) + host.HEADROOM
    promise = psutil.virtual_memory().available - need - need // 2
    other = Path(f"/dev/shm/ramburst-{attacker.pw_uid}-other-{secrets.token_hex(8)}-h0-{promise}B")
    as_user(ATTACKER, "mkdir", "-m", "0700", str(other), check=True)
    states = [tmp_path / unique_name("hA") for _ in range(2)]
    try:
        procs = [subprocess.Popen([RAMBURST, "up", "--name", s.name, "--state-dir", str(s), "--size", "1G"],
                                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for s in states]
        results = [(p.wait(120), p.stderr.read()) for p in procs]
        assert sum(code == 0 for code, _ in results) <= 1, results
        for code, err in results:
            if code != 0:
                # The loser may have printed progress before its second look (once its own
                # promise was visible); its error is still exactly one line, the last.
                errors = [ln for ln in err.splitlines() if ln.startswith("ramburst: error:")]
                assert code == 2 and len(errors) == 1 and "promised" in err.splitlines()[-1], err
    finally:
        for s in states:
            cli("down", "--state-dir", s)
        as_user(ATTACKER, "rmdir", str(other))
    for s in states:
        assert_nothing_left(s.name, s)


def test_item11_promise_is_in_the_ram_folder_name():
    from ramburst import host

    name = f"ramburst-1000-job-{'ab' * 8}-h0-123456B"
    assert host.promise_of(name) == 123456
    assert host.promise_of("ramburst-1000-job-abc123") == 0
    assert host.promise_of("something-else") == 0


# --- item 12: one `up` or `down` of an instance at a time --------------------------------

@pytest.mark.ceph
def test_item12_down_and_up_during_up_are_refused(tmp_path):
    name = unique_name("hA")
    state = tmp_path / name
    proc = subprocess.Popen([RAMBURST, "up", "--name", name, "--state-dir", str(state), "--size", "1G"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAMBURST_HANG_AT": "osd-up"})
    try:
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            if "hanging at step osd-up" in line:
                break
            assert time.monotonic() < deadline
        down = cli("down", "--state-dir", state)
        one_line_refusal(down, f"being deployed or removed by pid {proc.pid}")
        again = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
        one_line_refusal(again, f"being deployed or removed by pid {proc.pid}")
        assert (state / "ceph.conf").exists()
    finally:
        proc.terminate()
        proc.wait(60)
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


@pytest.mark.ceph
def test_item12_two_ups_of_one_name_at_once(tmp_path):
    """Started together, one `up` wins; the other says why in one line (never a traceback)
    and leaves the winner intact."""
    for _trial in range(15):  # the old race hit about 1 trial in 8
        name = unique_name("hA")
        state = tmp_path / name
        args = [RAMBURST, "up", "--name", name, "--state-dir", str(state), "--size", "1G"]
        procs = [subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
                 for _ in range(2)]
        results = [(p.wait(120), p.stderr.read()) for p in procs]
        try:
            codes = sorted(code for code, _ in results)
            assert codes == [0, 2], results
            loser = next(err for code, err in results if code == 2)
            assert len(loser.splitlines()) == 1 and loser.startswith("ramburst: error: "), loser
            assert cli("status", "--state-dir", state).returncode == 0
        finally:
            cli("down", "--state-dir", state)
        assert_nothing_left(name, state)


# --- item 13: quoting, modes, relative XDG_STATE_HOME -----------------------------------

@pytest.mark.ceph
def test_item13_hint_is_quoted_and_state_root_private_under_umask_0(tmp_path):
    name = unique_name("hA")
    xdg = tmp_path / "xdg"
    state = xdg / "ramburst" / "it's a folder" / name
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G",
            env={"XDG_STATE_HOME": str(xdg)}, preexec_fn=lambda: os.umask(0))
    try:
        assert r.returncode == 0, r.stderr
        for folder in (xdg, xdg / "ramburst", state.parent, state):
            assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        hint = r.stderr.strip().splitlines()[-1].split("use it with: ", 1)[1]
        out = subprocess.run(["bash", "-c", f'{hint}; echo "$CEPH_CONF"'], capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{Path(RAMBURST).parent}:{os.environ['PATH']}"})
        assert out.returncode == 0 and out.stdout.strip() == str(state / "ceph.conf"), (hint, out.stderr)
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_item13_relative_xdg_state_home_is_ignored(tmp_path):
    r = cli("env", "--name", "hAnone", env={"XDG_STATE_HOME": "relative/state", "HOME": str(tmp_path)},
            cwd=tmp_path)
    assert r.returncode != 0
    assert str(tmp_path / ".local" / "state" / "ramburst" / "hAnone") in r.stderr, r.stderr
    assert not (tmp_path / "relative").exists()


def test_item13_hint_quoting_unit():
    from ramburst.cli import env_hint
    from ramburst.config import build_config

    config = build_config(name="x", state_dir="/tmp/a b'c")
    hint = env_hint(config)
    assert shlex.quote("/tmp/a b'c") in hint


# --- the suite's own guards ---------------------------------------------------------------

def test_stray_guard_spares_pytest_and_its_parents(tmp_path):
    """`scripts/test.sh --basetemp=X`: the shells and pytest that name X must survive the
    guard; a Ceph daemon naming X must not."""
    import sys

    base = str(tmp_path / "basetemp")
    fake_osd = tmp_path / "ceph-osd"
    fake_osd.symlink_to("/usr/bin/python3")  # argv[0] .../ceph-osd, as a daemon's
    nap = "import time; time.sleep(60)"
    daemon = subprocess.Popen([str(fake_osd), "-c", nap, base])
    not_ceph = subprocess.Popen(["python3", "-c", nap, base])
    probe = (f"import sys, psutil; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
             "from conftest import stray_ceph_processes; "
             "print(' '.join(str(p.pid) for p in stray_ceph_processes(sys.argv[1])))")
    try:
        # a shell whose command line names the base temp, running a python that names it too
        r = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "$0" "$1"; true --basetemp="$1"', probe, base],
                           capture_output=True, text=True, timeout=60)
        found = {int(x) for x in r.stdout.split()}
        assert daemon.pid in found, r.stderr
        assert not_ceph.pid not in found
        me = psutil.Process()
        assert not found & {me.pid, *(p.pid for p in me.parents())}
        assert len(found) == 1, found  # neither the shell nor the python that ran the guard
    finally:
        for p in (daemon, not_ceph):
            p.kill()
            p.wait()


def test_traversable_restores_modes(tmp_path, attacker):
    from conftest import traversable

    locked = tmp_path / "home0700"
    (locked / "inner").mkdir(parents=True)
    os.chmod(locked, 0o700)
    before = {p: stat.S_IMODE(os.stat(p).st_mode) for p in [*locked.parents, locked]}
    assert as_user(ATTACKER, "test", "-x", str(locked / "inner")).returncode != 0
    with traversable(locked / "inner", ATTACKER):
        assert as_user(ATTACKER, "test", "-x", str(locked / "inner")).returncode == 0
    assert {p: stat.S_IMODE(os.stat(p).st_mode) for p in before} == before
