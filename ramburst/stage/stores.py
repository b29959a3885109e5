"""Where staged data lives: a local tree, the instance's pool (RADOS objects) or its S3 endpoint.

Each store can be a source (list entries, read byte ranges), a target (write an extent, make a
file final, read it back to verify) and, on the cluster side, the keeper of the stage journal
(`.ramburst-stage/<name>/` beside the data). Nothing is ever half-written under a final name:
- tree: a file is written to `.NAME.rbstage-tmp` in its folder, fsynced, then renamed;
- pool: a file up to one extent is one object written by one write_full (atomic in RADOS); a
  larger file is its extents, objects `PREFIX+rel.K` in the RADOS namespace `ramburst-extents`,
  and once all are written an empty head object `PREFIX+rel` whose xattr `ramburst.extents`
  holds {"size", "extent", "n"}: the head appears last (osd_max_object_size is 128 MiB);
- s3: one PUT per small file; a large file is a multipart upload whose parts are its extents,
  visible only when completed.
"""
from __future__ import annotations

import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import UsageError
from .model import Entry

STAGE_DIR = ".ramburst-stage"
TMP_SUFFIX = ".rbstage-tmp"
EXT_NS = "ramburst-extents"
UMASK = os.umask(0o022)
os.umask(UMASK)


def walk_tree(root: Path, top: str, errors: list[str]) -> list[Entry]:
    """Entries under `root`, named `top/...` (or relative when top is ""); symlinks are not followed."""
    entries: list[Entry] = []

    def add(path: Path, rel: str) -> None:
        try:
            st = path.lstat()
        except OSError as e:
            errors.append(f"{path}: {e.strerror}")
            return
        base = {"rel": rel, "mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode), "src": str(path)}
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(kind="l", link=os.readlink(path), **base))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(kind="d", **base))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(kind="f", size=st.st_size, **base))
        else:
            errors.append(f"{path}: not a regular file, folder or symlink: skipped")

    if top:
        add(root, top)
    if not root.is_dir() or root.is_symlink():
        return entries
    for folder, dirs, files in os.walk(root, onerror=lambda e: errors.append(f"{e.filename}: {e.strerror}")):
        here = Path(folder)
        rel_folder = here.relative_to(root).as_posix()
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d != STAGE_DIR]
            files = [f for f in files if f != STAGE_DIR]
        for name in sorted(dirs) + sorted(files):
            if name.endswith(TMP_SUFFIX):
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            add(here / name, f"{top}/{rel}" if top else rel)
    return entries


