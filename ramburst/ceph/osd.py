"""An object storage daemon whose store lives in RAM (a tmpfs file or memstore)."""
from __future__ import annotations

import uuid
from pathlib import Path

from .daemon import Daemon


class OsdDaemon(Daemon):
    kind = "osd"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.uuid = str(uuid.uuid4())

    def mkfs(self, data_dir: Path) -> None:
        """Make the object store without asking the mon, so it runs while the mon starts.

        bdev_aio_poll_ms=5 only for mkfs: BlueStore opens and closes its block file four
        times, each close waiting out one aio poll (250 ms by default).
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        self.run_tool(self.base_args() + ["--mkfs", "--no-mon-config", "--osd-uuid", self.uuid,
                                          "--bdev_aio_poll_ms=5"], "ceph-osd --mkfs")
