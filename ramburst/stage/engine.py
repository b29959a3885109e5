"""The copy: plan on rank 0, copy extents on every rank, make files final, read everything back.

Work is handed out one item at a time by rank 0 to whichever rank asks (Dispatcher), so a
large file is split across ranks and no rank runs far ahead of an equal byte share; within a
rank a thread pool keeps `threads` requests in flight. MPI calls stay on each rank's main thread. Every written extent
is journaled (with its xxh3) in the cluster beside the data, so a re-run after `kill -9`
copies only what is missing or changed; the verify pass reads the destination back and
compares sizes and hashes, so a truncated or corrupted destination fails the stage.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..errors import RamburstError, UsageError
from ..mpi import LocalComm
from .model import BATCH_FILES, EXTENT, Done, Entry, digest, dump_done, record, replay

TRANSIENT = {"TimedOut", "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
             "ConnectTimeoutError"}


class StageError(RamburstError):
    """The stage did not complete; the message says what was staged and what to do."""


@dataclass
class Options:
    extent: int = EXTENT
    threads: int = 8
    verify: bool = True
    dry_run: bool = False
    delete: bool = False


@dataclass
class Plan:
    entries: list[Entry]
    items: list[tuple]                  # ("x", idx, k) one extent; ("b", (idx, ...)) small files
    finals: list[int]                   # multi-extent files to make final
    done: dict[str, Done]
    errors: list[str]
    skipped_files: int = 0
    bytes_total: int = 0
    files_total: int = 0
    uploads: dict = field(default_factory=dict)


# -- handing out work ----------------------------------------------------------------------------
TAG_ASK, TAG_GIVE = 7301, 7302
BALANCE = 1.03  # no rank takes more than 3 % over an equal byte share while another could take it


class Dispatcher:
    """Rank 0's main thread hands out item numbers, one at a time, to whichever rank asks first
    (so a faster rank takes more, and a large file's extents spread over the ranks), and sums
    the progress each request carries. Plain point-to-point messages polled by rank 0: an MPI
    RMA counter (Win.Fetch_and_op) was tried first, but passive-target RMA only progresses when
    the target enters MPI, and with Open MPI 4.1 over TCP osc/rdma failed (MPI_ERR_WIN), osc/ucx
    hung and osc/pt2pt starved the other ranks (rank 0 did 80 % of the work)."""

    def __init__(self, comm, sizes: list[int]):
        self.comm, self.sizes = comm, sizes
        self.next = 0
        self.bytes = self.files = 0
        self.finished = 0          # other ranks that are done
        self.aborted = False
        self.taken = [0] * comm.size
        self.stopped = [False] * comm.size
        self.cap = BALANCE * sum(sizes) / comm.size

    def take(self, who: int = 0) -> int | None:
        """The next item for rank `who`, unless it already holds its byte share (plus BALANCE)
        and another rank still working could take the item within its own share."""
        if self.aborted or self.next >= len(self.sizes):
            self.stopped[who] = True
            return None
        size = self.sizes[self.next]
        if self.comm.size > 1 and self.taken[who] + size > self.cap and any(
                not self.stopped[r] and self.taken[r] + size <= self.cap for r in range(self.comm.size) if r != who):
            self.stopped[who] = True
            return None
        self.taken[who] += size
        self.next += 1
        return self.next - 1

    def serve(self) -> None:
        if self.comm.size == 1:
            return
        from mpi4py import MPI

        c, status = self.comm.comm, MPI.Status()
        while c.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_ASK, status=status):
            ask, nbytes, files, fatal, done = c.recv(source=status.Get_source(), tag=TAG_ASK)
            self.bytes += nbytes
            self.files += files
            self.aborted = self.aborted or fatal
            if done:
                self.finished += 1
                self.stopped[status.Get_source()] = True
            else:
                c.send(self.take(status.Get_source()) if ask else None, dest=status.Get_source(), tag=TAG_GIVE)

    def drain(self, rank, tick) -> None:
        """Rank 0, its own share done: serve the others until every rank is done."""
        last = 0.0
        while self.finished < self.comm.size - 1:
            self.serve()
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                _report(self, rank, tick)
            time.sleep(0.002)
        _report(self, rank, tick)


class Asker:
    """A rank other than 0: ask rank 0 for the next item, reporting progress on the way."""

    def __init__(self, comm, rank):
        self.comm, self.rank = comm, rank

    def take(self) -> int | None:
        nbytes, files = self.rank.take_unsent()
        self.comm.comm.send((True, nbytes, files, self.rank.fatal is not None, False), dest=0, tag=TAG_ASK)
        return self.comm.comm.recv(source=0, tag=TAG_GIVE)

    def done(self) -> None:
        nbytes, files = self.rank.take_unsent()
        self.comm.comm.send((False, nbytes, files, self.rank.fatal is not None, True), dest=0, tag=TAG_ASK)


# -- one rank's side of a phase ------------------------------------------------------------------
class Rank:
    """Per-rank counters, journal buffer and errors of one stage."""

    def __init__(self, keeper, state_name: str, comm):
        self.keeper, self.state_name, self.comm = keeper, state_name, comm
        self.tag = f"{time.time_ns():020d}.{comm.rank}"
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self.records: list[str] = []
        self.bytes = self.files = self.retries = self.extents = 0
        self.unsent = [0, 0]
        self.errors: list[str] = []   # per-file problems (the rest goes on)
        self.fatal: str | None = None

    def note(self, line: str, nbytes: int, files: int) -> None:
        with self.lock:
            if line:
                self.pending.append(line)
                self.records.append(line)
            self.bytes += nbytes
            self.files += files
            self.extents += 1 if line else 0
            self.unsent[0] += nbytes
            self.unsent[1] += files

    def flush(self) -> None:
        with self.lock:
            lines, self.pending = self.pending, []
        if not lines:
            return
        try:
            self.keeper.state_append(self.state_name, self.tag, "".join(x + "\n" for x in lines))
        except Exception as e:  # noqa: BLE001 - e.g. a full store: these extents are copied again next time
            if self.fatal is None:
                self.fatal = f"{type(e).__name__}: {e}"

    def take_unsent(self) -> tuple[int, int]:
        with self.lock:
            out, self.unsent = tuple(self.unsent), [0, 0]
        return out

    def check(self, finished) -> None:
        """The first exception of a work item ends this rank's share (the others are told)."""
        for f in finished:
            if f.exception() is not None and self.fatal is None:
                err = f.exception()
                self.fatal = f"{type(err).__name__}: {err}"

    def retry(self, fn, *args):
        for attempt in range(3):
            try:
                return fn(*args)
            except Exception as e:
                if type(e).__name__ not in TRANSIENT or attempt == 2:
                    raise
                with self.lock:
                    self.retries += 1
                time.sleep(0.5 * (attempt + 1))


def run_phase(items: list, sizes: list[int], fn, comm, rank: Rank, threads: int, tick=None) -> None:
    """Run items until none is left on any rank; `tick(bytes, files)` runs about twice a second on rank 0."""
    boss = Dispatcher(comm, sizes) if comm.rank == 0 else None
    source = boss if boss is not None else Asker(comm, rank)
    inflight: set = set()
    exhausted, last = False, 0.0
    try:
        with ThreadPoolExecutor(threads) as pool:
            while True:
                while not exhausted and rank.fatal is None and len(inflight) < threads:
                    i = source.take()
                    if i is None:
                        exhausted = True
                    else:
                        inflight.add(pool.submit(fn, items[i]))
                if boss is not None:
                    boss.serve()
                    if rank.fatal is not None:
                        boss.aborted = True
                if not inflight:
                    break
                finished, inflight = wait(inflight, timeout=0.002 if boss is not None else 0.25,
                                          return_when=FIRST_COMPLETED)
                rank.check(finished)
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    rank.flush()
                    _report(boss, rank, tick)
        rank.flush()
        if boss is None:
            source.done()
            return
        boss.drain(rank, tick)
    finally:
        rank.flush()


def _report(boss, rank: Rank, tick) -> None:
    if boss is None:
        return
    nbytes, files = rank.take_unsent()
    boss.bytes += nbytes
    boss.files += files
    if tick is not None:
        tick(boss.bytes, boss.files)


# -- planning ----------------------------------------------------------------------------------------
def make_plan(source, keeper, state_name: str, extent: int) -> Plan:
    errors: list[str] = []
    entries = source.entries(errors)
    done = replay(keeper.state_lines(state_name))
    big: list[tuple] = []
    small: list[tuple] = []
    batch: list[int] = []
    batch_bytes = 0
    plan = Plan(entries, [], [], done, errors)
    for idx, e in enumerate(entries):
        if e.kind != "f":
            continue
        d = done.get(e.rel)
        d = d if d is not None and d.ident == e.ident else None
        n = e.extents(extent)
        missing = [k for k in range(n) if d is None or k not in d.hashes]
        if not missing and (n == 1 or d.final):
            plan.skipped_files += 1
            continue
        plan.files_total += 1
        plan.bytes_total += sum(e.span(k, extent)[1] for k in missing)
        if n > 1:
            plan.finals.append(idx)
            big += [("x", idx, k) for k in missing]
            if d is not None and d.upload:
                plan.uploads[e.rel] = d.upload
            continue
        batch.append(idx)
        batch_bytes += e.size
        if batch_bytes >= extent or len(batch) >= BATCH_FILES:
            small.append(("b", tuple(batch)))
            batch, batch_bytes = [], 0
    if batch:
        small.append(("b", tuple(batch)))
    plan.items = big + small
    return plan


# -- the stage ------------------------------------------------------------------------------------------
class Stage:
    def __init__(self, direction: str, source, target, keeper, state_name: str, comm=None,
                 options: Options | None = None, reporter=None):
        self.direction, self.source, self.target, self.keeper = direction, source, target, keeper
        self.state_name = state_name
        self.comm = comm or LocalComm()
        self.opt = options or Options()
        self.reporter = reporter
        self.delay = float(os.environ.get("RAMBURST_STAGE_DELAY", "0"))  # test only: slow each item
        for store in (source, target):
            store.extent = getattr(store, "extent", 0) or self.opt.extent
        target.extent = self.opt.extent

    def plan(self) -> Plan:
        def build():
            plan = make_plan(self.source, self.keeper, self.state_name, self.opt.extent)
            free = self.target.free_bytes() if self.direction == "out" else None  # in: the store says when full
            if free is not None and plan.bytes_total > free:
                raise UsageError(f"{self.target.label}: needs {plan.bytes_total / 2**20:.1f} MiB, "
                                 f"only {free / 2**20:.1f} MiB free")
            if not self.opt.dry_run and plan.items:
                self.target.prepare(plan.entries)
                self._begin_uploads(plan)
            elif not self.opt.dry_run:
                self.target.prepare(plan.entries)
            return plan

        plan = self.comm.agree("stage planning", build if self.comm.rank == 0 else None)
        return self.comm.bcast(plan)

    def _begin_uploads(self, plan: Plan) -> None:
        lines = []
        for idx in plan.finals:
            e = plan.entries[idx]
            if e.rel not in plan.uploads:
                plan.uploads[e.rel] = self.target.begin(e)
                if plan.uploads[e.rel]:
                    lines.append(record("u", e.rel, e.ident, tok=plan.uploads[e.rel]))
        if lines:
            self.keeper.state_append(self.state_name, f"{time.time_ns():020d}.plan", "".join(x + "\n" for x in lines))
            replay(lines, plan.done)

    # copy ---------------------------------------------------------------------------------------
    def copy_item(self, plan: Plan, rank: Rank, item: tuple) -> None:
        if self.delay:
            time.sleep(self.delay)
        ext = self.opt.extent
        if item[0] == "x":
            _, idx, k = item
            e = plan.entries[idx]
            off, n = e.span(k, ext)
            data = self._read_source(rank, e, off, n)
            if data is None:
                return
            tok = rank.retry(self.target.write_part, e, k, off, data, plan.uploads.get(e.rel, ""))
            rank.note(record("x", e.rel, e.ident, k=k, h=digest(data), tok=tok or ""), n, 0)
            return
        for idx in item[1]:
            e = plan.entries[idx]
            data = self._read_source(rank, e, 0, e.size)
            if data is None:
                continue
            tok = rank.retry(self.target.write_whole, e, data)
            rank.note(record("x", e.rel, e.ident, k=0, h=digest(data), tok=tok or ""), e.size, 1)

    def _read_source(self, rank: Rank, e: Entry, off: int, n: int) -> bytes | None:
        try:
            data = rank.retry(self.source.read, e, off, n)
        except OSError as err:
            with rank.lock:
                rank.errors.append(f"{e.src or e.rel}: {err.strerror or err}")
            return None
        if len(data) != n:
            with rank.lock:
                rank.errors.append(f"{e.src or e.rel}: changed while staged (read {len(data)} of {n} bytes)")
            return None
        return data

    # finalize (rank 0) ----------------------------------------------------------------------------
    def finalize(self, plan: Plan, records: list[str], rank: Rank) -> list[str]:
        replay(records, plan.done)
        problems = []
        lines = []
        for idx in plan.finals:
            e = plan.entries[idx]
            d = plan.done.get(e.rel)
            if d is None or d.ident != e.ident or len(d.hashes) < e.extents(self.opt.extent):
                continue
            self.target.finish(e, d.tokens, d.upload)
            lines.append(record("f", e.rel, e.ident))
            rank.note("", 0, 1)
        others = [e for e in plan.entries if e.kind == "l"]
        others += sorted((e for e in plan.entries if e.kind == "d"), key=lambda e: e.rel.count("/"), reverse=True)
        for e in others:
            try:
                self.target.put_other(e)
            except OSError as err:
                problems.append(f"{e.rel}: {err.strerror}")
        if lines:
            self.keeper.state_append(self.state_name, rank.tag + ".final", "".join(x + "\n" for x in lines))
            replay(lines, plan.done)
        return problems

    # verify -----------------------------------------------------------------------------------------
    def verify_item(self, plan: Plan, rank: Rank, bad: list, item: tuple) -> None:
        ext = self.opt.extent
        sized = getattr(self.target, "sized_reads", False)
        pairs = [(item[1], item[2])] if item[0] == "x" else [(i, 0) for i in item[1]]
        for idx, k in pairs:
            e = plan.entries[idx]
            d = plan.done.get(e.rel)
            if d is None or d.ident != e.ident or k not in d.hashes:
                continue
            off, n = e.span(k, ext)
            why = None
            try:
                data = self.target.read_final(e, off, n)
            except Exception as err:  # noqa: BLE001 - any failure to read back is a failed check
                data, why = b"", f"cannot be read back ({type(err).__name__})"
            if why is None and len(data) != n:
                why = f"truncated (extent {k}: {len(data)} of {n} bytes)"
            elif why is None and digest(data) != d.hashes[k]:
                why = f"corrupted (extent {k}: xxh3 differs)"
            elif why is None and k == e.extents(ext) - 1 and not (k == 0 and sized) \
                    and self.target.size_of(e) != e.size:
                why = f"wrong size ({self.target.size_of(e)} bytes, expected {e.size})"
            if why:
                with rank.lock:
                    bad.append(f"{e.rel}: {why}")
            rank.note("", n, 1 if k == 0 else 0)

    def item_sizes(self, plan: Plan, items: list[tuple]) -> list[int]:
        return [plan.entries[it[1]].span(it[2], self.opt.extent)[1] if it[0] == "x"
                else sum(plan.entries[i].size for i in it[1]) for it in items]

    def verify_items(self, plan: Plan) -> list[tuple]:
        items, batch = [], []
        for idx, e in enumerate(plan.entries):
            if e.kind != "f":
                continue
            n = e.extents(self.opt.extent)
            if n > 1:
                items += [("x", idx, k) for k in range(n)]
            else:
                batch.append(idx)
                if len(batch) >= BATCH_FILES:
                    items.append(("b", tuple(batch)))
                    batch = []
        return items + ([("b", tuple(batch))] if batch else [])

    # the whole stage -----------------------------------------------------------------------------------
    def run(self) -> dict:
        t0 = time.monotonic()
        comm = self.comm
        plan = self.plan()
        summary = {"direction": self.direction, "source": self.source.label, "target": self.target.label,
                   "files_total": plan.files_total, "bytes_total": plan.bytes_total,
                   "skipped_files": plan.skipped_files, "items": len(plan.items), "dry_run": self.opt.dry_run}
        if self.opt.dry_run:
            return summary
        rank = Rank(self.keeper, self.state_name, comm)
        rep = self.reporter if comm.rank == 0 else None
        if rep:
            rep.start(plan.bytes_total, plan.files_total)
        tick = rep.update if rep else None
        run_phase(plan.items, self.item_sizes(plan, plan.items), lambda it: self.copy_item(plan, rank, it), comm,
                  rank, self.opt.threads, tick)
        if rank.fatal is None and hasattr(self.target, "flush"):
            try:
                self.target.flush()
            except OSError as e:
                rank.fatal = f"flush: {e}"
        gathered = comm.allgather((rank.records, rank.errors, rank.fatal, rank.bytes, rank.retries, rank.extents))
        records = [r for g in gathered for r in g[0]]
        errors = plan.errors + [e for g in gathered for e in g[1]]
        summary.update(bytes=sum(g[3] for g in gathered), per_rank=[g[3] for g in gathered],
                       retries=sum(g[4] for g in gathered), extents_copied=sum(g[5] for g in gathered))
        fatal = [(r, g[2]) for r, g in enumerate(gathered) if g[2]]
        if fatal:
            self._fail(plan, records, fatal, rep)
        def fin():
            return self.finalize(plan, records, rank)
        errors += comm.agree("stage finalize", fin if comm.rank == 0 else None) or []
        if self.opt.verify:
            errors += self._verify(plan, rank, rep)
        summary.update(self._finish(plan, errors, rep))
        summary["seconds"] = round(time.monotonic() - t0, 3)
        summary["mb_s"] = round(summary["bytes"] / 1e6 / max(summary["seconds"], 1e-9), 1)
        summary["files"] = plan.files_total - sum(1 for g in gathered for _ in g[1])
        summary["errors"] = errors
        return summary

    def _verify(self, plan: Plan, rank: Rank, rep) -> list[str]:
        plan.done = self.comm.bcast(plan.done)
        bad: list[str] = []
        vrank = Rank(self.keeper, self.state_name, self.comm)
        if rep:
            rep.phase("verify", sum(e.size for e in plan.entries if e.kind == "f"))
        tick = rep.update if rep else None
        items = self.verify_items(plan)
        run_phase(items, self.item_sizes(plan, items), lambda it: self.verify_item(plan, vrank, bad, it), self.comm,
                  vrank, self.opt.threads, tick)
        if vrank.fatal:
            bad.append(f"verify failed on rank {self.comm.rank}: {vrank.fatal}")
        return [b for g in self.comm.allgather(bad) for b in g]

    def _finish(self, plan: Plan, errors: list[str], rep) -> dict:
        bad = [e for e in errors if ": truncated" in e or ": corrupted" in e or ": wrong size" in e
               or ": cannot be read back" in e]

        def close():
            if bad:  # the next run copies these again
                lines = [record("bad", b.split(":", 1)[0], "") for b in bad]
                tag = f"{time.time_ns():020d}.verify"
                self.keeper.state_append(self.state_name, tag, "".join(x + "\n" for x in lines))
                return {}
            self.keeper.state_compact(self.state_name, dump_done(plan.done))
            out = {}
            if self.direction == "in":
                meta = self.keeper.meta_get(self.state_name)
                entries = meta.get("entries", {})
                entries.update({e.rel: e.meta() for e in plan.entries})
                self.keeper.meta_put(self.state_name, {"extent": self.opt.extent, "entries": entries})
            elif self.opt.delete:
                keep = {e.rel for e in plan.entries}
                out["deleted"] = self.target.remove_extra(keep)
                for e in sorted((e for e in plan.entries if e.kind == "d"), key=lambda e: -e.rel.count("/")):
                    self.target.put_other(e)  # removing changed the folders' mtimes
            return out

        out = self.comm.agree("stage close", close if self.comm.rank == 0 else None) or {}
        if rep:
            why = f"{len(errors)} error(s)" if errors else None
            rep.finish(f"{len(bad)} file(s) failed verification" if bad else why)
        return self.comm.bcast(out)

    def _fail(self, plan: Plan, records: list[str], fatal: list, rep) -> None:
        done = replay(records, dict(plan.done))
        staged = sorted(e.rel for e in plan.entries if e.kind == "f" and e.rel in done
                        and done[e.rel].ident == e.ident and len(done[e.rel].hashes) == e.extents(self.opt.extent)
                        and e.extents(self.opt.extent) == 1)
        rank, why = fatal[0]
        kind = "store full" if "NoSpace" in why or "No space" in why else "failed"
        names = ", ".join(staged[:5]) + (f" and {len(staged) - 5} more" if len(staged) > 5 else "")
        msg = (f"stage {self.direction} to {self.target.label}: {kind} on rank {rank} ({why}); "
               f"{len(staged)} file(s) staged{': ' + names if staged else ''}; files larger than one extent "
               f"are not under their final names; run the same command again to copy the rest")
        if rep:
            rep.finish(msg)
        raise StageError(msg)
