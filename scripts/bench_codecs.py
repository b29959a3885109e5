#!/usr/bin/env python3
"""Benchmark of ramburst.codecs against general-, image- and float-specific codecs (issue 16).

Data come only from installed wheels (nilearn's MNI152 2009a templates, nibabel's example images) and from
synthetic volumes made here with a fixed seed; nothing is downloaded.

- cryoem_snr{1,10}: 128^3 density of 400 Gaussian "atoms" (sigma 1.2-2.5 voxels) plus white noise with
  signal-std/noise-std = 1 or 10, scaled to uint16 (12 significant bits), or kept float32;
- tomo: a 3-D Shepp-Logan-like phantom (scikit-image's 2-D phantom scaled per slice, 128x128x48),
  each slice projected (radon, 180 angles), noise at 1 % of the sinogram max added, reconstructed with
  filtered back-projection (iradon), stored as int16 (x1000) or float32.

Codec speeds are MB per CPU-second of this process (= MB/s per core: numpy, zstd, SZ3 and ZFP run one
thread here), best of ``--repeat`` runs; the cluster figures are wall-clock.
Usage: .venv/bin/python scripts/bench_codecs.py [--repeat 2] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):     # one thread each: per-core figures
    os.environ.setdefault(_var, "1")

import blosc2
import numpy as np
import zstandard

from ramburst.codecs import lossy, volume


def best_time(fn, repeat, clock=time.perf_counter):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
    return best, out


def cpu_time(fn, repeat):
    """Seconds of CPU of this process: MB per CPU-second is MB/s per core, whatever else the machine runs
    (the codecs measured here are single-threaded)."""
    return best_time(fn, repeat, time.process_time)


# ---- data ------------------------------------------------------------------------------------------------

def mni(kind):
    import nibabel as nib
    import nilearn

    p = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data",
                     f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")
    return np.asarray(nib.load(p).dataobj).astype(np.uint8)


def nibabel_example():
    import nibabel as nib

    p = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "example4d.nii.gz")
    return np.ascontiguousarray(np.asarray(nib.load(p).dataobj)[..., 0]).astype(np.int16)


def nilearn_stat_map():
    import nibabel as nib
    import nilearn

    p = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data", "image_10426.nii.gz")
    return np.asarray(nib.load(p).dataobj).astype(np.float32)


def cryoem(snr, n=128, seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float32)
    rho = np.zeros((n, n, n), np.float32)
    for c, s in zip(rng.uniform(16, n - 16, (400, 3)), rng.uniform(1.2, 2.5, 400)):
        lo = np.maximum((c - 4 * s).astype(int), 0)
        hi = np.minimum((c + 4 * s).astype(int) + 1, n)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        rho[sl] += np.exp(-((z[sl] - c[0]) ** 2 + (y[sl] - c[1]) ** 2 + (x[sl] - c[2]) ** 2) / (2 * s * s))
    noisy = rho + rng.standard_normal(rho.shape).astype(np.float32) * (rho.std() / snr)
    scale = 4095 / np.ptp(noisy)
    u16 = np.rint((noisy - noisy.min()) * scale).astype(np.uint16)
    sigma = float(rho.std() / snr * scale)          # the noise in quantised units: no codec goes below its
    NOISE_FLOOR[f"cryoem-snr{snr}"] = 16 / np.log2(sigma * np.sqrt(2 * np.pi * np.e))   # entropy
    return u16, noisy.astype(np.float32)


NOISE_FLOOR = {}    # volume -> the ratio of a coder that knew the noise-free density and paid only for the noise


def tomo(n=128, nz=48, seed=0):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, resize

    rng = np.random.default_rng(seed)
    base = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    theta = np.linspace(0.0, 180.0, 180, endpoint=False)
    out = np.empty((nz, n, n), np.float32)
    for k in range(nz):
        s = np.sqrt(max(1e-3, 1 - ((k - nz / 2) / (nz / 2 + 2)) ** 2))
        sl = np.zeros((n, n))
        m = int(n * s)
        off = (n - m) // 2
        sl[off:off + m, off:off + m] = resize(base, (m, m), anti_aliasing=True)
        sino = radon(sl, theta=theta)
        sino += rng.standard_normal(sino.shape) * 0.01 * sino.max()
        out[k] = iradon(sino, theta=theta, filter_name="ramp")
    return np.rint(out * 1000).astype(np.int16), out


# ---- codecs ----------------------------------------------------------------------------------------------

def slicewise(enc, a):
    u = a.view(np.uint16) ^ np.uint16(0x8000) if a.dtype == np.int16 else a
    return sum(len(enc(np.ascontiguousarray(s))) for s in u)


def others_lossless(a):
    """Compressed sizes of the anchors (None where a codec does not take this dtype)."""
    import imagecodecs

    out = {
        "zstd-3": len(zstandard.ZstdCompressor(level=3).compress(a.tobytes())),
        "zstd-19": len(zstandard.ZstdCompressor(level=19).compress(a.tobytes())),
        "blosc2-zstd-bitshuffle": len(blosc2.compress2(
            a.tobytes(), typesize=a.itemsize, clevel=9, filters=[blosc2.Filter.BITSHUFFLE],
            codec=blosc2.Codec.ZSTD, nthreads=1)),
    }
    if a.dtype.kind in "ui" and a.itemsize <= 2:
        out["jpegxl-slices"] = slicewise(lambda s: imagecodecs.jpegxl_encode(s, lossless=True, effort=7), a)
        out["jpegls-slices"] = slicewise(imagecodecs.jpegls_encode, a)
    if a.dtype == np.float32:
        import fpzip

        out["fpzip"] = len(fpzip.compress(np.ascontiguousarray(a), precision=0, order="C"))
    return out


OURS = {"ours-fast": {"kmin": 2, "level": 3}, "ours-max": {"kmin": 0, "level": 19}}


def ours_lossless(a, opts, repeat):
    te, buf = cpu_time(lambda: volume.encode(a, **opts), 1)
    td, back = cpu_time(lambda: volume.decode(buf), repeat)
    assert back.tobytes() == a.tobytes(), "lossless round trip failed"
    return len(buf), a.nbytes / 1e6 / te, a.nbytes / 1e6 / td


def chunked(a, repeat, edge=64):
    """ours-fast on 64^3 chunks, as a zarr array stores it: (ratio, encode MB/s, decode MB/s)."""
    blocks = [a[i:i + edge, j:j + edge, k:k + edge] for i in range(0, a.shape[0], edge)
              for j in range(0, a.shape[1], edge) for k in range(0, a.shape[2], edge)]
    te, bufs = cpu_time(lambda: [volume.encode(np.ascontiguousarray(b)) for b in blocks], 1)
    td, _ = cpu_time(lambda: [volume.decode(b) for b in bufs], repeat)
    return a.nbytes / sum(map(len, bufs)), a.nbytes / 1e6 / te, a.nbytes / 1e6 / td


def lossless_rows(vols, repeat):
    rows = []
    for name, a in vols:
        others = others_lossless(a)
        best_name = min(others, key=others.get)
        row = {"volume": name, "shape": "x".join(map(str, a.shape)), "dtype": a.dtype.name,
               **{k: a.nbytes / v for k, v in others.items()}, "best-other": best_name}
        for tag, opts in OURS.items():
            size, enc, dec = ours_lossless(a, opts, repeat)
            row[tag] = a.nbytes / size
            row[f"{tag} enc MB/s"], row[f"{tag} dec MB/s"] = enc, dec
        row["ours/best"] = row["ours-max"] / (a.nbytes / others[best_name])
        row["fast 64^3"], row["fast 64^3 enc MB/s"], row["fast 64^3 dec MB/s"] = chunked(a, repeat)
        if name in NOISE_FLOOR:
            row["noise bound"] = NOISE_FLOOR[name]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def lossy_rows(vols):
    rows = []
    for name, a in vols:
        rng = float(np.ptp(a))
        for rel in (1e-2, 1e-3, 1e-4):
            bound = rel * rng
            row = {"volume": name, "rel": rel, "abs": bound}
            for method in lossy.METHODS:
                te, buf = cpu_time(lambda m=method, b=bound, a=a: lossy.encode(a, m, b), 1)
                td, back = cpu_time(lambda b=buf: lossy.decode(b), 1)
                err = lossy.max_abs_error(a, back)
                assert err <= bound
                row[method] = a.nbytes / len(buf)
                row[f"{method} err/bound"] = err / bound
                row[f"{method} enc/dec MB/s"] = f"{a.nbytes / 1e6 / te:.0f}/{a.nbytes / 1e6 / td:.0f}"
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def cluster_rows(vols, repeat, size="512M"):
    """MB/s of writing (and reading back) each volume as a zarr array in a fresh RAM cluster: raw, zarr's
    default zstd, and the volume codec. Logical (uncompressed) bytes per wall-clock second, both cores."""
    import uuid

    import zarr

    import ramburst
    from ramburst.codecs import VolumeCodec

    variants = {"raw": {"compressors": None}, "zarr-zstd": {},
                "volume": {"serializer": VolumeCodec(), "compressors": None}}
    rows = []
    name = f"dbench{uuid.uuid4().hex[:6]}"
    with ramburst.deploy(name=name, size=size, services=("pool",)) as c:
        store = c.zarr_store(namespace="bench")
        for vname, a in vols:
            row = {"volume": vname, "MB": a.nbytes / 1e6}
            for tag, opts in variants.items():
                def write(tag=tag, opts=opts, vname=vname, a=a):
                    z = zarr.create_array(store, name=f"{vname}-{tag}", shape=a.shape, dtype=a.dtype,
                                          chunks=(64, 64, 64), overwrite=True, **opts)
                    z[...] = a
                    return z
                tw, z = best_time(write, repeat)
                tr, back = best_time(lambda z=z: z[...], repeat)
                assert back.tobytes() == a.tobytes()
                row[f"{tag} write MB/s"], row[f"{tag} read MB/s"] = a.nbytes / 1e6 / tw, a.nbytes / 1e6 / tr
                row[f"{tag} stored MB"] = z.nbytes_stored() / 1e6
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def table(rows, cols, fmt="{:.2f}"):
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(fmt.format(v) if isinstance(v, float) and not isinstance(v, bool) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--quick", action="store_true", help="MNI T1 and cryo-EM SNR 10 only")
    ap.add_argument("--cluster", action="store_true",
                    help="also write/read the integer volumes into a fresh 512M RAM cluster (needs Ceph)")
    args = ap.parse_args(argv)
    em1, em1f = cryoem(1)
    em10, em10f = cryoem(10)
    ints = [("mni152-t1", mni("t1")), ("mni152-gm", mni("gm")), ("mni152-wm", mni("wm")),
            ("nibabel-example4d", nibabel_example()), ("cryoem-snr1", em1), ("cryoem-snr10", em10)]
    floats = [("cryoem-snr10-f32", em10f), ("nilearn-statmap-f32", nilearn_stat_map())]
    if not args.quick:
        t16, tf = tomo()
        ints.append(("tomo-phantom", t16))
        floats.insert(1, ("tomo-phantom-f32", tf))
        floats.insert(0, ("cryoem-snr1-f32", em1f))
    else:
        ints = [ints[0], ints[5]]
    lrows = lossless_rows(ints + floats, args.repeat)
    qrows = lossy_rows(floats)
    cols = ["volume", "shape", "dtype", "zstd-3", "zstd-19", "blosc2-zstd-bitshuffle", "jpegxl-slices",
            "jpegls-slices", "fpzip", "ours-fast", "ours-max", "ours/best", "ours-fast enc MB/s",
            "ours-fast dec MB/s", "ours-max enc MB/s", "ours-max dec MB/s", "fast 64^3", "fast 64^3 enc MB/s",
            "fast 64^3 dec MB/s", "noise bound"]
    print("Lossless compression ratio (higher is better); ours-fast = 2 neighbours + zstd 3, ours-max = 2 or 6 "
          "per step + zstd 19; ours/best = ours-max over the best other codec\n")
    print(table(lrows, cols))
    print("\nError-bounded lossy: ratio at max |error| <= rel x range (err/bound = measured max error / bound)\n")
    print(table(qrows, ["volume", "rel", "sz3", "sz3 err/bound", "sz3 enc/dec MB/s", "zfp", "zfp err/bound",
                        "zfp enc/dec MB/s", "quant", "quant err/bound", "quant enc/dec MB/s"], fmt="{:.3g}"))
    crows = []
    if args.cluster:
        crows = cluster_rows(ints, args.repeat)
        print("\nInto the cluster: zarr array, 64^3 chunks, MB/s of uncompressed data (write / read back)\n")
        print(table(crows, ["volume", "MB", "raw write MB/s", "raw read MB/s", "zarr-zstd write MB/s",
                            "zarr-zstd read MB/s", "zarr-zstd stored MB", "volume write MB/s",
                            "volume read MB/s", "volume stored MB"], fmt="{:.1f}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lossless": lrows, "lossy": qrows, "cluster": crows}, f, indent=1)


if __name__ == "__main__":
    main()
