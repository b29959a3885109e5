"""Multipart uploads (S3) that are begun but never completed: abort them, never leave them behind.

An open upload holds its parts' bytes in the store, invisible to every listing of objects, until
it is completed or aborted. So: when a stage fails or a file could not be copied whole, the
uploads of the files it did not complete are aborted and their journal records dropped (the
next run copies those files again); and when a stage plans, rank 0 aborts every open upload
under the target's prefix that the journal does not resume (left by a `kill -9` between
beginning an upload and journaling it, or by a file replaced since), and forgets journaled
uploads that are gone (aborted by someone else), so a re-run never resumes a dead upload.
Stores without multipart uploads (fs, pool) have no `open_uploads` and are left alone.
"""
from __future__ import annotations

import time

from .model import record


def supported(target) -> bool:
    return hasattr(target, "open_uploads")


def reconcile(target, plan) -> list[str]:
    """Abort the open uploads under the target's prefix that `plan` does not resume; return the
    files whose journaled upload is gone (their records must be dropped before copying)."""
    if not supported(target):
        return []
    live = target.open_uploads()
    resumed = {plan.uploads[rel]: rel for rel in plan.uploads if plan.uploads[rel]}
    for key, upload in live:
        if upload not in resumed:
            target.abort(key, upload)
    have = {upload for _, upload in live}
    return sorted(rel for upload, rel in resumed.items() if upload not in have)


def abort_unfinished(target, keeper, state_name: str, plan, done: dict) -> None:
    """Abort the uploads of the plan's large files not completed, and journal them as bad
    (their parts die with the upload). Best effort: a failed stage is already being reported,
    and the next run's `reconcile` catches what is left."""
    if not supported(target):
        return
    lines = []
    for idx in plan.finals:
        e = plan.entries[idx]
        d = done.get(e.rel)
        upload = plan.uploads.get(e.rel) or (d.upload if d is not None else "")
        if not upload or (d is not None and d.final and d.ident == e.ident):
            continue
        try:
            target.abort(target.key(e.rel), upload)
        except Exception:  # noqa: BLE001 - reconcile on the next run
            continue
        lines.append(record("bad", e.rel, ""))
        done.pop(e.rel, None)  # nor does the compacted manifest keep them
    if lines:
        try:
            keeper.state_append(state_name, f"{time.time_ns():020d}.abort", "".join(x + "\n" for x in lines))
        except Exception:  # noqa: BLE001 - the next run finds the upload gone and drops the records
            pass


def forget(keeper, state_name: str, rels: list[str]) -> None:
    """Journal `rels` as bad: their upload is gone, so their parts are copied again."""
    lines = "".join(record("bad", rel, "") + "\n" for rel in rels)
    keeper.state_append(state_name, f"{time.time_ns():020d}.gone", lines)
