"""Verdicts a program cannot write: no writable channel reaches it, a forged or guessed end line
and an early exit fail in every language; the reference runner's own rule (``harness_status``,
``--harness-compatible``) is kept beside Codetron's stricter one; and without bubblewrap nothing
runs unless the weak sandbox is asked for."""
from __future__ import annotations

import json
import os

import pytest

from codetron.eval import execution
from codetron.eval.execution import SandboxConfig, SandboxUnavailable, bubblewrap_status, check_programs
from codetron.eval.languages import toolchain_missing

BWRAP_OK, BWRAP_WHY = bubblewrap_status()
NEEDS_BWRAP = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unusable here ({BWRAP_WHY})")
MECHANISMS = [pytest.param("bubblewrap", marks=NEEDS_BWRAP), "weak"]
FORGED = json.dumps({"status": "passed", "error_kind": "none", "detail": "forged"})
# what a sample could guess: the token's prefix and shape, 128 bits it does not know
GUESSED = "codetron-end-" + "0123456789abcdef" * 2

PY_FORGE_FDS = f"""
import os
forged = {FORGED!r}.encode()
for fd in range(3, 1024):
    try:
        os.write(fd, forged)
    except OSError:
        pass
# the worker's own descriptors (its reply channel to the evaluator among them)
for pid in (os.getppid(), 1):
    try:
        names = os.listdir(f"/proc/{{pid}}/fd")
    except OSError:
        names = []
    for name in names:
        try:
            fd = os.open(f"/proc/{{pid}}/fd/{{name}}", os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, len(forged).to_bytes(4, "big") + forged)
            os.close(fd)
        except OSError:
            pass
assert False, "wrong answer"
"""

PYTHON_TRICKS = {
    "forged verdict on every fd": PY_FORGE_FDS,
    "guessed token, then os._exit(0)": f"import os\nprint({GUESSED!r} + {FORGED!r}, flush=True)\nos._exit(0)\n",
    "os._exit(0) before the tests": "import os\nos._exit(0)\nassert False\n",
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)\nassert False\n",
    "atexit prints a guessed pass": (f"import atexit, sys\natexit.register(lambda: print({GUESSED!r} + {FORGED!r}))\n"
                                     "sys.exit(0)\n"),
    "excepthook swallows the failure": ("import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n"
                                        "sys.unraisablehook = lambda *a: os._exit(0)\nassert False, 'wrong'\n"),
    "thread exits the process": ("import os, threading, time\nthreading.Thread(target=lambda: os._exit(0)).start()\n"
                                 "time.sleep(5)\n"),
}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_python_tricks_never_pass(mechanism):
    if mechanism == "weak" and os.geteuid() != 0:
        pytest.skip("the weak sandbox without root runs programs as you: /proc of the worker is theirs too")
    names = list(PYTHON_TRICKS)
    # one worker: a forged reply written into its channel would show up as a later program's verdict
    programs = [PYTHON_TRICKS[n] for n in names] + ["assert False, 'the last one fails on its own'", "pass"]
    results = check_programs(programs, timeout=3.0, n_workers=1, config=SandboxConfig(mechanism=mechanism))
    for name, r in zip(names, results):
        assert r.status == "failed" and r.harness_status == "failed" and not r.ran_to_end, (name, r)
    assert results[0].detail == "AssertionError: wrong answer", results[0]
    assert (results[-2].status, results[-2].detail) == ("failed", "AssertionError: the last one fails on its own")
    assert results[-1].passed and results[-1].ran_to_end


def test_no_writable_descriptor_reaches_a_python_program():
    probe = ("import os\nwritable = []\nfor fd in os.listdir('/proc/self/fd'):\n"
             "    try:\n        flags = int(open(f'/proc/self/fdinfo/{fd}').read().split('flags:')[1].split()[0], 8)\n"
             "    except (OSError, IndexError, ValueError):\n        continue\n"
             "    if int(fd) > 2 and flags & 3 != os.O_RDONLY:\n        writable.append(fd)\n"
             "assert not writable, writable\n")
    [r] = check_programs([probe], timeout=3.0, n_workers=1)
    assert r.passed, r


