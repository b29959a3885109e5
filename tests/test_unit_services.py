"""Service units against the seam they are given: the HostContext protocol (no daemons)."""
from __future__ import annotations

import ast
from contextlib import ExitStack
from pathlib import Path

import pytest
from test_unit_records import make_plan

import ramburst.services
from ramburst.progress import Steps
from ramburst.services import REGISTRY, HostContext
from ramburst.services.base import Service

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
