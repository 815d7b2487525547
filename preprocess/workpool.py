"""Worker processes for the preprocess pipeline, each with pipes of its own.

``multiprocessing.Pool`` shares one task queue among its workers, guarded by a lock that an idle
worker holds while it waits for the next task. Slurm's ``scancel`` signals every process of the
step: a worker killed while holding that lock leaves it held for ever, and ``Pool.terminate()``
then waits on it (a run that never exited after SIGTERM, seen in test_signal_stops_cleanly).
Here nothing is shared between workers: worker i reads tasks from its own pipe and writes results
to its own, so a worker can die at any moment and the parent only sees end-of-file on that pipe.
Workers ignore the stop signals (the parent decides, and SIGKILLs them when it stops) and exit on
their own when the parent's end of the task pipe closes, including when the parent was SIGKILLed.
They start with those signals blocked (the mask is inherited through fork and exec), so a signal
to the whole step while a worker is still importing cannot kill it either.
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing import resource_tracker
import os
import queue
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable

from codetron.errors import CodetronError
from codetron.preprocess.signals import STOP_SIGNALS


class WorkerDied(CodetronError):
    """A worker process ended without sending the result the parent waited for."""


def _reader(conn, tasks: queue.SimpleQueue) -> None:
    # A thread of its own keeps the task pipe drained while the main thread computes, so the
    # parent never blocks sending a task while the worker blocks sending a result.
    while True:
        try:
            tasks.put(conn.recv())
        except (EOFError, OSError):
            tasks.put(None)
            return


def _serve(task_conn, result_conn, initializer: Callable, initargs: tuple, func: Callable) -> None:
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    initializer(*initargs)
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(task_conn, tasks), daemon=True).start()
    while (task := tasks.get()) is not None:
        try:
            reply = (True, func(task))
        except Exception as e:  # noqa: BLE001 - re-raised in the parent, as Pool.apply_async does
            reply = (False, e)
        try:
            result_conn.send(reply)
        except (BrokenPipeError, OSError):
            break  # the parent is gone
        except Exception as e:  # noqa: BLE001 - an exception that cannot be pickled
            result_conn.send((False, CodetronError(f"{type(e).__name__} in a preprocess worker: {e}")))
    os._exit(0)  # skip interpreter teardown: nothing here needs flushing


@dataclass
class _Worker:
    process: Any
    tasks: Any
    results: Any
    in_flight: int = 0


class WorkerPool:
    """``n`` spawn processes running ``func`` after ``initializer(*initargs)``; tasks go to the
    worker with the fewest in flight, results come back per ticket in any order asked."""

    def __init__(self, n: int, initializer: Callable, initargs: tuple, func: Callable):
        ctx = mp.get_context("spawn")  # workers import only preprocess: no torch, no forked locks
        self.workers: list[_Worker] = []
        # The resource tracker, started by the first spawn, unblocks INT and TERM in this thread once
        # it runs, which would end the block below half-way: start it before.
        resource_tracker.ensure_running()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for _ in range(n):
                task_r, task_w = ctx.Pipe(duplex=False)
                res_r, res_w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_serve, args=(task_r, res_w, initializer, initargs, func), daemon=True)
                p.start()
                task_r.close()
                res_w.close()
                self.workers.append(_Worker(p, task_w, res_r))
        except BaseException:
            self.close(ok=False)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one that came meanwhile is delivered now

    def submit(self, task) -> int:
        """Send ``task`` to the least busy worker; returns the ticket to pass to :meth:`result`."""
        i = min(range(len(self.workers)), key=lambda j: self.workers[j].in_flight)
        w = self.workers[i]
        w.tasks.send(task)
        w.in_flight += 1
        return i

    def result(self, ticket: int):
        """The oldest outstanding result of that worker (results of one worker come in order)."""
        w = self.workers[ticket]
        try:
            ok, value = w.results.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5)
            code = w.process.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            raise WorkerDied(f"preprocess worker (pid {w.process.pid}) died, {how}: no output written; "
                             "if it was the kernel's OOM killer, lower --chunk-bytes or --workers") from None
        w.in_flight -= 1
        if not ok:
            raise value
        return value

    def close(self, ok: bool) -> None:
        """ok: let workers finish and exit (their task pipes close); otherwise kill them now."""
        for w in self.workers:
            w.tasks.close()
            if not ok:
                w.process.kill()
        for w in self.workers:
            w.process.join()
            w.results.close()
        self.workers = []