# per language: a sample that exits 0 inside the solution, one that prints a guessed end line and
# exits 0, one that writes a forged verdict to every descriptor and then fails, a wrong answer and
# a right one. {check} is the test's condition on f().
CASES = {
    "js": {
        "early exit": "function f() { process.exit(0); }\nconsole.assert(f() === 1)\n",
        "guessed token": f"function f() {{ process.stdout.write({GUESSED!r} + '\\n'); process.exit(0); }}\n"
                         "console.assert(f() === 1)\n",
        "forged fds": ("const fs = require('fs');\nfor (let fd = 3; fd < 1024; fd++) { try { fs.writeSync(fd, "
                       f"{FORGED!r}); }} catch (e) {{}} }}\nfunction f() {{ return 2; }}\n"
                       "console.assert(f() === 1)\n"),
        "console.assert fails": "function f() { return 2; }\nconsole.assert(f() === 1)\n",
        "right": "function f() { return 1; }\nconsole.assert(f() === 1)\n",
    },
    "cpp": {
        "early exit": "#include <cassert>\n#include <cstdlib>\nint f() { exit(0); }\nint main() { assert(f() == 1); }\n",
        "guessed token": (f"#include <cassert>\n#include <cstdio>\n#include <cstdlib>\nint f() {{ puts({json.dumps(GUESSED)}); "
                          "exit(0); }\nint main() { assert(f() == 1); }\n"),
        "forged fds": (f"#include <cassert>\n#include <cstring>\n#include <unistd.h>\nconst char* s = {json.dumps(FORGED)};\n"
                       "int f() { for (int fd = 3; fd < 1024; fd++) write(fd, s, strlen(s)); return 2; }\n"
                       "int main() { assert(f() == 1); }\n"),
        "wrong": "#include <cassert>\nint f() { return 2; }\nint main() { assert(f() == 1); }\n",
        "right": "#include <cassert>\nint f() { return 1; }\nint main() { assert(f() == 1); }\n",
    },
    "java": {
        "early exit": ("class S { static int f() { System.exit(0); return 2; } }\npublic class Main {\n"
                       "  public static void main(String[] a) { if (S.f() != 1) throw new AssertionError(); } }\n"),
        "guessed token": (f"class S {{ static int f() {{ System.out.println({json.dumps(GUESSED)}); System.exit(0); "
                          "return 2; } }\npublic class Main {\n"
                          "  public static void main(String[] a) { if (S.f() != 1) throw new AssertionError(); } }\n"),
        "forged fds": ("class S { static int f() { for (int fd = 3; fd < 1024; fd++) { try (java.io.FileOutputStream o = "
                       "new java.io.FileOutputStream(\"/proc/self/fd/\" + fd)) { o.write("
                       f"{json.dumps(FORGED)}.getBytes()); }} catch (Exception e) {{}} }} return 2; }} }}\n"
                       "public class Main {\n"
                       "  public static void main(String[] a) { if (S.f() != 1) throw new AssertionError(); } }\n"),
        "wrong": ("class S { static int f() { return 2; } }\npublic class Main {\n"
                  "  public static void main(String[] a) { if (S.f() != 1) throw new AssertionError(); } }\n"),
        "right": ("class S { static int f() { return 1; } }\npublic class Main {\n"
                  "  public static void main(String[] a) { if (S.f() != 1) throw new AssertionError(); } }\n"),
    },
    "go": {
        "early exit": ("package main\nimport (\"os\"; \"testing\")\nfunc f() int { os.Exit(0); return 2 }\n"
                       "func TestF(t *testing.T) { if f() != 1 { t.Fatal(\"wrong\") } }\n"),
        "guessed token": (f"package main\nimport (\"fmt\"; \"os\"; \"testing\")\nfunc f() int {{ fmt.Println({json.dumps(GUESSED)})\n"
                          "  os.Exit(0); return 2 }\nfunc TestF(t *testing.T) { if f() != 1 { t.Fatal(\"wrong\") } }\n"),
        "forged fds": ("package main\nimport (\"os\"; \"testing\")\nfunc f() int { for fd := 3; fd < 1024; fd++ {\n"
                       f"  os.NewFile(uintptr(fd), \"x\").Write([]byte({json.dumps(FORGED)})) }}\n  return 2 }}\n"
                       "func TestF(t *testing.T) { if f() != 1 { t.Fatal(\"wrong\") } }\n"),
        "wrong": ("package main\nimport \"testing\"\nfunc f() int { return 2 }\n"
                  "func TestF(t *testing.T) { if f() != 1 { t.Fatal(\"wrong\") } }\n"),
        "right": ("package main\nimport \"testing\"\nfunc f() int { return 1 }\n"
                  "func TestF(t *testing.T) { if f() != 1 { t.Fatal(\"wrong\") } }\n"),
    },
    "rust": {
        "early exit": ("fn main(){}\nfn f() -> i32 { std::process::exit(0) }\n#[cfg(test)]\nmod tests { use super::*;\n"
                       " #[test]\n fn t() { assert_eq!(f(), 1); } }\n"),
        "guessed token": (f"fn main(){{}}\nfn f() -> i32 {{ use std::io::Write; let _ = std::io::stdout().write_all("
                          f"b{json.dumps(GUESSED + chr(10))}); std::process::exit(0) }}\n#[cfg(test)]\nmod tests {{ "
                          "use super::*;\n #[test]\n fn t() { assert_eq!(f(), 1); } }\n"),
        "forged fds": ("fn main(){}\nfn f() -> i32 { for fd in 3..1024 { if let Ok(mut o) = std::fs::OpenOptions::new()"
                       ".write(true).open(format!(\"/proc/self/fd/{}\", fd)) { use std::io::Write; let _ = o.write_all("
                       f"b{json.dumps(FORGED)}); }} }} 2 }}\n#[cfg(test)]\nmod tests {{ use super::*;\n #[test]\n"
                       " fn t() { assert_eq!(f(), 1); } }\n"),
        "wrong": ("fn main(){}\nfn f() -> i32 { 2 }\n#[cfg(test)]\nmod tests { use super::*;\n"
                  " #[test]\n fn t() { assert_eq!(f(), 1); } }\n"),
        "right": ("fn main(){}\nfn f() -> i32 { 1 }\n#[cfg(test)]\nmod tests { use super::*;\n"
                  " #[test]\n fn t() { assert_eq!(f(), 1); } }\n"),
    },
    "rs": {
        "early exit": "fn f() -> i32 { std::process::exit(0) }\nfn main() { assert_eq!(f(), 1); }\n",
        "guessed token": (f"fn f() -> i32 {{ println!({json.dumps(GUESSED)}); std::process::exit(0) }}\n"
                          "fn main() { assert_eq!(f(), 1); }\n"),
        "forged fds": ("fn f() -> i32 { for fd in 3..1024 { if let Ok(mut o) = std::fs::OpenOptions::new().write(true)"
                       ".open(format!(\"/proc/self/fd/{}\", fd)) { use std::io::Write; let _ = o.write_all("
                       f"b{json.dumps(FORGED)}); }} }} 2 }}\nfn main() {{ assert_eq!(f(), 1); }}\n"),
        "wrong": "fn f() -> i32 { 2 }\nfn main() { assert_eq!(f(), 1); }\n",
        "right": "fn f() -> i32 { 1 }\nfn main() { assert_eq!(f(), 1); }\n",
    },
}
SUITE = {"js": "humanevalpack", "cpp": "humanevalpack", "java": "humanevalpack", "go": "humanevalpack",
         "rust": "humanevalpack", "rs": "multiple"}
