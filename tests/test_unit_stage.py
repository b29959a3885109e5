"""Issue 13 units with no daemon behind them: the journal replay, the plan, the hand-out rule."""
from __future__ import annotations

import json
from pathlib import Path

from ramburst.stage.handout import Dispatcher
from ramburst.stage.model import record, replay
from ramburst.stage.plan import make_plan
from ramburst.stage.stores import Tree

MiB = 2**20


def test_replay_keeps_the_current_version_and_skips_a_torn_line():
    lines = [record("x", "a", "1:1", k=0, h="aa"), record("x", "a", "2:2", k=0, h="bb"),
             record("x", "b", "1:1", k=0, h="cc"), record("bad", "b", ""),
             record("x", "c", "1:1", k=1, h="dd", tok="etag"), '{"t": "x", "r": "c", "id"']
    done = replay(lines)
    assert done["a"].hashes == {0: "bb"} and done["a"].ident == "2:2"
    assert "b" not in done
    assert done["c"].hashes == {1: "dd"} and done["c"].tokens == {1: "etag"}


def test_plan_copies_only_missing_extents(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(b"x" * (5 * MiB + 1))
    (src / "small").write_bytes(b"y")

    class Keeper:
        lines: list = []

        def state_lines(self, name):
            return self.lines

    keeper = Keeper()
    plan = make_plan(Tree(src), keeper, "in", 2 * MiB)
    assert sorted(plan.items) == [("b", (1,)), ("x", 0, 0), ("x", 0, 1), ("x", 0, 2)]
    big = plan.entries[0]
    keeper.lines = [record("x", "big", big.ident, k=0, h="h"), record("x", "small", plan.entries[1].ident, k=0, h="h")]
    plan = make_plan(Tree(src), keeper, "in", 2 * MiB)
    assert plan.items == [("x", 0, 1), ("x", 0, 2)] and plan.skipped_files == 1
    assert plan.bytes_total == 3 * MiB + 1


class FakeComm:
    rank, size = 0, 3


def test_hand_out_stops_a_rank_above_its_share_while_another_can_take_it():
    boss = Dispatcher(FakeComm(), [MiB] * 30)
    got = [boss.take(0) for _ in range(12)]
    assert got[:10] == list(range(10)) and got[10] is None   # 10 MiB is the share; 3 % over it is refused
    for r in (1, 2):
        while boss.take(r) is not None:
            pass
    assert boss.next == 30 and max(boss.taken) - min(boss.taken) <= MiB


def test_hand_out_never_strands_an_item():
    boss = Dispatcher(FakeComm(), [10 * MiB, MiB, MiB])   # one item larger than any share
    assert boss.take(1) == 0 and boss.take(1) is None
    boss.stopped[2] = True
    assert boss.take(0) == 1 and boss.take(0) == 2 and boss.take(0) is None


def test_walk_names_each_src_by_its_basename(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_text("x")
    from ramburst.stage.stores import Sources
    errors: list = []
    entries = Sources([tmp_path / "d"]).entries(errors)
    assert [(e.rel, e.kind) for e in entries] == [("d", "d"), ("d/e", "d"), ("d/e/f", "f")] and not errors
    assert Path(entries[2].src) == tmp_path / "d" / "e" / "f"


class FakeUploads:
    """An S3 target's multipart side, as `ramburst.stage.uploads` sees it."""

    def __init__(self, live):
        self.live, self.aborted, self.journal = dict(live), [], []

    def open_uploads(self):
        return sorted((key, up) for up, key in self.live.items())

    def abort(self, key, upload):
        self.aborted.append((key, upload))
        self.live.pop(upload, None)

    def key(self, rel):
        return "p/" + rel

    def state_append(self, name, tag, text):
        self.journal += text.splitlines()


def test_uploads_reconcile_aborts_what_is_not_resumed_and_names_what_is_gone():
    from ramburst.stage.plan import Plan
    from ramburst.stage.uploads import reconcile

    target = FakeUploads({"U1": "p/a", "OLD": "p/a", "LOST": "p/x"})
    plan = Plan([], [], [], {}, [], uploads={"a": "U1", "b": "GONE", "c": ""})
    assert reconcile(target, plan) == ["b"]
    assert sorted(target.aborted) == [("p/a", "OLD"), ("p/x", "LOST")]
    assert reconcile(object(), plan) == []  # fs and pool have no multipart uploads


def test_uploads_abort_unfinished_spares_completed_files_and_drops_the_rest():
    from ramburst.stage.model import Entry
    from ramburst.stage.plan import Plan
    from ramburst.stage.uploads import abort_unfinished

    entries = [Entry("a", "f", size=3 * MiB), Entry("b", "f", size=3 * MiB), Entry("c", "f", size=3 * MiB)]
    lines = [record("u", e.rel, e.ident, tok=f"U{e.rel}") for e in entries] + [record("f", "a", entries[0].ident)]
    done = replay(lines)
    plan = Plan(entries, [], [0, 1, 2], done, [], uploads={"a": "Ua", "b": "Ub"})
    target = FakeUploads({"Ub": "p/b", "Uc": "p/c"})
    abort_unfinished(target, target, "in", plan, done)
    assert sorted(target.aborted) == [("p/b", "Ub"), ("p/c", "Uc")]
    assert sorted(done) == ["a"] and sorted(replay(target.journal)) == []
    assert [json.loads(x)["r"] for x in target.journal] == ["b", "c"]
