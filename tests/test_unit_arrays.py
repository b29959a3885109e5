"""Issue 14, without daemons: the CLI starts without the arrays extra, and says what to install."""
from __future__ import annotations

import subprocess
import sys

BLOCK_ZARR = "import sys; sys.modules['zarr'] = None; from ramburst.cli import cli; sys.exit(cli({argv!r}))"


def run_without_zarr(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_ZARR.format(argv=list(argv))], capture_output=True,
                          text=True, timeout=60)


def test_item_cli_without_the_arrays_extra():
    assert run_without_zarr("--help").returncode == 0
    r = run_without_zarr("array", "ls", "--state-dir", "/nonexistent")
    assert r.returncode == 2 and r.stderr.strip() == \
        "ramburst: error: arrays need the arrays extra: pip install 'ramburst[arrays]'", r.stderr
