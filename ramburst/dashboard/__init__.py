"""A live, read-only web dashboard of a running instance: health and daemons, capacity, pool
throughput over the last 15 minutes, objects, arrays with a slice viewer, staging progress.

    import ramburst, ramburst.dashboard
    with ramburst.deploy(size="2G") as cluster:
        handle = ramburst.dashboard.serve(cluster, port=0)
        print(handle.url)          # http://127.0.0.1:PORT/?token=...
        ...
        handle.stop()

It runs in a thread of the caller's process (uvicorn on a socket bound here, so the port is
known before the first request), with one librados connection: the cluster's own."""
from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import DeployError, RamburstError, UsageError
from ..wait import Timeouts, wait_until


def default_address(cluster) -> str:
    """The instance's own address (where its daemons listen; 127.0.0.1 for --interface lo)
    when this host has it, else 127.0.0.1 (a dashboard started on another host of the instance)."""
    from ..host import local_addresses

    host = cluster.env.get("RAMBURST_MON_HOST", "").strip("[]")
    host = host.split(",", 1)[0].split(":", 1)[1] if host.startswith(("v1:", "v2:")) else host
    address = host.rsplit(":", 1)[0].strip("[]")
    return address if address in local_addresses() else "127.0.0.1"


def bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"the dashboard cannot listen on {address}:{port}: {e.strerror}") from None
    sock.set_inheritable(False)
    return sock


@dataclass
class Handle:
    """A running dashboard: `url` (with the token) and `stop()`; a context manager too."""

    url: str
    token: str
    _stop: Callable[[], None] = field(repr=False)

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(cluster, port: int = 0, address: str | None = None, arrays_store=None, prometheus: bool = False,
          token: str | None = None, period: float = 1.0) -> Handle:
    """Start the dashboard of `cluster` (an api.Cluster) in a thread; returns once it answers."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the dashboard needs starlette and uvicorn: pip install 'ramburst[dashboard]'") from None

    from .app import Views, build_app
    from .collector import Collector

    address = address or default_address(cluster)
    token = token or secrets.token_urlsafe(24)
    rados = cluster.rados()  # connect first: a cluster that does not answer leaves no socket open
    sock = bind(address, port)
    port = sock.getsockname()[1]
    collector = Collector(cluster.state_dir, rados, period=period).start()
    views = Views(cluster, collector, arrays_store, metrics_url=cluster.env.get("RAMBURST_METRICS_URL"))
    app = build_app(views, token, f"ramburst_dashboard_{port}", prometheus=prometheus)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, timeout_keep_alive=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dashboard-server", daemon=True)
    thread.start()
    try:  # started, or the thread ended (a bind error): either way decided below
        wait_until(lambda: server.started or not thread.is_alive(), Timeouts.DASHBOARD_STARTED,
                   "the dashboard server", interval=0.01)
    except DeployError:
        pass
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        views.closing = True
        server.should_exit = True
        thread.join(15)
        collector.stop()
        sock.close()

    if not server.started:
        stop()
        raise RamburstError(f"the dashboard did not start on {address}:{port}")
    collector.wait_first(5)  # the first page shows data, not "connecting"
    host = f"[{address}]" if ":" in address else address
    return Handle(url=f"http://{host}:{port}/?token={token}", token=token, _stop=stop)


def serve_instance(state_dir, **options) -> Handle:
    """`serve` for an instance known by its state folder (`ramburst run --dashboard`); its
    stop also closes the connection opened here."""
    from ..api import Cluster

    cluster = Cluster(state_dir)
    try:
        handle = serve(cluster, **options)
    except BaseException:
        cluster.close()
        raise

    def stop() -> None:
        handle.stop()
        cluster.close()

    return Handle(url=handle.url, token=handle.token, _stop=stop)
