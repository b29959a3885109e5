"""The monitor: holds the cluster maps. One per instance, on the first host."""
from __future__ import annotations

from pathlib import Path

from .daemon import Daemon


class MonDaemon(Daemon):
    kind = "mon"

    def mkfs(self, data_dir: Path, initial_keyring: Path) -> None:
        """Create the mon store; every entity in `initial_keyring` is imported with its caps."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.run_tool(self.base_args() + ["--mkfs", "--keyring", str(initial_keyring)], "ceph-mon --mkfs")
