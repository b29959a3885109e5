"""Service units against the seam they are given: the HostContext protocol (no daemons)."""
from __future__ import annotations

import ast
from contextlib import ExitStack
from pathlib import Path

import pytest

import ramburst.services
from ramburst.progress import Steps
from ramburst.services import REGISTRY, DaemonWant, HostContext
from ramburst.services.base import Service

from helpers import make_plan

SERVICES_DIR = Path(ramburst.services.__file__).parent
HOOKS = ("prepare_host", "create", "start", "ready", "attach_host")


def protocol_members() -> set[str]:
    hints = set(HostContext.__annotations__)
    methods = {n for n, v in vars(HostContext).items() if callable(v) and not n.startswith("_")}
    return hints | methods


def hook_uses() -> dict[str, set[str]]:
    """file:function -> the attributes a hook reads of its `host` parameter."""
    uses = {}
    for path in sorted(SERVICES_DIR.glob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params = {a.arg for a in fn.args.args if isinstance(a.annotation, ast.Name)
                      and a.annotation.id == "HostContext"}
            if fn.name in HOOKS and path.name != "base.py":
                assert params == {"host"}, f"{path.name}:{fn.name} takes its host untyped (not a HostContext)"
            attrs = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)
                     and isinstance(n.value, ast.Name) and n.value.id in params}
            if params:
                uses[f"{path.name}:{fn.name}"] = attrs
    return uses


def test_item1_hooks_are_typed_against_host_context_and_use_only_it():
    members = protocol_members()
    uses = hook_uses()
    assert {k.split(":")[1] for k in uses} >= {"prepare_host", "create", "start", "ready", "attach_host"}
    beyond = {where: sorted(attrs - members) for where, attrs in uses.items() if attrs - members}
    assert not beyond, f"hooks use what HostContext does not offer: {beyond}"


def test_item1_services_never_import_lifecycle():
    for path in SERVICES_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "lifecycle" not in (node.module or ""), f"{path.name} imports {node.module}"


def test_item1_deployment_implements_host_context(tmp_path):
    from ramburst.lifecycle.deployment import Deployment

    plan = make_plan(tmp_path, services=("pool", "s3", "fs"), mount=str(tmp_path / "m"))
    binaries = {k: f"/bin/{k}" for k in ("mon", "mgr", "osd", "mds", "rgw", "rgw-admin", "fuse")}
    with ExitStack() as undo:
        dep = Deployment(plan, "h0", binaries, Steps(False), undo)
        assert isinstance(dep, HostContext)
        missing = [m for m in protocol_members() if not hasattr(dep, m)]
        assert not missing
        assert [d.name for d in dep.of_kind("fuse")] == ["fuse.h0"]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_unit_is_a_service_with_a_name(name):
    unit = REGISTRY[name]()
    assert isinstance(unit, Service) and unit.name == name


# The layout plan_cluster made before the units declared their daemons (pool+s3+fs, 2 OSDs a host).
BEFORE_UNITS = [["mon.a", "mgr.x", "mds.a", "rgw.h0", "osd.0", "osd.1", "fuse.h0"], ["osd.2", "osd.3", "fuse.h1"]]


def test_item2_plan_lays_out_the_units_daemons_as_before(tmp_path):
    plan = make_plan(tmp_path, services=("pool", "s3", "fs"), hosts=("127.0.0.1", "127.0.0.2"), osds=2,
                     replicas=2, mount=str(tmp_path / "m{host}"))
    assert [[d.name for d in h.daemons] for h in plan.hosts] == BEFORE_UNITS
    assert [d.entity for d in plan.hosts[0].daemons if d.kind in ("rgw", "fuse")] == ["client.rgw.h0", "client.admin"]
    assert plan.rgw_port == 40002
    pool_only = make_plan(tmp_path, services=("pool", "metrics"), hosts=("127.0.0.1", "127.0.0.2"), osds=2)
    assert [[d.name for d in h.daemons] for h in pool_only.hosts] == [["mon.a", "mgr.x", "osd.0", "osd.1"],
                                                                       ["osd.2", "osd.3"]]
    assert pool_only.rgw_port is None


def test_item2_primary_daemons_keep_their_order_whatever_the_units_order(tmp_path):
    """ceph.conf sections and start order stay as before: the MDS before radosgw."""
    from ramburst.config import build_config
    from ramburst.plan import plan_cluster

    config = build_config(size="1G", state_dir=str(tmp_path / "s"))
    wants = (DaemonWant("echo", every_host=True), DaemonWant("rgw"), DaemonWant("mds", ident="a"),
             DaemonWant("extra", ident="one"))
    plan = plan_cluster(config, ["127.0.0.1", "127.0.0.2"], "f", 1, 2, wants=wants)
    assert [[d.name for d in h.daemons] for h in plan.hosts] == [
        ["mon.a", "mgr.x", "mds.a", "rgw.h0", "extra.one", "osd.0", "echo.h0"], ["osd.1", "echo.h1"]]


def test_item2_a_unit_declares_its_daemons_and_the_plan_knows_no_service_name():
    source = (SERVICES_DIR.parent / "plan.py").read_text()
    for name in REGISTRY:
        assert f'"{name}"' not in source, f"plan.py names the service {name!r}"
    assert {w.kind for cls in REGISTRY.values() for w in cls.daemons} == {"rgw", "mds", "fuse"}


@pytest.mark.parametrize("services,shares", [(("pool",), ()), (("pool", "metrics"), ()), (("s3",), ("s3",)),
                                             (("pool", "fs"), ("pool", "fs")),
                                             (("pool", "s3", "fs"), ("pool", "s3", "fs"))])
def test_item2_quota_shares_from_the_units(tmp_path, services, shares):
    """As before the units: s3 and fs each hold a share, the pool one only beside them."""
    from ramburst.services import quota_shares

    assert quota_shares(services) == shares
    plan = make_plan(tmp_path, services=services, **({"mount": str(tmp_path / "m")} if "fs" in services else {}))
    assert plan.has_quota("pool") is ("pool" in shares)
    assert plan.service_quota_bytes == int(0.9 * plan.usable_bytes / max(1, len(shares)))
