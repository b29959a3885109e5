"""Issue 13: stage-in and stage-out, on a real instance (pool, s3, fs), as a user would run them."""
from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

import ramburst
from ramburst.layout import Layout

from conftest import RAMBURST, assert_nothing_left, cli, unique_name

pytestmark = pytest.mark.ceph
MiB = 2**20
# root reads anything: drop the two capabilities that let it, as for an ordinary user
NO_ROOT_READS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
EXT = "8M"   # small extents so that a 20 MiB file is split (S3 parts are at least 5 MiB)


def make_tree(root: Path, big: int = 20 * MiB, small: int = 30) -> Path:
    """Large, small and empty files, symlinks (one dangling), an empty folder, odd modes and mtimes."""
    t = root / "tree"
    (t / "sub" / "deep").mkdir(parents=True)
    (t / "emptydir").mkdir()
    (t / "big.bin").write_bytes(os.urandom(big))
    for i in range(small):
        (t / "sub" / f"s{i}.dat").write_bytes(os.urandom(i * 997))
    (t / "empty").write_bytes(b"")
    (t / "sub" / "deep" / "x.txt").write_text("deep\n")
    os.symlink("sub/s3.dat", t / "link")
    os.symlink("/nonexistent/target", t / "dangling")
    os.chmod(t / "sub" / "s2.dat", 0o600)
    os.chmod(t / "sub" / "s4.dat", 0o755)
    os.chmod(t / "sub" / "deep", 0o750)
    os.utime(t / "sub" / "s5.dat", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    os.utime(t / "emptydir", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_000))
    os.utime(t / "link", ns=(1_300_000_000_000_000_000,) * 2, follow_symlinks=False)
    return t


def snapshot(root: Path) -> dict:
    """Everything a round trip must keep: kind, bytes, mode, mtime (ns), symlink target."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("l", os.readlink(p), st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            out[rel] = ("f", p.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def stage(state: Path, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return cli("stage", *args, "--state-dir", state, "--extent", EXT, env=env, timeout=timeout)


def summary(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def staged_in_and_out(state: Path, tmp_path: Path, target: str) -> tuple[Path, Path]:
    """make_tree, stage it in to `target` and out again to a fresh folder: (the tree, the folder)."""
    tree = make_tree(tmp_path / "src")
    summary(stage(state, "in", tree, "--to", target, "--json"))
    dest = tmp_path / "dest"
    summary(stage(state, "out", dest, "--from", target, "--json"))
    return tree, dest


def many_files(root: Path, large: int) -> Path:
    """root/many: 40 files of 1 MiB and one of `large` bytes (41 files), for the kill -9 tests."""
    src = root / "many"
    src.mkdir(parents=True)
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(MiB))
    (src / "large").write_bytes(os.urandom(large))
    return src


def kill9_when_done(args: list[str], env: dict, state: Path, direction: str, target: str, nbytes: int) -> None:
    """Start the stage `args` and kill -9 it once its progress file says `nbytes` are copied."""
    p = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    progress = Layout(state).stage_progress
    try:
        while True:
            assert time.monotonic() < deadline and p.poll() is None, "stage ended before it could be killed"
            try:
                doc = json.loads(progress.read_text())
            except (OSError, ValueError):
                doc = {}
            if doc.get("direction") == direction and doc.get("target") == target and doc["bytes_done"] >= nbytes:
                break
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()


def up(*args) -> subprocess.CompletedProcess:
    """`ramburst up`, waiting while other test runs on this shared machine hold the RAM."""
    deadline = time.monotonic() + 300
    while True:
        r = cli("up", *args)
        if r.returncode == 0 or "promised to other instances" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(10)


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage")
    name = unique_name("bst")
    state = folder / name
    r = up("--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "s3",
           "--service", "fs", "--mount", folder / "mnt")
    assert r.returncode == 0, r.stderr
    try:
        yield state, folder / "mnt"
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


@pytest.mark.parametrize("target,how", [("pool:rt", None), ("fs:/rt", None), ("fs:/rt", "mount"),
                                        ("s3://stagebucket/rt", None)])
def test_item_round_trip_byte_identical(inst, tmp_path, target, how, monkeypatch):
    """how="mount": through the ceph-fuse mount, as for a user who cannot read the instance's key."""
    state, mnt = inst
    if how:
        monkeypatch.setenv("RAMBURST_STAGE_FS", how)
        target = target + how
    tree = make_tree(tmp_path / "src")
    before = snapshot(tree.parent)
    s = summary(stage(state, "in", tree, "--to", target, "--json"))
    assert s["files"] == 33 and s["bytes"] == sum(len(v[1]) for v in before.values() if v[0] == "f")
    assert s["errors"] == [] and s["per_rank"] == [s["bytes"]]
    cluster = ramburst.attach(state_dir=state)
    big = (tree / "big.bin").read_bytes()
    if target.startswith("fs:"):   # the tree is really in CephFS, under its final names only
        assert (mnt / target[4:] / "tree" / "big.bin").read_bytes() == big
        assert not list((mnt / target[4:]).rglob("*.rbstage-tmp"))
    elif target.startswith("s3:"):  # one object, completed from its parts
        body = cluster.s3_client().get_object(Bucket="stagebucket", Key="rt/tree/big.bin")["Body"].read()
        assert body == big
    else:
        assert cluster.get("rt/tree/sub/s7.dat") == (tree / "sub" / "s7.dat").read_bytes()
    cluster.close()
    progress = json.loads(Layout(state).stage_progress.read_text())
    assert progress["direction"] == "in" and progress["finished"] and progress["error"] is None
    assert progress["bytes_done"] == progress["bytes_total"] > 0
    dest = tmp_path / "back"
    s = summary(stage(state, "out", dest, "--from", target, "--json"))
    assert s["errors"] == [] and s["files"] == 33
    assert snapshot(dest) == before
    # unchanged: a second run copies nothing
    again = summary(stage(state, "out", dest, "--from", target, "--json"))
    assert again["bytes"] == 0 and again["skipped_files"] == 33


