"""`ramburst dashboard`: serve the live dashboard of a running instance until Ctrl-C/SIGTERM."""
from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import click


def tunnel_hint(url: str) -> str:
    """The ssh command that brings the dashboard to a laptop through the cluster's login node."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    port, host = where.port, where.hostname
    if host in ("127.0.0.1", "::1", "localhost"):  # only this node reaches it: hop through login
        return f"ssh -J LOGIN -L {port}:127.0.0.1:{port} {socket.gethostname()}, then open the URL"
    return f"ssh -L {port}:{host}:{port} LOGIN, then open the URL with localhost for {host}"


@click.command()
@click.option("--name", help="Instance name (default: default).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="The instance's state folder.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TCP port (0: a free one).")
@click.option("--address", help="Address to listen on (default: the instance's own, 127.0.0.1 with --interface lo).")
@click.option("--prometheus", is_flag=True,
              help="Also serve /metrics (ramburst's gauges, plus the mgr exporter's when the metrics service runs).")
def dashboard(name, state_dir, port, address, prometheus):
    """A live read-only web dashboard; prints its URL (with the access token) on stdout."""
    from .. import api
    from ..cli import existing_instance, instance_dir
    from ..status import NotUp
    from . import serve

    path = existing_instance(instance_dir(name, state_dir, None))
    if not (path / "instance.json").exists():
        raise NotUp(f"no instance at {path}")
    cluster = api.Cluster(path)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    handle = None
    try:
        handle = serve(cluster, port=port, address=address, prometheus=prometheus)
        click.echo(handle.url)
        click.echo(f"ramburst: dashboard of {cluster.name} at the URL above (keep the token private; "
                   f"Ctrl-C stops it); from your machine: {tunnel_hint(handle.url)}", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        if handle is not None:
            handle.stop()
        cluster.close()
        for s, h in previous.items():
            signal.signal(s, h)
