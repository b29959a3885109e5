"""Typed, validated configuration: defaults < config file (TOML or DisTRaX INI) < flags.

Everything here is pure: it reads files and the host's interfaces and memory, but
creates nothing, so a bad input is reported before anything exists.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on older Pythons
    import tomli as tomllib

SERVICES = ("pool", "s3", "fs", "metrics")
DEVICES = ("file", "memstore")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # always fullmatch: `$` lets a newline in
POOL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Characters ceph.conf cannot carry in a path value: `#` and `;` start a comment (quoting does
# not help, Pacific's parser then fails), `\` escapes, `$` expands a metavariable, `"` quotes,
# control characters (newline) end the line.
CONF_UNSAFE_RE = re.compile(r'[#;\\$"\x00-\x1f\x7f]')
# ceph-fuse (16.2.15) remounts to trim dentries with system("mount -i -o remount " + path),
# unquoted: a space split the path (ceph-fuse aborted after 6 s), `;` or `$(...)` would run.
MOUNT_UNSAFE_RE = re.compile(r"[^A-Za-z0-9/._+,@:%=~-]")
MIN_OSD_BYTES = 512 * 2**20

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int) -> int:
    """'2G', '512M', '1.5GiB', '1073741824' -> bytes (binary units, as RAM is sold)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTB]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise UsageError(f"size {text!r} is not a size (use e.g. 2G, 512M, 1.5GiB)")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return value


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def check_name(name: str) -> str:
    """Every command checks --name: it becomes a folder name, so no path, no `.`/`..`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UsageError(f"name {name!r} must be 1-32 letters, digits, '-' or '_'")
    return name


def check_conf_path(what: str, path: Path | str) -> None:
    """Refuse a path that the generated ceph.conf (or ceph-fuse) could not carry intact."""
    bad = CONF_UNSAFE_RE.search(str(path))
    if bad:
        raise UsageError(f"{what} {str(path)!r} has {bad.group()!r}, which ceph.conf cannot carry in a path")


def default_state_root() -> Path:
    """$XDG_STATE_HOME/ramburst; a relative XDG_STATE_HOME is ignored, as the XDG spec says."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "ramburst"


@dataclass(frozen=True)
class Config:
    """What a user asked for. Sizes are bytes; `size` is RAM per host for all its OSDs."""

    name: str = "default"
    size: int = 2 * 2**30
    osds: int = 1
    replicas: int = 1
    pool: str = "ramburst"
    interface: str = "lo"
    state_dir: Path | None = None
    device: str = "file"
    services: tuple[str, ...] = ("pool",)
    mount: Path | None = None
    ram_dir: Path = Path("/dev/shm")
    hosts: int | None = None  # expected host count (DisTRaX number_of_hosts); None = whatever runs
    checksums: bool = False  # BlueStore checksums and OSD data digests (docs/tuning.md)
    share_mount: bool = False  # fs mount reachable by other users (FUSE allow_other), README
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def instance_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else default_state_root() / self.name

    @property
    def mount_path(self) -> Path | None:
        """Where the fs service is mounted: --mount, or ~/ramburst/NAME."""
        if "fs" not in self.services:
            return None
        return self.mount or Path(os.path.expanduser("~")) / "ramburst" / self.name

    @property
    def osd_bytes(self) -> int:
        return self.size // self.osds

    def validate(self) -> Config:
        check_name(self.name)
        if not POOL_RE.fullmatch(self.pool):
            raise UsageError(f"pool {self.pool!r} must be 1-64 letters, digits, '.', '-' or '_'")
        if self.osds < 1:
            raise UsageError(f"osds must be at least 1, not {self.osds}")
        if self.replicas < 1:
            raise UsageError(f"replicas must be at least 1, not {self.replicas}")
        if self.osd_bytes < MIN_OSD_BYTES:
            raise UsageError(
                f"size {format_size(self.size)} gives {format_size(self.osd_bytes)} per OSD; "
                f"each OSD needs at least {format_size(MIN_OSD_BYTES)}"
            )
        if self.device not in DEVICES:
            raise UsageError(f"device {self.device!r} is not one of: {', '.join(DEVICES)}")
        unknown = [s for s in self.services if s not in SERVICES]
        if unknown or not self.services:
            raise UsageError(f"service {unknown[0] if unknown else '(none)'!r} is not one of: {', '.join(SERVICES)}")
        if self.mount is not None and "fs" not in self.services:
            raise UsageError("--mount is for the fs service: add --service fs")
        if self.share_mount and "fs" not in self.services:
            raise UsageError("--share-mount is for the fs service: add --service fs")
        if self.hosts is not None and self.hosts < 1:
            raise UsageError(f"number of hosts must be at least 1, not {self.hosts}")
        check_conf_path("state folder", self.instance_dir)
        check_conf_path("RAM folder", self.ram_dir)
        if self.mount_path is not None:
            check_conf_path("mount path", self.mount_path)
            bad = MOUNT_UNSAFE_RE.search(str(self.mount_path).replace("{host}", "h0"))
            if bad:
                raise UsageError(f"mount path {str(self.mount_path)!r} has {bad.group()!r}; ceph-fuse "
                                 "passes it unquoted to a shell (use letters, digits and /._+,@:%=~-)")
        return self