@pytest.mark.parametrize("target,label", [("pool:resume", "pool:resume/"), ("fs:/resume", "fs:/resume")])
def test_item_kill9_then_resume_copies_only_the_rest(inst, tmp_path, target, label):
    state, mnt = inst
    src = many_files(tmp_path / "src", 24 * MiB)
    total = 64 * MiB
    env = {"RAMBURST_STAGE_DELAY": "0.1"}
    args = [RAMBURST, "stage", "in", str(src), "--to", target, "--state-dir", str(state), "--extent", "1M",
            "--threads", "1"]
    kill9_when_done(args, env, state, "in", label, total // 3)
    if target.startswith("fs:"):  # the fs client died with the process: what has a final name is whole
        many = mnt / "resume" / "many"   # listed at once: the watchdog evicts the dead client's session
        finals = [p for p in many.iterdir() if not p.name.endswith(".rbstage-tmp")]
        assert all(p.read_bytes() == (src / p.name).read_bytes() for p in finals)
        assert (many / ".large.rbstage-tmp").exists() and not (many / "large").exists()
    dry = summary(cli("stage", "in", src, "--to", target, "--state-dir", state, "--extent", "1M",
                      "--dry-run", "--json"))
    assert 0 < dry["bytes_total"] < total - total // 3 + 2 * MiB
    rest = summary(cli("stage", "in", src, "--to", target, "--state-dir", state, "--extent", "1M", "--json"))
    assert rest["bytes"] == dry["bytes_total"] and rest["errors"] == []
    assert rest["skipped_files"] == 41 - dry["files_total"] > 0
    dest = tmp_path / "out"
    summary(cli("stage", "out", dest, "--from", target, "--state-dir", state, "--extent", "1M", "--json"))
    assert snapshot(dest) == snapshot(src.parent)


def test_item2_stage_out_kill9_then_resume_copies_only_the_rest(inst, tmp_path):
    state, _ = inst
    src = many_files(tmp_path / "src", 32 * MiB)
    total = 72 * MiB
    common = ["--from", "pool:outresume", "--state-dir", str(state), "--extent", "1M"]
    summary(cli("stage", "in", src, "--to", "pool:outresume", *common[2:], "--json"))
    dest = tmp_path / "dest"
    # killed part-way through the large file (its extents are handed out first)
    kill9_when_done([RAMBURST, "stage", "out", str(dest), *common, "--threads", "1"],
                    {"RAMBURST_STAGE_DELAY": "0.1"}, state, "out", str(dest), 8 * MiB)
    assert (dest / "many" / ".large.rbstage-tmp").exists() and not (dest / "many" / "large").exists()
    finals = [p for p in dest.rglob("*") if p.is_file() and not p.name.endswith(".rbstage-tmp")]
    assert all(p.read_bytes() == (src.parent / p.relative_to(dest)).read_bytes() for p in finals)
    dry = summary(cli("stage", "out", dest, *common, "--dry-run", "--json"))
    assert 40 * MiB < dry["bytes_total"] < total - 8 * MiB + 2 * MiB   # journaled extents are not copied again
    rest = summary(cli("stage", "out", dest, *common, "--json"))
    assert rest["bytes"] == dry["bytes_total"] and rest["errors"] == []
    assert rest["extents_copied"] == rest["bytes"] // MiB  # 1 MiB extents: the count of what was copied
    assert rest["skipped_files"] == 41 - dry["files_total"]
    assert not list(dest.rglob("*.rbstage-tmp"))
    assert snapshot(dest) == snapshot(src.parent)
    again = summary(cli("stage", "out", dest, *common, "--json"))
    assert again["bytes"] == 0 and again["skipped_files"] == 41

def open_uploads(state: Path, bucket: str, prefix: str) -> list[str]:
    """The keys of the multipart uploads begun and neither completed nor aborted in `bucket` under `prefix`."""
    cluster = ramburst.attach(state_dir=state)
    try:
        r = cluster.s3_client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    finally:
        cluster.close()
    return sorted(u["Key"] for u in r.get("Uploads", []))


def two_large_files(root: Path) -> Path:
    src = root / "two"
    src.mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(20 * MiB))
    (src / "b.bin").write_bytes(os.urandom(20 * MiB))
    (src / "small").write_bytes(b"small\n")
    return src


