"""Programs in six languages in the sandbox: pass, failed test, compile error, timeout, and a hostile
program (leaves a file in /tmp and a detached process) that must not be seen by the next sample."""
from __future__ import annotations

import os

import pytest

from codetron.eval import languages
from codetron.eval.execution import SandboxConfig, ToolchainMissing, bubblewrap_status, check_programs
from codetron.eval.languages import humanevalpack_program, toolchain_missing

SLEEP = "31.25"  # a detached `sleep SLEEP` must not outlive its sample

# language -> programs; each program is the whole file (code + test), as the tasks build them
CASES = {
    "js": {
        "pass": "const assert = require('node:assert');\nfunction add(a, b) { return a + b; }\n"
                "assert.deepEqual(add(2, 3), 5);\n",
        "fail": "const assert = require('node:assert');\nfunction add(a, b) { return a - b; }\n"
                "assert.deepEqual(add(2, 3), 5);\n",
        "compile": "function add(a, b) { return a + ; }\n",
        "timeout": "while (true) {}\n",
        "hostile": "const fs = require('fs'); const cp = require('child_process');\n"
                   "fs.writeFileSync('/tmp/leak', 'x');\n"
                   f"cp.spawn('sleep', ['{SLEEP}'], {{detached: true, stdio: 'ignore'}}).unref();\n",
        "probe": "const fs = require('fs'); if (fs.existsSync('/tmp/leak')) { process.exit(3); }\n",
    },
    "java": {
        "pass": "class Solution { int add(int a, int b) { return a + b; } }\n"
                "public class Main { public static void main(String[] args) {\n"
                "  if (new Solution().add(2, 3) != 5) throw new AssertionError(); } }\n",
        "fail": "class Solution { int add(int a, int b) { return a - b; } }\n"
                "public class Main { public static void main(String[] args) {\n"
                "  if (new Solution().add(2, 3) != 5) throw new AssertionError(); } }\n",
        "compile": "public class Main { public static void main(String[] args) { int x = \"s\"; } }\n",
        "timeout": "public class Main { public static void main(String[] args) { while (true) {} } }\n",
        "hostile": "import java.io.*;\npublic class Main { public static void main(String[] a) throws Exception {\n"
                   "  new FileWriter(\"/tmp/leak\").close();\n"
                   f"  new ProcessBuilder(\"setsid\", \"sleep\", \"{SLEEP}\").start(); }} }}\n",
        "probe": "class Problem { public static void main(String[] a) {\n"
                 "  if (new java.io.File(\"/tmp/leak\").exists()) System.exit(3); } }\n",
    },
    "go": {
        "pass": "package main\nimport \"testing\"\nfunc add(a, b int) int { return a + b }\n"
                "func TestAdd(t *testing.T) { if add(2, 3) != 5 { t.Fatal(\"wrong\") } }\n",
        "fail": "package main\nimport \"testing\"\nfunc add(a, b int) int { return a - b }\n"
                "func TestAdd(t *testing.T) { if add(2, 3) != 5 { t.Fatal(\"wrong\") } }\n",
        "compile": "package main\nimport \"testing\"\nfunc add(a, b int) int { return a + \"b\" }\n"
                   "func TestAdd(t *testing.T) {}\n",
        "timeout": "package main\nimport \"testing\"\nfunc TestLoop(t *testing.T) { for { } }\n",
        "hostile": "package main\nimport (\"os\"; \"os/exec\"; \"syscall\"; \"testing\")\n"
                   "func TestEvil(t *testing.T) { os.WriteFile(\"/tmp/leak\", []byte(\"x\"), 0666)\n"
                   f"  c := exec.Command(\"sleep\", \"{SLEEP}\")\n"
                   "  c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}\n  c.Start() }\n",
        "probe": "package main\nimport (\"os\"; \"testing\")\n"
                 "func TestClean(t *testing.T) { if _, err := os.Stat(\"/tmp/leak\"); err == nil { t.Fatal(\"leak\") } }\n",
    },
    "cpp": {
        "pass": "#include <cassert>\nint add(int a, int b) { return a + b; }\nint main() { assert(add(2, 3) == 5); }\n",
        "fail": "#include <cassert>\nint add(int a, int b) { return a - b; }\nint main() { assert(add(2, 3) == 5); }\n",
        "compile": "int add(int a, int b) { return a + ; }\nint main() {}\n",
        "timeout": "int main() { volatile int x = 0; while (true) { x++; } }\n",
        "hostile": "#include <cstdio>\n#include <unistd.h>\nint main() { fclose(fopen(\"/tmp/leak\", \"w\"));\n"
                   f"  if (fork() == 0) {{ setsid(); execlp(\"sleep\", \"sleep\", \"{SLEEP}\", (char*)0); }} }}\n",
        "probe": "#include <unistd.h>\nint main() { return access(\"/tmp/leak\", F_OK) == 0 ? 3 : 0; }\n",
    },
    "rust": {
        "pass": "fn main(){}\nfn add(a: i32, b: i32) -> i32 { a + b }\n"
                "#[cfg(test)]\nmod tests { use super::*;\n #[test]\n fn t() { assert_eq!(add(2, 3), 5); } }\n",
        "fail": "fn main(){}\nfn add(a: i32, b: i32) -> i32 { a - b }\n"
                "#[cfg(test)]\nmod tests { use super::*;\n #[test]\n fn t() { assert_eq!(add(2, 3), 5); } }\n",
        "compile": "fn main(){}\nfn add(a: i32, b: i32) -> i32 { a + \"b\" }\n",
        "timeout": "fn main(){}\n#[test]\nfn t() { let mut x = 0u64; loop { unsafe { std::ptr::write_volatile(&mut x, x + 1) } } }\n",
        "hostile": "fn main(){}\n#[test]\nfn t() { std::fs::write(\"/tmp/leak\", \"x\").unwrap();\n"
                   f"  std::process::Command::new(\"setsid\").args([\"sleep\", \"{SLEEP}\"]).spawn().unwrap(); }}\n",
        "probe": "fn main(){}\n#[test]\nfn t() { assert!(!std::path::Path::new(\"/tmp/leak\").exists()); }\n",
    },
    "rs": {  # MultiPL-E: the asserts live in main, so main must run
        "pass": "fn add(a: i32, b: i32) -> i32 { a + b }\nfn main() { assert_eq!(add(2, 3), 5); }\n",
        "fail": "fn add(a: i32, b: i32) -> i32 { a - b }\nfn main() { assert_eq!(add(2, 3), 5); }\n",
        "compile": "fn add(a: i32, b: i32) -> i32 { a + }\nfn main() {}\n",
        "timeout": "fn main() { let mut x = 0u64; loop { unsafe { std::ptr::write_volatile(&mut x, x + 1) } } }\n",
        "hostile": "fn main() { std::fs::write(\"/tmp/leak\", \"x\").unwrap();\n"
                   f"  std::process::Command::new(\"setsid\").args([\"sleep\", \"{SLEEP}\"]).spawn().unwrap(); }}\n",
        "probe": "fn main() { assert!(!std::path::Path::new(\"/tmp/leak\").exists()); }\n",
    },
}
KINDS = ["pass", "fail", "compile", "timeout", "hostile", "probe"]
EXPECTED = {"pass": ("passed", "none"), "fail": ("failed", "assertion"), "compile": ("failed", "compile"),
            "timeout": ("timeout", "timeout"), "hostile": ("passed", "none"), "probe": ("passed", "none")}