# --- reading options from files and flags -----------------------------------------

# ram_dir and hosts are internal (tests, the DisTRaX mapping); a file or flag cannot set them.
_FIELDS = {f.name for f in dataclasses.fields(Config)} - {"notes", "ram_dir", "hosts"}
_INT_FIELDS = {"osds", "replicas", "hosts"}
_PATH_FIELDS = {"state_dir", "mount", "ram_dir"}
_BOOL_FIELDS = {"checksums", "share_mount"}
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


def _coerce(key: str, value: Any, origin: str) -> Any:  # noqa: C901 - one case per option kind
    try:
        if key == "size":
            return parse_size(value)
        if key in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, str)) or \
                    not re.fullmatch(r"[0-9]+", str(value).strip()):
                raise UsageError(f"{origin}: {key} must be a whole number, not {value!r}")
            return int(value)
        if key in _BOOL_FIELDS:
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if word not in _BOOL_WORDS:
                raise UsageError(f"{origin}: {key} must be true or false, not {value!r}")
            return _BOOL_WORDS[word]
        if key in _PATH_FIELDS:
            if not isinstance(value, (str, Path)):
                raise UsageError(f"{origin}: {key} must be a path, not {value!r}")
            return Path(os.path.expanduser(str(value))).absolute()
        if key == "services":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
                raise UsageError(f"{origin}: {key} must be a service name or a list of them, not {value!r}")
            return tuple(dict.fromkeys(s.strip() for s in items))
        if not isinstance(value, str):
            raise UsageError(f"{origin}: {key} must be text, not {value!r}")
        return value
    except UsageError as e:
        msg = str(e)
        raise UsageError(msg if msg.startswith(origin) else f"{origin}: {msg}") from None