def rerun_leaves_no_upload(state: Path, args: list, prefix: str, src: Path, tmp_path: Path) -> dict:
    """Run the stage-in `args` (into s3://mpu/PREFIX) again: no error, no open upload left, and
    the bucket's tree staged out is `src`'s, byte for byte. Returns the re-run's summary."""
    rest = summary(cli(*args, "--json"))
    assert rest["errors"] == [] and open_uploads(state, "mpu", prefix + "/") == []
    dest = tmp_path / "dest"
    summary(cli("stage", "out", dest, "--from", f"s3://mpu/{prefix}", "--state-dir", state, "--extent", "5M",
                "--json"))
    assert snapshot(dest) == snapshot(src.parent)
    return rest


def test_item3_s3_killed_then_replaced_upload_is_aborted_on_resume(inst, tmp_path):
    state, _ = inst
    src = two_large_files(tmp_path / "src")
    args = ["stage", "in", str(src), "--to", "s3://mpu/killed", "--state-dir", str(state), "--extent", "5M"]
    kill9_when_done([RAMBURST, *args, "--threads", "1"], {"RAMBURST_STAGE_DELAY": "0.2"}, state, "in",
                    "s3://mpu/killed/", 5 * MiB)
    assert open_uploads(state, "mpu", "killed/") == ["killed/two/a.bin", "killed/two/b.bin"]
    (src / "a.bin").write_bytes(os.urandom(20 * MiB))   # replaced before the re-run: its upload is stale
    rest = rerun_leaves_no_upload(state, args, "killed", src, tmp_path)
    assert rest["files"] == 3