# the reference's rule passes an early exit everywhere but in Go: `go test` fails a test that calls
# os.Exit(0) (the binary runs with -test.paniconexit0, as go test runs it)
EARLY_EXIT_PASSES_THE_REFERENCE = {"js": True, "cpp": True, "java": True, "go": False, "rust": True, "rs": True}


def _needs(language: str):
    missing = toolchain_missing(language)
    return pytest.mark.skipif(missing is not None, reason=f"{missing}")


@pytest.mark.parametrize("language", [pytest.param(lang, marks=[_needs(lang)] + ([pytest.mark.slow] if lang == "go" else []))
                                      for lang in CASES])
def test_forged_guessed_and_early_exit_never_pass(language):
    names = list(CASES[language])
    programs = [CASES[language][n] for n in names]
    results = check_programs(programs, timeout=5.0, n_workers=2, language=language, suite=SUITE[language])
    got = {n: (r.status, r.harness_status) for n, r in zip(names, results)}
    reference_exit = "passed" if EARLY_EXIT_PASSES_THE_REFERENCE[language] else "failed"
    expected = {"early exit": ("failed", reference_exit), "guessed token": ("failed", reference_exit),
                "forged fds": ("failed", "failed"), names[3]: ("failed", "failed"), "right": ("passed", "passed")}
    if language == "js":
        # the reference fails any output (the guessed line); writing into node's own descriptors
        # leaves what node prints to chance, so only Codetron's verdict is fixed there
        expected["guessed token"] = ("failed", "failed")
        expected["forged fds"] = ("failed", got["forged fds"][1])
    assert got == expected, {n: (r.status, r.harness_status, r.detail) for n, r in zip(names, results)}
    by_name = dict(zip(names, results))
    assert by_name["right"].ran_to_end and not by_name["early exit"].ran_to_end
    if EARLY_EXIT_PASSES_THE_REFERENCE[language]:
        assert "before the tests finished" in by_name["early exit"].detail, by_name["early exit"]
        # --harness-compatible reproduces the reference, weakness included
        early = check_programs([CASES[language]["early exit"]], timeout=5.0, n_workers=1, language=language,
                               suite=SUITE[language], harness_compatible=True)[0]
        assert (early.status, early.harness_status) == ("passed", "passed"), early


