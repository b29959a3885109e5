"""The two kinds of failure a user can see, each with its exit code."""
from __future__ import annotations


class RamburstError(Exception):
    """A failure explained in one line; the CLI prints it and exits with `exit_code`."""

    exit_code = 1


class UsageError(RamburstError):
    """Bad input: nothing was created. Exit code 2, like a wrong command-line option."""

    exit_code = 2


class DeployError(RamburstError):
    """A step of `up` failed; everything it made has been rolled back."""

    def __init__(self, message: str, log: str | None = None):
        super().__init__(message + (f" (log: {log})" if log else ""))
        self.message = message
        self.log = log


class Interrupted(RamburstError):
    """`up` or `run` got SIGINT or SIGTERM; raised so that the undo stack unwinds."""

    exit_code = 130

    def __init__(self, signum: int):
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
