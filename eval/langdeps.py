"""Libraries the harness's test programs use, prepared once per machine, shown read-only in the sandbox.

HumanEvalPack and MultiPL-E programs link against more than each language's standard library:

=============  ==========================================================================================
rust-crates    ``rand``, ``regex``, ``md5``: every HumanEvalPack Rust declaration starts with
               ``use rand::Rng; use regex::Regex; use md5;`` (the harness builds each sample in a cargo
               project with these dependencies, CodeGeeX ``benchmark/rust/Cargo.toml``). Built once,
               offline, by Debian's cargo from Debian's crate sources (``/usr/share/cargo/registry``,
               a directory-registry source replacing crates.io) into rlibs; each sample is then one
               ``rustc --extern rand=... -L dependency=...`` (~1 s instead of a cargo build). The
               harness pins ``rand = "0.4"`` and its tests call 0.4's ``gen_range(low, high)``;
               Debian has only 0.8, so ``rand`` is ``eval/rust/rand04.rs``: 0.4's ``Rng`` API over
               0.8's generators (without it Rust/32 and Rust/50 canonical fail to compile).
javatuples     ``org.javatuples`` (Pair, Triplet, ...), on the class path of ``javac`` and ``java`` as
               MultiPL-E's Java evaluation puts ``javatuples-1.2.jar``. Debian's jar, nothing to build.
js-modules     ``js-md5`` (0.7.3), which HumanEvalPack's JavaScript/162 requires: the OctoPack evaluation
               installs it with npm (octopack README "JS: js-md5@0.7.3"). ``make lang-deps``
               installs it with npm (the registry is needed once) into ``js-modules`` in the machine
               cache; programs find it through ``NODE_PATH``, offline and read-only.
go-testify     ``github.com/stretchr/testify/assert``, which every HumanEvalPack Go test imports.
               Compiling it (and the standard packages the harness lets programs use) from a cold
               cache took ~16-20 s per sample; a build cache filled once and given to every sample
               read-only (Go ignores failed cache writes) brings that to ~1 s.
=============  ==========================================================================================

The machine cache lives in ``$CODETRON_LANG_CACHE``, else ``/var/cache/codetron/lang-deps`` when
running as root (a path the sandbox's dropped uid can traverse), else
``${XDG_CACHE_HOME:-~/.cache}/codetron/lang-deps``. Each build goes to a directory named after a hash
of the toolchain version and the library sources, is published atomically under a lock (concurrent
evaluations build it once), and is made read-only. Programs see it read-only under bubblewrap
(``sandbox_dirs``); it is trusted code from Debian packages, built outside the sandbox.

A language whose libraries are missing reports so in one line (``missing``), like a missing toolchain:
every HumanEvalPack Rust/Go sample needs them, so running without would score 0 without saying why.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codetron.errors import CodetronError, ConfigError
from codetron.fileio import atomic_dir

CACHE_ENV = "CODETRON_LANG_CACHE"
"""Environment variable that overrides where the prepared libraries are kept."""
CARGO_REGISTRY = Path("/usr/share/cargo/registry")
"""Debian's crate sources (librust-*-dev), a cargo directory registry."""
RUST_CRATES = ("rand", "regex", "md5")
"""The crates of the harness's Rust Cargo.toml (rand 0.4 there: see RAND04_SHIM)."""
RAND04_SHIM = Path(__file__).parent / "rust" / "rand04.rs"
"""The ``rand`` samples link against: rand 0.4's ``Rng`` methods and free functions over Debian's
rand 0.8 (crates.io's rand 0.4 is not reachable offline; 0.8 renamed ``gen_range(low, high)``)."""
RUST_FEATURE_CRATES = ("aho-corasick", "memchr", "regex-syntax", "rand_core", "rand_chacha", "getrandom")
"""Crates the default features of those need (``regex = "*"`` asks for regex's defaults, whose
``perf-literal`` pulls aho-corasick and memchr). Debian ships them in the ``+default`` feature
packages, which ``apt-get --no-install-recommends librust-regex-dev`` leaves out."""
JAVATUPLES_JAR = Path("/usr/share/java/javatuples.jar")
"""Debian's libjavatuples-java (1.2, the version MultiPL-E uses)."""
TESTIFY_SRC = Path("/usr/share/gocode/src/github.com/stretchr/testify")
"""Debian's golang-github-stretchr-testify-dev (found in GOPATH mode)."""
JS_MODULES = ("js-md5@0.7.3",)
"""npm packages the harness's JavaScript problems require (the versions OctoPack's evaluation installs)."""


