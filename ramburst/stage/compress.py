"""`stage in --codec`: volumes go into the cluster compressed, as zarr arrays, and `stage out` gives back
the original files byte for byte.

Why arrays and not compressed copies of the files: in a RAM cluster the job reads its inputs from the
cluster. A compressed blob in the pool or the fs mount is unreadable to the job without ramburst; a zarr
array is what a volume is for a job (`ramburst.arrays.open()["in/vol.npy"][z0:z1]`, plain zarr after
`import ramburst.codecs`), each chunk decoding alone. So a recognised file (a C- or Fortran-order .npy,
or an HDF5 file whose largest dataset is stored contiguous and uncompressed, with a dtype the codec takes)
becomes a zarr array in the instance's `arrays` namespace, at <target path>/<rel>; everything else goes
through the ordinary stage unchanged (still readable as files).

Byte identity: the array's attribute `ramburst.stage` keeps the file's bytes around the array (the .npy
header; the HDF5 file's metadata and small datasets, at most MAX_REST), the dtype as written (byte order),
size, mode, mtime and the xxh3 of the ORIGINAL file's bytes. Stage-in reads the array back and hashes
head + decoded data + tail against that; stage-out rebuilds the file, checks the same
hash before the file gets its final name, and reads it back. A corrupt chunk (the volume codec's CRC, or
zstd's checksum) or any other difference fails that file; nothing wrong is left under its name.

Lossless only: a lossy codec (sz3, zfp, quant) could not give the original bytes back, which is the stage's
promise; it is refused with a pointer to `ramburst array import --codec` for a lossy copy. The list of
staged volumes is kept beside the stage journal (`.ramburst-stage/volumes/entries.json`).
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from .stores import Sources, walk_tree
from .stores.common import TMP_SUFFIX

NAMESPACE = "arrays"
ATTR = "ramburst.stage"
STATE = "volumes"
CHUNK_BYTES = 4 * 2**20     # one RADOS object per chunk; 4 MiB chunks were the arrays bench's best
LOSSY = ("sz3", "zfp", "quant")
READ = 16 * 2**20


@dataclass(frozen=True)
class Coding:
    """A lossless --codec: which dtypes it takes and the zarr options that make an array of it."""
    spec: str
    name: str
    level: int | None

    def takes(self, dtype) -> bool:
        from ..codecs import volume

        dtype = dtype.newbyteorder("=")
        return dtype.name in volume.KINDS if self.name == "volume" else dtype.kind in "biuf"

    def options(self, dtype) -> dict:
        if self.name == "volume":
            from ..codecs import VolumeCodec

            codec = VolumeCodec(level=self.level) if self.level is not None else VolumeCodec()
            return {"serializer": codec, "compressors": None}
        from zarr.codecs import ZstdCodec

        return {"compressors": ZstdCodec(level=3 if self.level is None else self.level, checksum=True)}


def parse_codec(spec: str) -> Coding:
    """`volume[:LEVEL]` (ramburst's volume codec) or `zstd[:LEVEL]` (any numeric dtype); a lossy or unknown
    name is a UsageError, raised before anything is read or created."""
    name, _, arg = spec.partition(":")
    if name in LOSSY:
        raise UsageError(f"--codec {spec}: lossy; stage out could not give back the original bytes, so the stage "
                         f"takes lossless codecs only (volume, zstd); for a lossy copy use "
                         f"`ramburst array import SRC ARRAY --codec {spec}`")
    if name not in ("volume", "zstd"):
        raise UsageError(f"--codec {spec}: unknown; the stage takes volume[:LEVEL] or zstd[:LEVEL] (lossless)")
    try:
        level = int(arg) if arg else None
    except ValueError:
        raise UsageError(f"--codec {spec}: the level must be an integer, e.g. {name}:19") from None
    if level is not None and not 1 <= level <= 22:
        raise UsageError(f"--codec {spec}: the zstd level must be 1 to 22")
    try:
        import zarr  # noqa: F401

        import ramburst.codecs  # noqa: F401
    except ImportError:
        raise UsageError("--codec needs the arrays and codecs extras: pip install 'ramburst[arrays,codecs]'") \
            from None
    return Coding(spec, name, level)


# -- what is a volume --------------------------------------------------------------------------------------------
@dataclass
class Volume:
    """A file that is one array's raw bytes between a head and a tail: a .npy (head = its header) or an
    HDF5 file whose largest dataset is contiguous and uncompressed (head and tail = the rest of the file)."""
    rel: str
    src: str
    size: int
    mtime_ns: int
    mode: int
    kind: str                 # "npy" or "hdf5"
    offset: int               # where the array's bytes start in the file
    head: str                 # the file's bytes before them, base64
    tail: str                 # the file's bytes after them, base64
    dtype: str                # as in the file, with its byte order (e.g. ">u2")
    shape: list               # as stored: C order of the bytes (a Fortran-order .npy's shape reversed)
    fortran: bool = False
    dataset: str = ""         # HDF5: the dataset's name

    @property
    def ident(self) -> str:
        return f"{self.size}:{self.mtime_ns}:{self.mode:o}"


def recognise(src: str, rel: str, size: int, mtime_ns: int, mode: int, coding: Coding) -> Volume | None:
    """A .npy or HDF5 file whose array the codec takes, else None (it is staged as a plain file)."""
    try:
        if rel.endswith(".npy"):
            found = _npy_region(src)
        elif rel.endswith((".h5", ".hdf5")):
            found = _hdf5_region(src)
        else:
            return None
    except (OSError, ValueError):
        return None
    if found is None:
        return None
    kind, offset, shape, dtype, fortran, dataset = found
    if dtype.hasobject or dtype.fields or dtype.subdtype or not shape or 0 in shape or not coding.takes(dtype):
        return None
    end = offset + math.prod(shape) * dtype.itemsize
    rest = size - (end - offset)
    if end > size or (kind == "npy" and end != size) or rest > MAX_REST:
        return None
    with open(src, "rb") as f:
        head = f.read(offset)
        f.seek(end)
        tail = f.read()
    stored = list(reversed(shape)) if fortran and len(shape) > 1 else list(shape)
    return Volume(rel, src, size, mtime_ns, mode, kind, offset, _b64(head), _b64(tail), dtype.str, stored,
                  fortran, dataset)


MAX_REST = 2**20   # an HDF5 file's bytes besides the dataset ride in the array's attributes: keep them small


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _npy_region(src: str):
    import numpy as np

    with open(src, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
        if read is None:
            return None
        shape, fortran, dtype = read(f)
        return "npy", f.tell(), tuple(shape), dtype, fortran, ""


def _hdf5_region(src: str):
    """The largest dataset stored contiguously, uncompressed and allocated (its bytes are the array's)."""
    try:
        import h5py
    except ImportError:
        return None
    best = None
    try:
        with h5py.File(src, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                ds = f[name]
                offset = ds.id.get_offset()
                if offset is None or ds.chunks is not None or ds.compression or ds.external or not ds.shape:
                    continue
                if ds.id.get_storage_size() != ds.size * ds.dtype.itemsize:
                    continue
                if best is None or ds.size * ds.dtype.itemsize > best[0]:
                    best = (ds.size * ds.dtype.itemsize, offset, tuple(ds.shape), ds.dtype, name)
    except (OSError, KeyError, TypeError):
        return None
    if best is None:
        return None
    _, offset, shape, dtype, name = best
    return "hdf5", offset, shape, dtype, False, name


def find(paths: list[Path], coding: Coding, errors: list[str]) -> list[Volume]:
    """The volumes among the SRC files, named as the stage names them (SRC basename / relative path)."""
    out = []
    for p in paths:
        for e in walk_tree(p, p.name, errors):
            if e.kind == "f":
                v = recognise(e.src, e.rel, e.size, e.mtime_ns, e.mode, coding)
                if v is not None:
                    out.append(v)
    return out


class Rest(Sources):
    """The SRC arguments without the volumes: what the ordinary stage copies."""

    def __init__(self, paths: list[Path], skip: set[str]):
        super().__init__(paths)
        self.skip = skip

    def entries(self, errors: list[str]):
        return [e for e in super().entries(errors) if e.rel not in self.skip]


def array_root(spec: str) -> str:
    """Where a stage's arrays go in the `arrays` namespace: the target's path (pool:in/ -> in)."""
    for kind in ("pool:", "fs:", "s3://"):
        if spec.startswith(kind):
            return spec[len(kind):].strip("/")
    return ""


def chunks_for(shape: tuple, itemsize: int, target: int = CHUNK_BYTES) -> tuple:
    """Slabs of whole planes (what a file is streamed in, and what slice-wise analyses read) of about
    `target` bytes; a plane larger than that is cut along its longest axes."""
    row = math.prod(shape[1:]) * itemsize
    if row <= target:
        return (max(1, min(shape[0], target // max(row, 1))), *shape[1:])
    c = [1, *shape[1:]]
    while math.prod(c) * itemsize > target and max(c[1:]) > 1:
        i = 1 + max(range(len(c) - 1), key=lambda j: c[j + 1])
        c[i] = -(-c[i] // 2)
    return tuple(c)


class _NativeSource:
    """The file's array bytes as import_into wants them: native byte order, in the bytes' (C) order."""

    def __init__(self, v: Volume):
        import numpy as np

        self.m = np.memmap(v.src, dtype=np.dtype(v.dtype), mode="r", offset=v.offset, shape=tuple(v.shape))
        self.dtype = self.m.dtype.newbyteorder("=")
        self.shape = self.m.shape
        self.size = self.m.size

    def __getitem__(self, sel):
        import numpy as np

        return np.ascontiguousarray(self.m[sel], dtype=self.dtype)


def file_hash(path) -> str:
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(READ):
            h.update(block)
    return h.hexdigest()


def slabs(a, threads: int) -> Iterator:
    """The array's slabs along axis 0 in order, a few decoded ahead in threads."""
    import numpy as np

    c0 = a.chunks[0]
    ahead: deque = deque()
    with ThreadPoolExecutor(max(1, threads)) as ex:
        for z in range(0, a.shape[0], c0):
            ahead.append(ex.submit(lambda z=z: np.asarray(a[z:z + c0])))
            if len(ahead) >= max(2, threads):
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def stored_hash(a, rec: dict, threads: int, write=None, tick=None) -> str:
    """xxh3 of the file the array stands for: head, the decoded data in the file's dtype, tail."""
    import base64

    import numpy as np
    import xxhash

    h = xxhash.xxh3_64()
    head = base64.b64decode(rec["head"])
    h.update(head)
    if write:
        write(head)
    for block in slabs(a, threads):
        data = np.ascontiguousarray(block, dtype=np.dtype(rec["dtype"])).reshape(-1).view(np.uint8)
        h.update(data)
        if write:
            write(data)
        if tick:
            tick(data.nbytes, 0)
    tail = base64.b64decode(rec["tail"])
    h.update(tail)
    if write:
        write(tail)
    return h.hexdigest()


class Progress:
    """The volumes' share of the stage's progress (a bar on a terminal, run/stage.json): bytes encoded and
    read back, or rebuilt. The reporter is made only when a volume is actually processed, so a stage with
    nothing to do leaves the ordinary stage's report alone."""

    def __init__(self, make, total: int, files: int):
        import threading

        self.make, self.total, self.files = make, total, files
        self.rep = None
        self.done = self.base = self.files_done = 0
        self.lock = threading.Lock()

    def _rep(self):
        if self.rep is None and self.make is not None:
            self.rep = self.make()
            if self.rep is not None:
                self.rep.start(self.total, self.files)
        return self.rep

    def tick(self, n: int, _files: int = 0) -> None:
        with self.lock:
            self.done += n
            rep = self._rep()
            if rep is not None:
                rep.update(self.done, self.files_done)

    def file_done(self, planned: int) -> None:
        """One file finished (or failed or was skipped): count what it had planned, whatever it did."""
        with self.lock:
            self.base += planned
            self.done = max(self.done, self.base)
            self.files_done += 1
            if self.rep is not None:
                self.rep.update(self.done, self.files_done)

    def finish(self, errors: list[str]) -> None:
        if self.rep is not None:
            self.rep.finish(f"{len(errors)} volume(s) failed" if errors else None)


# -- stage in ---------------------------------------------------------------------------------------------------
def _group(cluster, read_only: bool = False):
    import zarr

    import ramburst.codecs  # noqa: F401

    return zarr.open_group(cluster.zarr_store(namespace=NAMESPACE, read_only=read_only),
                           mode="r" if read_only else "a")


def _existing(group, path: str):
    import zarr

    try:
        node = group[path]
    except KeyError:
        return None
    if not isinstance(node, zarr.Array) or ATTR not in node.attrs:
        raise UsageError(f"an array or group not made by `stage in` exists at {path!r} in namespace "
                         f"{NAMESPACE!r}: not replaced")
    return node


def put_volume(group, v: Volume, path: str, coding: Coding, threads: int, verify: bool, tick=None) -> dict:
    """One volume into one array (resumable: units already stored with equal values are skipped)."""
    from ..arrays.transfer import import_into, new_array

    rec = {**asdict(v), "codec": coding.spec, "ident": v.ident, "complete": False}
    rec.pop("src")
    a = _existing(group, path)
    if a is not None:
        old = a.attrs[ATTR]
        if old.get("complete") and old.get("ident") == v.ident and old.get("codec") == coding.spec:
            return {"skipped": True, "bytes": 0, "stored_bytes": int(a.nbytes_stored())}
        if old.get("ident") != v.ident or old.get("codec") != coding.spec or old.get("dtype") != v.dtype:
            a = None
    original = file_hash(v.src)
    rec["xxh3"] = original
    src = _NativeSource(v)
    if a is None:
        a = new_array(group, path, src.shape, src.dtype, chunks_for(src.shape, src.dtype.itemsize),
                      overwrite=True, config={"write_empty_chunks": True}, attributes={ATTR: rec},
                      **coding.options(src.dtype))
    else:
        a.update_attributes({ATTR: rec})
    units = import_into(a, src, jobs=threads, on_unit=(lambda n, _skipped: tick(n, 0)) if tick else None)
    st = os.stat(v.src)
    if (st.st_size, st.st_mtime_ns) != (v.size, v.mtime_ns):
        raise OSError(f"changed while staged (size/mtime {st.st_size}/{st.st_mtime_ns})")
    if verify and stored_hash(a, rec, threads, tick=tick) != original:
        raise OSError("the stored array does not read back as the file (xxh3 differs)")
    rec["complete"] = True
    a.update_attributes({ATTR: rec})
    return {"skipped": False, "bytes": v.size, "stored_bytes": int(a.nbytes_stored()),
            "units_written": units["written"], "units_skipped": units["skipped"]}


def stage_in_volumes(cluster, keeper, spec: str, paths: list[Path], volumes: list[Volume], coding: Coding,
                     threads: int, verify: bool, dry_run: bool, reporter=None) -> dict:
    """Rank 0's part of `stage in --codec`: every volume in, the list of them beside the stage journal.
    `reporter()` makes the progress reporter (bar, run/stage.json) once there is work."""
    t0 = time.monotonic()
    root = array_root(spec)
    out = {"codec": coding.spec, "files": 0, "skipped": 0, "bytes": 0, "stored_bytes": 0, "units_written": 0,
           "units_skipped": 0, "errors": [], "arrays": {}}
    if dry_run:
        out["files_total"] = len(volumes)
        out["bytes_total"] = sum(v.size for v in volumes)
        return out
    group = _group(cluster)
    progress = Progress(reporter, sum(v.size for v in volumes) * (2 if verify else 1), len(volumes))
    for v in volumes:
        path = f"{root}/{v.rel}" if root else v.rel
        try:
            r = put_volume(group, v, path, coding, threads, verify, progress.tick)
        except Exception as e:  # noqa: BLE001 - one file's failure, any cause, is that file's error line
            out["errors"].append(f"{v.src}: not staged as an array ({type(e).__name__}: {e})")
            continue
        finally:
            progress.file_done(v.size * (2 if verify else 1))
        out["arrays"][v.rel] = path
        if r["skipped"]:
            out["skipped"] += 1
            continue
        out["files"] += 1
        out["bytes"] += r["bytes"]
        for k in ("stored_bytes", "units_written", "units_skipped"):
            out[k] += r[k]
    forget(keeper, paths, {v.rel for v in volumes}, out["arrays"])
    progress.finish(out["errors"])
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def forget(keeper, paths: list[Path], volumes: set[str] = frozenset(), arrays: dict | None = None) -> None:
    """Keep the list of staged volumes true: a file under these SRCs that went in as a plain file this
    time (not among `volumes`) no longer comes back from its old array; `arrays` are added."""
    meta = keeper.meta_get(STATE)
    files = meta.get("files", {})
    tops = {p.name for p in paths}
    kept = {rel: a for rel, a in files.items() if rel.split("/", 1)[0] not in tops or rel in volumes}
    kept.update(arrays or {})
    if kept != files:
        keeper.meta_put(STATE, {"namespace": NAMESPACE, "files": kept})


# -- stage out --------------------------------------------------------------------------------------------------
def _write_file(a, rec: dict, out: Path, threads: int, verify: bool, tick=None) -> None:
    """Rebuild one file at `out`: temporary name, the original's hash checked, fsync, mode, mtime, rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parent_mtime = out.parent.stat().st_mtime_ns
    tmp = out.with_name(f".{out.name}{TMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ok = False
    try:
        def write(data) -> None:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
        got = stored_hash(a, rec, threads, write, tick)
        if got != rec["xxh3"]:
            raise OSError("the stored array does not give back the original bytes (xxh3 differs)")
        os.fsync(fd)
        os.fchmod(fd, rec["mode"])
        os.utime(fd, ns=(rec["mtime_ns"], rec["mtime_ns"]))
        ok = True
    finally:
        os.close(fd)
        if not ok:
            tmp.unlink(missing_ok=True)
    os.replace(tmp, out)
    os.utime(out.parent, ns=(parent_mtime, parent_mtime))   # the stage set the folders' mtimes already
    if verify and (out.stat().st_size != rec["size"] or file_hash(out) != rec["xxh3"]):
        out.unlink()
        raise OSError("the written file does not read back as the original (size or xxh3 differs)")


def stage_out_volumes(cluster, source, dest: Path, threads: int, verify: bool, dry_run: bool,
                      reporter=None) -> dict | None:
    """Rank 0's part of `stage out` when the source holds staged volumes: each array back to its file.
    None when it holds none (no zarr needed then)."""
    files = source.meta_get(STATE).get("files", {})
    if not files:
        return None
    t0 = time.monotonic()
    out = {"files": 0, "skipped": 0, "bytes": 0, "errors": []}
    if dry_run:
        out["files_total"] = len(files)
        return out
    group = _group(cluster, read_only=True)
    found = []
    for rel, path in sorted(files.items()):
        try:
            a = _existing(group, path)
            if a is None:
                raise OSError(f"its array {path!r} is missing")
            rec = a.attrs[ATTR]
            if not rec.get("complete"):
                raise OSError("its stage in did not complete; run it again")
        except Exception as e:  # noqa: BLE001 - any cause: this file's error line
            out["errors"].append(f"{rel}: not restored ({type(e).__name__}: {e})")
            continue
        found.append((rel, a, rec))
    progress = Progress(reporter, sum(rec["size"] for _, _, rec in found), len(found))
    for rel, a, rec in found:
        target = dest / rel
        try:
            if target.is_file() and not target.is_symlink():
                st = target.stat()
                if (st.st_size, st.st_mtime_ns) == (rec["size"], rec["mtime_ns"]) and \
                        file_hash(target) == rec["xxh3"]:
                    out["skipped"] += 1
                    continue
            _write_file(a, rec, target, threads, verify, progress.tick)
        except Exception as e:  # noqa: BLE001 - a corrupt chunk raises the codec's error; any cause: this file
            out["errors"].append(f"{rel}: not restored ({type(e).__name__}: {e})")
            continue
        finally:
            progress.file_done(rec["size"])
        out["files"] += 1
        out["bytes"] += rec["size"]
    progress.finish(out["errors"])
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def merge(summary: dict, part: dict | None) -> dict:
    """Fold the volumes' part into the stage summary (files, bytes, errors, time) and keep it as `volumes`."""
    if part is None:
        return summary
    summary["volumes"] = {k: v for k, v in part.items() if k != "errors"}
    summary["errors"] = list(summary.get("errors", [])) + part["errors"]
    if summary.get("dry_run"):
        summary["files_total"] += part.get("files_total", 0)
        summary["bytes_total"] += part.get("bytes_total", 0)
        return summary
    summary["files"] += part["files"]
    summary["bytes"] += part["bytes"]
    summary["skipped_files"] += part["skipped"]
    summary["seconds"] = round(summary["seconds"] + part["seconds"], 3)
    summary["mb_s"] = round(summary["bytes"] / 1e6 / max(summary["seconds"], 1e-9), 1)
    return summary


def describe(v: dict) -> str:
    """The CLI's line about the volumes of a stage."""
    if "stored_bytes" in v:
        ratio = v["bytes"] / v["stored_bytes"] if v["bytes"] and v["stored_bytes"] else 0
        return (f"{v['files']} volume(s) compressed with {v['codec']} into zarr arrays (namespace "
                f"{NAMESPACE!r}): {v['bytes'] / 2**20:.1f} MiB -> {v['stored_bytes'] / 2**20:.1f} MiB stored"
                + (f" ({ratio:.2f}x)" if ratio else "") + f"; {v['skipped']} unchanged")
    return f"{v['files']} volume(s) rebuilt from their arrays, {v['skipped']} unchanged"
