"""The records `up` writes and `status`/`env`/`down` read: keys pinned, round trips (no daemons)."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from ramburst.instance import FORMAT, HostRecord, InstanceState
from ramburst.process import ProcessRecord
from ramburst.progress import Steps

from helpers import make_plan

# The keys of instance.json as of issue 12 (status, env, attach and dashboards read them).
INSTANCE_KEYS = {"name", "fsid", "state", "pool", "services", "mon_host", "device", "checksums", "replicas",
                 "hosts", "osds", "osd_bytes", "mount", "s3_endpoint", "conf", "up_pid", "created",
                 "endpoints"}  # endpoints: added with the service units (where each service is)


def instance_meta(plan, state: str) -> dict:
    from ramburst.lifecycle.deployment import Deployment

    binaries = {k: f"/bin/{k}" for k in ("mon", "mgr", "osd", "mds", "rgw", "rgw-admin", "fuse")}
    with ExitStack() as undo:
        return Deployment(plan, "h0", binaries, Steps(False), undo).meta(state)


def test_instance_record_keys_and_round_trip(tmp_path):
    plan = make_plan(tmp_path, services=("pool", "s3", "fs"), mount=str(tmp_path / "m"))
    meta = instance_meta(plan, "up")
    assert set(meta) == INSTANCE_KEYS
    assert meta["s3_endpoint"] == "http://127.0.0.1:40002"
    assert meta["services"] == ["pool", "s3", "fs"] and meta["hosts"] == ["h0"]
    state = InstanceState(tmp_path / "state")
    state.dir.mkdir()
    state.write_meta(meta)
    back = state.meta()
    assert back == {"format": FORMAT, **meta}
    assert state.not_instance_reason() is None


def test_instance_record_without_services(tmp_path):
    meta = instance_meta(make_plan(tmp_path), "deploying")
    assert meta["state"] == "deploying" and meta["s3_endpoint"] is None and meta["mount"] is None


def test_host_record_round_trip(tmp_path):
    rec = HostRecord(tmp_path / "h0.json", "h0", "127.0.0.1", str(tmp_path / "ram"))
    rec.add_process(ProcessRecord("mon.a", 1234, 1700000000.5, "/usr/bin/ceph-mon", "/x/ceph.conf"))
    rec.add_mount(str(tmp_path / "m"), [str(tmp_path / "m")])
    back = HostRecord.load(tmp_path / "h0.json")
    assert back == rec
    assert HostRecord.load(tmp_path / "missing.json") is None


def test_failure_log_sits_beside_the_state_folder(tmp_path):
    from ramburst.files import failure_log_path

    assert failure_log_path(Path("/a/b/inst")) == Path("/a/b/inst.failed.log")


def test_layout_owns_every_path(tmp_path):
    from ramburst.layout import Layout

    lay = Layout(tmp_path / "inst")
    inside = [lay.conf, lay.instance_file, lay.keys, lay.logs, lay.run, lay.hosts, lay.s3, lay.credentials,
              lay.initial_keyring, lay.keyring("client.admin"), lay.log("mon.a"), lay.host_record("h0")]
    assert all(p.is_relative_to(lay.state) for p in inside)
    assert lay.failure_log == tmp_path / "inst.failed.log"  # beside, so it outlives the folder
    # Admin sockets in the host's (short) RAM folder: a socket path has at most 107 bytes.
    assert Layout.asok("/dev/shm/r-0-x", "osd.0") == Path("/dev/shm/r-0-x/osd.0.asok")
    assert Layout.of_conf(lay.conf).keyring("client.admin") == tmp_path / "inst/keys/client.admin.keyring"


def test_instance_model_round_trip(tmp_path):
    from ramburst.model import Instance

    plan = make_plan(tmp_path, services=("pool", "s3", "fs"), mount=str(tmp_path / "m"))
    data = instance_meta(plan, "up")
    inst = Instance.from_json({"format": FORMAT, **data})
    assert inst.to_json() == data  # exactly the record's keys and values
    assert Instance.from_json(inst.to_json()) == inst
    assert inst.services == ("pool", "s3", "fs") and inst.s3_endpoint == "http://127.0.0.1:40002"


def test_record_without_checksums_or_endpoints_reads_as_before(tmp_path):
    """Records written before the checksums option had Ceph's default then: checksums on.
    Records written before the service units have no "endpoints": none of their services put one there."""
    from ramburst.model import Instance

    data = instance_meta(make_plan(tmp_path), "up")
    del data["checksums"], data["endpoints"]
    inst = Instance.from_json(data)
    assert inst.checksums is True and dict(inst.endpoints) == {}
