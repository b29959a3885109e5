"""Config, DisTRaX mapping, planning, keys and conf rendering: pure units, no daemons."""
from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from ramburst.ceph import keys
from ramburst.ceph.conf import Layout, render_conf
from ramburst.config import Config, build_config, parse_size, read_config_file
from ramburst.errors import UsageError
from ramburst.plan import pg_count, plan_cluster


@pytest.mark.parametrize("text,expected", [
    ("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29), ("1073741824", 2**30),
    ("4g", 4 * 2**30), ("100 MB", 100 * 2**20), (2**30, 2**30),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "2X", "-1G", "", "0", "G"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_defaults_are_valid():
    c = build_config()
    assert (c.name, c.size, c.osds, c.replicas, c.pool, c.interface, c.device, c.services) == \
        ("default", 2 * 2**30, 1, 1, "ramburst", "lo", "file", ("pool",))
    assert c.instance_dir.name == "default"


def test_flags_override_toml(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('name = "job"\nsize = "3G"\nosds = 3\n')
    c = build_config(f, osds=2)
    assert (c.name, c.size, c.osds) == ("job", 3 * 2**30, 2)


def test_toml_ramburst_table_and_dashes(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('[ramburst]\nstate-dir = "/tmp/x"\nservice = ["pool"]\n')
    c = build_config(f)
    assert c.state_dir == Path("/tmp/x") and c.services == ("pool",)


@pytest.mark.parametrize("body,message", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('osds = "many"\n', "osds must be a whole number"),
    ('size = "huge"\n', "is not a size"),
    ('name = "a b"\n', "name 'a b'"),
    ('device = "floppy"\n', "device 'floppy'"),
    ('service = ["pool", "nfs"]\n', "service 'nfs'"),
    ('osds = 0\n', "osds must be at least 1"),
    ('size = "100M"\n', "each OSD needs at least"),
    ('name = \n', "not valid TOML"),
    ('checksums = "maybe"\n', "checksums must be true or false"),
])
def test_toml_errors_name_the_problem(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(UsageError, match=message):
        build_config(f)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_config(tmp_path / "nope.toml")


DISTRAX = """[setup]
backend = ceph
folder = my_ceph
interface = lo
number_of_hosts = 1
service = {service}

[ram]
type = brd
number = {number}
size_in_gb = {size}
"""


def test_distrax_config_is_mapped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "distrax.cfg"
    f.write_text(DISTRAX.format(service="pool", number=2, size=1))
    c = build_config(f)
    assert c.state_dir == tmp_path / "my_ceph"
    assert (c.interface, c.hosts, c.services, c.osds, c.size, c.device, c.pool) == \
        ("lo", 1, ("pool",), 2, 2 * 2**30, "file", "distrax")
    assert any("brd" in n for n in c.notes)


@pytest.mark.parametrize("service,expected", [("gateway", "s3"), ("filesystem", "fs"), ("pool", "pool")])
def test_distrax_services(tmp_path, service, expected):
    f = tmp_path / "d.cfg"
    f.write_text(DISTRAX.format(service=service, number=1, size=1))
    assert read_config_file(f)["services"] == (expected,)


@pytest.mark.parametrize("old,new,message", [
    ("backend = ceph", "backend = beegfs", "backend = 'beegfs' cannot be mapped"),
    ("type = brd", "type = gram", "type = 'gram' cannot be mapped"),
    ("number_of_hosts = 1", "number_of_hosts = two", "number_of_hosts"),
    ("service = pool", "service = nfs", "service = 'nfs' cannot be mapped"),
    ("[ram]", "[ram]\ncolour = red", "unknown key 'colour' in \\[ram\\]"),
    ("[ram]", "[disk]", "unknown section \\[disk\\]"),
])
def test_distrax_errors_name_the_key(tmp_path, old, new, message):
    f = tmp_path / "d.cfg"
    f.write_text(DISTRAX.format(service="pool", number=1, size=1).replace(old, new))
    with pytest.raises(UsageError, match=message):
        build_config(f)


def test_plan_single_host():
    c = build_config(osds=3, replicas=2)
    plan = plan_cluster(c, ["127.0.0.1"], "f" * 8, 40000)
    assert [d.name for d in plan.hosts[0].daemons] == ["mon.a", "mgr.x", "osd.0", "osd.1", "osd.2"]
    assert plan.failure_domain == "osd" and plan.mon_host == "[v2:127.0.0.1:40000]"
    assert plan.osd_bytes == c.size // 3


def test_plan_many_hosts_spreads_osds_and_copies():
    c = build_config(osds=2, replicas=3)
    plan = plan_cluster(c, ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "f", 1)
    assert [len(h.of_kind("osd")) for h in plan.hosts] == [2, 2, 2]
    assert [d.id for d in plan.osds] == ["0", "1", "2", "3", "4", "5"]
    assert plan.failure_domain == "host"
    assert len({h.ram_dir for h in plan.hosts}) == 3


@pytest.mark.parametrize("osds,replicas,addresses", [(1, 2, 1), (2, 3, 1), (4, 3, 2)])
def test_plan_refuses_more_copies_than_places(osds, replicas, addresses):
    c = build_config(osds=osds, replicas=replicas, size="4G")
    with pytest.raises(UsageError, match="replicas"):
        plan_cluster(c, [f"10.0.0.{i}" for i in range(addresses)], "f", 1)


def test_plan_checks_distrax_host_count():
    c = Config(hosts=2).validate()
    with pytest.raises(UsageError, match="asks for 2 hosts but 1 is taking part"):
        plan_cluster(c, ["127.0.0.1"], "f", 1)


def test_pg_count_is_power_of_two():
    for osds in range(1, 20):
        for r in (1, 2, 3):
            n = pg_count(osds, r)
            assert n >= 8 and n & (n - 1) == 0


def test_secret_is_a_cephx_key():
    a, b = keys.new_secret(), keys.new_secret()
    assert a != b
    raw = base64.b64decode(a)
    kind, _, _, length = struct.unpack("<HIIH", raw[:12])
    assert (kind, length, len(raw)) == (1, 16, 28)


def test_keyring_has_caps():
    text = keys.render_keyring({"osd.3": "S"})
    assert "[osd.3]" in text and "key = S" in text and 'caps mon = "allow profile osd"' in text


def test_private_file_mode(tmp_path):
    p = tmp_path / "k"
    keys.write_private(p, "secret")
    assert p.stat().st_mode & 0o777 == 0o600


def test_conf_keeps_everything_inside_the_instance(tmp_path):
    c = build_config(state_dir=str(tmp_path / "st"), osds=2, device="memstore")
    plan = plan_cluster(c, ["127.0.0.1"], "fsid-1", 41234)
    text = render_conf(plan, Layout(plan))
    assert "fsid = fsid-1" in text and "mon host = [v2:127.0.0.1:41234]" in text
    assert "auth cluster required = cephx" in text
    assert "osd objectstore = memstore" in text
    for line in text.splitlines():
        if any(k in line for k in ("data =", "log file =", "run dir =", "keyring =")) and "/dev/null" not in line:
            value = line.split("=", 1)[1].strip()
            assert value.startswith(str(tmp_path)) or value.startswith("/dev/shm/ramburst-"), line


@pytest.mark.parametrize("value,expected", [("true", True), ("false", False), ('"yes"', True), ('"off"', False)])
def test_checksums_option(tmp_path, value, expected):
    f = tmp_path / "c.toml"
    f.write_text(f"checksums = {value}\n")
    assert build_config(f).checksums is expected
    assert build_config().checksums is False  # the RAM default (docs/tuning.md)


@pytest.mark.parametrize("checksums,csum,skip", [(False, "none", "true"), (True, "crc32c", "false")])
def test_conf_checksum_settings(tmp_path, checksums, csum, skip):
    c = build_config(state_dir=str(tmp_path / "st"), checksums=checksums)
    plan = plan_cluster(c, ["127.0.0.1"], "fsid-1", 41234)
    osd = render_conf(plan, Layout(plan)).split("[osd]\n", 1)[1].split("\n\n", 1)[0]
    assert f"bluestore csum type = {csum}" in osd and f"osd skip data digest = {skip}" in osd
    assert "bluestore max blob size = 1048576" in osd  # 4 writes per 4 MiB object, not 64
    glob = render_conf(plan, Layout(plan)).split("[global]\n", 1)[1].split("\n\n", 1)[0]
    assert "debug osd = 0/0" in glob and "debug client = 0/0" in glob and "debug rgw = 0/0" in glob


def test_daemon_malloc_tunables(monkeypatch):
    from ramburst.ceph.daemon import MALLOC_TUNABLES, daemon_env

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert daemon_env()["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    assert "GLIBC_TUNABLES" not in daemon_env(tuned=False)
    # A user's own tunables come last, so they override ours.
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=8")
    assert daemon_env()["GLIBC_TUNABLES"] == MALLOC_TUNABLES + ":glibc.malloc.arena_max=8"
