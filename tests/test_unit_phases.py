"""`up` as phases and service units: the step lists, the registry, the memory promise (no daemons)."""
from __future__ import annotations

import pytest

from ramburst.config import SERVICES, build_config
from ramburst.lifecycle.admission import daemon_counts, memory_promise
from ramburst.lifecycle.deployment import Role, role_of
from ramburst.lifecycle.phases import PHASES, step_names
from ramburst.services import REGISTRY, selected

# The literal lists the rollback tests kept by hand before issue 12 (watchdog-start from h/c).
POOL_STEPS = ["state-dir", "keys", "ram-dir", "mon-mkfs", "osd-mkfs", "mon-start", "mgr-start", "mon-ready",
              "osd-register", "osd-start", "watchdog-start", "pool-create", "osd-up", "pool-verify"]
SERVICE_STEPS = ["mountpoint", "fs-create", "mds-start", "rgw-start", "rgw-ready", "s3-user", "s3-ready",
                 "mds-ready", "fs-root", "fs-mount"]


def test_step_names_match_the_lists_kept_by_hand():
    assert step_names(("pool",)) == POOL_STEPS
    everything = step_names(("pool", "s3", "fs"))
    assert [s for s in everything if s not in POOL_STEPS] == SERVICE_STEPS
    assert len(everything) == len(set(everything))  # a step name names one step


def test_phase_names_are_todays_agree_texts():
    """multihost tests and users read "<phase> failed on rank N: ..."."""
    assert [p.name for p in PHASES] == ["state folder", "RAM folder", "monitor and OSD stores", "OSD registration",
                                        "OSD start", "services", "fs mount", "finish"]
    assert [p.name for p in PHASES if p.gather] == ["monitor and OSD stores"]


def test_roles():
    assert role_of(0) is Role.PRIMARY and role_of(1) is Role.MEMBER and role_of(7) is Role.MEMBER


def test_registry_matches_config_vocabulary():
    assert set(REGISTRY) == set(SERVICES)
    assert [u.name for u in selected(("fs", "pool"))] == ["pool", "fs"]  # registry order, not the caller's


@pytest.mark.parametrize("services,promise", [(("pool",), 3154116608), (("pool", "s3", "fs"), 3556769792)])
def test_memory_promise_unchanged(services, promise):
    """Figures measured before the service units (admission reads them from RAM folder names)."""
    assert memory_promise(build_config(size="1G", services=services)) == promise


def test_daemon_counts_from_units():
    assert daemon_counts(build_config(size="1G", services=("pool", "s3", "fs"), osds=2)) == {
        "mon": 1, "mgr": 1, "osd": 2, "rgw": 1, "mds": 1, "fuse": 1}
