"""The manager: usage statistics (`status`, `df`) and the modules CephFS needs."""
from __future__ import annotations

from pathlib import Path

from .daemon import Daemon


class MgrDaemon(Daemon):
    kind = "mgr"

    def prepare(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
