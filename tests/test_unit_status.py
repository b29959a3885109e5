"""`status` and `env` from canned records: text rendering, capacity states, client variables (no daemons)."""
from __future__ import annotations

import pytest

from ramburst.instance import InstanceState
from ramburst.services.s3 import S3Credentials, write_credentials
from ramburst.status import NotUp, capacity, environment, is_up, render_text

GiB = 2**30


def report(**changes) -> dict:
    base = {
        "name": "t1", "state": "up", "fsid": "f-1", "state_dir": "/s", "mon_host": "v2:127.0.0.1:40001",
        "pool": "ramburst", "services": ["pool", "s3"], "device": "file", "replicas": 1, "checksums": True,
        "endpoints": {"pool": "ramburst", "s3": "http://127.0.0.1:40002"},
        "daemons": [{"name": "mon.a", "host": "h0", "address": "127.0.0.1", "pid": 11, "state": "running",
                     "reason": "answers"}],
        "health": "HEALTH_OK", "checks": {}, "osds": {"total": 1, "up": 1, "in": 1}, "error": None,
        "problems": [],
        "capacity": {"usable_bytes": GiB, "used_bytes": GiB // 4, "avail_bytes": 3 * GiB // 4,
                     "raw_bytes": 2 * GiB, "state": "ok", "objects_bytes": GiB // 8,
                     "metadata_bytes": GiB // 8, "over_bytes": 0},
    }
    base.update(changes)
    return base


def test_render_text_full_report():
    text = render_text(report())
    assert text.splitlines()[0] == "instance  t1  (up, fsid f-1)"
    assert "health    HEALTH_OK" in text
    assert "capacity  256.0 MiB used of 1.0 GiB (25%), 768.0 MiB available" in text
    assert "          used = 128.0 MiB of objects (all copies) + 128.0 MiB of BlueStore's own metadata" in text
    assert "  pool    pool ramburst" in text
    assert "  s3      S3 endpoint http://127.0.0.1:40002" in text
    assert "services  (1 copy, device file, checksums on)" in text
    assert "osds      1 up, 1 in, of 1" in text
    assert "FULL" not in text and "not working" not in text
    assert is_up(report())


def test_render_text_full_store_and_a_dead_daemon():
    dead = {"name": "osd.0", "host": "h0", "address": "127.0.0.1", "pid": 12, "state": "dead",
            "reason": "process 12 is gone (killed, crashed or exited)"}
    cap = dict(report()["capacity"], state="full", used_bytes=GiB + GiB // 8, over_bytes=GiB // 8)
    r = report(problems=["osd.0 dead: process 12 is gone (killed, crashed or exited)"],
               daemons=report()["daemons"] + [dead], capacity=cap, checksums=False, replicas=2,
               checks={"OSD_FULL": "1 full osd(s)"})
    text = render_text(r)
    assert "daemons   1 not working (status exits 1)" in text
    assert "          osd.0 dead: process 12 is gone" in text
    assert "          OSD_FULL: 1 full osd(s)" in text
    assert "FULL: writes are refused" in text and "past the full mark" in text
    assert "services  (2 copies, device file, no checksums)" in text
    assert "(process 12 is gone (killed, crashed or exited))" in text
    assert not is_up(r)


def test_render_text_unreachable_and_nearfull():
    text = render_text(report(health=None, error="the monitor is not running or not answering", capacity=None))
    assert "health    unreachable: the monitor is not running or not answering" in text
    assert "capacity" not in text
    cap = dict(report()["capacity"], state="nearfull")
    assert "NEAR FULL: writes will be refused soon" in render_text(report(capacity=cap))
    assert "(not reported yet" in render_text(report(capacity=None))


@pytest.mark.parametrize("checks,state", [({}, "ok"), ({"OSD_NEARFULL": "x"}, "nearfull"),
                                          ({"POOL_NEARFULL": "x"}, "nearfull"), ({"OSD_FULL": "x"}, "full"),
                                          ({"POOL_FULL": "x"}, "full"), ({"OSD_BACKFILLFULL": "x"}, "full")])
def test_capacity_states(checks, state):
    stats = {"total_bytes": 2 * GiB, "total_used_raw_bytes": GiB}
    cap = capacity(stats, {"full_ratio": 0.5}, checks, [{"stats": {"bytes_used": GiB // 2}}])
    assert cap["state"] == state
    assert cap["usable_bytes"] == GiB and cap["avail_bytes"] == 0
    assert cap["objects_bytes"] == GiB // 2 and cap["metadata_bytes"] == GiB // 2


def write_instance(tmp_path, **meta_changes):
    state = InstanceState(tmp_path / "state")
    (state.dir / "hosts").mkdir(parents=True)
    meta = {"name": "t1", "fsid": "f", "state": "up", "pool": "ramburst", "services": ["pool"],
            "mon_host": "v2:127.0.0.1:40001", "device": "file", "checksums": True, "replicas": 1,
            "hosts": ["h0"], "osds": 1, "osd_bytes": GiB, "mount": None, "s3_endpoint": None,
            "conf": str(state.dir / "ceph.conf"), "up_pid": 1, "created": 0.0}
    meta.update(meta_changes)
    state.write_meta(meta)
    return state


def test_environment_pool_only(tmp_path):
    state = write_instance(tmp_path)
    assert environment(state.dir) == {
        "CEPH_CONF": str(state.dir / "ceph.conf"), "CEPH_KEYRING": str(state.dir / "keys/client.admin.keyring"),
        "RAMBURST_NAME": "t1", "RAMBURST_STATE_DIR": str(state.dir), "RAMBURST_MON_HOST": "v2:127.0.0.1:40001",
        "RAMBURST_POOL": "ramburst"}


def test_environment_with_s3_and_fs(tmp_path):
    state = write_instance(tmp_path, services=["s3", "fs"], mount=str(tmp_path / "m-{host}"),
                           s3_endpoint="http://127.0.0.1:40002")
    creds = write_credentials(state.dir / "s3", S3Credentials("http://127.0.0.1:40002", "AK", "SK"))
    env = environment(state.dir)
    assert "RAMBURST_POOL" not in env
    assert env["RAMBURST_MOUNT"] == str(tmp_path / "m-h0")  # {host}: this machine's label, h0 by default
    assert env["AWS_ACCESS_KEY_ID"] == "AK" and env["AWS_SECRET_ACCESS_KEY"] == "SK"
    assert env["AWS_ENDPOINT_URL"] == env["RAMBURST_S3_ENDPOINT"] == "http://127.0.0.1:40002"
    assert env["RAMBURST_S3_CREDENTIALS"] == str(creds)
    assert env["S3CMD_CONFIG"] == str(creds.with_name("s3cfg"))


def test_environment_of_no_instance(tmp_path):
    with pytest.raises(NotUp):
        environment(tmp_path / "nothing")


def test_status_reads_a_record_without_checksums_as_on(tmp_path):
    """Records written before the option existed had Ceph's default: checksums on."""
    from ramburst.status import collect

    state = write_instance(tmp_path)
    meta = {k: v for k, v in state.meta().items() if k not in ("format", "checksums")}
    state.write_meta(meta)
    assert "checksums" not in state.meta()
    assert collect(state.dir, timeout=0.5)["checksums"] is True
