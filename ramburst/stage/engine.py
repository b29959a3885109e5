"""The copy: plan on rank 0, copy extents on every rank, make files final, read everything back.

Work is handed out one item at a time by rank 0 to whichever rank asks (handout.py), the plan
comes from the journal (plan.py), and the read-back is verify.py. Every written extent
is journaled (with its xxh3) in the cluster beside the data, so a re-run after `kill -9`
copies only what is missing or changed; the verify pass reads the destination back and
compares sizes and hashes, so a truncated or corrupted destination fails the stage.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..errors import RamburstError, UsageError
from ..mpi import LocalComm
from . import uploads
from .handout import run_phase
from .model import EXTENT, Entry, digest, dump_done, record, replay
from .plan import Plan, item_sizes, make_plan
from .rank import Rank
from .verify import verify_item, verify_items


class StageError(RamburstError):
    """The stage did not complete; the message says what was staged and what to do."""


@dataclass
class Options:
    extent: int = EXTENT
    threads: int = 8
    verify: bool = True
    read_back: bool = False     # read back even a target whose write ack is trusted (the pool)
    dry_run: bool = False
    delete: bool = False


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
            # A folder (stage-out's DEST, or the fs: its quota is what df shows) says its free space
            # up front; the pool and S3 say nothing (None) and answer NoSpace when full.
            free = self.target.free_bytes()
            if free is not None and plan.bytes_total > free:
                raise UsageError(f"{self.target.label}: needs {plan.bytes_total / 2**20:.1f} MiB, "
                                 f"only {free / 2**20:.1f} MiB free")
            self._check_parts(plan)
            if not self.opt.dry_run:
                self.target.prepare(plan.entries)
                self._restamp(plan)
                gone = uploads.reconcile(self.target, plan)
                if gone:  # journaled uploads someone aborted: copy those files again
                    uploads.forget(self.keeper, self.state_name, gone)
                    plan = make_plan(self.source, self.keeper, self.state_name, self.opt.extent)
                if plan.items:
                    self._begin_uploads(plan)
            return plan

        plan = self.comm.agree("stage planning", build if self.comm.rank == 0 else None)
        return self.comm.bcast(plan)

    def _restamp(self, plan: Plan) -> None:
        """After a stage that did not end cleanly, a target that asks for it (stores/cephfs.py) gets
        the files it made final again, to set their mtimes anew."""
        restamp = getattr(self.target, "restamp", None)
        if restamp is None or not self.target.unclean(self.state_name):
            return
        ext = self.opt.extent
        restamp([e for e in plan.entries if e.kind == "f" and (d := plan.done.get(e.rel)) is not None
                 and d.ident == e.ident and len(d.hashes) >= e.extents(ext) and (e.extents(ext) == 1 or d.final)])

    def _check_parts(self, plan: Plan) -> None:
        """A target with a part limit (S3: 10,000 parts, one per extent; at the 8 MiB default a
        file up to 78 GiB) refuses a larger file before anything is written, naming the extent
        size that would do."""
        limit = getattr(self.target, "max_parts", 0)
        big = max((e for e in plan.entries if e.kind == "f"), key=lambda e: e.size, default=None)
        if limit and big is not None and big.extents(self.opt.extent) > limit:
            need = -(-big.size // limit)
            raise UsageError(f"{big.src or big.rel}: {big.extents(self.opt.extent)} extents of "
                             f"{self.opt.extent >> 20} MiB, {self.target.label} takes at most {limit} parts: "
                             f"use --extent {-(-need // 2**20)}M or more")

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
        uploads.abort_unfinished(self.target, self.keeper, self.state_name, plan, plan.done)
        return problems

    # the whole stage -----------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:  # a store's client (libcephfs) lets go of the files it holds
            for store in (self.source, self.target):
                getattr(store, "close", lambda: None)()

    def _run(self) -> dict:
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
        run_phase(plan.items, item_sizes(plan, plan.items, self.opt.extent),
                  lambda it: self.copy_item(plan, rank, it), comm, rank, self.opt.threads, tick)
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
        summary["verify"] = self._verify_mode()
        if summary["verify"] == "read back":
            errors += self._verify(plan, rank, rep)
        summary.update(self._finish(plan, errors, rep))
        summary["seconds"] = round(time.monotonic() - t0, 3)
        summary["mb_s"] = round(summary["bytes"] / 1e6 / max(summary["seconds"], 1e-9), 1)
        summary["files"] = plan.files_total - sum(1 for g in gathered for _ in g[1])
        summary["errors"] = errors
        return summary

    def _verify_mode(self) -> str:
        """"read back" (every byte, hashed and compared), "write ack" (a store whose acknowledged
        write is the check: the pool) or "off" (--no-verify)."""
        if not self.opt.verify:
            return "off"
        if getattr(self.target, "trusts_ack", False) and not self.opt.read_back:
            return "write ack"
        return "read back"

    def _verify(self, plan: Plan, rank: Rank, rep) -> list[str]:
        plan.done = self.comm.bcast(plan.done)
        bad: list[str] = []
        vrank = Rank(self.keeper, self.state_name, self.comm)
        if rep:
            rep.phase("verify", sum(e.size for e in plan.entries if e.kind == "f"))
        tick = rep.update if rep else None
        items = verify_items(plan, self.opt.extent)
        run_phase(items, item_sizes(plan, items, self.opt.extent),
                  lambda it: verify_item(self.target, self.opt.extent, plan, vrank, bad, it), self.comm,
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
        if self.comm.rank == 0:
            uploads.abort_unfinished(self.target, self.keeper, self.state_name, plan, done)
        rank, why = fatal[0]
        kind = "store full" if any(w in why for w in ("NoSpace", "No space", "quota exceeded")) else "failed"
        names = ", ".join(staged[:5]) + (f" and {len(staged) - 5} more" if len(staged) > 5 else "")
        msg = (f"stage {self.direction} to {self.target.label}: {kind} on rank {rank} ({why}); "
               f"{len(staged)} file(s) staged{': ' + names if staged else ''}; files larger than one extent "
               f"are not under their final names; run the same command again to copy the rest")
        if rep:
            rep.finish(msg)
        raise StageError(msg)
