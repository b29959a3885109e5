"""The verify pass: read the destination back and compare sizes and xxh3 hashes with the journal."""
from __future__ import annotations

from .model import BATCH_FILES, digest
from .plan import Plan
from .rank import Rank


def verify_item(target, ext: int, plan: Plan, rank: Rank, bad: list, item: tuple) -> None:
    """Read one item back from `target`; a wrong size or hash goes to `bad` (the next run copies it again)."""
    sized = getattr(target, "sized_reads", False)
    pairs = [(item[1], item[2])] if item[0] == "x" else [(i, 0) for i in item[1]]
    for idx, k in pairs:
        e = plan.entries[idx]
        d = plan.done.get(e.rel)
        if d is None or d.ident != e.ident or k not in d.hashes:
            continue
        off, n = e.span(k, ext)
        why = None
        try:
            data = target.read_final(e, off, n)
        except Exception as err:  # noqa: BLE001 - any failure to read back is a failed check
            data, why = b"", f"cannot be read back ({type(err).__name__})"
        if why is None and len(data) < n:
            why = f"truncated (extent {k}: {len(data)} of {n} bytes)"
        elif why is None and len(data) > n:  # a sized read of a whole file found more bytes
            why = f"wrong size (more than {e.size} bytes)"
        elif why is None and digest(data) != d.hashes[k]:
            why = f"corrupted (extent {k}: xxh3 differs)"
        elif why is None and k == e.extents(ext) - 1 and not (k == 0 and sized) \
                and target.size_of(e) != e.size:
            why = f"wrong size ({target.size_of(e)} bytes, expected {e.size})"
        if why:
            with rank.lock:
                bad.append(f"{e.rel}: {why}")
        rank.note("", n, 1 if k == 0 else 0)


def verify_items(plan: Plan, ext: int) -> list[tuple]:
    """Every file of the plan, as extents and batches of small files, to read back."""
    items, batch = [], []
    for idx, e in enumerate(plan.entries):
        if e.kind != "f":
            continue
        n = e.extents(ext)
        if n > 1:
            items += [("x", idx, k) for k in range(n)]
        else:
            batch.append(idx)
            if len(batch) >= BATCH_FILES:
                items.append(("b", tuple(batch)))
                batch = []
    return items + ([("b", tuple(batch))] if batch else [])
