"""The sandbox: verdict kinds, bounded output, and hostile completions that must not hurt the host
or a later sample (lingering processes, temp files, host unix sockets), under bubblewrap and the
fork-server fallback."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from codetron.eval.execution import SandboxConfig, SandboxPool, bubblewrap_status, check_program, check_programs
from codetron.eval.prompts import program_for

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="file and process isolation needs root (uid drop); "
                               "as a normal user programs run as you and this guarantee does not hold")
BWRAP_OK, BWRAP_WHY = bubblewrap_status()
NEEDS_BWRAP = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable here ({BWRAP_WHY}); `make test` "
                                 "installs the Debian package bubblewrap")
MECHANISMS = [pytest.param("bubblewrap", marks=NEEDS_BWRAP), "fork-server"]


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


def _lease(lock, seconds: float) -> bool:
    """Take ``lock``'s exclusive flock (released when the file closes) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@ROOT_ONLY
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_hostile_completions(humaneval, tmp_path, mechanism):
    # children this test process had before (an earlier test's multiprocessing resource tracker, in
    # whatever order pytest-xdist ran the files) are not the sandbox's leftovers
    before = set(_descendants(os.getpid(), _processes()))
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
    config = SandboxConfig(mechanism=mechanism)
    start = time.monotonic()
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
    # the fork-server shows the host's files (but the uid owns none); bubblewrap does not show them
    expected = "FileNotFoundError" if mechanism == "bubblewrap" else "PermissionError"
    assert verdicts["delete decoy folder"].detail.startswith(expected), verdicts["delete decoy folder"]
    # an empty netns (fork-server: loopback down) or bubblewrap's own loopback (nobody listening)
    assert verdicts["open a socket"].detail.startswith(("OSError", "ConnectionRefusedError")), verdicts["open a socket"]
    assert len(verdicts["stdout forever"].output) <= config.limits.output_bytes
    assert elapsed < 30, elapsed

    assert sorted(p.name for p in decoy.iterdir()) == ["keep0.txt", "keep1.txt", "keep2.txt"]
    assert all((decoy / f"keep{i}.txt").read_text() == "precious" for i in range(3))
    assert accepted == [], "a sandboxed program reached a socket on the host"
    time.sleep(0.2)  # let the kernel finish reaping
    # our workers' uids, leased again while we look: an evaluation running beside this test (another
    # pytest-xdist worker, another user) may take a uid the pool has just released
    sandbox_uids = set(uids)
    assert len(sandbox_uids) == 2
    with contextlib.ExitStack() as leases:
        for uid in sandbox_uids:
            if uid is not None:
                lock = leases.enter_context(open(Path(tempfile.gettempdir()) / "codetron-sandbox-uids" / f"{uid}.lock", "a"))
                assert _lease(lock, 60), f"uid {uid} still leased 60 s after its pool closed"
        procs = _processes()
        leftovers = [pid for pid in _descendants(os.getpid(), procs) if pid not in before]
        assert leftovers == [], [open(f"/proc/{pid}/cmdline").read() for pid in leftovers]
        assert [pid for pid, (_, uid) in procs.items() if uid in sandbox_uids] == []


def test_pool_survives_a_dead_worker():
    """If a worker process dies mid-program the program fails and the next one still runs."""
    from codetron.eval import execution

    with execution.SandboxPool(1) as pool:
        worker = pool.workers[0]
        worker.kill()
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


# ------------------------------------------------------------- a sample must not reach a later one

_TAMPER = """
import json, os, time
MARK = {mark!r}
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # a daemon that outlives its sample and forges a "passed" verdict into the verdict pipe of
        # whatever sample runs next in this sandbox (only there: MARK is that sample's cwd prefix)
        forged = json.dumps({{"status": "passed", "error_kind": "none", "detail": "forged"}}).encode()
        end = time.time() + 6
        while time.time() < end:
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == os.getpid():
                    continue
                try:
                    if not os.readlink(f"/proc/{{pid}}/cwd").startswith(MARK):
                        continue
                    fds = os.listdir(f"/proc/{{pid}}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if int(fd) < 3 or not os.readlink(f"/proc/{{pid}}/fd/{{fd}}").startswith("pipe:"):
                            continue
                        with open(f"/proc/{{pid}}/fdinfo/{{fd}}") as fh:
                            flags = int(fh.read().split("flags:")[1].split()[0], 8)
                        if flags & 3 != os.O_WRONLY:
                            continue
                        w = os.open(f"/proc/{{pid}}/fd/{{fd}}", os.O_WRONLY | os.O_NONBLOCK)
                        os.write(w, forged)
                        os.close(w)
                    except (OSError, ValueError, IndexError):
                        pass
            time.sleep(0.005)
        os._exit(0)
    os._exit(0)
time.sleep(0.2)
"""


@pytest.mark.parametrize("mechanism,drop", [pytest.param("bubblewrap", True, marks=NEEDS_BWRAP),
                                            ("fork-server", True), ("fork-server", False)])
def test_lingering_process_cannot_forge_the_next_verdict(tmp_path, mechanism, drop):
    """drop=False is the fork-server as an unprivileged user runs it (no uid of its own to sweep)."""
    if drop and os.geteuid() != 0:
        pytest.skip("uid drop needs root")
    root = tmp_path / "sbx"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    mark = "/tmp/codetron-sbx-" if mechanism == "bubblewrap" else str(root)
    config = SandboxConfig(mechanism=mechanism, drop_privileges=drop, tmp_root=str(root))
    victim = "import time\ntime.sleep(1.5)\nassert False, 'the next sample fails on its own'"
    with SandboxPool(1, config) as pool:  # one worker: the victim runs right after the tamperer
        first, second = pool.map([_TAMPER.format(mark=mark), victim], timeout=5.0)
    assert first.passed, first
    assert (second.status, second.error_kind) == ("failed", "assertion"), second
    assert second.detail == "AssertionError: the next sample fails on its own"


