"""The web app: read-only routes over the collector's ring buffer, the pool's objects and the
arrays store, behind one random token. Starlette because it is small, async (server-sent
events without a thread per viewer) and needs no template engine or ORM."""
from __future__ import annotations

import asyncio
import hmac
import json
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from . import images
from .collector import Collector
from .metrics import prometheus_text

STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
OBJECTS_SCAN_LIMIT = 100_000  # names looked at per search; a pool of millions stays responsive


class TokenGate:
    """ASGI middleware: every request shows the token (query `token`, the cookie set on the
    first visit, or `Authorization: Bearer` for a Prometheus scraper) or gets 403."""

    def __init__(self, app, token: str, cookie: str):
        self.app, self.token, self.cookie = app, token, cookie

    def presented(self, scope) -> tuple[str | None, bool]:
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
        if "token" in query:
            return query["token"][0], True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value, False
        return None, False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token, in_query = self.presented(scope)
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            response = PlainTextResponse("403: this dashboard needs the token from the URL ramburst printed\n",
                                         status_code=403)
            return await response(scope, receive, send)
        if not in_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie.encode("latin-1"))]}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


class Views:
    """The route handlers; sync ones run in Starlette's thread pool (librados and zarr block)."""

    def __init__(self, cluster, collector: Collector, arrays_store=None, metrics_url: str | None = None):
        self.cluster, self.collector = cluster, collector
        self.arrays_store = arrays_store
        self.metrics_url = metrics_url
        self._arrays: dict = {}
        self.slabs = images.SlabCache()
        self.closing = False
        self.files = {name: (STATIC / name).read_bytes() for name in ("index.html", *STATIC_FILES)}

    # pages: a few KiB read once, served from memory on the event loop (no thread hop) ---------
    async def index(self, request: Request):
        return Response(self.files["index.html"], media_type="text/html", headers={"Cache-Control": "no-store"})

    async def static(self, request: Request):
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse("not found\n", status_code=404)
        return Response(self.files[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # live data -----------------------------------------------------------------------------
    async def status(self, request: Request):
        return JSONResponse(self.collector.latest)

    async def history(self, request: Request):
        return JSONResponse(list(self.collector.history))

    async def events(self, request: Request):
        async def stream():
            sent = 0
            yield "retry: 1000\n\n"
            while not (self.closing or self.collector.stopped):
                snap = self.collector.latest
                if snap is not None and snap["seq"] > sent:
                    sent = snap["seq"]
                    yield f"data: {json.dumps(snap)}\n\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def metrics(self, request: Request):
        text = prometheus_text(self.collector.latest)
        if self.metrics_url:
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
                    text += r.read().decode(errors="replace")
            except OSError as e:
                text += f"# the mgr's exporter at {self.metrics_url} did not answer: {e}\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # objects -----------------------------------------------------------------------------
    def objects(self, request: Request):
        """One page of the pool's object names containing `q`, sorted, with size and xattrs;
        `ns=*` lists every RADOS namespace (arrays live in their own)."""
        from ..ceph.admin import load_rados

        q = request.query_params
        pool = q.get("pool") or self.cluster.pool
        search, every_ns = q.get("q", ""), q.get("ns") == "*"
        try:
            offset, limit = max(0, int(q.get("offset", 0))), min(500, max(1, int(q.get("limit", 50))))
            io = self.cluster.ioctx(pool)
        except ValueError as e:
            return PlainTextResponse(f"{e}\n", status_code=400)
        except load_rados().Error as e:
            return PlainTextResponse(f"pool {pool!r}: {e}\n", status_code=404)
        names, scanned = [], 0
        with io:
            if every_ns:
                io.set_namespace(load_rados().LIBRADOS_ALL_NSPACES)
            for obj in io.list_objects():
                if scanned >= OBJECTS_SCAN_LIMIT:
                    break
                scanned += 1
                if search in obj.key:
                    names.append((obj.nspace or "", obj.key))
            names.sort()
            rows = []
            for nspace, name in names[offset:offset + limit]:
                io.set_namespace(nspace)
                try:
                    size, mtime = io.stat(name)
                    xattrs = {k: v.decode(errors="replace")[:200] for k, v in io.get_xattrs(name)}
                except Exception as e:  # noqa: BLE001 - removed meanwhile: shown, not fatal
                    size, mtime, xattrs = None, None, {"error": str(e)}
                rows.append({"name": name, "namespace": nspace, "size": size,
                             "mtime": str(mtime) if mtime else None, "xattrs": xattrs})
        return JSONResponse({"pool": pool, "total": len(names), "offset": offset, "rows": rows,
                             "truncated": scanned >= OBJECTS_SCAN_LIMIT})

    # arrays -----------------------------------------------------------------------------
    def _group(self):
        import zarr

        store = self.arrays_store
        if store is None:
            if not hasattr(self.cluster, "zarr_store"):
                raise LookupError("this ramburst has no arrays store (issue 14)")
            store = self.arrays_store = self.cluster.zarr_store(namespace="arrays", read_only=True)
        return zarr.open_group(store, mode="r")

    def arrays(self, request: Request):
        try:
            listing = images.list_arrays(self._group())
        except Exception as e:  # noqa: BLE001 - no arrays yet, or zarr missing: say so on the page
            return JSONResponse({"arrays": [], "error": f"{type(e).__name__}: {e}"})
        self._arrays.clear()
        self.slabs.clear()
        return JSONResponse({"arrays": listing, "error": None})

    def slice_png(self, request: Request):
        q = request.query_params
        try:
            path = q["path"]
            axis, index = int(q.get("axis", 0)), int(q.get("index", 0))
            lo, hi = float(q.get("lo", 1)), float(q.get("hi", 99))
            if not 0 <= lo < hi <= 100:
                raise ValueError("percentiles need 0 <= lo < hi <= 100")
            array = self._arrays.get(path)
            if array is None:
                array = self._arrays[path] = self._group()[path]
            gray, vmin, vmax = images.to_gray(self.slabs.plane(path, array, axis, index), lo, hi)
        except (KeyError, ValueError, TypeError, LookupError) as e:
            return PlainTextResponse(f"{e}\n", status_code=400)
        return Response(images.png_gray(gray), media_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Vmin": repr(vmin), "X-Vmax": repr(vmax)})


def build_app(views: Views, token: str, cookie: str, prometheus: bool = False):
    routes = [
        Route("/", views.index),
        Route("/static/{name}", views.static),
        Route("/api/status", views.status),
        Route("/api/history", views.history),
        Route("/api/events", views.events),
        Route("/api/objects", views.objects),
        Route("/api/arrays", views.arrays),
        Route("/api/arrays/slice.png", views.slice_png),
    ]
    if prometheus:
        routes.append(Route("/metrics", views.metrics))
    return TokenGate(Starlette(routes=routes), token, cookie)
