"""Issue 13, small files into fs: the calls a stage makes per file (each one a ceph-fuse round trip
in the cluster's mount), counted on a local folder; no daemon is behind these units."""
from __future__ import annotations

import os
from pathlib import Path

from ramburst.stage.model import digest, record, replay
from ramburst.stage.plan import make_plan
from ramburst.stage.rank import Rank
from ramburst.stage.stores import Sources, Tree
from ramburst.stage.verify import verify_item, verify_items


class LocalComm:
    rank, size = 0, 1


def small_tree(root: Path, folders: int = 10, per: int = 50) -> Path:
    src = root / "src"
    for d in range(folders):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(per):
            (src / f"d{d}" / f"f{i}").write_bytes(os.urandom(100 + i))
    return src


def test_item2_prepare_makes_each_folder_once(tmp_path, monkeypatch):
    src = small_tree(tmp_path)
    entries = Sources([src]).entries([])
    calls = []
    real = Path.mkdir
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (calls.append(self), real(self, *a, **k))[1])
    Tree(tmp_path / "dst").prepare(entries)
    assert len(calls) <= 1 + 11, f"{len(calls)} mkdir calls for 11 folders"
    assert sorted(p.name for p in (tmp_path / "dst" / "src").iterdir()) == [f"d{d}" for d in range(10)]


def test_item2_verify_reads_a_small_file_once_and_still_finds_a_longer_one(tmp_path, monkeypatch):
    """A whole small file is checked by one read (open, pread, close): no stat per file; a file
    grown since is still reported, and a truncated one."""
    src = small_tree(tmp_path, folders=2, per=10)
    dst = Tree(tmp_path / "dst")
    entries = Sources([src]).entries([])
    dst.prepare(entries)
    lines = []
    for e in entries:
        if e.kind == "f":
            data = Path(e.src).read_bytes()
            dst.write_whole(e, data)
            lines.append(record("x", e.rel, e.ident, k=0, h=digest(data)))

    class Keeper:
        def state_lines(self, name):
            return lines

    plan = make_plan(Sources([src]), Keeper(), "in", 8 * 2**20)
    plan.done = replay(lines)
    with open(dst.path("src/d0/f3"), "ab") as f:
        f.write(b"more")
    os.truncate(dst.path("src/d1/f4"), 10)
    stats = []
    monkeypatch.setattr(Tree, "size_of", lambda self, e: stats.append(e.rel))
    bad: list = []
    rank = Rank(None, "in", LocalComm())
    for item in verify_items(plan, 8 * 2**20):
        verify_item(dst, 8 * 2**20, plan, rank, bad, item)
    assert stats == []
    assert sorted(bad) == ["src/d0/f3: wrong size (more than 103 bytes)",
                           "src/d1/f4: truncated (extent 0: 10 of 104 bytes)"]


def test_item1_s3_refuses_a_file_of_more_than_10000_extents_before_writing(tmp_path):
    """8 MiB extents (the default) make S3 parts of 8 MiB: S3 takes at most 10,000 parts, so a file
    over 78 GiB must be refused at planning (one line, the extent that would do), not mid-upload."""
    import pytest

    from ramburst.errors import UsageError
    from ramburst.stage.engine import Options, Stage

    src = tmp_path / "src"
    src.mkdir()
    with open(src / "huge", "wb") as f:   # sparse: no disk used
        f.truncate(10_001 * 8 * 2**20)

    class S3Like:
        kind, label, max_parts, extent = "s3", "s3://b/p/", 10_000, 0
        written: list = []

        def state_lines(self, name):
            return []

        def free_bytes(self):   # as every object store: says nothing, answers NoSpace when full
            return None

        def prepare(self, entries):
            self.written.append("prepare")

        def begin(self, e):
            self.written.append("begin")
            return "upload"

    target = S3Like()
    stage = Stage("in", Sources([src]), target, target, "in", options=Options(extent=8 * 2**20))
    with pytest.raises(UsageError, match=r"huge: 10001 extents of 8 MiB, s3://b/p/ takes at most 10000 parts: "
                                         r"use --extent 9M or more"):
        stage.plan()
    assert target.written == []
