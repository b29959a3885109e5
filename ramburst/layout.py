"""Every path inside an instance's state folder, in one place (the RAM folders are the plan's).

    ceph.conf  instance.json  keys/<entity>.keyring  keys/initial.keyring (until `up` ends)
    log/<daemon>.log  run/<daemon>.asok  hosts/<label>.json  s3/credentials  s3/s3cfg
and beside the folder, <state>.failed.log: the logs of a rolled-back `up`.
"""
from __future__ import annotations

from pathlib import Path


class Layout:
    def __init__(self, state_dir: Path):
        self.state = Path(state_dir)
        self.conf = self.state / "ceph.conf"
        self.instance_file = self.state / "instance.json"
        self.keys = self.state / "keys"
        self.logs = self.state / "log"
        self.run = self.state / "run"
        self.hosts = self.state / "hosts"
        self.s3 = self.state / "s3"
        self.credentials = self.s3 / "credentials"
        self.initial_keyring = self.keys / "initial.keyring"
        self.failure_log = self.state.with_name(self.state.name + ".failed.log")

    @classmethod
    def of_conf(cls, conf: Path) -> Layout:
        """For code that has only the ceph.conf path (it sits at the top of the state folder)."""
        return cls(Path(conf).parent)

    def keyring(self, entity: str) -> Path:
        return self.keys / f"{entity}.keyring"

    def log(self, daemon_name: str) -> Path:
        return self.logs / f"{daemon_name}.log"

    def asok(self, daemon_name: str) -> Path:
        return self.run / f"{daemon_name}.asok"

    def host_record(self, label: str) -> Path:
        return self.hosts / f"{label}.json"
