"""Files and folders of an instance: private folders, removal that never follows a symlink,
and the failure log kept beside a state folder that was rolled back."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from .layout import Layout


def failure_log_path(state_dir: Path) -> Path:
    return Layout(state_dir).failure_log


def save_failure_log(state_dir: Path) -> Path | None:
    """Gather the daemon logs into one file beside the state folder before it is removed.

    Written to a fresh 0600 temporary file, then renamed over the predictable name: a
    symlink planted there is replaced, never followed; where the rename is not allowed
    (someone else's file in a sticky folder) there is no log rather than a wrong one."""
    folder = Layout(state_dir).logs
    logs = sorted(folder.glob("*")) if folder.is_dir() else []
    if not logs:
        return None
    dest = failure_log_path(state_dir)
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w") as out:
            for p in logs:
                out.write(f"===== {p.name} =====\n")
                out.write(p.read_text(errors="replace")[-200_000:])
                out.write("\n")
        os.replace(tmp, dest)
    except OSError:
        os.unlink(tmp)
        return None
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def owned_folder(path: Path) -> bool:
    """A real folder (not a symlink) of this user."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def remove_ram_dir(path: Path) -> None:
    """Remove a RAM folder `up` made: only a real folder of ours named like one, never
    through a symlink (rmtree itself does not follow symlinks inside)."""
    path = Path(path)
    prefix = f"ramburst-{os.getuid()}-"
    if path.name.startswith(prefix) and owned_folder(path):
        remove_tree(path)
    elif path.parent.name.startswith(prefix) and owned_folder(path.parent) and owned_folder(path):
        remove_tree_and_empty_parent(path)  # the layout before per-host folders: root/h0


def make_private_folders(folder: Path) -> None:
    """mkdir -p with every folder it makes 0700 whatever the umask (the state root holds
    every instance's keys)."""
    missing = []
    p = Path(folder)
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


def remove_folders(made: list[str]) -> None:
    """Remove folders `up` created (innermost first), only while they are empty."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:
            break


def remove_tree_and_empty_parent(path: Path) -> None:
    remove_tree(path)
    try:
        path.parent.rmdir()
    except OSError:
        pass