@_needs("js")
def test_console_assert_fails_humanevalpack_js_by_both_rules():
    """HumanEvalPack's JS tests call console.assert, which prints "Assertion failed" and exits 0; the
    reference fails any output. A program that prints but passes fails the reference's rule only."""
    programs = ["const f = () => 2\nconsole.assert(f() === 1)\n",
                "const f = () => { console.log('debug'); return 1 }\nconsole.assert(f() === 1)\n"]
    hep = check_programs(programs, timeout=5.0, n_workers=1, language="js", suite="humanevalpack")
    assert [(r.status, r.harness_status, r.error_kind) for r in hep] == [("failed", "failed", "assertion"),
                                                                         ("failed", "failed", "runtime")], hep
    assert hep[0].detail.endswith("Assertion failed") and "printed output" in hep[1].detail
    # MultiPL-E's rule reads the exit status only; Codetron's still fails a failed console.assert
    mpe = check_programs(programs, timeout=5.0, n_workers=1, language="js", suite="multiple")
    assert [(r.status, r.harness_status) for r in mpe] == [("failed", "passed"), ("passed", "passed")], mpe


# ------------------------------------------------------------------ fail closed without bubblewrap


def test_without_bubblewrap_nothing_runs_unless_weak_is_asked_for(monkeypatch):
    monkeypatch.setattr(execution, "bubblewrap_status", lambda config=None: (False, "bwrap probe failed: "
                                                                            "No permissions to create new namespace"))
    monkeypatch.delenv(execution.SANDBOX_ENV, raising=False)
    with pytest.raises(SandboxUnavailable) as err:
        check_programs(["assert True"], timeout=2.0, n_workers=1)
    message = str(err.value)
    assert "\n" not in message and message.startswith("sandbox: bubblewrap cannot run here (bwrap probe failed")
    assert "apt-get install bubblewrap" in message and "user namespaces" in message and "--sandbox weak" in message
    info: dict = {}
    [r] = check_programs(["assert True"], timeout=2.0, n_workers=1, config=SandboxConfig(mechanism="weak"), info=info)
    assert r.passed and info["mechanism"] == "fork-server (weak sandbox, asked for)"
    monkeypatch.setenv(execution.SANDBOX_ENV, "weak")
    info = {}
    [r] = check_programs(["assert True"], timeout=2.0, n_workers=1, info=info)
    assert r.passed and info["mechanism"].startswith("fork-server (weak sandbox, CODETRON_SANDBOX=weak")
    monkeypatch.setenv(execution.SANDBOX_ENV, "chroot")
    with pytest.raises(execution.ConfigError, match="CODETRON_SANDBOX='chroot' unknown"):
        check_programs(["assert True"], timeout=2.0, n_workers=1)


