"""The metadata server: serves the CephFS namespace. One per instance, on the first host."""
from __future__ import annotations

from pathlib import Path

from .daemon import Daemon


class MdsDaemon(Daemon):
    kind = "mds"

    def prepare(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
