"""SIGTERM behaves like Ctrl-C: the run stops, cleans up and says so in one line.

Slurm sends SIGTERM on ``scancel`` and at the time limit (SIGKILL follows after ``KillWait``). By
default SIGTERM kills Python on the spot: no ``finally`` runs, so temp outputs stay behind and
pool workers, orphaned mid-write, print BrokenPipe tracebacks. Turning the signal into an
exception runs the same cleanup as ``KeyboardInterrupt`` (workers terminated, temp files removed).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from codetron.errors import CodetronError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(CodetronError):
    """The run was stopped by a signal; exits with 128 + the signal number, as a shell reports."""

    def __init__(self, signum: int, what: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}: {what}")


@contextlib.contextmanager
def stop_on_signals(what: str) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT/SIGHUP raise :class:`Stopped` (``what`` completes its
    message, e.g. "no output written"). A second signal during the cleanup gets the default
    action, so a stuck cleanup can still be killed. Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_DFL if s != signal.SIGINT else signal.default_int_handler)
        raise Stopped(signum, what)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def ignore_interrupts_in_worker() -> None:
    """Workers leave every stop signal to the parent, which kills them (workpool.py says why a
    worker must not die on its own while the parent still talks to it): no KeyboardInterrupt
    traceback from every worker on Ctrl-C, and a signal to the whole Slurm step stops the run once."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