def test_weak_sandbox_says_what_it_does_not_isolate(capsys):
    execution._warned.clear()
    check_programs(["pass"], timeout=2.0, n_workers=1, config=SandboxConfig(mechanism="weak"))
    err = capsys.readouterr().err
    assert "weak sandbox (asked for)" in err and "host's files" in err and "unix sockets" in err


def test_cli_refuses_in_one_line_and_runs_with_sandbox_weak(monkeypatch, tmp_path, capsys):
    from codetron.errors import CodetronError
    from codetron.eval.cli import main

    monkeypatch.setattr(execution, "bubblewrap_status", lambda config=None: (False, "bwrap not found"))
    monkeypatch.delenv(execution.SANDBOX_ENV, raising=False)
    argv = ["execute", "--canonical", "--task", "humaneval", "--limit", "2", "--out", str(tmp_path / "out")]
    with pytest.raises(CodetronError, match=r"^sandbox: bubblewrap cannot run here \(bwrap not found\)"):
        main(argv)
    assert main([*argv, "--sandbox", "weak"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["humaneval"]["pass@1"] == 1.0 and metrics["config"]["isolation"]["mechanism"].startswith("fork-server")


@_needs("js")
def test_cli_harness_compatible_and_the_count_of_differences(tmp_path):
    """One early-exit sample among three: Codetron fails it, the reference's rule (and so
    --harness-compatible) passes it; metrics.json counts it either way."""
    from pathlib import Path

    from codetron.eval.cli import main
    from codetron.eval.tasks import get_task

    data = Path(__file__).parent / "data" / "humanevalpack_js.jsonl"
    problems = get_task("humanevalsynthesize-js").load(data)
    codes = [[p["prompt"] + p["canonical_solution"]] for p in problems]
    codes[1] = [problems[1]["prompt"] + "  process.exit(0)\n}\n\n"]
    generations = tmp_path / "generations.json"
    generations.write_text(json.dumps(codes))
    scores = {}
    for extra in ([], ["--harness-compatible"]):
        out = tmp_path / f"out{len(extra)}"
        argv = ["execute", "--task", "humanevalsynthesize-js", "--problems", str(data), "--generations",
                str(generations), "--k", "1", "--out", str(out), *extra]
        assert main(argv) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        scores[bool(extra)] = metrics["humanevalsynthesize-js"]
        assert metrics["config"]["harness_compatible"] is bool(extra)
        samples = [s for p in json.loads((out / "per_problem.json").read_text()) for s in p["samples"]]
        assert [(s["status"], s["harness_status"]) for s in samples][1] == \
            ("passed" if extra else "failed", "passed")
    assert scores[False] == {"pass@1": pytest.approx(2 / 3), "strict_vs_harness_differ": 1}
    assert scores[True] == {"pass@1": 1.0, "strict_vs_harness_differ": 1}


def test_end_token_is_found_across_reads_and_beyond_the_kept_output():
    """The worker searches the whole stream: a token split between two reads, or after more output
    than it keeps, still counts; the bytes the program printed exclude the end line."""
    from codetron.eval.sandbox_worker import _Stream

    token = b"codetron-end-" + b"ab" * 16
    stream = _Stream(max_output=10, needles={"end": token, "fail": b"FAIL"})
    noise = b"x" * 100_000
    line = token + b'{"status": "passed"}\n'
    for chunk in (noise[:60_000], noise[60_000:] + line[:7], line[7:20], line[20:]):
        stream.take(chunk)
    assert stream.found == {"end": 100_000} and "fail" not in stream.found
    assert len(stream.head) == 10 and stream.total == 100_000 + len(line)
    assert stream.printed() == 100_000
    assert json.loads(stream.after_end.decode()) == {"status": "passed"}
    stream.take(b"..FA")
    stream.take(b"IL..")
    assert stream.found["fail"] == 100_000 + len(line) + 2
