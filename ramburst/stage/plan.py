"""The plan of a stage: which extents and small-file batches are still to copy, from the journal."""
from __future__ import annotations

from dataclasses import dataclass, field

from .model import BATCH_FILES, Done, Entry, replay


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


def item_sizes(plan: Plan, items: list[tuple], ext: int) -> list[int]:
    """The bytes of each item, for the hand-out's byte shares."""
    return [plan.entries[it[1]].span(it[2], ext)[1] if it[0] == "x"
            else sum(plan.entries[i].size for i in it[1]) for it in items]