def options_from_mapping(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Check and convert {option: value}; keys may use '-' or '_', 'service' is 'services'."""
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key == "service":
            key = "services"
        if key not in _FIELDS:
            raise UsageError(f"{origin}: unknown key {raw_key!r}")
        out[key] = _coerce(key, value, origin)
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot be read: {e.strerror}") from None
    table = data.pop("ramburst", None)
    if table is not None:
        if data:
            raise UsageError(f"{path}: unknown key {next(iter(data))!r} (options go in [ramburst])")
        data = table
    return options_from_mapping(data, str(path))


_DISTRAX_SERVICES = {"pool": "pool", "gateway": "s3", "filesystem": "fs"}
_DISTRAX_RAM_TYPES = {"brd": "file", "ram": "file", "tmpfs": "file", "file": "file", "memstore": "memstore"}


def read_distrax_ini(path: Path) -> dict[str, Any]:  # noqa: C901, PLR0915 - a table of cases; wants a table
    """Map a DisTRaX config ([setup] + [ram]) onto ramburst options; refuse what cannot map."""
    parser = configparser.ConfigParser(interpolation=None)  # a '%' in a value is just a '%'
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except configparser.Error as e:
        raise UsageError(f"{path}: not a valid INI file: {e.message.splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot be read: {e.strerror}") from None
    origin = str(path)
    known = {"setup": {"backend", "folder", "interface", "number_of_hosts", "service"},
             "ram": {"type", "size_in_gb", "number"}}
    sections: dict[str, str] = {}  # DisTRaX section names, in any case -> the name in the file
    for section in parser.sections():
        if section.lower() not in known:
            raise UsageError(f"{origin}: unknown section [{section}] (DisTRaX has [setup] and [ram])")
        if section.lower() in sections:
            raise UsageError(f"{origin}: sections [{sections[section.lower()]}] and [{section}] are the same; keep one")
        sections[section.lower()] = section
        for key in parser[section]:
            if key not in known[section.lower()]:
                raise UsageError(f"{origin}: unknown key {key!r} in [{section}]")
    setup = {k: v.strip() for k, v in (parser[sections["setup"]].items() if "setup" in sections else [])}
    ram = {k: v.strip() for k, v in (parser[sections["ram"]].items() if "ram" in sections else [])}
    opts: dict[str, Any] = {"pool": "distrax"}
    notes: list[str] = []
    backend = setup.get("backend", "ceph")
    if backend.lower() != "ceph":
        raise UsageError(f"{origin}: [setup] backend = {backend!r} cannot be mapped (only 'ceph')")
    if "folder" in setup:
        opts["state_dir"] = Path(os.path.expanduser(setup["folder"])).absolute()
    if "interface" in setup:
        opts["interface"] = setup["interface"]
    if "number_of_hosts" in setup:
        opts["hosts"] = _coerce("hosts", setup["number_of_hosts"], f"{origin}: [setup] number_of_hosts")
    if "service" in setup:
        service = setup["service"].lower()
        if service not in _DISTRAX_SERVICES:
            raise UsageError(f"{origin}: [setup] service = {setup['service']!r} cannot be mapped "
                             f"(one of {', '.join(_DISTRAX_SERVICES)})")
        opts["services"] = (_DISTRAX_SERVICES[service],)
        if service == "filesystem" and os.geteuid() == 0:
            opts["mount"] = Path("/mnt/distrax")  # where DisTRaX mounts it
    if "type" in ram:
        kind = ram["type"].lower()
        if kind not in _DISTRAX_RAM_TYPES:
            raise UsageError(f"{origin}: [ram] type = {ram['type']!r} cannot be mapped "
                             f"(one of {', '.join(_DISTRAX_RAM_TYPES)})")
        opts["device"] = _DISTRAX_RAM_TYPES[kind]
        if kind == "brd":
            notes.append("[ram] type = brd: using a tmpfs file instead (no root or kernel module needed)")
    number = _coerce("osds", ram.get("number", "1"), f"{origin}: [ram] number")
    if "number" in ram:
        opts["osds"] = number
    if "size_in_gb" in ram:
        try:
            per_osd = float(ram["size_in_gb"])
        except ValueError:
            raise UsageError(f"{origin}: [ram] size_in_gb = {ram['size_in_gb']!r} is not a number") from None
        opts["size"] = parse_size(f"{per_osd * number}G")
    opts["notes"] = tuple(notes)
    return opts


def read_config_file(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    if path.suffix.lower() in (".cfg", ".ini"):
        return read_distrax_ini(path)
    if path.suffix.lower() == ".toml":
        return read_toml(path)
    head = path.read_text(errors="replace")
    if re.search(r"^\s*\[(setup|ram)\]\s*$", head, re.MULTILINE | re.IGNORECASE):
        return read_distrax_ini(path)
    return read_toml(path)


def build_config(config_file: Path | None = None, **flags: Any) -> Config:
    """Defaults, then the config file, then flags that were given (None = not given)."""
    opts: dict[str, Any] = {}
    if config_file is not None:
        opts.update(read_config_file(config_file))
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    opts.update(options_from_mapping(given, "option"))
    return Config(**opts).validate()
