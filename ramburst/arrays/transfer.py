"""Import and export of whole arrays between the cluster and local files (zarr, HDF5, .npy).

Both walk the target's write units (a shard when the array is sharded, else a chunk), so every
unit is one RADOS object written once. Import is resumable: a unit whose object is present and
holds the source's values is skipped, so re-running an interrupted import only writes the rest.
"""
from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

JOBS = 8


def open_source(path: Path, dataset: str | None = None) -> tuple[Any, Any]:
    """A numpy-like source (shape, dtype, slicing) for a .npy file, an HDF5 dataset or a local
    zarr array; and the object to close afterwards (or None)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r"), None
    if path.suffix in (".h5", ".hdf5", ".nc", ".he5"):
        import h5py

        f = h5py.File(path, "r")
        if dataset is None:
            names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
            if len(names) != 1:
                f.close()
                raise UsageError(f"{path}: say which dataset with --dataset (top-level datasets: {names})")
            dataset = names[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            f.close()
            raise UsageError(f"{path}: no dataset {dataset!r}")
        return f[dataset], f
    if path.is_dir():
        import zarr

        try:
            node = zarr.open(zarr.storage.LocalStore(path, read_only=True), mode="r", path=dataset or "")
        except Exception as e:  # noqa: BLE001 - whatever zarr says, one line for the user
            raise UsageError(f"{path}: not a zarr array or group ({e})") from None
        if not isinstance(node, zarr.Array):
            raise UsageError(f"{path}: a zarr group; say which array with --dataset "
                             f"(arrays: {sorted(node.array_keys())})")
        return node, None
    raise UsageError(f"{path}: not a .npy file, an HDF5 file (.h5/.hdf5) or a zarr folder")


def write_unit(a) -> tuple[int, ...]:
    """The block that is stored as one object: the shard, or the chunk when unsharded."""
    return tuple(a.shards or a.chunks)


def units(shape: tuple[int, ...], unit: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Grid coordinates and selection of every write unit of an array."""
    grid = [math.ceil(n / u) if u else 1 for n, u in zip(shape, unit)]
    for coords in itertools.product(*(range(g) for g in grid)):
        yield coords, tuple(slice(c * u, min((c + 1) * u, n)) for c, u, n in zip(coords, unit, shape))


def unit_key(a, coords: tuple[int, ...]) -> str:
    key = a.metadata.encode_chunk_key(coords)
    return f"{a.path}/{key}" if a.path else key


def parse_shape(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, e.g. 64,64,64 (got {text!r})") from None
    if any(v <= 0 for v in values):
        raise UsageError(f"{what} must be positive (got {text!r})")
    return values


def check_layout(shape, chunks, shards) -> None:
    """Bad --chunks/--shards for this shape: UsageError before anything is created."""
    if chunks is not None and len(chunks) != len(shape):
        raise UsageError(f"--chunks has {len(chunks)} values, the array has {len(shape)} dimensions")
    if shards is not None and chunks is None:
        raise UsageError("--shards needs --chunks (the inner chunk shape)")
    if shards is not None and (len(shards) != len(shape) or any(s % c for s, c in zip(shards, chunks or shards))):
        raise UsageError("--shards needs one value per dimension, each a multiple of --chunks")


def new_array(group, name: str, shape, dtype, chunks=None, shards=None, compressors: Any = "auto",
              overwrite: bool = False, **options: Any):
    """Create array `name` in `group` (the one place import creates arrays; extra zarr options
    such as filters or serializer pass through `options`)."""
    check_layout(shape, chunks, shards)
    return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks or "auto", shards=shards,
                              compressors=compressors, overwrite=overwrite, **options)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _lossy_bound(target) -> float | None:
    """The absolute error bound of a lossy serializer (ramburst.sz3/zfp/quant keep it as `abs`), else None."""
    bound = getattr(getattr(target, "serializer", None), "abs", None)
    return float(bound) if isinstance(bound, (int, float)) else None


def _within(stored: np.ndarray, block: np.ndarray, bound: float) -> bool:
    """A lossy unit is done when it holds the source within its bound (equality never holds)."""
    if stored.shape != block.shape:
        return False
    a, b = stored.astype(np.float64), block.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    return float(np.max(np.abs(a - b), initial=0.0)) <= bound


def import_into(target, source, jobs: int = JOBS, on_unit: Callable[[int, bool], None] | None = None,
                only: Callable[[int], bool] | None = None) -> dict[str, int]:
    """Copy `source` into zarr array `target` unit by unit; a unit already present with equal
    values (for a lossy codec: values within its bound) is skipped. `only(i)` picks the units of
    this process (MPI); `on_unit(bytes, skipped)` reports progress. Returns counts of written and skipped units."""
    from zarr.core.sync import sync

    store = target.store
    bound = _lossy_bound(target)
    counts = {"written": 0, "skipped": 0, "bytes": 0}
    lock = threading.Lock()

    def one(item) -> None:
        coords, sel = item
        block = np.asarray(source[sel])
        skipped = False
        if sync(store.exists(unit_key(target, coords))):
            stored = np.asarray(target[sel])
            skipped = _same(stored, block) if bound is None else _within(stored, block, bound)
        if not skipped:
            target[sel] = block
        with lock:
            counts["skipped" if skipped else "written"] += 1
            counts["bytes"] += block.nbytes
        if on_unit:
            on_unit(block.nbytes, skipped)

    todo = [u for i, u in enumerate(units(target.shape, write_unit(target))) if only is None or only(i)]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))
    return counts


def export_zarr(array, dest: Path, jobs: int = 16, on_key: Callable[[int], None] | None = None) -> int:
    """Copy the stored objects of `array` byte for byte into a local zarr folder `dest`, which
    then opens as that array with plain zarr. Returns bytes copied."""
    import zarr
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    src = array.store
    prefix = f"{array.path}/" if array.path else ""
    local = zarr.storage.LocalStore(dest)
    proto = default_buffer_prototype()

    async def copy() -> int:
        keys = [k async for k in src.list_prefix(prefix)]
        if array.path:
            keys.append(f"{array.path}/zarr.json")
        keys = sorted(set(keys))
        limit = asyncio.Semaphore(jobs)
        total = 0

        async def one(key: str) -> None:
            nonlocal total
            async with limit:
                value = await src.get(key, proto)
                if value is None:
                    return
                await local.set(key[len(prefix):], value)
                total += len(value)
                if on_key:
                    on_key(len(value))

        await asyncio.gather(*(one(k) for k in keys))
        return total

    return sync(copy())


def export_into(array, write: Callable[[tuple[slice, ...], np.ndarray], None], jobs: int = JOBS,
                on_unit: Callable[[int], None] | None = None) -> None:
    """Read `array` unit by unit (in parallel) and hand each block to `write(selection, block)`."""
    lock = threading.Lock()

    def one(item) -> None:
        _coords, sel = item
        block = np.asarray(array[sel])
        with lock:
            write(sel, block)
        if on_unit:
            on_unit(block.nbytes)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, units(array.shape, write_unit(array))))
