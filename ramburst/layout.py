"""Every path inside an instance's state folder, in one place (the RAM folders are the plan's).

    ceph.conf  instance.json  keys/<entity>.keyring  keys/initial.keyring (until `up` ends)
    log/<daemon>.log  run/ (heartbeats)  run/stage.json (progress of a running stage-in/out)
    hosts/<label>.json  s3/credentials  s3/s3cfg
and beside the folder, <state>.failed.log: the logs of a rolled-back `up`. Admin sockets
live in each host's RAM folder (Layout.asok).
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
        self.stage_progress = self.run / "stage.json"   # written by stage, read by status/dashboard

    @classmethod
    def of_conf(cls, conf: Path) -> Layout:
        """For code that has only the ceph.conf path (it sits at the top of the state folder)."""
        return cls(Path(conf).parent)

    def fs_clients(self, host_label: str) -> Path:
        """Notes of the in-process CephFS clients mounted on a host (ceph/libcephfs.py)."""
        return self.run / "fs-clients" / host_label

    def keyring(self, entity: str) -> Path:
        return self.keys / f"{entity}.keyring"

    def log(self, daemon_name: str) -> Path:
        return self.logs / f"{daemon_name}.log"

    @staticmethod
    def asok(ram_dir: Path | str, daemon_name: str) -> Path:
        """A daemon's admin socket: in its host's RAM folder, not in the state folder. A UNIX
        socket path has at most 107 bytes; a state folder deep in a home or a job's temp folder
        made Ceph skip the socket (and the watchdog and `status` then saw a silent daemon). The
        RAM folder's path is short, private (0700) and per host."""
        return Path(ram_dir) / f"{daemon_name}.asok"

    def host_record(self, label: str) -> Path:
        return self.hosts / f"{label}.json"