def test_item3_s3_failure_mid_upload_aborts_its_uploads_and_resume_completes(inst, tmp_path):
    state, _ = inst
    src = two_large_files(tmp_path / "src")
    args = [RAMBURST, "stage", "in", str(src), "--to", "s3://mpu/failed", "--state-dir", str(state), "--extent", "5M"]
    p = subprocess.Popen([*args, "--threads", "1"], env={**os.environ, "RAMBURST_STAGE_DELAY": "0.2"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:   # another client aborts b.bin's upload while a.bin's parts go up: the stage fails mid-upload
        cluster = ramburst.attach(state_dir=state)
        s3 = cluster.s3_client()
        deadline = time.monotonic() + 120
        while True:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            ups = s3.list_multipart_uploads(Bucket="mpu", Prefix="failed/").get("Uploads", [])
            b = [u for u in ups if u["Key"].endswith("b.bin")]
            if b:
                break
            time.sleep(0.05)
        s3.abort_multipart_upload(Bucket="mpu", Key=b[0]["Key"], UploadId=b[0]["UploadId"])
        cluster.close()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, err
    assert "NoSuchUpload" in err and "run the same command again" in err, err
    assert open_uploads(state, "mpu", "failed/") == []
    rerun_leaves_no_upload(state, args[1:], "failed", src, tmp_path)


def test_item3_s3_unreadable_large_file_leaves_no_upload(inst, tmp_path):
    state, _ = inst
    src = two_large_files(tmp_path / "src")
    os.chmod(src / "b.bin", 0)
    r = subprocess.run([*NO_ROOT_READS, RAMBURST, "stage", "in", str(src), "--to", "s3://mpu/unreadable",
                        "--state-dir", str(state), "--extent", "5M"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"{src}/b.bin: Permission denied" in r.stderr, r.stderr
    assert open_uploads(state, "mpu", "unreadable/") == []


def test_item_bit_flip_and_truncation_at_destination_detected(inst, tmp_path):
    state, _ = inst
    tree, dest = staged_in_and_out(state, tmp_path, "fs:/verify")
    big, small = dest / "tree" / "big.bin", dest / "tree" / "sub" / "s20.dat"
    with open(big, "r+b") as f:      # one bit, in the middle of the third extent
        f.seek(17 * MiB + 5)
        b = f.read(1)
        f.seek(17 * MiB + 5)
        f.write(bytes([b[0] ^ 0x10]))
    os.truncate(small, small.stat().st_size - 1)
    r = stage(state, "out", dest, "--from", "fs:/verify")
    assert r.returncode == 1, r.stderr
    assert "tree/big.bin: corrupted" in r.stderr and "tree/sub/s20.dat: truncated" in r.stderr
    assert "staged" not in r.stdout
    # the next run copies exactly those two again, and the tree is whole
    fixed = summary(stage(state, "out", dest, "--from", "fs:/verify", "--json"))
    assert fixed["files"] == 2 and fixed["errors"] == []
    assert snapshot(dest) == snapshot(tree.parent)


def test_item_bad_input_one_line_exit_2(inst, tmp_path):
    state, _ = inst
    for args, text in [(("in", tmp_path / "missing"), "no such file or folder"),
                       (("in", tmp_path, "--to", "nowhere:x"), "fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX"),
                       (("in", tmp_path, "--to", "s3://x/y"), "cannot create bucket"),
                       (("out", tmp_path / "no" / "such" / "dest"), "no such folder")]:
        r = stage(state, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, r.stderr
    (tmp_path / "afile").write_text("x")
    r = stage(state, "out", tmp_path / "afile")
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_item_fs_path_leading_out_of_the_mount_refused(inst, tmp_path):
    """fs:PATH names a folder of the CephFS: a `..` or a symlink in the mount that leads elsewhere is
    refused, one line, exit 2, nothing made (before: the files went wherever the path led)."""
    state, mnt = inst
    (tmp_path / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, mnt / "away")
    try:
        for args in [("in", tmp_path / "f", "--to", "fs:../escape"), ("in", tmp_path / "f", "--to", "fs:/away"),
                     ("in", tmp_path / "f", "--to", "fs:/away/sub"), ("out", tmp_path / "d", "--from", "fs:/away")]:
            r = stage(state, *args)
            assert r.returncode == 2, (args, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and "outside the fs mounted at" in r.stderr, r.stderr
        assert list(outside.iterdir()) == [] and not (mnt.parent / "escape").exists()
        assert not (tmp_path / "d").exists()
    finally:
        os.unlink(mnt / "away")


def test_item_dest_without_space(inst, tmp_path):
    state, _ = inst
    tree = make_tree(tmp_path / "src")
    summary(stage(state, "in", tree, "--to", "pool:space", "--json"))
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        r = stage(state, "out", small / "dest", "--from", "pool:space")
        assert r.returncode == 2, r.stderr
        assert "only" in r.stderr and "MiB free" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_item_permission_denied_listed_rest_staged(inst, tmp_path):
    state, _ = inst
    tree = make_tree(tmp_path / "src")
    os.chmod(tree / "sub" / "s9.dat", 0)
    r = subprocess.run([*NO_ROOT_READS, RAMBURST, "stage", "in", str(tree), "--to", "pool:perm",
                        "--state-dir", str(state), "--extent", EXT],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert f"{tree}/sub/s9.dat: Permission denied" in r.stderr
    dest = tmp_path / "dest"
    summary(stage(state, "out", dest, "--from", "pool:perm", "--json"))
    assert (dest / "tree" / "sub" / "s8.dat").read_bytes() == (tree / "sub" / "s8.dat").read_bytes()
    assert (dest / "tree" / "big.bin").read_bytes() == (tree / "big.bin").read_bytes()
    assert not (dest / "tree" / "sub" / "s9.dat").exists()


def test_item_full_store_mid_stage_fails_cleanly(tmp_path):
    name = unique_name("bsf")
    state = tmp_path / name
    r = up("--name", name, "--state-dir", state, "--size", "1G")
    assert r.returncode == 0, r.stderr
    try:
        src = tmp_path / "src" / "fill"
        src.mkdir(parents=True)
        (src / "b00").write_bytes(os.urandom(80 * MiB))
        (src / "s00").write_bytes(os.urandom(16 * MiB))
        for i in range(1, 30):   # hard links: 2.8 GiB to stage (3x the store), 96 MiB on disk
            os.link(src / "b00", src / f"b{i:02d}")
        for i in range(1, 30):
            os.link(src / "s00", src / f"s{i:02d}")
        r = cli("stage", "in", src, "--to", "pool:full", "--state-dir", state, "--extent", "32M", timeout=400)
        assert r.returncode == 1, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "store full" in line and "file(s) staged" in line and "run the same command again" in line
        cluster = ramburst.attach(state_dir=state)
        small, big = (src / "s00").read_bytes(), (src / "b00").read_bytes()
        with cluster.ioctx() as io:
            names = [o.key for o in io.list_objects() if o.key.startswith("full/fill/")]
            for n in names:  # what exists under a final name is whole; no large file's head was made
                assert n.split("/")[-1].startswith("s"), n
                assert cluster.get(n) == small
        cluster.close()
        assert f"{len(names)} file(s) staged" in line
        assert len(big) == 80 * MiB
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def stage_while_filled(root: Path, state: Path, delay: str, fill) -> tuple[Path, str]:
    """Stage 40 files of 4 MiB (one extent each: made final one by one) from root/few into fs:/mid,
    slowed by `delay` s an item; once the first is final, `fill()` fills the store. The stage must
    end, exit 1, its last line "store full" with the files staged. Returns (root/few, that line)."""
    few = root / "few"
    few.mkdir(parents=True)
    for i in range(40):
        (few / f"s{i:02d}").write_bytes(os.urandom(4 * MiB))
    args = [RAMBURST, "stage", "in", str(few), "--to", "fs:/mid", "--state-dir", str(state), "--threads", "1"]
    p = subprocess.Popen(args, env={**os.environ, "RAMBURST_STAGE_DELAY": delay}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    mnt = Path(ramburst.attach(state_dir=state).mount)
    try:
        deadline = time.monotonic() + 120
        while not list((mnt / "mid" / "few").glob("s*")):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        fill()
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, err
    line = err.strip().splitlines()[-1]
    assert "store full" in line and "run the same command again" in line, line
    return few, line


def test_item_full_fs_refused_up_front_and_mid_stage_fails_cleanly(tmp_path):
    """Into the fs: more than its free space (the quota, as df shows it) is refused before anything is
    written (before: the stage ran into the OSD's size, where the MDS waits forever, and never ended).
    Filled by someone else mid-stage: EDQUOT ends the stage with "store full" and the files staged;
    what has a final name is whole; once room is made the same command copies the rest."""
    name = unique_name("bsq")
    state = tmp_path / name
    mnt = tmp_path / "mnt"
    r = up("--name", name, "--state-dir", state, "--size", "1G", "--service", "fs", "--mount", mnt)
    assert r.returncode == 0, r.stderr
    try:
        src = tmp_path / "src" / "fill"
        src.mkdir(parents=True)
        (src / "b00").write_bytes(os.urandom(80 * MiB))
        for i in range(1, 30):   # hard links: 2.3 GiB to stage (more than the store), 80 MiB on disk
            os.link(src / "b00", src / f"b{i:02d}")
        r = cli("stage", "in", src, "--to", "fs:/full", "--state-dir", state, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "needs 2400.0 MiB, only" in r.stderr and "MiB free" in r.stderr, r.stderr
        assert not (mnt / "full").exists()

        def fill() -> None:
            # someone else fills the fs to 64 MiB below its quota (or to its first EDQUOT), at 80 MB/s:
            # at full speed two writers overshoot the quota (checked against sizes the MDS learns
            # late) into the OSD's size, where the MDS stops. The stage's next writes meet EDQUOT.
            st = os.statvfs(mnt)
            left = st.f_bavail * st.f_frsize - 64 * MiB
            with open(mnt / "filler", "wb") as f:
                try:
                    while left > 0:
                        f.write(os.urandom(min(8 * MiB, left)))
                        f.flush()
                        os.fsync(f.fileno())
                        left -= 8 * MiB
                        time.sleep(0.1)
                except OSError as e:
                    assert e.errno == errno.EDQUOT, e

        few, line = stage_while_filled(tmp_path / "src2", state, "1.5", fill)
        assert "file(s) staged" in line, line   # EDQUOT: the stage itself says what it staged
        finals = [f for f in (mnt / "mid" / "few").iterdir() if not f.name.endswith(".rbstage-tmp")]
        assert finals and all(f.read_bytes() == (few / f.name).read_bytes() for f in finals)
        (mnt / "filler").unlink()
        deadline = time.monotonic() + 60   # the MDS purges the deleted file in the background
        while True:
            rest = cli("stage", "in", few, "--to", "fs:/mid", "--state-dir", state, "--json")
            if rest.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert summary(rest)["errors"] == []
        assert snapshot(mnt / "mid" / "few") == snapshot(few)
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_item_store_filled_by_the_pool_under_an_fs_stage_ends_it_with_store_full(tmp_path):
    """The pool fills the shared store at full speed while a stage writes into the fs: the OSD stops at
    the size, and the MDS then waits forever for its journal. The stage still ends, exit 1, "store
    full" (its libcephfs client is aborted when a call waits 20 s, as the
    watchdog ends ceph-fuse; should the abort not end a call, the command exits; before, it never ended)."""
    name = unique_name("bsp")
    state = tmp_path / name
    r = up("--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "fs",
           "--mount", tmp_path / "mnt")
    assert r.returncode == 0, r.stderr
    try:
        def fill() -> None:   # the pool, at full speed, until the watchdog stops the OSD at the size
            cluster = ramburst.attach(state_dir=state)
            block = os.urandom(4 * MiB)
            with pytest.raises(Exception, match="no space"), concurrent.futures.ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda i: cluster.put(f"fill{i}", block), range(1000)))
            cluster.close()

        stage_while_filled(tmp_path / "src", state, "0.3", fill)
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def test_item_run_time_limit_stages_out_before_down(tmp_path):
    name = unique_name("bsr")
    state = tmp_path / name
    tree = make_tree(tmp_path / "src", big=12 * MiB)
    dest = tmp_path / "results"
    marker = tmp_path / "written"
    job = ('eval "$(ramburst env --state-dir $RAMBURST_STATE_DIR)"; '
           f'echo result > {tmp_path}/r.txt && rados -p ramburst put out/result.txt {tmp_path}/r.txt && '
           f'rados -p ramburst stat tree/big.bin && touch {marker} && sleep 600')
    env = {**os.environ, "PATH": f"{Path(RAMBURST).parent}:{os.environ['PATH']}"}
    p = subprocess.Popen([RAMBURST, "run", "--name", name, "--state-dir", str(state), "--size", "1G", "--grace", "3",
                          "--stage-in", str(tree), "--stage-out", str(dest), "--", "sh", "-c", job],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)   # what Slurm does at the time limit
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert (dest / "out" / "result.txt").read_text() == "result\n"
    assert snapshot(dest / "tree") == snapshot(tree)
    assert err.index("staged out") < err.index("everything removed"), err
    assert_nothing_left(name, state)


def test_item_delete_mirrors_deletions_only_when_asked(inst, tmp_path):
    state, mnt = inst
    tree, dest = staged_in_and_out(state, tmp_path, "fs:/del")
    (mnt / "del" / "tree" / "sub" / "s1.dat").unlink()     # the job removed a file and a folder
    shutil.rmtree(mnt / "del" / "tree" / "sub" / "deep")
    dry = summary(stage(state, "out", dest, "--from", "fs:/del", "--delete", "--dry-run", "--json"))
    assert dry["bytes_total"] == 0 and (dest / "tree" / "sub" / "s1.dat").exists()
    kept = summary(stage(state, "out", dest, "--from", "fs:/del", "--json"))
    assert "deleted" not in kept and (dest / "tree" / "sub" / "s1.dat").exists()
    gone = summary(stage(state, "out", dest, "--from", "fs:/del", "--delete", "--json"))
    assert sorted(gone["deleted"]) == ["tree/sub/deep", "tree/sub/deep/x.txt", "tree/sub/s1.dat"]
    assert snapshot(dest / "tree") == snapshot(mnt / "del" / "tree")
