"""Every bad input: one clear line on stderr, exit code 2, nothing created. No daemons needed."""
from __future__ import annotations

import pytest

from conftest import cli, ram_roots, unique_name


def check_refused(args, tmp_path, expect: str, env=None):
    name = unique_name("bad")
    state = tmp_path / name
    r = cli(*args, "--name", name, "--state-dir", state, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ramburst: error: ") and expect in lines[0], lines[0]
    assert not state.exists()
    assert ram_roots(name) == []
    assert not state.with_name(state.name + ".failed.log").exists()


@pytest.mark.parametrize("args,expect", [
    (["up", "--colour", "red"], "No such option '--colour'"),
    (["up", "--size", "lots"], "'lots' is not a size"),
    (["up", "--size", "0"], "must be positive"),
    (["up", "--size", "64T"], "is available"),
    (["up", "--size", "200M"], "each OSD needs at least"),
    (["up", "--interface", "nosuch0"], "interface 'nosuch0' does not exist"),
    (["up", "--osds", "0"], "osds must be at least 1"),
    (["up", "--osds", "two"], "'two' is not a valid integer"),
    (["up", "--replicas", "3"], "replicas 3 needs at least 3 osds"),
    (["up", "--device", "floppy"], "Invalid value for '--device'"),
    (["up", "--service", "nfs"], "service 'nfs' is not one of"),
    (["up", "--pool", "bad pool"], "pool 'bad pool'"),
    (["up", "--checksums=yes"], "does not take a value"),
    (["run", "--size", "1G"], "Missing argument 'COMMAND...'"),
])
@pytest.mark.usefixtures("fake_ceph_path")  # refused after the binary check: no Ceph needed
def test_bad_flags(tmp_path, args, expect):
    check_refused(args, tmp_path, expect)


def test_bad_name(tmp_path):
    r = cli("up", "--name", "no/slash", "--state-dir", tmp_path / "s")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "name 'no/slash'" in r.stderr
    assert not (tmp_path / "s").exists()


def test_unknown_config_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('size = "1G"\nflavour = "vanilla"\n')
    check_refused(["up", "--config", f], tmp_path, "unknown key 'flavour'")


def test_unknown_distrax_key(tmp_path):
    f = tmp_path / "distrax.cfg"
    f.write_text("[setup]\nbackend = ceph\nservice = pool\nturbo = yes\n")
    check_refused(["up", "--config", f], tmp_path, "unknown key 'turbo' in [setup]")


def test_config_file_missing(tmp_path):
    check_refused(["up", "--config", tmp_path / "none.toml"], tmp_path, "does not exist")


def test_ceph_binaries_missing(tmp_path):
    check_refused(["up"], tmp_path, "ceph-mon not found on PATH: install Ceph", env={"PATH": "/nonexistent"})


@pytest.mark.usefixtures("fake_ceph_path")
def test_distrax_host_count_must_match(tmp_path):
    f = tmp_path / "distrax.cfg"
    f.write_text("[setup]\nbackend = ceph\ninterface = lo\nnumber_of_hosts = 3\nservice = pool\n")
    check_refused(["up", "--config", f], tmp_path, "asks for 3 hosts but 1 is taking part")
