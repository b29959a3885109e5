"""cephx secrets and keyrings, generated in-process: fresh per deployment, mode 0600."""
from __future__ import annotations

import base64
import os
import struct
import time
from pathlib import Path

# Capabilities per entity kind, as Ceph's own deployment tools grant them.
CAPS = {
    "mon": {"mon": "allow *"},
    "client.admin": {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"},
    "mgr": {"mon": "allow profile mgr", "osd": "allow *", "mds": "allow *"},
    "osd": {"mon": "allow profile osd", "mgr": "allow profile osd", "osd": "allow *"},
    "mds": {"mon": "allow profile mds", "osd": "allow *", "mds": "allow", "mgr": "allow profile mds"},
    "client.rgw": {"mon": "allow rw", "osd": "allow rwx", "mgr": "allow rw"},
}


def new_secret() -> str:
    """A CryptoKey as ceph-authtool --gen-key encodes it: type AES, creation time, 16 random bytes."""
    now = time.time()
    raw = os.urandom(16)
    header = struct.pack("<HIIH", 1, int(now), int((now % 1) * 1e9), len(raw))
    return base64.b64encode(header + raw).decode()


def caps_for(entity: str) -> dict[str, str]:
    if entity in CAPS:
        return CAPS[entity]
    kind = entity.split(".")[0] if not entity.startswith("client.") else ".".join(entity.split(".")[:2])
    return CAPS[kind]


def render_keyring(entries: dict[str, str]) -> str:
    """entries: {entity: secret} -> keyring text with each entity's caps."""
    out = []
    for entity, secret in entries.items():
        out.append(f"[{entity}]\n\tkey = {secret}\n")
        for service, cap in caps_for(entity).items():
            out.append(f'\tcaps {service} = "{cap}"\n')
    return "".join(out)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, never briefly readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
