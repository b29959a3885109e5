"""Named steps of a deployment: progress on stderr, timings, and test-only fault hooks.

RAMBURST_FAIL_AT=<step> makes that step fail; RAMBURST_HANG_AT=<step> makes it wait for a
signal. Tests use them to prove that rollback leaves nothing behind after any step.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from .errors import DeployError
from .wait import Timeouts, wait_until


class Steps:
    """`cancel` is the deployment's own: set when its `up` fails or is interrupted (or by the
    caller of `ramburst.up(cancel=...)`), so its steps in worker threads give up too, and no
    new step starts. Another deployment in the same process is not touched."""

    def __init__(self, show: bool = True, prefix: str = "", cancel: threading.Event | None = None):
        self.cancel = cancel if cancel is not None else threading.Event()
        self.console = Console(stderr=True, highlight=False) if show else None
        self.prefix = prefix
        self.start = time.monotonic()
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def info(self, text: str) -> None:
        if self.console is not None:
            with self._lock:
                self.console.print(f"[dim]{self.elapsed():6.2f}s[/] {escape(self.prefix + text)}")

    @contextmanager
    def step(self, name: str, label: str | None = None):
        """Run one step; fault hooks fire at its start, its end is reported with elapsed time."""
        if self.cancel.is_set():
            raise DeployError(f"step {name} cancelled")
        inject(name, self.cancel)
        t0 = time.monotonic()
        yield
        with self._lock:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - t0
        self.info(label or name)


def _this_rank() -> str:
    for var in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"):
        if var in os.environ:
            return os.environ[var]
    return "0"


def inject(step: str, cancel: threading.Event | None = None) -> None:
    """Test-only faults; RAMBURST_FAIL_RANK=<n> limits them to one MPI rank."""
    rank = os.environ.get("RAMBURST_FAIL_RANK")
    if rank is not None and rank != _this_rank():
        return
    if os.environ.get("RAMBURST_FAIL_AT") == step:
        raise DeployError(f"failure injected at step {step} (RAMBURST_FAIL_AT)")
    if os.environ.get("RAMBURST_HANG_AT") == step:
        print(f"ramburst: hanging at step {step} (RAMBURST_HANG_AT)", file=sys.stderr, flush=True)
        wait_until(lambda: cancel is not None and cancel.is_set(), Timeouts.NEVER, f"step {step}", interval=0.05)
        raise DeployError(f"step {step} cancelled")
