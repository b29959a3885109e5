// ramburst dashboard: hand-written, no framework, no CDN (compute nodes have no internet).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const history = [];          // ring buffer copy: {t, rates: {pool: {...}}, used, ok}
  const HISTORY = 900;
  const state = { last: null, objectOffset: 0, objectLimit: 25, array: null, loading: false, pending: null };

  // The token is in the cookie now (HttpOnly): drop it from the address bar.
  if (location.search.includes("token=")) history_replace();
  function history_replace() { window.history.replaceState(null, "", "/" + location.hash); }

  function fmtBytes(n) {
    if (n == null) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }

  // ---- status --------------------------------------------------------------------------
  function render(snap) {
    state.last = snap;
    const st = snap.status;
    const h = $("health");
    h.dataset.ok = snap.ok ? "true" : "false";
    if (!st) { h.textContent = "NOT UP: " + (snap.error || ""); return; }
    $("name").textContent = st.name;
    const down = st.daemons.filter((d) => d.state !== "running").length;
    h.textContent = (st.health || "UNREACHABLE") + (down ? " · " + down + " daemon(s) down" : "");
    const tb = $("daemons").tBodies[0]; tb.textContent = "";
    for (const d of st.daemons) {
      const tr = document.createElement("tr"); tr.dataset.name = d.name;
      if (d.state !== "running") { tr.className = "bad"; tr.title = d.reason; }
      [d.name, d.host, d.address, d.pid, d.state + (d.state !== "running" ? " (" + d.reason + ")" : "")]
        .forEach((v) => tr.appendChild(cell(v)));
      tb.appendChild(tr);
    }
    $("checks").textContent = Object.entries(st.checks || {}).map(([k, v]) => k + ": " + v).join("\n") +
      (st.error ? "\n" + st.error : "");
    const cap = st.capacity;
    const fill = document.querySelector("#capacity .fill");
    if (cap) {
      const pct = 100 * cap.used_bytes / Math.max(1, cap.usable_bytes);
      fill.style.width = Math.min(100, pct).toFixed(1) + "%";
      fill.className = "fill " + cap.state;
      document.querySelector("#capacity .text").textContent = fmtBytes(cap.used_bytes) + " used of " +
        fmtBytes(cap.usable_bytes) + " usable (the full mark) · " + pct.toFixed(0) + "% · " + fmtBytes(cap.avail_bytes) +
        " available" + (cap.state === "full" ? " · FULL: writes are refused" : cap.state === "nearfull" ? " · NEAR FULL" : "");
    } else {
      document.querySelector("#capacity .text").textContent = "not reported yet (the manager is starting)";
    }
    const pt = $("pools").tBodies[0]; pt.textContent = "";
    for (const p of snap.pools || []) {
      const tr = document.createElement("tr"); tr.dataset.pool = p.name; if (p.full) tr.className = "bad";
      const quota = [p.quota_bytes ? fmtBytes(p.quota_bytes) : "", p.quota_objects ? p.quota_objects + " objects" : ""]
        .filter(Boolean).join(", ") || "none";
      [p.name, fmtBytes(p.stored), p.objects, quota, p.full ? "FULL" : "ok"].forEach((v) => tr.appendChild(cell(v)));
      pt.appendChild(tr);
    }
    options($("rate-pool"), Object.keys(snap.rates || {}));
    options($("object-pool"), (snap.pools || []).map((p) => p.name), st.pool);
    renderStage(snap.stage);
  }

  function options(select, names, preferred) {
    const have = Array.from(select.options).map((o) => o.value).join("\n");
    if (have === names.join("\n")) return;
    const keep = select.value || preferred;
    select.textContent = "";
    for (const n of names) { const o = document.createElement("option"); o.value = o.textContent = n; select.appendChild(o); }
    if (names.includes(keep)) select.value = keep; else if (preferred && names.includes(preferred)) select.value = preferred;
  }

  function renderStage(s) {
    const box = $("stage");
    if (!s) { box.textContent = ""; return; }
    const pct = s.bytes_total ? (100 * s.bytes_done / s.bytes_total).toFixed(0) + "%" : "";
    const what = String(s.direction || "").startsWith("stage") ? s.direction : "stage-" + s.direction;
    box.textContent = what + " " + s.target + ": " + fmtBytes(s.bytes_done) + " of " +
      fmtBytes(s.bytes_total) + " " + pct + ", " + s.files_done + "/" + s.files_total + " files" +
      (s.mb_s != null ? ", " + Number(s.mb_s).toFixed(0) + " MB/s" : "") +
      (s.finished ? (s.error ? " · FAILED: " + s.error : " · done") : (s.eta_s != null ? ", ETA " + Math.round(s.eta_s) + " s" : ""));
  }

  // ---- plots ---------------------------------------------------------------------------
  function series(pool, key) {
    return history.filter((p) => p.rates && p.rates[pool]).map((p) => [p.t, p.rates[pool][key]]);
  }

  function plot(canvas, lines, scale) {
    const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height, pad = 34;
    g.clearRect(0, 0, w, h);
    const now = Date.now() / 1000, span = Number($("window").value);
    let max = 1;
    lines = lines.map((l) => ({ color: l.color, points: l.points.filter(([t]) => now - t <= span) }));
    for (const l of lines) for (const [, v] of l.points) max = Math.max(max, v / scale);
    g.strokeStyle = "#ddd"; g.fillStyle = "#666"; g.font = "10px sans-serif"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = h - pad / 2 - (h - pad) * i / 4;
      g.beginPath(); g.moveTo(pad, y); g.lineTo(w, y); g.stroke();
      g.fillText((max * i / 4).toFixed(max < 10 ? 1 : 0), 2, y + 3);
    }
    g.fillText("-" + (span >= 120 ? span / 60 + " min" : span + " s"), pad, h - 2); g.fillText("now", w - 22, h - 2);
    for (const l of lines) {
      g.strokeStyle = l.color; g.lineWidth = 1.5; g.beginPath();
      l.points.forEach(([t, v], i) => {
        const x = pad + (w - pad) * (1 - (now - t) / span), y = h - pad / 2 - (h - pad) * (v / scale) / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
  }

  function redraw() {
    const pool = $("rate-pool").value;
    plot($("plot-bytes"), [{ color: "#d8523b", points: series(pool, "write_bytes_sec") },
                           { color: "#3b7dd8", points: series(pool, "read_bytes_sec") }], 1e6);
    plot($("plot-ops"), [{ color: "#d8523b", points: series(pool, "write_op_per_sec") },
                         { color: "#3b7dd8", points: series(pool, "read_op_per_sec") }], 1);
  }
  $("rate-pool").addEventListener("change", redraw);
  $("window").addEventListener("change", redraw);

  function freshness() {
    if (!state.last) return;
    const age = Date.now() / 1000 - state.last.t;
    $("freshness").textContent = "updated " + age.toFixed(1) + " s ago";
  }
  setInterval(freshness, 500);

  // ---- live stream ---------------------------------------------------------------------
  function addPoint(snap) {
    const cap = (snap.status || {}).capacity || {};
    const last = history[history.length - 1];
    if (last && last.t > snap.t) return;
    const p = { t: snap.t, rates: snap.rates || {}, used: cap.used_bytes, ok: !!snap.ok };
    if (last && last.t === snap.t) history[history.length - 1] = p;  // the same poll, now with its rates
    else history.push(p);
    while (history.length > HISTORY) history.shift();
  }

  fetch("/api/history").then((r) => r.json()).then((points) => {
    for (const p of points) if (!history.length || p.t > history[history.length - 1].t) history.push(p);
    const es = new EventSource("/api/events");
    es.onmessage = (ev) => { const snap = JSON.parse(ev.data); addPoint(snap); render(snap); redraw(); freshness(); };
    es.onerror = () => { $("health").dataset.ok = "false"; $("health").textContent = "dashboard unreachable"; };
  });

  // ---- objects -------------------------------------------------------------------------
  let objectTimer = null;
  function loadObjects() {
    const pool = $("object-pool").value, q = $("object-search").value;
    const url = "/api/objects?pool=" + encodeURIComponent(pool) + "&q=" + encodeURIComponent(q) +
      "&ns=" + encodeURIComponent($("object-ns").value) +
      "&offset=" + state.objectOffset + "&limit=" + state.objectLimit;
    fetch(url).then((r) => r.json()).then((data) => {
      if ($("object-search").value !== q) return;  // a newer search is under way
      const tb = $("objects").tBodies[0]; tb.textContent = "";
      for (const o of data.rows) {
        const tr = document.createElement("tr"); tr.dataset.name = o.name;
        tr.appendChild(cell(o.name)); tr.appendChild(cell(o.namespace));
        const size = cell(o.size == null ? "–" : fmtBytes(o.size), "num"); size.title = o.size + " bytes";
        tr.appendChild(size);
        tr.appendChild(cell(Object.entries(o.xattrs).map(([k, v]) => k + "=" + v).join(" ")));
        tb.appendChild(tr);
      }
      const last = Math.min(data.total, data.offset + data.rows.length);
      $("object-page").textContent = (data.total ? data.offset + 1 : 0) + "–" + last + " of " + data.total +
        (data.truncated ? "+" : "");
    });
  }
  function scheduleObjects() { clearTimeout(objectTimer); objectTimer = setTimeout(loadObjects, 150); }
  $("object-search").addEventListener("input", () => { state.objectOffset = 0; scheduleObjects(); });
  $("object-pool").addEventListener("change", () => { state.objectOffset = 0; scheduleObjects(); });
  $("object-ns").addEventListener("change", () => { state.objectOffset = 0; scheduleObjects(); });
  $("object-prev").addEventListener("click", () => { state.objectOffset = Math.max(0, state.objectOffset - state.objectLimit); loadObjects(); });
  $("object-next").addEventListener("click", () => { state.objectOffset += state.objectLimit; loadObjects(); });
  setTimeout(loadObjects, 300);
  $("object-refresh").addEventListener("click", loadObjects);  // no timer: a listing walks the whole pool

  // ---- arrays and the slice viewer ---------------------------------------------------------
  function loadArrays() {
    fetch("/api/arrays").then((r) => r.json()).then((data) => {
      $("arrays-error").textContent = data.error || "";
      const tb = $("arrays").tBodies[0]; tb.textContent = "";
      for (const a of data.arrays) {
        const tr = document.createElement("tr"); tr.dataset.path = a.path;
        [a.path, a.shape.join(" × "), a.dtype, a.chunks.join(" × ")].forEach((v) => tr.appendChild(cell(v)));
        tr.addEventListener("click", () => select(a, tr));
        if (state.array && state.array.path === a.path) tr.className = "sel";
        tb.appendChild(tr);
      }
    });
  }

  function select(a, tr) {
    for (const r of $("arrays").tBodies[0].rows) r.className = "";
    tr.className = "sel";
    state.array = a;
    $("viewer").hidden = false;
    $("slice-path").textContent = a.path;
    const axis = $("slice-axis"); axis.textContent = "";
    for (let i = 0; i < a.shape.length; i++) { const o = document.createElement("option"); o.value = i; o.textContent = i + " (" + a.shape[i] + ")"; axis.appendChild(o); }
    setAxis();
  }

  function setAxis() {
    const a = state.array, axis = Number($("slice-axis").value), idx = $("slice-index");
    if (a.shape.length === 2) { idx.max = 0; idx.value = 0; } else { idx.max = a.shape[axis] - 1; idx.value = Math.floor(a.shape[axis] / 2); }
    showSlice();
  }

  function sliceUrl() {
    const a = state.array;
    return "/api/arrays/slice.png?path=" + encodeURIComponent(a.path) + "&axis=" + $("slice-axis").value +
      "&index=" + $("slice-index").value + "&lo=" + $("slice-lo").value + "&hi=" + $("slice-hi").value;
  }

  // Scrubbing: one image request at a time; the newest wish waits and replaces older ones.
  function showSlice() {
    $("slice-index-text").textContent = $("slice-index").value + " / " + $("slice-index").max;
    const url = sliceUrl();
    if (state.loading) { state.pending = url; return; }
    state.loading = true;
    $("slice-img").src = url;
  }
  $("slice-img").addEventListener("load", sliceDone);
  $("slice-img").addEventListener("error", sliceDone);
  function sliceDone() {
    state.loading = false;
    if (state.pending) { const next = state.pending; state.pending = null; state.loading = true; $("slice-img").src = next; }
  }
  $("slice-axis").addEventListener("change", setAxis);
  $("slice-index").addEventListener("input", showSlice);
  $("slice-lo").addEventListener("change", showSlice);
  $("slice-hi").addEventListener("change", showSlice);
  loadArrays();
  $("arrays-refresh").addEventListener("click", loadArrays);

  window.dashboard = {
    series,
    get last() { return state.last; },
    get history() { return history.slice(); },
  };
})();
