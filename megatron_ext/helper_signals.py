"""Signals reach the trainer only, never the processes it starts.

``scancel --signal=USR1 JOB`` (without ``-b``), Slurm's time-limit signal to the steps and a
terminal's Ctrl-C go to every process of the step or the process group: the checkpoint writers
megatron-core forks, multiprocessing's resource tracker and DataLoader workers. A spawned process
has the default disposition, so USR1 killed the results Manager megatron-core used to spawn (now an
in-process queue, checkpointing.py) and the exit save then failed with BrokenPipeError. Starting
every helper with these signals blocked fixes that: the mask is inherited through fork and kept across exec, so the
helpers never see them, while the trainer gets them as before (blocked only while a helper
starts; one arriving then is delivered when the block ends, or to another thread at once).

One catch: multiprocessing's resource tracker, started on the first spawn, unblocks INT and TERM in
the calling thread once it has started (``resource_tracker.ensure_running``), which would end the
block half-way; ``start_resource_tracker`` starts it on its own first.
"""
from __future__ import annotations

import contextlib
import signal

EXIT_SIGNALS = frozenset({signal.SIGUSR1, signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def held_signals():
    """Block USR1/TERM/INT in this thread for the block: processes started inside keep them blocked."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, with the signals held (see the module doc)."""
    from multiprocessing import resource_tracker

    with held_signals():
        resource_tracker.ensure_running()