def _sleepers() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[:2] == [b"sleep", SLEEP.encode()]:
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


def _needs(language: str):
    missing = toolchain_missing(language)
    return pytest.mark.skipif(missing is not None, reason=f"{missing}")


# Go compiles every sample from an empty build cache (~3 s each on 2 cores): over 20 s in all; Java's and
# Rust's compilers take 4-8 s for the set. The fast tier keeps the quick toolchains.
SLOW_LANGUAGES = ("go", "java", "rust", "rs")


@pytest.mark.parametrize("language", [pytest.param(lang, marks=[_needs(lang)] + ([pytest.mark.slow] if lang in SLOW_LANGUAGES else []))
                                      for lang in CASES])
def test_language_verdicts_and_isolation(language):
    programs = [CASES[language][k] for k in KINDS]
    if not bubblewrap_status()[0]:
        pytest.skip("bubblewrap unusable here: /tmp is shared in the fork-server, the probe would see other runs")
    # one worker: the probe runs after the hostile program in the same sandbox
    results = check_programs(programs, timeout=3.0, n_workers=1, language=language,
                             config=SandboxConfig(mechanism="bubblewrap"))
    got = {k: (r.status, r.error_kind) for k, r in zip(KINDS, results)}
    assert got == EXPECTED, {k: (r.status, r.error_kind, r.detail, r.output[-300:]) for k, r in zip(KINDS, results)}
    by_kind = dict(zip(KINDS, results))
    assert by_kind["compile"].detail.startswith("compile error:") and "rror" in by_kind["compile"].detail
    assert by_kind["timeout"].detail == "timed out after 3 s"
    assert _sleepers() == [], "a detached process outlived its sample"
    assert not os.path.exists("/tmp/leak")


