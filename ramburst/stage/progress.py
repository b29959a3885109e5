"""Progress of a stage: one rich bar on stderr (rank 0) and run/stage.json for other readers.

stage.json keys (kept flat for the dashboard): direction, target, phase, bytes_done, bytes_total,
files_done, files_total, mb_s, eta_s, started, finished, error.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class Reporter:
    def __init__(self, direction: str, target: str, path: Path | None, bar: bool):
        self.path, self.bar = path, bar
        self.state = {"direction": direction, "target": target, "phase": "plan", "bytes_done": 0,
                      "bytes_total": 0, "files_done": 0, "files_total": 0, "mb_s": 0.0, "eta_s": None,
                      "started": time.time(), "finished": None, "error": None}
        self.t0 = time.monotonic()
        self.last_write = 0.0
        self.progress = self.task = None
        self.write()

    def start(self, bytes_total: int, files_total: int) -> None:
        self.state.update(phase="copy", bytes_total=bytes_total, files_total=files_total)
        self.t0 = time.monotonic()
        if self.bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TextColumn("{task.fields[files]}"), TransferSpeedColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.progress.start()
            self.task = self.progress.add_task(f"stage {self.state['direction']}", total=bytes_total or 1,
                                               files=f"0/{files_total} files")
        self.write(force=True)

    def phase(self, name: str, bytes_total: int) -> None:
        self.state.update(phase=name, bytes_done=0, bytes_total=bytes_total, files_done=0)
        self.t0 = time.monotonic()
        if self.progress is not None:
            self.progress.update(self.task, description=name, completed=0, total=bytes_total or 1)
        self.write(force=True)

    def update(self, bytes_done: int, files_done: int) -> None:
        dt = max(time.monotonic() - self.t0, 1e-6)
        rate = bytes_done / dt
        left = self.state["bytes_total"] - bytes_done
        self.state.update(bytes_done=bytes_done, files_done=files_done, mb_s=round(rate / 1e6, 1),
                          eta_s=round(left / rate, 1) if rate > 0 else None)
        if self.progress is not None:
            self.progress.update(self.task, completed=bytes_done,
                                 files=f"{files_done}/{self.state['files_total']} files")
        self.write()

    def finish(self, error: str | None) -> None:
        self.state.update(finished=time.time(), error=error, phase="done" if error is None else "failed")
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        if self.path is None or (not force and time.monotonic() - self.last_write < 1.0):
            return
        self.last_write = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}")
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.path)
        except OSError as e:  # progress is a courtesy: never fail a stage over it
            print(f"ramburst: note: cannot write {self.path}: {e.strerror}", file=sys.stderr)
            self.path = None
