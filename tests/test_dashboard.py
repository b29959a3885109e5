"""The dashboard (issue 15) in a real browser: headless Debian chromium driven by Playwright,
against real daemons. Screenshots land in the test's tmp folder (and in docs/dashboard.png when
RAMBURST_DOCS_SCREENSHOT=1)."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil
import pytest

import ramburst
import ramburst.dashboard

from conftest import RAMBURST, assert_nothing_left, cli, mon_port, unique_name

pytestmark = pytest.mark.ceph

CHROMIUM = "/usr/bin/chromium"
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"


def listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def http_status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module, closed (and its processes gone) afterwards."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no browser: {CHROMIUM} is missing (scripts/install.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dashboard extra (playwright) is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("e")
    state = tmp_path_factory.mktemp("dash") / name
    c = ramburst.up(name=name, state_dir=str(state), size="1G")
    port = mon_port(state)
    try:
        yield c
    finally:
        c.down()
        assert_nothing_left(name, state, port)


def known_volume() -> np.ndarray:
    """A float32 volume whose every slice differs, with outliers the percentiles must clip."""
    z, y, x = np.meshgrid(np.arange(6), np.arange(40), np.arange(56), indexing="ij")
    vol = (np.sin(x / 5.0) * 100 + y * 3.0 + z * 50.0).astype("float32")
    vol[:, 0, 0] = 1e6
    vol[:, 1, 1] = -1e6
    return vol


def arrays_store(cluster):
    """Where the dashboard reads arrays from: the cluster's own zarr store (issue 14) when
    present, else a zarr MemoryStore handed to `serve`."""
    zarr = pytest.importorskip("zarr")
    if hasattr(cluster, "zarr_store"):
        return cluster.zarr_store(namespace="arrays", read_only=False), False
    return zarr.storage.MemoryStore(), True


@pytest.fixture(scope="module")
def dashboard(cluster):
    import zarr

    store, hand_over = arrays_store(cluster)
    root = zarr.open_group(store, mode="a")
    arr = root.create_array("scans/volume", shape=(6, 40, 56), chunks=(2, 20, 28), dtype="float32",
                            overwrite=True)
    arr[:] = known_volume()
    root.create_array("plain", shape=(512, 512), chunks=(256, 256), dtype="uint16", overwrite=True)
    handle = ramburst.dashboard.serve(cluster, port=0, arrays_store=store if hand_over else None)
    try:
        yield handle
    finally:
        handle.stop()
    assert urlsplit(handle.url).port not in listening_ports()


def shoot(page, tmp_path, name):
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_page_loads_with_the_token_and_is_refused_without(dashboard, page, tmp_path):
    url = dashboard.url
    base = url.split("?", 1)[0].rstrip("/")
    token = url.split("token=", 1)[1]
    assert urlsplit(url).hostname == "127.0.0.1"
    response = page.goto(url)
    assert response.status == 200
    page.wait_for_selector("#health[data-ok='true']", timeout=10000)
    assert "HEALTH_" in page.inner_text("#health")
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("ramburst_dashboard"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] == token
    shoot(page, tmp_path, "loaded")
    # Refused without the token: the page, the live stream, the data and the images.
    for path in ("/", "/api/events", "/api/history", "/api/status", "/api/objects",
                 "/api/arrays", "/api/arrays/slice.png?path=plain&axis=0&index=0", "/static/app.js"):
        assert http_status(base + path) in (401, 403), path
        assert http_status(base + path + ("&" if "?" in path else "?") + "token=" + token[:-1] + "x") in (401, 403)
    assert http_status(base + "/api/history?token=" + token) == 200
    # Bad input with the token: a clear 4xx, never a 500.
    assert http_status(base + "/api/objects?offset=x&token=" + token) == 400
    assert http_status(base + "/api/objects?pool=no-such-pool&token=" + token) == 404
    for bad in ("path=nope", "path=plain&axis=5", "path=plain&index=512", "path=plain&lo=50&hi=10"):
        assert http_status(f"{base}/api/arrays/slice.png?{bad}&token={token}") == 400, bad
    other = page.context.browser.new_context()
    try:
        refused = other.new_page().goto(base + "/")
        assert refused.status in (401, 403)
    finally:
        other.close()


def test_objects_view_searches_and_shows_sizes_and_xattrs(cluster, dashboard, page):
    with cluster.ioctx() as io:
        for i in range(30):
            io.write_full(f"needle-{i:02d}", b"x" * (100 + i))
        io.set_xattr("needle-07", "owner", b"alice")
    page.goto(dashboard.url + "#objects")
    page.fill("#object-search", "needle-0")
    page.wait_for_selector("#objects tr[data-name='needle-07']", timeout=10000)
    rows = page.eval_on_selector_all("#objects tbody tr", "rs => rs.map(r => r.dataset.name)")
    assert sorted(rows) == [f"needle-0{i}" for i in range(10)]
    row = page.inner_text("#objects tr[data-name='needle-07']")
    assert "107" in row and "owner" in row and "alice" in row
    page.select_option("#object-ns", "*")  # the arrays live in a RADOS namespace of their own
    page.fill("#object-search", "scans/volume/zarr.json")
    page.wait_for_selector("#objects tr[data-name='scans/volume/zarr.json']", timeout=10000)
    assert "arrays" in page.inner_text("#objects tr[data-name='scans/volume/zarr.json']")


def test_throughput_plot_moves_while_a_writer_runs(cluster, dashboard, page, tmp_path):
    page.goto(dashboard.url)
    page.wait_for_selector("#health[data-ok='true']", timeout=10000)
    pool = cluster.pool
    read = f"() => window.dashboard.series({json.dumps(pool)}, 'write_bytes_sec')"
    before = page.evaluate(read)
    picture_before = page.evaluate("() => document.getElementById('plot-bytes').toDataURL()")
    assert max([v for _, v in before] or [0]) < 1e6
    stop = threading.Event()

    def writer():
        data = os.urandom(4 << 20)
        i = 0
        while not stop.is_set():
            cluster.put(f"load-{i % 16}", data)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        page.wait_for_function(f"() => window.dashboard.series({json.dumps(pool)}, 'write_bytes_sec')"
                               ".some(p => p[1] > 1e6)", timeout=20000)
        shoot(page, tmp_path, "writing")
    finally:
        stop.set()
        t.join()
    after = page.evaluate(read)
    assert len(after) > len(before)
    assert max(v for _, v in after) > 1e6
    assert page.evaluate("() => document.getElementById('plot-bytes').toDataURL()") != picture_before
    assert page.evaluate("() => Date.now() / 1000 - window.dashboard.last.t") < 3  # live, not stale


def expected_slice(vol, axis, index, lo, hi):
    plane = np.take(vol, index, axis=axis).astype("float64")
    vmin, vmax = np.percentile(plane, [lo, hi])
    scaled = np.clip((plane - vmin) / (vmax - vmin), 0, 1)
    return np.round(scaled * 255).astype("uint8")


def test_slice_viewer_shows_the_right_pixels(dashboard, page, tmp_path):
    from PIL import Image

    page.goto(dashboard.url + "#arrays")
    page.wait_for_selector("#arrays tr[data-path='scans/volume']", timeout=10000)
    row = page.inner_text("#arrays tr[data-path='scans/volume']")
    assert "6 × 40 × 56" in row and "float32" in row and "2 × 20 × 28" in row
    page.click("#arrays tr[data-path='scans/volume']")
    page.select_option("#slice-axis", "1")
    page.eval_on_selector("#slice-index", "(el) => { el.value = 17; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => { const i = document.getElementById('slice-img');"
                           " return i.complete && i.naturalWidth > 0 && i.src.includes('index=17')"
                           " && i.src.includes('axis=1'); }", timeout=10000)
    src = page.get_attribute("#slice-img", "src")
    lo, hi = page.evaluate("() => [Number(document.getElementById('slice-lo').value),"
                           " Number(document.getElementById('slice-hi').value)]")
    expected = expected_slice(known_volume(), 1, 17, lo, hi)
    # What the browser shows: the <img> drawn on a canvas, its red channel read back.
    shown = page.evaluate("""() => {
        const img = document.getElementById('slice-img');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const out = []; for (let i = 0; i < d.length; i += 4) out.push(d[i]);
        return [c.width, c.height, out]; }""")
    width, height, pixels = shown
    assert (height, width) == expected.shape
    got = np.array(pixels, dtype=np.int16).reshape(height, width)
    assert np.abs(got - expected).max() <= 1
    body = page.context.request.get(page.url.split("#")[0].rsplit("/", 1)[0] + src
                                    if src.startswith("/") else src).body()
    decoded = np.asarray(Image.open(io.BytesIO(body)).convert("L"))
    assert np.abs(decoded.astype(np.int16) - expected).max() <= 1
    shoot(page, tmp_path, "slice")
    page.select_option("#window", "60")
    page.select_option("#slice-axis", "0")  # a plane that shows the volume's pattern, for the README
    page.wait_for_function("() => document.getElementById('slice-img').src.includes('axis=0')"
                           " && document.getElementById('slice-img').complete", timeout=10000)
    shot = shoot(page, tmp_path, "for-docs")
    if os.environ.get("RAMBURST_DOCS_SCREENSHOT"):  # refresh the README's picture only when asked:
        shutil.copyfile(shot, DOCS_SHOT)            # a test run never changes the checkout


def test_health_turns_red_within_3_s_when_an_osd_is_killed(browser, tmp_path):
    """A cluster of its own: its OSD is killed with -9, and it is still removed cleanly."""
    name = unique_name("e")
    state = tmp_path / name
    c = ramburst.up(name=name, state_dir=str(state), size="1G")
    port = mon_port(state)
    handle = None
    context = browser.new_context()
    try:
        handle = ramburst.dashboard.serve(c, port=0)
        page = context.new_page()
        page.goto(handle.url)
        page.wait_for_selector("#health[data-ok='true']", timeout=10000)
        osd = next(d for d in c.status()["daemons"] if d["name"].startswith("osd."))
        os.kill(osd["pid"], signal.SIGKILL)
        killed = time.monotonic()
        page.wait_for_selector("#health[data-ok='false']", timeout=3000)
        seen = time.monotonic() - killed
        assert osd["name"] in page.inner_text("#daemons")
        assert "dead" in page.inner_text(f"#daemons tr[data-name='{osd['name']}']")
        page.screenshot(path=str(tmp_path / "osd-killed.png"), full_page=True)
        print(f"health red {seen:.2f} s after kill -9")
    finally:
        context.close()
        if handle is not None:
            handle.stop()
        c.down()
    assert_nothing_left(name, state, port)
    assert handle is None or urlsplit(handle.url).port not in listening_ports()


def test_cli_prints_a_token_url_and_frees_its_port(cluster):
    proc = subprocess.Popen([RAMBURST, "dashboard", "--state-dir", str(cluster.state_dir), "--port", "0",
                             "--prometheus"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "token=" in url, url if url else proc.stderr.read()
        assert http_status(url) == 200
        base, token = url.split("/?token=")
        assert http_status(base + "/metrics") in (401, 403)
        assert http_status(base + "/metrics", {"Authorization": f"Bearer {token}"}) == 200
        with urllib.request.urlopen(f"{base}/metrics?token={token}", timeout=10) as r:
            text = r.read().decode()
        assert "ramburst_health_ok 1" in text and 'ramburst_daemon_up{daemon="osd.0"' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert urlsplit(url).port not in listening_ports()


def test_run_with_dashboard_for_the_jobs_lifetime(tmp_path):
    name = unique_name("e")
    state = tmp_path / name
    probe = ("import os, urllib.request; u = os.environ['RAMBURST_DASHBOARD_URL']; "
             "print(u); print(urllib.request.urlopen(u, timeout=10).status)")
    r = cli("run", "--dashboard", "--name", name, "--state-dir", state, "--size", "1G", "--",
            str(Path(RAMBURST).with_name("python")), "-c", probe)
    assert r.returncode == 0, r.stderr
    url, code = r.stdout.split()
    assert code == "200" and "token=" in url
    assert_nothing_left(name, state)
    assert urlsplit(url).port not in listening_ports()


def test_bad_input_one_line_and_exit_2(tmp_path):
    r = cli("dashboard", "--state-dir", tmp_path / "nothing-here", "--port", "0")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "ramburst: error:" in r.stderr
    r = cli("dashboard", "--name", "bad/name")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = cli("dashboard", "--port", "70000")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_stage_progress_shown_while_a_stage_runs(cluster, dashboard, page):
    """The stage-in/out progress file (run/stage.json, written by `ramburst stage`) on the page."""
    from ramburst.layout import Layout

    progress = Layout(cluster.state_dir).stage_progress
    progress.parent.mkdir(exist_ok=True)
    page.goto(dashboard.url)
    page.wait_for_selector("#health[data-ok='true']", timeout=10000)
    assert page.inner_text("#stage") == ""
    try:
        progress.write_text(json.dumps({
            "direction": "in", "target": "/scratch/run42", "bytes_done": 3 << 30, "bytes_total": 4 << 30,
            "files_done": 30, "files_total": 40, "mb_s": 812.0, "eta_s": 1.4, "started": time.time() - 4,
            "finished": None, "error": None}))
        page.wait_for_function("() => document.getElementById('stage').textContent.includes('75%')", timeout=5000)
        text = page.inner_text("#stage")
        assert "stage-in /scratch/run42" in text and "30/40 files" in text and "812 MB/s" in text
    finally:
        progress.unlink(missing_ok=True)


def test_bad_address_or_busy_port_one_line_and_exit_2(cluster, dashboard):
    busy = urlsplit(dashboard.url).port
    for args in (("--address", "203.0.113.1"), ("--port", str(busy))):  # not this host's; taken
        r = cli("dashboard", "--state-dir", cluster.state_dir, *args, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot listen" in r.stderr, r.stderr
        assert r.stdout == ""


def test_prometheus_serves_ramburst_and_the_mgr_exporter_behind_the_token(tmp_path):
    """--prometheus with the metrics service: one scrape gives ramburst's gauges and Ceph's."""
    name = unique_name("e")
    state = tmp_path / name
    c = ramburst.up(name=name, state_dir=str(state), size="1G", services=("pool", "metrics"))
    port = mon_port(state)
    try:
        with ramburst.dashboard.serve(c, port=0, prometheus=True) as handle:
            base = handle.url.split("/?")[0]
            assert http_status(base + "/metrics") == 403
            request = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {handle.token}"})
            want = ["ramburst_health_ok 1", f'ramburst_pool_stored_bytes{{pool="{c.pool}"}}',
                    "ceph_health_status ", 'ceph_osd_up{ceph_daemon="osd.0"} 1.0']
            # Scraped as Prometheus does, every second: the first snapshot, right after `up`, may
            # still see a daemon slow to answer its 2 s probe; a healthy cluster reads healthy within 15 s.
            for _ in range(15):
                with urllib.request.urlopen(request, timeout=20) as r:
                    text = r.read().decode()
                if all(w in text for w in want):
                    break
                time.sleep(1)
        missing = [w for w in want if w not in text]
        assert not missing, f"{missing} not in the scrape:\n{text}"
    finally:
        c.down()
    assert_nothing_left(name, state, port)
