"""Run independent units of work on a thread pool, logging each finished one; stop cleanly.

A unit is one network-bound chain of model calls (one lineage for one round, one self-instruct
item). Threads, not processes: the work is waiting on HTTP. The runner stops submitting when the
request budget is spent or too many units failed for good, and reports why, so the CLI can tell
"done" from "resume me".
"""
from __future__ import annotations

import hashlib
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, TypeVar

from codetron.preprocess.generate.backends import BackendError, BudgetExhausted

U = TypeVar("U")


def derive_seed(seed: int, *parts) -> int:
    """A stable 31-bit seed from a base seed and a unit's identity (same on every run and machine)."""
    text = "\x00".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


@dataclass(slots=True)
class RunStatus:
    """How a batch of units ended."""

    done: int = 0
    """Units finished (and logged) in this call."""
    failed: int = 0
    """Units whose requests failed for good (not logged: a resume retries them)."""
    budget_exhausted: bool = False
    """The request budget ran out before all units ran."""
    aborted: str | None = None
    """Why the run gave up (too many failures), if it did."""
    errors: list[str] = field(default_factory=list)
    """The first few failure messages."""
    last_error: str | None = None
    """The latest request failure (an item that failed for good, or what a spent budget was retrying)."""

    def reason(self) -> str:
        """Why the run is incomplete, in one line that ends with the last request error if there was one."""
        why = ("request budget spent" if self.budget_exhausted else self.aborted
               or f"{self.failed} items failed")
        if self.last_error and self.last_error not in why:
            why += f"; last error: {self.last_error}"
        return why

    @property
    def complete(self) -> bool:
        return not self.failed and not self.budget_exhausted and self.aborted is None

    def add(self, part: "RunStatus") -> None:
        """Fold in the status of the next chunk of a run done chunk by chunk."""
        self.done += part.done
        self.failed += part.failed
        self.errors += part.errors
        self.budget_exhausted, self.aborted = part.budget_exhausted, part.aborted
        self.last_error = part.last_error or self.last_error


def run_units(units: Sequence[U], work: Callable[[U], dict | list[dict]], on_result: Callable[[dict | list[dict]], None],
              *, concurrency: int, max_failures: int, desc: str, progress: bool = True) -> RunStatus:
    """Call ``work(unit)`` for every unit on ``concurrency`` threads; ``on_result`` runs in this thread."""
    from tqdm import tqdm

    status = RunStatus()
    if not units:
        return status
    stop = threading.Event()

    def guarded(unit: U):
        if stop.is_set():
            raise BudgetExhausted("stopped")
        return work(unit)

    bar = tqdm(total=len(units), desc=desc, unit="item", disable=not progress, file=sys.stderr)
    todo: Iterable[U] = iter(units)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="evolve")
    running: set[Future] = set()
    try:
        # keep only ~2x concurrency futures in flight so that stopping leaves little to cancel
        def refill() -> None:
            while len(running) < 2 * max(1, concurrency) and not stop.is_set():
                unit = next(todo, None)
                if unit is None:
                    return
                running.add(pool.submit(guarded, unit))

        refill()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                running.discard(fut)
                try:
                    result = fut.result()
                except BudgetExhausted as exc:
                    status.budget_exhausted = True
                    status.last_error = getattr(exc, "last_error", None) or status.last_error
                    stop.set()
                    continue
                except BackendError as exc:
                    status.last_error = str(exc)
                    status.failed += 1
                    if len(status.errors) < 5:
                        status.errors.append(str(exc))
                    if status.failed > max_failures:
                        status.aborted = f"{status.failed} items failed for good (last: {exc})"
                        stop.set()
                    continue
                on_result(result)
                status.done += 1
                bar.update(1)
            refill()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return status


def run_in_chunks(units: Sequence[U], work: Callable[[U], dict], finish: Callable[[list[dict]], None], log, *,
                  chunk: int, concurrency: int, max_failures: int, desc: str, progress: bool = True) -> RunStatus:
    """``run_units`` over ``chunk`` units at a time, for generation whose results need a batch step
    (executing generated tests in the sandbox) before they are logged: after each chunk,
    ``finish(records)`` runs on what the chunk produced, the records go to ``log`` in key order, and
    the run stops after a chunk that ended early (spent budget, too many failures). Units finished
    before a stop are still finished and logged: their requests are paid for."""
    status = RunStatus()
    n_chunks = -(-len(units) // chunk)
    for start in range(0, len(units), chunk):
        pending: list[dict] = []
        part = run_units(units[start:start + chunk], work, pending.append, concurrency=concurrency,
                         max_failures=max_failures - status.failed, desc=f"{desc} {start // chunk + 1}/{n_chunks}",
                         progress=progress)
        finish(pending)
        for rec in sorted(pending, key=lambda r: r["key"]):
            log.append(rec)
        status.add(part)
        if not part.complete:
            break
    return status