class DependencyError(CodetronError):
    """A language's libraries are missing or could not be prepared (one line, for the whole task)."""


def cache_root() -> Path:
    """Where prepared libraries live on this machine (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/codetron/lang-deps")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codetron" / "lang-deps"


def sandbox_dirs() -> list[str]:
    """Directories the sandbox must show read-only (created now, so that a bind mount made before a
    build still shows what the build publishes later)."""
    root = cache_root()
    if any(str(root) == t or str(root).startswith(t + "/") for t in ("/tmp", "/var/tmp", "/dev/shm")):
        # the sandbox mounts a private, empty tmpfs there: programs would not see the libraries
        raise ConfigError(f"{CACHE_ENV}={root}: must not be under /tmp, /var/tmp or /dev/shm")
    try:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
    except OSError:
        return []
    return [str(root)]


@dataclass(frozen=True)
class Prepared:
    """What a language's commands get from a prepared dependency."""

    args: tuple[str, ...] = ()
    """Extra compiler arguments (the ``{deps}`` token of a command)."""
    classpath: tuple[str, ...] = ()
    """Extra Java class path entries (appended to ``{classpath}``)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for both steps."""


@dataclass(frozen=True)
class Dependency:
    """One set of libraries a language's programs use."""

    name: str
    """Key used in ``Language.deps``."""
    what: str
    """What it is, for the one-line message."""
    packages: tuple[str, ...]
    """Debian packages that provide it (``make lang-deps`` installs them)."""
    missing: Callable[[str], str | None]
    """(sandbox PATH) -> None when present, else what is absent."""
    prepare: Callable[[dict, str], Prepared]
    """(the language's env, sandbox PATH) -> what the commands get; builds into the machine cache on first use."""


# ------------------------------------------------------------------------------------ helpers

def _which(tool: str, path: str) -> str | None:
    return shutil.which(tool, path=path)


