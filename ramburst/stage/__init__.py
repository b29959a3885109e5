"""Stage-in and stage-out: a job's data into the RAM cluster and back, parallel, verified, resumable.

    import ramburst
    from ramburst.stage import stage_in, stage_out
    cluster = ramburst.attach("job")
    stage_in(cluster, ["/scratch/input"], to="pool:input")
    stage_out(cluster, "/scratch/results", source="fs:/out")
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from ..errors import UsageError
from ..layout import Layout
from ..mpi import LocalComm
from .engine import Options, Stage, StageError
from .model import EXTENT
from .progress import Reporter
from .stores import Sources, Tree, cluster_store, default_spec

__all__ = ["stage_in", "stage_out", "StageError", "EXTENT"]


def _options(extent: int, threads: int, verify: bool, dry_run: bool, delete: bool = False,
             read_back: bool = False) -> Options:
    from . import model

    if model.xxhash is None:
        raise UsageError("ramburst stage needs xxhash: pip install 'ramburst[stage]'")
    if not 2**20 <= extent <= 64 * 2**20:
        raise UsageError(f"extent size {extent} bytes: must be 1 MiB to 64 MiB")
    if threads < 1:
        raise UsageError("threads must be at least 1")
    return Options(extent=extent, threads=threads, verify=verify, dry_run=dry_run, delete=delete,
                   read_back=read_back)


def _check_s3_extent(spec: str, opt: Options) -> None:
    if spec.startswith("s3://") and opt.extent < 5 * 2**20:
        raise UsageError(f"{spec}: S3 multipart parts are at least 5 MiB: use an extent of 5 MiB or more")


def _run(stage: Stage, check: bool) -> dict:
    summary = stage.run()
    if check and summary.get("errors"):
        raise StageError(f"stage {stage.direction}: {len(summary['errors'])} problem(s): "
                         + "; ".join(summary["errors"][:5]))
    return summary


def _reporter(cluster, direction: str, label: str, comm, progress: bool, dry_run: bool) -> Reporter | None:
    if dry_run or (comm is not None and comm.rank != 0):
        return None
    return Reporter(direction, label, Layout(cluster.state_dir).stage_progress, progress and sys.stderr.isatty())


def stage_in(cluster, srcs, to: str | None = None, *, comm=None, extent: int = EXTENT, threads: int = 8,
             verify: bool = True, dry_run: bool = False, progress: bool = False, check: bool = True,
             codec: str | None = None, read_back: bool = False) -> dict:
    """Copy SRC files/folders into the instance (fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX); each SRC
    lands under its own name. With `codec` (volume[:LEVEL] or zstd[:LEVEL], lossless only) .npy volumes
    go in as compressed zarr arrays instead (compress.py). Returns the summary; raises StageError if
    anything was not staged."""
    coding = None
    if codec is not None:
        from . import compress

        coding = compress.parse_codec(codec)
    paths = [Path(s).absolute() for s in srcs]
    if not paths:
        raise UsageError("stage in: no SRC given")
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise UsageError(f"{p}: no such file or folder")
    opt = _options(extent, threads, verify, dry_run, read_back=read_back)
    spec = to or default_spec(cluster)
    _check_s3_extent(spec, opt)
    target = cluster_store(cluster, spec)
    rep = _reporter(cluster, "in", target.label, comm, progress, dry_run)
    if coding is None:
        summary = _run(Stage("in", Sources(paths), target, target, "in", comm, opt, rep), check)
        if not dry_run and not summary.get("errors") and (comm is None or comm.rank == 0):
            from .compress import forget

            forget(target, paths)  # volumes once staged with --codec now went in as plain files
        return summary
    vrep = lambda: _reporter(cluster, "in", f"{target.label} (volumes)", comm, progress, dry_run)  # noqa: E731
    return _check(_stage_in_coded(cluster, paths, spec, target, coding, comm, opt, rep, vrep), check)


def _stage_in_coded(cluster, paths, spec, target, coding, comm, opt, rep, vrep) -> dict:
    from . import compress

    if not cluster.pool:
        raise UsageError(f"--codec: instance {cluster.name!r} has no pool to hold the arrays")
    errors: list[str] = []
    volumes = compress.find(paths, coding, errors)
    summary = Stage("in", compress.Rest(paths, {v.rel for v in volumes}), target, target, "in", comm, opt,
                    rep).run()

    def put():
        return compress.stage_in_volumes(cluster, target, spec, paths, volumes, coding, opt.threads, opt.verify,
                                         opt.dry_run, vrep)
    part = (comm or LocalComm()).agree("stage volumes", put if comm is None or comm.rank == 0 else None)
    return compress.merge(summary, (comm or LocalComm()).bcast(part))


def _check(summary: dict, check: bool) -> dict:
    if check and summary.get("errors"):
        raise StageError(f"stage {summary['direction']}: {len(summary['errors'])} problem(s): "
                         + "; ".join(summary["errors"][:5]))
    return summary


def stage_out(cluster, dest, source: str | None = None, *, comm=None, delete: bool = False,
              extent: int = EXTENT, threads: int = 8, verify: bool = True, dry_run: bool = False,
              progress: bool = False, check: bool = True, read_back: bool = False) -> dict:
    """Copy the instance's data (default: its fs mount, else its pool) to the folder DEST, verified.
    The journal lives beside the source in the cluster, so a re-run copies only the rest."""
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: exists and is not a folder")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent}: no such folder")
    opt = _options(extent, threads, verify, dry_run, delete, read_back)
    spec = source or default_spec(cluster)
    _check_s3_extent(spec, opt)
    src = cluster_store(cluster, spec)
    name = "out-" + hashlib.sha1(str(dest).encode()).hexdigest()[:12]
    rep = _reporter(cluster, "out", str(dest), comm, progress, dry_run)
    summary = _run(Stage("out", src, Tree(dest), src, name, comm, opt, rep), False)
    vrep = lambda: _reporter(cluster, "out", f"{dest} (volumes)", comm, progress, dry_run)  # noqa: E731
    return _check(_volumes_out(cluster, src, dest, comm, opt, summary, vrep), check)


def _volumes_out(cluster, src, dest: Path, comm, opt: Options, summary: dict, vrep) -> dict:
    """Volumes that `stage in --codec` put in as arrays: rebuilt byte for byte after the files."""
    from . import compress

    def rebuild():
        return compress.stage_out_volumes(cluster, src, dest, opt.threads, opt.verify, opt.dry_run, vrep)
    part = (comm or LocalComm()).agree("stage volumes", rebuild if comm is None or comm.rank == 0 else None)
    return compress.merge(summary, (comm or LocalComm()).bcast(part))


def for_job(state_dir, direction: str, paths, spec: str | None, comm, log, codec: str | None = None) -> bool:
    """`ramburst run --stage-in/--stage-out`: stage on every rank, one log line, never raise."""
    from ..api import Cluster

    if comm is not None and comm.rank != 0:
        log = lambda msg: None  # noqa: E731 - rank 0 speaks for the job
    cluster = None
    try:
        cluster = Cluster(state_dir)
        if direction == "in":
            s = stage_in(cluster, paths, spec, comm=comm, check=False, codec=codec)
        else:
            s = stage_out(cluster, paths, spec, comm=comm, check=False)
    except Exception as e:  # noqa: BLE001 - the job goes on to its teardown whatever happened
        log(f"stage {direction} failed: {e}")
        return False
    finally:
        if cluster is not None:
            cluster.close()
    for err in s["errors"]:
        log(f"stage {direction}: {err}")
    shares = s.get("per_rank") or []  # a job log shows how the ranks shared the copy
    log(f"staged {direction} {s['files']} file(s), {s['bytes'] / 2**20:.1f} MiB in {s['seconds']:.1f} s: "
        f"{s['source']} -> {s['target']}" + (f" ({len(s['errors'])} problem(s))" if s["errors"] else "")
        + ("; per rank " + "/".join(f"{b / 2**20:.1f}" for b in shares) + " MiB" if len(shares) > 1 else ""))
    if s.get("volumes"):
        from .compress import describe

        log(describe(s["volumes"]))
    return not s["errors"]
