"""`ramburst stage in SRC... [--to T]` and `ramburst stage out [--from T] DEST`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..config import parse_size


def common(f):
    for o in reversed([
        click.option("--name", help="Instance name (default: default)."),
        click.option("--state-dir", type=click.Path(path_type=Path), help="The instance's state folder."),
        click.option("--mpi", is_flag=True, help="Every MPI rank of the job copies a share (run under mpirun/srun)."),
        click.option("--extent", default="8M", show_default=True,
                     help="Large files are cut into extents of this size (1M to 64M), hashed and copied in parallel."),
        click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
                     help="Requests in flight per rank."),
        click.option("--no-verify", is_flag=True, help="Skip reading the destination back (not recommended)."),
        click.option("--read-back", is_flag=True,
                     help="Read a pool destination back too (default: trust librados's write ack; see README)."),
        click.option("--dry-run", is_flag=True, help="Say what would be copied; change nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
    ]):
        f = o(f)
    return f


@click.group()
def stage():
    """Move a job's data into the instance and back: parallel, verified (xxh3), resumable."""


def _exit_when_wedged() -> None:
    """A stage command whose libcephfs calls stay stuck after their abort ends itself, as the
    watchdog ends a stuck ceph-fuse: one line, exit 1 (the journal keeps what was staged)."""
    from ..ceph import libcephfs

    def leave(why: str) -> None:
        sys.stderr.write(f"ramburst: error: stage: store full or the fs stopped answering ({why}); "
                         f"what was staged is journaled: run the same command again\n")
        sys.stderr.flush()
        os._exit(1)

    libcephfs.on_wedged = leave


def _go(fn, name, state_dir, mpi, as_json, **kw) -> None:
    from ..api import attach
    from ..cli import make_comm
    from .engine import StageError

    comm = make_comm(mpi)
    cluster = attach(name or "default", state_dir.absolute() if state_dir else None)
    _exit_when_wedged()
    try:
        summary = fn(cluster, comm=comm, extent=parse_size(kw.pop("extent")), verify=not kw.pop("no_verify"),
                     progress=not as_json, check=False, **kw)
    except OSError as e:   # e.g. the mount ended by the watchdog (ENOTCONN): one line, not a traceback
        raise StageError(f"stage: {e}") from None
    if comm is not None and comm.rank != 0:
        sys.exit(1 if summary.get("errors") else 0)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    elif summary["dry_run"]:
        click.echo(f"would copy {summary['files_total']} file(s), {summary['bytes_total'] / 2**20:.1f} MiB "
                   f"({summary['skipped_files']} already staged and unchanged)")
    else:
        click.echo(f"ramburst: staged {summary['direction']} {summary['files']} file(s), "
                   f"{summary['bytes'] / 2**20:.1f} MiB in {summary['seconds']:.1f} s ({summary['mb_s']} MB/s); "
                   f"{summary['skipped_files']} unchanged file(s) skipped; {summary['source']} -> {summary['target']}",
                   err=True)
    if summary.get("volumes") and not as_json and not summary["dry_run"]:
        from .compress import describe

        click.echo(f"ramburst: {describe(summary['volumes'])}", err=True)
    for e in summary.get("errors", []):
        click.echo(f"ramburst: error: {e}", err=True)
    if summary.get("errors"):
        sys.exit(1)


@stage.command("in")
@click.argument("srcs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", help="fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX (default: fs:/ with a mount, else pool:).")
@click.option("--codec", metavar="NAME[:LEVEL]",
              help="Compress volumes (.npy, contiguous HDF5) on the way in, losslessly, into zarr arrays of the "
                   "`arrays` namespace at the target's path: volume[:LEVEL] (ramburst's volume codec) or "
                   "zstd[:LEVEL]; other files go in unchanged; stage out gives back the original bytes.")
@common
def stage_in_cmd(srcs, to, codec, name, state_dir, mpi, as_json, **kw):
    """Copy SRC files and folders into the instance (each under its own name)."""
    from . import stage_in

    if codec is not None:  # a bad name fails before the instance is even looked up
        from .compress import parse_codec

        parse_codec(codec)
    _go(lambda cluster, **k: stage_in(cluster, list(srcs), to, codec=codec, **k), name, state_dir, mpi, as_json,
        **kw)


@stage.command("out")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--from", "source", help="fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX (default: fs:/ or pool:).")
@click.option("--delete", is_flag=True, help="Also remove from DEST what the source no longer has.")
@common
def stage_out_cmd(dest, source, delete, name, state_dir, mpi, as_json, **kw):
    """Copy the instance's data to the folder DEST: temporary name, fsync, rename, read back and checked."""
    from . import stage_out

    _go(lambda cluster, **k: stage_out(cluster, dest, source, delete=delete, **k), name, state_dir, mpi, as_json,
        **kw)
