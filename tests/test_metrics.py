"""The metrics service (the mgr's prometheus module), scraped over HTTP from the instance's address."""
from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

import psutil
import pytest

from conftest import assert_nothing_left, cli, mon_port

pytestmark = pytest.mark.ceph


def listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_metrics_scraped_from_the_instance_address(instance_dir):
    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "metrics")
    assert r.returncode == 0, r.stderr
    env = json.loads(cli("env", "--state-dir", state, "--json").stdout)
    url = env["RAMBURST_METRICS_URL"]
    where = urlsplit(url)
    assert where.hostname == "127.0.0.1" and where.port != 9283 and where.path == "/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        body = resp.read().decode()
    assert "ceph_health_status " in body
    assert 'ceph_osd_up{ceph_daemon="osd.0"} 1.0' in body
    assert 'name="ramburst"' in body  # ceph_pool_metadata names the instance's pool
    status = cli("status", "--state-dir", state, "--json")
    report = json.loads(status.stdout)
    assert report["endpoints"]["metrics"] == url
    running = {d["name"] for d in report["daemons"] if d["state"] == "running"}
    assert "mgr.x" in running  # still the process we started after the module's restart
    port = mon_port(state)
    r = cli("down", "--state-dir", state)
    assert r.returncode == 0, r.stderr
    assert_nothing_left(name, state, port)
    assert where.port not in listening_ports()