def _run(argv: list[str], env: dict, cwd: str, log: Path, timeout: float) -> None:
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(argv) + "\n").encode())
        fh.flush()
        try:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DependencyError(f"{argv[0]} failed: {exc}; log: {log}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                 if ln.lstrip().lower().startswith("error")]
        command = " ".join([os.path.basename(argv[0]), *argv[1:3]])
        raise DependencyError(f"`{command}` exited {proc.returncode}"
                              f"{': ' + lines[0][:200] if lines else ''}; log: {log}")


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _tree_key(*roots: Path) -> str:
    """Names, sizes and mtimes of every file under ``roots``: changes when a package is upgraded."""
    h = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.stat(p)
                    h.update(f"{p}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def _read_only(root: Path) -> None:
    """Readable by everyone (the sandbox uid), writable by no one: programs cannot poison it."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o555 if os.access(p, os.X_OK) else 0o444)
        os.chmod(dirpath, 0o555)


def _writable(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


_markers: dict[tuple[str, str], Path] = {}
"""(dependency name, cache root) -> the ``.complete`` file of the build this process uses."""


def _cached_build(name: str, key: str, build: Callable[[Path, Path], None]) -> Path:
    """``cache_root()/name-KEY``, built by ``build(tmp_dir, log)`` once per machine (lock + atomic)."""
    final = cache_root() / f"{name}-{key[:16]}"
    _markers[(name, str(final.parent))] = final / ".complete"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent evaluation builds, we wait for it
        if not (final / ".complete").exists():
            if final.exists():  # a half-removed or foreign copy: replace it
                _writable(final)
            log = Path(tempfile.gettempdir()) / f"codetron-{name}-build.log"
            log.write_text("")
            with atomic_dir(final) as tmp:
                build(tmp, log)
                (tmp / ".complete").write_text(key + "\n")
                _read_only(tmp)
                os.chmod(tmp, 0o755)  # atomic_dir renames it; the rename needs no write bit inside
    return final


# ------------------------------------------------------------------------------------ Rust

def _crate_dirs() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {c: [] for c in (*RUST_CRATES, *RUST_FEATURE_CRATES)}
    if CARGO_REGISTRY.is_dir():
        for entry in CARGO_REGISTRY.iterdir():
            crate = entry.name.rsplit("-", 1)[0]
            if crate in found:
                found[crate].append(entry)
    return found


def _rust_missing(path: str) -> str | None:
    absent = [c for c, dirs in _crate_dirs().items() if not dirs]
    if absent:
        return (f"crates {', '.join(absent)} not in {CARGO_REGISTRY} "
                "(Debian: librust-rand-dev librust-regex+default-dev librust-md5-dev)")
    if _which("cargo", path) is None:
        return "cargo (builds the crates once) not on PATH"
    return None


def _rust_prepare(lang_env: dict, path: str) -> Prepared:
    rustc, cargo = _which("rustc", path), _which("cargo", path)
    # the rlibs must come from the very rustc that compiles the samples (the sandbox's, not rustup's)
    key = hashlib.sha256((_version([rustc, "-vV"]) + _version([cargo, "--version"])
                          + _tree_key(*[d for dirs in _crate_dirs().values() for d in dirs])
                          + RAND04_SHIM.read_text()).encode()).hexdigest()

    def build(out: Path, log: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="codetron-crates-") as work:
            proj = Path(work)
            (proj / "src").mkdir()
            (proj / "src" / "lib.rs").write_text("")
            (proj / ".cargo").mkdir()
            deps = "\n".join(f'{c} = "*"' for c in RUST_CRATES)
            (proj / "Cargo.toml").write_text(
                f'[package]\nname = "codetron-lang-deps"\nversion = "0.1.0"\nedition = "2021"\n\n'
                f'[dependencies]\n{deps}\n')
            (proj / ".cargo" / "config.toml").write_text(
                '[source.crates-io]\nreplace-with = "debian"\n\n'
                f'[source.debian]\ndirectory = "{CARGO_REGISTRY}"\n\n[net]\noffline = true\n')
            env = {"PATH": path, "HOME": work, "CARGO_HOME": f"{work}/cargo-home", "RUSTC": rustc,
                   "CARGO_TARGET_DIR": f"{work}/target", "LANG": "C.UTF-8"}
            # debug profile, as the harness's `cargo test` builds its dependencies
            _run([cargo, "build", "--offline", "--lib"], env, work, log, timeout=1800)
            lib = out / "lib"
            lib.mkdir()
            for rlib in (proj / "target" / "debug" / "deps").glob("*.rlib"):
                if not rlib.name.startswith("libcodetron_lang_deps"):
                    shutil.copy2(rlib, lib / rlib.name)
            rand08 = sorted(lib.glob("librand-*.rlib"))
            if len(rand08) != 1:
                raise DependencyError(f"rust: expected one librand-*.rlib from cargo, found {len(rand08)}")
            (out / "shim").mkdir()
            _run([rustc, "--edition", "2021", "--crate-type", "rlib", "--crate-name", "rand",
                  "-C", "metadata=codetron-rand04", "--extern", f"rand08={rand08[0]}", "-L", f"dependency={lib}",
                  "-o", str(out / "shim" / "librand.rlib"), str(RAND04_SHIM)], env, work, log, timeout=600)

    root = _cached_build("rust-crates", key, build)
    args: list[str] = ["--extern", f"rand={root / 'shim' / 'librand.rlib'}"]
    for crate in (c for c in RUST_CRATES if c != "rand"):
        rlibs = sorted((root / "lib").glob(f"lib{crate}-*.rlib"))
        if len(rlibs) != 1:
            raise DependencyError(f"rust: expected one lib{crate}-*.rlib in {root / 'lib'}, found {len(rlibs)}")
        args += ["--extern", f"{crate}={rlibs[0]}"]
    args += ["-L", f"dependency={root / 'lib'}"]
    return Prepared(args=tuple(args))


# ------------------------------------------------------------------------------------ Java

def _java_missing(path: str) -> str | None:
    return None if JAVATUPLES_JAR.is_file() else f"{JAVATUPLES_JAR} not found"


def _java_prepare(lang_env: dict, path: str) -> Prepared:
    return Prepared(classpath=(str(JAVATUPLES_JAR),))


# ------------------------------------------------------------------------------------ Go

GO_PREBUILT = ("github.com/stretchr/testify/assert", "testing", "math", "strings", "fmt", "strconv", "time",
               "bytes", "regexp", "sort", "math/rand", "crypto/md5", "unicode", "unicode/utf8", "math/big",
               "errors", "reflect", "container/heap", "container/list", "encoding/hex", "os")
"""Packages compiled into the shared cache: testify, the standard packages the harness's Go header
may import for a program (``IMPORT_HELPER["go"]``) and a few more that solutions commonly use. Any
other package still compiles, from source, in the sample's own time."""


def _go_missing(path: str) -> str | None:
    return None if (TESTIFY_SRC / "assert").is_dir() else f"testify sources not in {TESTIFY_SRC}"


def _go_prepare(lang_env: dict, path: str) -> Prepared:
    go = _which("go", path)
    env = {k: v for k, v in lang_env.items() if k != "GOCACHE"}
    key = hashlib.sha256((_version([go, "version"]) + repr(sorted(env.items())) + repr(GO_PREBUILT)
                          + _tree_key(TESTIFY_SRC.parent.parent.parent)).encode()).hexdigest()

    def build(out: Path, log: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="codetron-gocache-") as work:
            imports = "\n".join(f'    _ "{p}"' for p in GO_PREBUILT if p != "testing")
            Path(work, "main_test.go").write_text(
                f'package main\n\nimport (\n    "testing"\n{imports}\n)\n\nfunc TestNothing(t *testing.T) {{}}\n')
            # the same environment as a sample (GOPATH mode, no cgo): the cache keys must match
            _run([go, "test", "-c", "-o", "main.test", "main_test.go"],
                 {"PATH": path, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", **env,
                  "GOCACHE": str(out / "gocache")}, work, log, timeout=1800)

    root = _cached_build("go-testify", key, build)
    return Prepared(env=(("GOCACHE", str(root / "gocache")),))


# ------------------------------------------------------------------------------------ JavaScript

def js_modules_dir() -> Path:
    """Where ``install_js_modules`` puts the npm packages (a ``node_modules`` folder inside)."""
    return cache_root() / "js-modules"


def _js_missing(path: str) -> str | None:
    absent = [m for m in JS_MODULES if not (js_modules_dir() / "node_modules" / m.rsplit("@", 1)[0]
                                            / "package.json").is_file()]
    return f"npm packages {', '.join(absent)} not in {js_modules_dir()}" if absent else None


def _js_prepare(lang_env: dict, path: str) -> Prepared:
    return Prepared(env=(("NODE_PATH", str(js_modules_dir() / "node_modules")),))


def install_js_modules(npm: str = "npm") -> Path:
    """``npm install`` ``JS_MODULES`` into ``js_modules_dir()`` (needs the npm registry once; the
    folder can then be copied to offline machines with the rest of the cache). Atomic and read-only."""
    final = js_modules_dir()
    if _js_missing("") is None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".js-modules.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _js_missing("") is not None:
            if final.exists():
                _writable(final)
            log = Path(tempfile.gettempdir()) / "codetron-js-modules-build.log"
            log.write_text("")
            with atomic_dir(final) as tmp:
                _run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(tmp), *JS_MODULES],
                     {**os.environ, "npm_config_update_notifier": "false"}, str(tmp), log, timeout=600)
                _read_only(tmp)
                os.chmod(tmp, 0o755)
    return final