def test_missing_toolchain_is_one_line_for_the_task(monkeypatch, tmp_path):
    monkeypatch.setattr(languages, "SANDBOX_PATH", str(tmp_path))
    with pytest.raises(ToolchainMissing) as exc:
        check_programs(["package main"] * 5, language="go")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("go: toolchain missing (go not on")
    assert "golang-go" in message and "make lang-deps" in message
    # Python runs in the sandbox's own interpreter: never missing
    assert toolchain_missing("python") is None


def test_unknown_language_is_a_config_error():
    from codetron.errors import ConfigError

    with pytest.raises(ConfigError, match="language 'cobol' unknown"):
        check_programs(["x"], language="cobol")


def test_java_runs_the_class_holding_main():
    assert languages.java_names(CASES["java"]["pass"]) == ("Main", "Main")
    assert languages.java_names(CASES["java"]["probe"]) == ("Problem", "Problem")


# ------------------------------------------------------- HumanEvalPack assembly, run for real

def test_humanevalpack_cpp_and_python_headers_make_programs_run():
    cpp = {"test": "#undef NDEBUG\n#include<assert.h>\nint main(){ assert(add(2,3)==5); }\n"}
    # boost/any and the harness's header come first; a generated main is dropped
    code = "int add(int a,int b){ vector<int> v{a,b}; return accumulate(v.begin(), v.end(), 0); }\nint main(){}\n"
    program = humanevalpack_program("cpp", code, cpp)
    assert program.startswith("using namespace std;\n#include<stdlib.h>") and program.count("int main") == 1
    py = {"test": "def check(f):\n    assert f([3, 1, 2]) == 2\ncheck(median_of)\n"}
    py_program = humanevalpack_program("python", "def median_of(xs):\n    return statistics.median(xs)\n", py)
    langs = ["python"] + (["cpp"] if toolchain_missing("cpp") is None else [])
    for lang, prog in zip(langs, [py_program, program]):
        [r] = check_programs([prog], timeout=5.0, n_workers=1, language=lang)
        assert r.passed, (lang, r)


def test_humanevalpack_go_imports_only_used_packages_and_rust_gets_main():
    go = {"test_setup": "package main\n\nimport (\n    \"testing\"\n)\n",
          "test": "func TestF(t *testing.T) {\n    if F(\"a b\") != \"A B\" { t.Fatal(\"x\") }\n}\n"}
    code = "// strconv is only named in this comment: strconv.Itoa\nfunc F(s string) string {\n" \
           "    return strings.ToUpper(s)\n}\n"
    program = humanevalpack_program("go", code, go)
    assert 'import (\n    "strings"\n)' in program and '"strconv"' not in program
    rust = {"declaration": "\nuse std::collections::HashMap;\nfn f(x: i32) -> i32{\n",
            "test": "#[cfg(test)]\nmod tests {\n use super::*;\n #[test]\n fn t() { assert_eq!(f(2), 3); }\n}\n"}
    rust_program = humanevalpack_program("rust", "fn f(x: i32) -> i32{\n    x + 1\n}\n", rust)
    assert rust_program.startswith("fn main(){}\nuse std::collections::HashMap;\nfn f(x: i32)")
    assert rust_program.count("fn f(") == 1
    for lang, prog in (("go", program), ("rust", rust_program)):
        if toolchain_missing(lang) is None:
            [r] = check_programs([prog], timeout=5.0, n_workers=1, language=lang)
            assert r.passed, (lang, r)


@pytest.mark.slow
@pytest.mark.skipif(toolchain_missing("go") is not None or not os.path.isdir(f"{languages.GOPATH}/src/github.com/stretchr"),
                    reason="go or Debian's golang-github-stretchr-testify-dev missing (`make lang-deps`)")
def test_go_tests_with_testify_as_humanevalpack_writes_them():
    problem = {"test_setup": "package main\n\nimport (\n    \"testing\"\n    \"github.com/stretchr/testify/assert\"\n)\n",
               "test": "func TestAdd(t *testing.T) {\n    assert := assert.New(t)\n    assert.Equal(5, Add(2, 3))\n}\n"}
    good = humanevalpack_program("go", "func Add(a, b int) int {\n    return a + b\n}\n", problem)
    bad = humanevalpack_program("go", "func Add(a, b int) int {\n    return a * b\n}\n", problem)
    results = check_programs([good, bad], timeout=10.0, n_workers=2, language="go")
    assert [(r.status, r.error_kind) for r in results] == [("passed", "none"), ("failed", "assertion")], results