class Tree:
    """A local folder (a source SRC, a stage-out DEST, or a folder in the fs mount)."""

    kind = "fs"

    def __init__(self, root: Path, label: str | None = None, durable: bool = True):
        self.root = Path(root)
        self.label = label or str(root)
        self.durable = durable  # fsync each file; else one syncfs per rank when the copy ends

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        return walk_tree(self.root, "", errors)

    def read(self, e: Entry, off: int, n: int) -> bytes:
        with open(e.src or self.root / e.rel, "rb", buffering=0) as f:
            return os.pread(f.fileno(), n, off) if n else b""

    # -- target
    def path(self, rel: str) -> Path:
        return self.root / rel

    def tmp(self, rel: str) -> Path:
        p = self.path(rel)
        return p.with_name(f".{p.name}{TMP_SUFFIX}")

    def prepare(self, entries: list[Entry]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for e in entries:
            if e.kind == "d":
                p = self.path(e.rel)
                if p.is_symlink() or (p.exists() and not p.is_dir()):
                    p.unlink()
                p.mkdir(parents=True, exist_ok=True)
            else:
                self.path(e.rel).parent.mkdir(parents=True, exist_ok=True)

    def _final(self, e: Entry, fd: int, tmp: Path, whole: bool = False) -> None:
        if not whole:
            os.ftruncate(fd, e.size)
        if self.durable:
            os.fsync(fd)
        if not whole or e.mode & UMASK:  # a fresh file got its mode at creation, unless umask took bits
            os.fchmod(fd, e.mode)
        os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        os.close(fd)
        os.replace(tmp, self.path(e.rel))

    def write_whole(self, e: Entry, data: bytes) -> str:
        tmp = self.tmp(e.rel)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode)
        except FileExistsError:  # left by a killed run: its mode may differ
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            raise
        self._final(e, fd, tmp, whole=True)
        return ""

    def begin(self, e: Entry) -> str:
        return ""

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        fd = os.open(self.tmp(e.rel), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, off)
            if self.durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return ""

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        tmp = self.tmp(e.rel)
        self._final(e, os.open(tmp, os.O_WRONLY), tmp)

    def flush(self) -> None:
        """Without per-file fsync: push this client's cached writes out (syncfs on the mount)."""
        if self.durable or not self.root.exists():
            return
        import ctypes

        fd = os.open(self.root, os.O_RDONLY)
        try:
            ctypes.CDLL(None, use_errno=True).syncfs(fd)
        finally:
            os.close(fd)

    def put_other(self, e: Entry) -> None:
        """Symlinks and folder modes/mtimes (folders last, deepest first)."""
        p = self.path(e.rel)
        if e.kind == "l":
            if p.is_symlink() or p.exists():
                if p.is_symlink() and os.readlink(p) == e.link:
                    os.utime(p, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
                    return
                p.unlink()
            os.symlink(e.link, p)
            os.utime(p, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        elif e.kind == "d":
            os.chmod(p, e.mode)
            os.utime(p, ns=(e.mtime_ns, e.mtime_ns))

    def size_of(self, e: Entry) -> int | None:
        try:
            return self.path(e.rel).lstat().st_size
        except FileNotFoundError:
            return None

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        with open(self.path(e.rel), "rb", buffering=0) as f:
            return os.pread(f.fileno(), n, off) if n else b""

    def free_bytes(self) -> int | None:
        p = self.root
        while not p.exists():
            p = p.parent
        st = os.statvfs(p)
        return st.f_bavail * st.f_frsize

    def remove_extra(self, keep: set[str]) -> list[str]:
        """--delete: remove what the source no longer has (never the stage folder)."""
        removed = []
        for e in sorted(walk_tree(self.root, "", []), key=lambda x: x.rel, reverse=True):
            if e.rel not in keep:
                p = self.path(e.rel)
                p.rmdir() if e.kind == "d" else p.unlink()
                removed.append(e.rel)
        return removed

    # -- journal, when this tree is the cluster side (a folder in the fs mount)
    def _state(self, name: str) -> Path:
        return self.root / STAGE_DIR / name

    def state_lines(self, name: str) -> list[str]:
        folder = self._state(name)
        lines: list[str] = []
        for f in [folder / "manifest"] + sorted(folder.glob("journal.*")):
            if f.exists():
                lines += f.read_text().splitlines()
        return lines

    def state_append(self, name: str, tag: str, text: str) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"journal.{tag}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text.encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def state_compact(self, name: str, lines: list[str]) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("journal.*"))
        tmp = folder / "manifest.tmp"
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, folder / "manifest")
        for f in old:
            f.unlink()

    def meta_get(self, name: str) -> dict:
        try:
            return json.loads((self._state(name) / "entries.json").read_text())
        except FileNotFoundError:
            return {}

    def meta_put(self, name: str, meta: dict) -> None:
        folder = self._state(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "entries.tmp").write_text(json.dumps(meta))
        os.replace(folder / "entries.tmp", folder / "entries.json")


class Sources(Tree):
    """The SRC arguments of `stage in`: each one becomes a top-level entry named by its basename."""

    def __init__(self, paths: list[Path]):
        super().__init__(Path("/"), " ".join(map(str, paths)))
        self.paths = paths

    def entries(self, errors: list[str]) -> list[Entry]:
        out: list[Entry] = []
        for p in self.paths:
            out += walk_tree(p, p.name, errors)
        return out


def merged_meta(meta: dict, rel: str, size: int) -> dict | None:
    m = meta.get("entries", {}).get(rel)
    return m if m and m["size"] == size and m["kind"] == "f" else None


class Pool:
    """RADOS objects named PREFIX+rel in the instance's pool (layout in the module docstring)."""

    kind = "pool"

    def __init__(self, cluster, prefix: str):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.cluster, self.prefix = cluster, prefix
        self.label = f"pool:{prefix}"
        self.io = cluster.ioctx()
        self.ext = cluster.ioctx()
        self.ext.set_namespace(EXT_NS)
        self.extent = 0  # the layout's extent size for large files read back (from the manifest)

    def _op(self, io, name: str, fill) -> None:
        from ..ceph.admin import load_rados

        with load_rados().WriteOpCtx() as op:
            fill(op)
            io.operate_write_op(op, name, flags=self.cluster.FULL_TRY)

    def obj(self, rel: str) -> str:
        return self.prefix + rel

    def xobj(self, rel: str, k: int) -> str:
        return f"{self.prefix}{rel}.{k}"

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        meta = self.meta_get("in")
        self.extent = meta.get("extent", 0)
        names = [o.key for o in self.io.list_objects() if o.key.startswith(self.prefix)]
        names = [n for n in names if not n[len(self.prefix):].startswith(STAGE_DIR + "/")]

        def one(name: str) -> Entry:
            rel = name[len(self.prefix):]
            size, mtime = self.io.stat(name)
            mt = int(time.mktime(mtime)) * 10**9
            known = meta.get("entries", {}).get(rel)
            if known and known["kind"] == "f" and size == 0 and known["size"] > self.extent > 0:
                e = Entry(**known)
                e.src = "extents"
                return e
            m = merged_meta(meta, rel, size)
            return Entry(rel=rel, kind="f", size=size, mtime_ns=m["mtime_ns"] if m else mt,
                         mode=m["mode"] if m else 0o644, ident=f"{size}:{mt}", src=name)

        with ThreadPoolExecutor(16) as ex:
            out = list(ex.map(one, names))
        have = {e.rel for e in out}
        out += [Entry(**m) for rel, m in meta.get("entries", {}).items() if m["kind"] != "f" and rel not in have]
        return sorted(out, key=lambda e: e.rel)

    def read(self, e: Entry, off: int, n: int) -> bytes:
        if e.src != "extents":
            return self.io.read(e.src or self.obj(e.rel), n, off) if n else b""
        return self._read_extents(e, off, n, self.extent)

    def _read_extents(self, e: Entry, off: int, n: int, extent: int) -> bytes:
        out = []
        while n > 0:
            k, inner = divmod(off, extent)
            take = min(n, extent - inner)
            out.append(self.ext.read(self.xobj(e.rel, k), take, inner))
            if len(out[-1]) < take:
                break
            off, n = off + take, n - take
        return b"".join(out)

    # -- target
    def prepare(self, entries: list[Entry]) -> None:
        pass

    def write_whole(self, e: Entry, data: bytes) -> str:
        self._op(self.io, self.obj(e.rel), lambda op: op.write_full(data))
        return ""

    def begin(self, e: Entry) -> str:
        return ""

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        self._op(self.ext, self.xobj(e.rel, k), lambda op: op.write_full(data))
        return ""

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        n = e.extents(self.extent)
        head = json.dumps({"size": e.size, "extent": self.extent, "n": n}).encode()

        def fill(op):
            op.write_full(b"")
            op.set_xattr("ramburst.extents", head)
        self._op(self.io, self.obj(e.rel), fill)

    def put_other(self, e: Entry) -> None:
        pass  # folders and symlinks live in the stage manifest (entries.json)

    def size_of(self, e: Entry) -> int | None:
        try:
            if e.extents(self.extent) == 1:
                return self.io.stat(self.obj(e.rel))[0]
            self.io.stat(self.obj(e.rel))
            return sum(self.ext.stat(self.xobj(e.rel, k))[0] for k in range(e.extents(self.extent)))
        except Exception as err:  # noqa: BLE001 - rados.ObjectNotFound; the binding is loaded lazily
            if type(err).__name__ == "ObjectNotFound":
                return None
            raise

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        if e.extents(self.extent) == 1:
            return self.io.read(self.obj(e.rel), n, off) if n else b""
        return self._read_extents(e, off, n, self.extent)

    def free_bytes(self) -> int | None:
        return None

    # -- journal
    def _state(self, name: str) -> str:
        return f"{self.prefix}{STAGE_DIR}/{name}/"

    def _get(self, name: str) -> bytes | None:
        try:
            size = self.io.stat(name)[0]
        except Exception as err:  # noqa: BLE001
            if type(err).__name__ == "ObjectNotFound":
                return None
            raise
        return self.io.read(name, size) if size else b""

    def state_lines(self, name: str) -> list[str]:
        base = self._state(name)
        journals = sorted(o.key for o in self.io.list_objects() if o.key.startswith(base + "journal."))
        lines: list[str] = []
        for obj in [base + "manifest"] + journals:
            data = self._get(obj)
            if data:
                lines += data.decode().splitlines()
        return lines

    def state_append(self, name: str, tag: str, text: str) -> None:
        self._op(self.io, f"{self._state(name)}journal.{tag}", lambda op: op.append(text.encode()))

    def state_compact(self, name: str, lines: list[str]) -> None:
        base = self._state(name)
        old = [o.key for o in self.io.list_objects() if o.key.startswith(base + "journal.")]
        data = "".join(line + "\n" for line in lines).encode()
        self._op(self.io, base + "manifest", lambda op: op.write_full(data))
        for obj in old:
            self.cluster.delete(obj)

    def meta_get(self, name: str) -> dict:
        data = self._get(self._state(name) + "entries.json")
        return json.loads(data) if data else {}

    def meta_put(self, name: str, meta: dict) -> None:
        data = json.dumps(meta).encode()
        self._op(self.io, self._state(name) + "entries.json", lambda op: op.write_full(data))


class S3:
    """Objects PREFIX+rel in a bucket of the instance's S3 endpoint; large files as multipart uploads."""

    kind = "s3"

    def __init__(self, cluster, bucket: str, prefix: str):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client, self.bucket, self.prefix = cluster.s3_client(), bucket, prefix
        self.label = f"s3://{bucket}/{prefix}"
        self.extent = 0

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def _keys(self, prefix: str) -> list[dict]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o for page in pages for o in page.get("Contents", [])]

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        meta = self.meta_get("in")
        out = []
        for o in self._keys(self.prefix):
            rel = o["Key"][len(self.prefix):]
            if rel.startswith(STAGE_DIR + "/"):
                continue
            mt = int(o["LastModified"].timestamp()) * 10**9
            m = merged_meta(meta, rel, o["Size"])
            out.append(Entry(rel=rel, kind="f", size=o["Size"], mtime_ns=m["mtime_ns"] if m else mt,
                             mode=m["mode"] if m else 0o644, ident=f"{o['Size']}:{o['ETag']}", src=o["Key"]))
        have = {e.rel for e in out}
        out += [Entry(**m) for rel, m in meta.get("entries", {}).items() if m["kind"] != "f" and rel not in have]
        return sorted(out, key=lambda e: e.rel)

    def _range(self, key: str, off: int, n: int) -> bytes:
        if n == 0:
            return b""
        r = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={off}-{off + n - 1}")
        return r["Body"].read()

    def read(self, e: Entry, off: int, n: int) -> bytes:
        return self._range(e.src or self.key(e.rel), off, n)

    # -- target
    def prepare(self, entries: list[Entry]) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:  # 404: make it
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except self.client.exceptions.ClientError as e:
                raise UsageError(f"{self.label}: cannot create bucket {self.bucket!r}: "
                                 f"{e.response['Error'].get('Code')}") from None

    def write_whole(self, e: Entry, data: bytes) -> str:
        return self.client.put_object(Bucket=self.bucket, Key=self.key(e.rel), Body=data)["ETag"]

    def begin(self, e: Entry) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key(e.rel))["UploadId"]

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        return self.client.upload_part(Bucket=self.bucket, Key=self.key(e.rel), UploadId=upload,
                                       PartNumber=k + 1, Body=data)["ETag"]

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        parts = [{"ETag": tokens[k], "PartNumber": k + 1} for k in sorted(tokens)]
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key(e.rel), UploadId=upload,
                                              MultipartUpload={"Parts": parts})

    def put_other(self, e: Entry) -> None:
        pass

    def size_of(self, e: Entry) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(e.rel))["ContentLength"]
        except self.client.exceptions.ClientError:
            return None

    sized_reads = True  # a whole-object GET returns all its bytes: the length check is the size check

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        if off == 0 and n == e.size:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(e.rel))["Body"].read()
        return self._range(self.key(e.rel), off, n)

    def free_bytes(self) -> int | None:
        return None

    # -- journal: S3 has no append, so each flush is an object of its own
    def _state(self, name: str) -> str:
        return f"{self.prefix}{STAGE_DIR}/{name}/"

    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def state_lines(self, name: str) -> list[str]:
        base = self._state(name)
        try:
            journals = sorted(o["Key"] for o in self._keys(base + "journal."))
        except self.client.exceptions.NoSuchBucket:
            return []
        lines: list[str] = []
        for key in [base + "manifest"] + journals:
            data = self._get(key)
            if data:
                lines += data.decode().splitlines()
        return lines

    def state_append(self, name: str, tag: str, text: str) -> None:
        key = f"{self._state(name)}journal.{tag}.{time.time_ns():020d}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def state_compact(self, name: str, lines: list[str]) -> None:
        base = self._state(name)
        old = [o["Key"] for o in self._keys(base + "journal.")]
        self.client.put_object(Bucket=self.bucket, Key=base + "manifest",
                               Body="".join(line + "\n" for line in lines).encode())
        for key in old:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def meta_get(self, name: str) -> dict:
        try:
            data = self._get(self._state(name) + "entries.json")
        except self.client.exceptions.NoSuchBucket:
            return {}
        return json.loads(data) if data else {}

    def meta_put(self, name: str, meta: dict) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._state(name) + "entries.json",
                               Body=json.dumps(meta).encode())


def cluster_store(cluster, spec: str):
    """fs:PATH (in the instance's mount), pool:PREFIX or s3://BUCKET/PREFIX."""
    if spec.startswith("fs:"):
        if cluster.mount is None:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no fs service mounted here")
        # In the RAM cluster a per-file fsync buys nothing a crash would keep (the data is in RAM
        # either way) and cost 3x in files/s; one syncfs at the end, then the verify pass.
        return Tree(cluster.mount / spec[3:].lstrip("/"), spec, durable=False)
    if spec.startswith("pool:"):
        if not cluster.pool:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no pool")
        return Pool(cluster, spec[5:])
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise UsageError(f"{spec}: no bucket named (s3://BUCKET/PREFIX)")
        if cluster.s3 is None:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no s3 service")
        return S3(cluster, bucket, prefix)
    raise UsageError(f"{spec}: a stage target is fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX")


def default_spec(cluster) -> str:
    return "fs:/" if cluster.mount is not None else "pool:"