DEPENDENCIES: dict[str, Dependency] = {d.name: d for d in (
    Dependency("rust-crates", "crates rand, regex, md5",
               ("cargo", "librust-rand-dev", "librust-regex-dev",
                "librust-regex+default-dev", "librust-md5-dev"), _rust_missing, _rust_prepare),
    Dependency("javatuples", "javatuples", ("libjavatuples-java",), _java_missing, _java_prepare),
    Dependency("go-testify", "testify", ("golang-github-stretchr-testify-dev",), _go_missing, _go_prepare),
    Dependency("js-modules", "JavaScript modules (js-md5)", ("npm",), _js_missing, _js_prepare),
)}


def missing(names: tuple[str, ...], language: str, path: str) -> str | None:
    """None when every dependency is present, else one line naming what is absent and the fix."""
    for name in names:
        dep = DEPENDENCIES[name]
        what = dep.missing(path)
        if what:
            return (f"{language}: {dep.what} missing ({what}); install Debian packages "
                    f"{' '.join(dep.packages)} (`make lang-deps`)")
    return None


_prepared: dict[tuple, Prepared] = {}


def prepare(names: tuple[str, ...], language: str, lang_env: dict, path: str) -> Prepared:
    """Everything ``names`` contribute, built into the machine cache on first use with the tools on
    ``path`` (the sandbox's PATH: the libraries must come from the toolchain that runs the programs)."""
    args: list[str] = []
    classpath: list[str] = []
    env: list[tuple[str, str]] = []
    for name in names:
        # called once per program: hashing toolchain versions and sources is done once per process,
        # unless the build was removed meanwhile
        memo = (name, str(cache_root()), tuple(sorted(lang_env.items())), path)
        got = _prepared.get(memo)
        marker = _markers.get((name, memo[1]))
        if got is None or (marker is not None and not marker.exists()):
            try:
                got = _prepared[memo] = DEPENDENCIES[name].prepare(lang_env, path)
            except DependencyError as exc:
                raise DependencyError(f"{language}: preparing {DEPENDENCIES[name].what} failed: {exc}") from None
        args += got.args
        classpath += got.classpath
        env += got.env
    return Prepared(tuple(args), tuple(classpath), tuple(env))