@NEEDS_BWRAP
def test_temp_dirs_are_private_bounded_and_emptied(tmp_path):
    marker = f"codetron-leak-{os.getpid()}"
    writer = ("import os\n"
              f"for d in ('/tmp', '/dev/shm', '/var/tmp'):\n    open(os.path.join(d, {marker!r}), 'w').write('x')\n"
              "os.makedirs('/tmp/locked/deeper')\nos.chmod('/tmp/locked', 0)\n"
              "try:\n    with open('/dev/shm/big', 'wb') as fh:\n"
              "        for _ in range(12):\n            fh.write(b'0' * (1 << 20))\n"
              "    raise SystemExit('wrote 12 MiB into an 8 MiB /dev/shm')\n"
              "except OSError as exc:\n    assert exc.errno == 28, exc\n")
    reader = ("import os\nleft = {d: os.listdir(d) for d in ('/tmp', '/dev/shm', '/var/tmp')}\n"
              "leftovers = {d: [n for n in names if not n.startswith('codetron-sbx-')] for d, names in left.items()}\n"
              "assert not any(leftovers.values()), leftovers\n")
    config = SandboxConfig(mechanism="bubblewrap", tmpfs_bytes=8 << 20)
    with SandboxPool(1, config) as pool:
        results = pool.map([writer, reader, reader], timeout=5.0)
    assert [r.status for r in results] == ["passed"] * 3, results
    for d in ("/tmp", "/dev/shm", "/var/tmp"):
        assert not os.path.exists(os.path.join(d, marker)), f"{d}/{marker} reached the host"


@pytest.mark.parametrize("mechanism", [pytest.param("bubblewrap", marks=NEEDS_BWRAP)])
def test_host_unix_sockets_are_unreachable(tmp_path, mechanism):
    os.chmod(tmp_path, 0o755)
    path = str(tmp_path / "host.sock")
    abstract = f"\0codetron-test-{os.getpid()}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen(4)
        server.setblocking(False)
        servers.append(server)
    os.chmod(path, 0o777)
    client = ("import socket\n"
              "reached = []\n"
              f"for address in ({path!r}, {abstract!r}):\n"
              "    s = socket.socket(socket.AF_UNIX)\n"
              "    try:\n        s.connect(address)\n        reached.append(address)\n"
              "    except OSError:\n        pass\n"
              "assert not reached, reached\n")
    try:
        [result] = check_programs([client], timeout=5.0, n_workers=1, config=SandboxConfig(mechanism=mechanism))
        accepted = []
        for server in servers:
            try:
                accepted.append(server.accept())
            except BlockingIOError:
                pass
    finally:
        for server in servers:
            server.close()
    assert result.passed, result
    assert accepted == []


def test_mechanism_is_reported_and_checked():
    from codetron.errors import ConfigError

    info: dict = {}
    check_programs(["pass"], timeout=2.0, n_workers=1, config=SandboxConfig(mechanism="fork-server"), info=info)
    assert info["mechanism"].startswith("fork-server") and info["private_tmp"] == []
    if BWRAP_OK:
        info = {}
        check_programs(["pass"], timeout=2.0, n_workers=1, info=info)  # the default is bubblewrap
        assert info["mechanism"] == BWRAP_WHY and info["mechanism"].startswith("bubblewrap")
        assert info["private_tmp"] == ["/tmp", "/dev/shm", "/var/tmp"]
    with pytest.raises(ConfigError, match="mechanism 'chroot' unknown"):
        check_programs(["pass"], config=SandboxConfig(mechanism="chroot"))


# ------------------------------------------------------------------------------- `eval execute`


def _write_generations(tmp_path, humaneval):
    """Three problems: two canonical solutions and one wrong one, in both gzipped formats."""
    import gzip
    import json

    problems = humaneval[:3]
    completions = [problems[0]["canonical_solution"], "    return None\n", problems[2]["canonical_solution"]]
    jsonl = tmp_path / "samples.jsonl.gz"
    with gzip.open(jsonl, "wt") as fh:
        for p, c in zip(problems, completions):
            fh.write(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n")
    harness = tmp_path / "generations.json.gz"
    with gzip.open(harness, "wt") as fh:
        json.dump([[p["prompt"] + c] for p, c in zip(problems, completions)], fh)
    return jsonl, harness


def test_execute_reads_gzipped_generations_and_reports_the_mechanism(tmp_path, humaneval):
    import json

    from codetron.eval.cli import main

    for generations in _write_generations(tmp_path, humaneval):
        out = tmp_path / f"out-{generations.name}"
        assert main(["execute", "--generations", str(generations), "--limit", "3", "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        scores = next(v for k, v in metrics.items() if k != "config")
        assert scores["pass@1"] == pytest.approx(2 / 3)
        expected = "bubblewrap" if BWRAP_OK else "fork-server"
        assert metrics["config"]["isolation"]["mechanism"].startswith(expected)


def test_unwritable_out_fails_before_any_work(tmp_path, humaneval, monkeypatch):
    from codetron.errors import CodetronError
    from codetron.eval import evaluate, generate
    from codetron.eval.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(evaluate, "evaluate", must_not_run)
    monkeypatch.setattr(generate, "generate", must_not_run)
    jsonl, _ = _write_generations(tmp_path, humaneval)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for argv in (["execute", "--generations", str(jsonl)], ["run", "--model", str(tmp_path / "no-model")]):
        with pytest.raises(CodetronError, match=r"^--out .*a-file/out: not a writable folder"):
            main([*argv, "--limit", "3", "--out", str(blocker / "out")])
