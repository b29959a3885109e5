"""radosgw: the S3 endpoint (beast frontend), a client of the cluster named client.rgw.<host>."""
from __future__ import annotations

from pathlib import Path

from .daemon import Daemon


class RgwDaemon(Daemon):
    kind = "rgw"

    def base_args(self) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-n", f"client.rgw.{self.id}"]

    def prepare(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
