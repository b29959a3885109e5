"""What is staged, as plain data: entries of a tree, work items, and the journal of what is done.

An entry is a file, a directory or a symlink, named by its path relative to the staged root.
A file is cut into extents of `extent` bytes (the last one shorter; an empty file has one empty
extent). `ident` says which version of the source an extent was copied from (size and mtime, or
an S3 ETag): a record whose ident differs from the source's is stale and copied again.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

try:
    import xxhash
except ImportError:  # the `stage` extra; stage_in/stage_out say so before doing anything
    xxhash = None

# 8 MiB, not 32: glibc maps every buffer over its mmap threshold (32 MiB at most, also in the OSDs'
# tuning) afresh, so each 32 MiB extent paid two fresh page-faulted buffers in the client (the read
# and librados's copy; 525,000 minor faults per GiB against ~0) and one in the OSD: 1 GiB into the
# pool took 1.2-2.3 s at 32 MiB and 0.6-0.9 s at 8 MiB. S3 parts must be 5 MiB or more.
EXTENT = 8 * 2**20
BATCH_FILES = 64         # small files per work item: fewer counter round trips, still fine-grained


@dataclass
class Entry:
    rel: str
    kind: str                 # "f" file, "d" directory, "l" symlink
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0o644
    link: str = ""
    ident: str = ""           # which source version; default size:mtime_ns
    src: str = ""             # where the source store reads it (absolute path or object name)

    def __post_init__(self):
        if not self.ident:
            self.ident = f"{self.size}:{self.mtime_ns}:{self.mode:o}:{self.link}"

    def extents(self, extent: int) -> int:
        return max(1, -(-self.size // extent)) if self.kind == "f" else 0

    def span(self, k: int, extent: int) -> tuple[int, int]:
        off = k * extent
        return off, max(0, min(extent, self.size - off))

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("src")
        return d


def digest(data) -> str:
    return xxhash.xxh3_64_hexdigest(data)


@dataclass
class Done:
    """What the journal says about one entry of the current source version."""
    ident: str
    hashes: dict = field(default_factory=dict)   # extent -> xxh3 of the bytes written
    tokens: dict = field(default_factory=dict)   # extent -> S3 part ETag
    upload: str = ""                             # S3 multipart upload id
    final: bool = False                          # renamed / completed under its final name


def replay(lines: list[str], done: dict[str, Done] | None = None) -> dict[str, Done]:
    """Fold journal records (JSON lines, in order) into {rel: Done}; a torn last line is skipped."""
    done = done if done is not None else {}
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        rel, ident, t = r["r"], r.get("id", ""), r["t"]
        if t == "bad":
            done.pop(rel, None)
            continue
        d = done.get(rel)
        if d is None or d.ident != ident:
            d = done[rel] = Done(ident)
        if t == "x":
            d.hashes[int(r["k"])] = r["h"]
            if r.get("tok"):
                d.tokens[int(r["k"])] = r["tok"]
        elif t == "u":
            d.upload = r["tok"]
        elif t == "f":
            d.final = True
    return done


def record(t: str, rel: str, ident: str, **extra) -> str:
    return json.dumps({"t": t, "r": rel, "id": ident, **extra}, separators=(",", ":"))


def dump_done(done: dict[str, Done]) -> list[str]:
    """The journal lines that rebuild `done` (the compacted manifest)."""
    lines = []
    for rel, d in done.items():
        if d.upload:
            lines.append(record("u", rel, d.ident, tok=d.upload))
        for k, h in d.hashes.items():
            lines.append(record("x", rel, d.ident, k=k, h=h, tok=d.tokens.get(k, "")))
        if d.final:
            lines.append(record("f", rel, d.ident))
    return lines
