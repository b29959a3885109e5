"""`ramburst array ls|info|import|export`: arrays on the cluster for users who do not write Python."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import click

from ..errors import RamburstError, UsageError


def where(f):
    for o in reversed([
        click.option("--name", help="Instance name (default: $RAMBURST_STATE_DIR from `ramburst env`, "
                                    "else default)."),
        click.option("--state-dir", type=click.Path(path_type=Path), help="The instance's state folder."),
        click.option("--namespace", default="arrays", show_default=True,
                     help="RADOS namespace that holds the arrays (one zarr hierarchy)."),
    ]):
        f = o(f)
    return f


def root_group(name: str, state_dir: Path | None, namespace: str, mode: str):
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise UsageError("arrays need the arrays extra: pip install 'ramburst[arrays]'") from None
    from . import open as open_root

    _register_codecs()
    try:
        return open_root(name, state_dir, namespace, mode=mode)
    except FileNotFoundError:
        raise UsageError(f"no arrays in namespace {namespace!r} of instance {state_dir or name or 'default'}") from None


def _register_codecs() -> None:
    """An array written with a ramburst codec names it in zarr.json: without the codecs registered,
    zarr cannot even open it (UnknownCodecError), so every command registers them when installed."""
    try:
        import ramburst.codecs  # noqa: F401
    except ImportError:
        pass


def describe(path: str, a) -> dict:
    return {"name": path, "shape": list(a.shape), "dtype": str(a.dtype), "chunks": list(a.chunks),
            "shards": list(a.shards) if a.shards else None,
            "compressors": [type(c).__name__ for c in a.compressors], "nbytes": int(a.nbytes)}


def codec_chain(a) -> dict:
    """The serializer (array -> bytes: where the volume codec sits) and the whole chain as zarr.json
    holds it (a sharded array's inner codecs nested in sharding_indexed)."""
    return {"filters": [f.to_dict() for f in a.filters], "serializer": a.serializer.to_dict(),
            "codecs": a.metadata.to_dict()["codecs"]}


def get_array(root, array: str):
    import zarr

    try:
        node = root[array]
    except KeyError:
        raise UsageError(f"no array {array!r} (see: ramburst array ls)") from None
    if not isinstance(node, zarr.Array):
        raise UsageError(f"{array!r} is a group, not an array")
    return node


@contextmanager
def bar(total: int, what: str):
    """A rich progress bar in bytes on stderr; yields the advance function."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n, *_: progress.advance(task, n)


@click.group("array")
def array():
    """Chunked N-d arrays (zarr v3) stored in the cluster's pool."""


@array.command("ls")
@where
@click.option("--json", "as_json", is_flag=True, help="One JSON list on stdout.")
def ls(name, state_dir, namespace, as_json):
    """List the arrays of a namespace."""
    root = root_group(name, state_dir, namespace, "r")
    import zarr

    rows = [describe(path, node) for path, node in sorted(root.members(max_depth=None))
            if isinstance(node, zarr.Array)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        shards = f" shards {tuple(r['shards'])}" if r["shards"] else ""
        click.echo(f"{r['name']}\t{tuple(r['shape'])}\t{r['dtype']}\tchunks {tuple(r['chunks'])}{shards}")


@array.command("info")
@where
@click.argument("array_name", metavar="ARRAY")
@click.option("--json", "as_json", is_flag=True)
def info(name, state_dir, namespace, array_name, as_json):
    """Shape, dtype, chunking, codecs and stored bytes of one array."""
    a = get_array(root_group(name, state_dir, namespace, "r"), array_name)
    d = describe(array_name, a)
    d.update(codec_chain(a))
    d["nbytes_stored"] = int(a.nbytes_stored())
    d["nchunks_initialized"] = int(a.nchunks_initialized)
    d["attributes"] = dict(a.attrs)
    click.echo(json.dumps(d, indent=None if as_json else 1))


@array.command("import")
@where
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("array_name", metavar="ARRAY")
@click.option("--dataset", help="HDF5 dataset, or array path inside a zarr group.")
@click.option("--chunks", help="Chunk shape, e.g. 64,64,64 (default: zarr's choice).")
@click.option("--shards", help="Shard shape (a multiple of --chunks); one object per shard.")
@click.option("--overwrite", is_flag=True, help="Replace an existing array of another shape or dtype.")
@click.option("--jobs", type=click.IntRange(1, 64), default=8, show_default=True, help="Units in flight.")
@click.option("--codec", metavar="NAME[:ARG]",
              help="Compress on the way in with a ramburst codec: volume[:zstd level] (lossless), "
                   "sz3:BOUND, zfp:BOUND, quant:BOUND (floats, max absolute error BOUND, verified).")
def import_(name, state_dir, namespace, source, array_name, dataset, chunks, shards, overwrite, jobs, codec):
    """Copy a local .npy, HDF5 dataset or zarr array into the cluster as ARRAY. Re-running an
    interrupted import writes only what is missing or different."""
    from . import transfer

    chunk_shape = transfer.parse_shape(chunks, "--chunks")
    shard_shape = transfer.parse_shape(shards, "--shards")
    src, closer = transfer.open_source(source, dataset)
    try:
        transfer.check_layout(tuple(src.shape), chunk_shape, shard_shape)
        options = _codec_options(codec, src.dtype)
        root = root_group(name, state_dir, namespace, "a")
        target = _target(root, array_name, src, chunk_shape, shard_shape, overwrite, **options)
        with bar(int(src.size * src.dtype.itemsize), f"import {array_name}") as advance:
            counts = _import_coded(transfer, target, src, jobs, advance)
        click.echo(f"ramburst: {array_name}: {counts['written']} units written, {counts['skipped']} already "
                   f"present and equal", err=True)
    finally:
        if closer is not None:
            closer.close()


def _codec_options(spec, dtype) -> dict:
    """zarr create options for ``--codec`` (serializer, no extra compressor), checked against the dtype
    before anything is created."""
    if not spec:
        return {}
    try:
        from ..codecs import CodecError, serializer_for
    except ImportError:
        raise UsageError("--codec needs the codecs extra: pip install 'ramburst[codecs]'") from None
    try:
        return {"serializer": serializer_for(spec, dtype), "compressors": None}
    except CodecError as e:
        raise UsageError(f"--codec: {e}") from None


def _import_coded(transfer, target, src, jobs, advance):
    """import_into, with a codec's refusal (e.g. a lossy bound not held) as one line instead of a trace."""
    try:
        from ..codecs import CodecError
    except ImportError:
        CodecError = ()  # noqa: N806 (no codecs installed: nothing of theirs to catch)
    try:
        return transfer.import_into(target, src, jobs=jobs, on_unit=advance)
    except CodecError as e:
        raise RamburstError(f"import stopped: {e}") from None


def _target(root, array_name: str, src, chunks, shards, overwrite: bool, **options):
    """The array to import into: the existing one when it matches (resume), else a new one."""
    from . import transfer

    if array_name in root and not overwrite:
        a = get_array(root, array_name)
        if "serializer" in options and a.serializer.to_dict() != options["serializer"].to_dict():
            raise UsageError(f"array {array_name!r} exists with serializer {a.serializer.to_dict()['name']}: "
                             "use --overwrite to change the codec")
        if a.shape != tuple(src.shape) or a.dtype != src.dtype:
            raise UsageError(f"array {array_name!r} exists with shape {a.shape} {a.dtype}, the source is "
                             f"{tuple(src.shape)} {src.dtype}: use --overwrite to replace it")
        if (chunks and tuple(chunks) != a.chunks) or (shards and tuple(shards) != a.shards):
            raise UsageError(f"array {array_name!r} exists with chunks {a.chunks} shards {a.shards}: "
                             "use --overwrite to change them")
        return a
    return transfer.new_array(root, array_name, tuple(src.shape), src.dtype, chunks, shards, overwrite=overwrite,
                              **options)


@array.command("export")
@where
@click.argument("array_name", metavar="ARRAY")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--dataset", default=None, help="Dataset name in an HDF5 file (default: the array's name).")
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
def export(name, state_dir, namespace, array_name, dest, dataset, force):
    """Copy ARRAY to a local zarr folder (byte for byte), an HDF5 file (.h5) or a .npy file."""
    import numpy as np

    from . import transfer

    a = get_array(root_group(name, state_dir, namespace, "r"), array_name)
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists: use --force to replace it")
    if dest.suffix not in (".npy", ".h5", ".hdf5") and dest.suffix != ".zarr" and dest.suffix:
        raise UsageError(f"{dest}: export writes a .zarr folder, a .h5/.hdf5 file or a .npy file")
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    try:
        total = a.nbytes if dest.suffix in (".npy", ".h5", ".hdf5") else a.nbytes_stored()
        with bar(int(total), f"export {array_name}") as advance:
            if dest.suffix == ".npy":
                out = np.lib.format.open_memmap(dest, mode="w+", dtype=a.dtype, shape=a.shape)
                transfer.export_into(a, lambda sel, block: out.__setitem__(sel, block), on_unit=advance)
                out.flush()
                del out
            elif dest.suffix in (".h5", ".hdf5"):
                import h5py

                with h5py.File(dest, "w") as f:
                    ds = f.create_dataset(dataset or array_name.rsplit("/", 1)[-1], shape=a.shape, dtype=a.dtype,
                                          chunks=tuple(a.chunks) if a.shape else None)
                    transfer.export_into(a, lambda sel, block: ds.__setitem__(sel, block), on_unit=advance)
            else:
                transfer.export_zarr(a, dest, on_key=advance)
    except (OSError, RamburstError):
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        raise
    click.echo(f"ramburst: {array_name} exported to {dest}", err=True)
