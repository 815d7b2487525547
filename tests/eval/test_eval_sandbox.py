"""The sandbox: verdict kinds, bounded output, and hostile completions that must not hurt the host."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from codetron.eval.execution import SandboxConfig, check_program, check_programs
from codetron.eval.prompts import program_for

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="file and process isolation needs root (uid drop); "
                               "as a normal user programs run as you and this guarantee does not hold")


def test_verdict_kinds():
    cases = {
        "assert 1 + 1 == 2": ("passed", "none"),
        "assert 1 == 2, 'wrong answer'": ("failed", "assertion"),
        "def f(:\n    pass": ("failed", "compile"),
        "x = 1\n  y = 2": ("failed", "compile"),
        "[][1]": ("failed", "runtime"),
        "import sys; sys.exit(0)": ("failed", "runtime"),
        "import os; os._exit(0)": ("failed", "runtime"),
        "while True: pass": ("timeout", "timeout"),
    }
    results = check_programs(list(cases), timeout=1.5, n_workers=2)
    for (program, (status, kind)), r in zip(cases.items(), results):
        assert (r.status, r.error_kind) == (status, kind), (program, r)
        assert r.passed == (status == "passed")
    assert results[1].detail == "AssertionError: wrong answer"
    assert results[4].detail.startswith("IndexError")
    assert results[7].result == "timed out"


def test_output_is_captured_and_bounded():
    r = check_program("print('hello'); import sys; print('err', file=sys.stderr)")
    assert r.passed and "hello" in r.output and "err" in r.output
    r = check_program("import sys\nfor _ in range(2000): sys.stdout.write('x' * 1000)\n", output_bytes=4096)
    assert r.passed, r  # a chatty program is not penalised
    assert len(r.output) == 4096 and r.output_bytes == 2_000_000


def test_limits_are_applied():
    r = check_program("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0])",
                      memory_bytes=1 << 30, file_bytes=1 << 20)
    assert r.passed and r.output.split() == [str(1 << 30), str(1 << 20)]
    r = check_program("import os, tempfile\nprint(os.getcwd() == os.environ['HOME'] == tempfile.gettempdir())\n"
                      "open('f.txt', 'w').write('ok')")
    assert r.passed and r.output.strip() == "True"


def test_canonical_solutions_all_pass(humaneval):
    programs = [program_for(p, p["prompt"] + p["canonical_solution"]) for p in humaneval]
    results = check_programs(programs, timeout=10.0, n_workers=2)
    assert sum(r.passed for r in results) == 164, [(p["task_id"], r.detail) for p, r in zip(humaneval, results) if not r.passed]


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, real uid) for every process visible in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            out[int(entry)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]))
        except (OSError, KeyError, ValueError):
            continue
    return out


def _descendants(root: int, procs: dict[int, tuple[int, int]]) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, (ppid, _) in procs.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


@ROOT_ONLY
def test_hostile_completions(humaneval, tmp_path):
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    for i in range(3):
        (decoy / f"keep{i}.txt").write_text("precious")
    os.chmod(tmp_path, 0o755)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()

    problem = humaneval[0]  # has_close_elements: none of these solve it
    hostile = {
        "infinite loop": "    while True:\n        pass\n",
        "100 GB allocation": "    x = bytearray(100 * 1024 ** 3)\n    return True\n",
        "fork bomb": "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
        "delete cwd files": ("    import os, shutil\n    open('mine.txt', 'w').write('x')\n"
                             "    for name in os.listdir('.'):\n        os.remove(name)\n"
                             "    shutil.rmtree('..', ignore_errors=True)\n    return None\n"),
        "delete decoy folder": (f"    import os, shutil\n    for name in os.listdir({str(decoy)!r}):\n"
                                f"        os.remove(os.path.join({str(decoy)!r}, name))\n"
                                f"    shutil.rmtree({str(decoy)!r})\n    return None\n"),
        "open a socket": (f"    import socket\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                          "    s.sendall(b'leak')\n    return None\n"),
        "kill the parent": ("    import os, signal\n    for pid in (os.getppid(), os.getpgid(os.getppid())):\n"
                            "        try:\n            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n"
                            "    os.kill(-1, signal.SIGKILL)\n    os.killpg(os.getppid(), signal.SIGKILL)\n"),
        "kill the evaluator": (f"    import os, signal\n    os.kill({os.getpid()}, signal.SIGKILL)\n"),
        "stdout forever": "    while True:\n        print('spam' * 100)\n",
        "daemonised sleeper": ("    import os, time\n    if os.fork() == 0:\n        os.setsid()\n"
                               "        if os.fork() == 0:\n            time.sleep(600)\n        os._exit(0)\n"
                               "    time.sleep(0.2)\n    return None\n"),
    }
    names = list(hostile)
    programs = [program_for(problem, problem["prompt"] + hostile[n]) for n in names]
    programs.append(program_for(problem, problem["prompt"] + problem["canonical_solution"]))
    config = SandboxConfig()
    start = time.monotonic()
    from codetron.eval.execution import SandboxPool

    with SandboxPool(2, config) as pool:
        uids = [w.info["uid"] for w in pool.workers]
        results = pool.map(programs, timeout=2.0)
    elapsed = time.monotonic() - start
    stop.set()
    thread.join(timeout=5)
    server.close()

    verdicts = {n: r for n, r in zip(names + ["canonical"], results)}
    for name in names:
        assert verdicts[name].status in ("failed", "timeout"), (name, verdicts[name])
    assert verdicts["canonical"].passed, verdicts["canonical"]
    assert verdicts["infinite loop"].status == "timeout", verdicts["infinite loop"]
    assert verdicts["100 GB allocation"].detail.startswith("MemoryError")
    assert verdicts["delete decoy folder"].detail.startswith("PermissionError")
    assert verdicts["open a socket"].detail.startswith("OSError")
    assert len(verdicts["stdout forever"].output) <= config.limits.output_bytes
    assert elapsed < 30, elapsed

    assert sorted(p.name for p in decoy.iterdir()) == ["keep0.txt", "keep1.txt", "keep2.txt"]
    assert all((decoy / f"keep{i}.txt").read_text() == "precious" for i in range(3))
    assert accepted == [], "a sandboxed program reached a socket on the host"
    time.sleep(0.2)  # let the kernel finish reaping
    procs = _processes()
    leftovers = _descendants(os.getpid(), procs)
    assert leftovers == [], [open(f"/proc/{pid}/cmdline").read() for pid in leftovers]
    # our workers' uids (other evaluations on this machine lease other uids from the range)
    sandbox_uids = set(uids)
    assert len(sandbox_uids) == 2
    assert [pid for pid, (_, uid) in procs.items() if uid in sandbox_uids] == []


def test_pool_survives_a_dead_worker():
    """If a worker process dies mid-program the program fails and the next one still runs."""
    from codetron.eval import execution

    with execution.SandboxPool(1) as pool:
        worker = pool.workers[0]
        worker.proc.kill()
        first = pool.map(["assert True"], timeout=2.0)
        second = pool.map(["assert True"], timeout=2.0)
    assert first[0].status == "failed" and "worker died" in first[0].detail
    assert second[0].passed


def test_bad_config_is_a_clear_error():
    from codetron.errors import CodetronError

    with pytest.raises(CodetronError, match="timeout"):
        check_program("pass", timeout=0)
    with pytest.raises(CodetronError, match="unknown sandbox limit"):
        check_program("pass", memory=1)


@ROOT_ONLY
def test_concurrent_pools_never_share_a_uid():
    """Programs are killed per uid (kill(-1) from that uid), so two evaluations on one machine
    (e.g. RRTF scoring next to `codetron eval`) must run under different uids."""
    from codetron.eval.execution import SandboxPool

    with SandboxPool(2) as a, SandboxPool(1) as b:
        uids = [w.info["uid"] for w in a.workers + b.workers]
        assert len(set(uids)) == 3 and all(u is not None for u in uids)
        # a program that kills everything its uid may kill does not touch the other pool's program
        import threading

        slow: list = []
        t = threading.Thread(target=lambda: slow.extend(b.map(["import time\ntime.sleep(1.0)"], timeout=5.0)))
        t.start()
        time.sleep(0.3)
        a.map(["import os, signal\nos.kill(-1, signal.SIGKILL)"], timeout=5.0)
        t.join()
    assert slow[0].passed, slow[0]
