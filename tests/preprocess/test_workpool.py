"""The preprocess worker pool survives what multiprocessing.Pool did not: workers signalled or
killed while idle (Slurm signals every process of a step), and a worker dying mid-run."""
import os
import signal
import time

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.workpool import WorkerDied, WorkerPool


def _init(offset):
    global _OFFSET
    _OFFSET = offset


def _work(x):
    if x == "boom":
        raise CodetronError("in.jsonl:7: bad record")
    if x == "sleep":
        time.sleep(60)
    return x * x + _OFFSET


def _closes_within(pool, ok, seconds=10.0):
    t = time.monotonic()
    pool.close(ok)
    return time.monotonic() - t < seconds


def test_results_in_order_and_errors_reraised():
    pool = WorkerPool(2, _init, (1,), _work)
    try:
        tickets = [pool.submit(i) for i in range(7)]
        assert [pool.result(t) for t in tickets] == [i * i + 1 for i in range(7)]
        t = pool.submit("boom")
        with pytest.raises(CodetronError, match=r"^in.jsonl:7: bad record$"):
            pool.result(t)
        assert pool.result(pool.submit(3)) == 10  # the worker that raised keeps serving
    finally:
        assert _closes_within(pool, ok=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_workers_ignore_stop_signals_and_close_promptly(sig):
    pool = WorkerPool(2, _init, (0,), _work)
    pids = [w.process.pid for w in pool.workers]
    for pid in pids:
        os.kill(pid, sig)  # while they still import: what scancel does to every process of the step
    tickets = [pool.submit(2), pool.submit(3)]  # one each: both initialised and serving
    assert sorted(tickets) == [0, 1] and [pool.result(t) for t in tickets] == [4, 9]
    for pid in pids:
        os.kill(pid, sig)  # idle now, waiting on their task pipes (where Pool's workers held its lock)
    time.sleep(0.3)
    assert all(w.process.is_alive() for w in pool.workers), "the parent decides when workers stop"
    assert pool.result(pool.submit(5)) == 25
    assert _closes_within(pool, ok=False)
    assert all(_gone(pid) for pid in pids)


def test_killed_worker_is_one_line_and_close_does_not_hang():
    pool = WorkerPool(2, _init, (0,), _work)
    busy = pool.submit("sleep")
    other = pool.submit(4)
    assert pool.result(other) == 16
    victim = pool.workers[busy].process
    victim.kill()  # e.g. the OOM killer
    with pytest.raises(WorkerDied, match=r"^preprocess worker \(pid \d+\) died, killed by SIGKILL: no output written"):
        pool.result(busy)
    assert _closes_within(pool, ok=False)


def test_busy_workers_are_killed_on_failure():
    pool = WorkerPool(2, _init, (0,), _work)
    pool.submit("sleep")
    pool.submit("sleep")
    time.sleep(0.5)
    assert _closes_within(pool, ok=False, seconds=5.0)


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
