"""Libraries HumanEvalPack / MultiPL-E programs use, prepared once per machine (codetron.eval.langdeps):
Rust crates rand/regex/md5, javatuples, a read-only Go build cache with testify. Problems in the
bigcode/humanevalpack schema go through the tasks end to end: canonical passes, buggy fails.

A test whose Debian package is missing (and `make lang-deps` could not install it) skips with the
one-line reason naming the package."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from codetron.errors import CodetronError, ConfigError
from codetron.eval import langdeps
from codetron.eval.evaluate import ExecConfig, evaluate
from codetron.eval.execution import SandboxLimits, check_programs
from codetron.eval.languages import SANDBOX_PATH, get_language, toolchain_missing
from codetron.eval.tasks import get_task
from codetron.records import write_jsonl

CONFIG = ExecConfig(timeout=20, ks=(1,))  # default sandbox limits throughout

# the header every HumanEvalPack Rust declaration starts with
RUST_USES = ("\nuse std::{slice::Iter, cmp::{max, self}, mem::replace, collections::{HashSet, HashMap}, ops::Index, "
             "ascii::AsciiExt};\nuse rand::Rng;\nuse regex::Regex;\nuse md5;\nuse std::any::{Any, TypeId};\n\n")


def _rust_problem(i, doc, signature, canonical, buggy, test_body):
    name = signature.split("(")[0]
    return {"task_id": f"Rust/{i}", "prompt": f"\n/*\n{doc}\n*/\nfn {signature}{{\n",
            "declaration": f"{RUST_USES}fn {signature}{{\n", "canonical_solution": canonical, "buggy_solution": buggy,
            "entry_point": name, "import": "", "test_setup": "", "example_test": "", "signature": signature,
            "docstring": doc, "instruction": f"Write a Rust function `{signature}` to solve the following problem:\n{doc}",
            "test": f"\n#[cfg(test)]\nmod tests {{\n    use super::*;\n\n    #[test]\n    fn test_{name}() {{\n"
                    f"{test_body}    }}\n}}\n"}


RUST_PROBLEMS = [
    # HumanEval/162 as HumanEvalPack writes it in Rust: md5 crate
    _rust_problem(0, "Given a string text, return its md5 hash equivalent string; None for an empty string.",
                  "string_to_md5(text: &str) -> Option<String>",
                  "    if text.is_empty() {\n        return None;\n    }\n"
                  "    let digest = md5::compute(text.as_bytes());\n    return Some(format!(\"{:x}\", digest));\n}\n",
                  "    if text.is_empty() {\n        return None;\n    }\n"
                  "    let digest = md5::compute(text.trim().to_lowercase().as_bytes());\n"
                  "    return Some(format!(\"{:x}\", digest));\n}\n",
                  "        assert!(string_to_md5(\"Hello world\") == Some(\"3e25960a79dbc69b674cd4ec67a72c62\".to_string()));\n"
                  "        assert!(string_to_md5(\"\") == None);\n"),
    # regex crate
    _rust_problem(1, "Count the words (runs of letters and digits) in s.", "count_words(s: &str) -> usize",
                  "    let re = Regex::new(r\"[A-Za-z0-9]+\").unwrap();\n    return re.find_iter(s).count();\n}\n",
                  "    let re = Regex::new(r\"[A-Za-z]+\").unwrap();\n    return re.find_iter(s).count();\n}\n",
                  "        assert!(count_words(\"Hi, there 42!\") == 3);\n        assert!(count_words(\"\") == 0);\n"),
    # rand crate (Rng::gen, in rand 0.4 as in 0.8): the noise must cancel
    _rust_problem(2, "Return x unchanged, whatever random draw is made.", "noisy_identity(x: i64) -> i64",
                  "    let r: u32 = rand::thread_rng().gen();\n    return x + r as i64 - r as i64;\n}\n",
                  "    let r: u32 = rand::thread_rng().gen();\n    return x + (r % 2) as i64 + 1;\n}\n",
                  "        for x in [-3i64, 0, 7] {\n            assert!(noisy_identity(x) == x);\n        }\n"),
]

JAVA_PROBLEMS = [{
    "task_id": "Java/0",
    "prompt": "import java.util.*;\nimport java.lang.*;\nimport org.javatuples.*;\n\nclass Solution {\n    /**\n"
              "    Return the smallest and the largest element as a Pair.\n     */\n"
              "    public Pair<Integer, Integer> minMax(List<Integer> l) {\n",
    "declaration": "import java.util.*;\nimport java.lang.*;\nimport org.javatuples.*;\n\nclass Solution {\n"
                   "    public Pair<Integer, Integer> minMax(List<Integer> l) {\n",
    "canonical_solution": "        return Pair.with(Collections.min(l), Collections.max(l));\n    }\n}",
    "buggy_solution": "        return Pair.with(l.get(0), l.get(l.size() - 1));\n    }\n}",
    "entry_point": "minMax", "import": "", "test_setup": "", "example_test": "", "signature": "minMax(List<Integer> l)",
    "docstring": "Return the smallest and the largest element as a Pair.",
    "instruction": "Write a Java function `minMax(List<Integer> l)` to solve the following problem:\n"
                   "Return the smallest and the largest element as a Pair.",
    "test": "public class Main {\n    public static void main(String[] args) {\n        Solution s = new Solution();\n"
            "        List<Boolean> correct = Arrays.asList(\n"
            "                s.minMax(Arrays.asList(3, 1, 2)).equals(Pair.with(1, 3)),\n"
            "                s.minMax(Arrays.asList(5)).equals(Pair.with(5, 5))\n        );\n"
            "        if (correct.contains(false)) {\n            throw new AssertionError();\n        }\n    }\n}\n",
}]


def needs(language: str) -> None:
    missing = toolchain_missing(language)
    if missing:
        pytest.skip(f"cannot check {language} here: {missing}")


def _verdicts(task_name: str, problems: list[dict], tmp_path) -> list[list[bool]]:
    task = get_task(task_name)
    path = tmp_path / "problems.jsonl"
    write_jsonl(path, problems)
    loaded = task.load(path)
    codes = [[task.canonical(p), p["prompt"] + p["buggy_solution"]] for p in loaded]
    result = evaluate(loaded, codes, CONFIG, progress=False, task=task)
    return [[s["passed"] for s in p["samples"]] for p in result.per_problem], result


@pytest.mark.slow  # the first run on a machine builds the crates (~25 s on 2 cores)
def test_humanevalpack_rust_with_rand_regex_md5(tmp_path):
    needs("rust")
    verdicts, result = _verdicts("humanevalsynthesize-rust", RUST_PROBLEMS, tmp_path)
    assert verdicts == [[True, False]] * 3, [p["samples"] for p in result.per_problem]


RAND04_PROGRAM = """fn main(){}
use rand::Rng;
fn clamp(x: i64) -> i64 { x.max(-5).min(5) }
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn t() {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let x = rng.gen_range(-10, 11);
            assert!(x >= -10 && x < 11);
            let c: u8 = rng.gen_range(b'a', b'z' + 1);
            assert!(c.is_ascii_lowercase());
            assert!(clamp(x).abs() <= 5);
        }
        let r: i32 = rng.gen();
        let _f: f64 = rand::random();
        let _ = r.checked_rem(7);
        let mut v = vec![1, 2, 3, 4];
        rng.shuffle(&mut v);
        v.sort();
        assert!(v == vec![1, 2, 3, 4]);
        assert!(rng.choose(&v).is_some() && rng.choose::<i32>(&[]).is_none());
        assert!(rng.gen_weighted_bool(1));
        assert!(rng.gen_ascii_chars().take(8).all(|c| c.is_ascii_alphanumeric()));
        assert!(rng.gen_iter::<u8>().take(3).count() == 3);
    }
}
"""


@pytest.mark.slow  # the first run on a machine builds the crates (~25 s on 2 cores)
def test_rand_is_the_harness_rand_04_api():
    """HumanEvalPack's Rust tests are written for rand 0.4 (``gen_range(low, high)``, Rust/32 and
    Rust/50): the ``rand`` samples link against offers 0.4's ``Rng`` API, and 0.8-only calls fail to
    compile, as under the reference's ``rand = "0.4"``."""
    needs("rust")
    only_08 = RAND04_PROGRAM.replace("rng.gen_range(-10, 11)", "rng.gen_range(-10..11)")
    good, bad = check_programs([RAND04_PROGRAM, only_08], timeout=20.0, n_workers=2, language="rust")
    assert (good.status, good.error_kind) == ("passed", "none"), (good.detail, good.output[-800:])
    assert (bad.status, bad.error_kind) == ("failed", "compile"), (bad.detail, bad.output[-800:])


@pytest.mark.slow
def test_rust_test_binary_above_the_run_file_limit_passes_with_defaults():
    """A ``rustc --test`` binary linked with regex is ~32 MB, twice the run step's default 16 MB
    RLIMIT_FSIZE: the compile step's per-language limit lets the linker write it."""
    needs("rust")
    limit = SandboxLimits().file_bytes
    assert limit == 16 << 20 and get_language("rust").compile_file_bytes > 2 * limit
    program = ("fn main(){}\nuse regex::Regex;\nfn digits(s: &str) -> bool { Regex::new(r\"^[0-9]+$\").unwrap().is_match(s) }\n"
               "#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn t() {\n"
               "        assert!(digits(\"123\") && !digits(\"12a\"));\n"
               "        let size = std::fs::metadata(std::env::current_exe().unwrap()).unwrap().len();\n"
               f"        assert!(size > {limit}, \"binary is only {{}} bytes\", size);\n    }}\n}}\n")
    [r] = check_programs([program], timeout=10.0, n_workers=1, language="rust")
    assert (r.status, r.error_kind) == ("passed", "none"), (r.detail, r.output[-500:])


@pytest.mark.slow
def test_humanevalpack_java_with_javatuples_and_multiple_asserts(tmp_path):
    needs("java")
    verdicts, result = _verdicts("humanevalsynthesize-java", JAVA_PROBLEMS, tmp_path)
    assert verdicts == [[True, False]], [p["samples"] for p in result.per_problem]
    # MultiPL-E's Java tests are `assert` statements on javatuples values: they only bite with -ea
    problem = ("import java.util.*;\nimport org.javatuples.*;\nclass Problem {\n"
               "    public static Pair<Long, Long> sumProduct(ArrayList<Long> numbers) {\n        {body}\n    }\n"
               "    public static void main(String[] args) {\n"
               "    assert(sumProduct((new ArrayList<Long>(Arrays.asList((long)1l, (long)2l, (long)3l)))).equals("
               "(Pair.with(6l, 6l))));\n    }\n}\n")
    good = problem.replace("{body}", "long s = 0, p = 1; for (long x : numbers) { s += x; p *= x; } return Pair.with(s, p);")
    bad = problem.replace("{body}", "long s = 0, p = 0; for (long x : numbers) { s += x; p *= x; } return Pair.with(s, p);")
    results = check_programs([good, bad], timeout=10.0, n_workers=2, language="java")
    assert [(r.status, r.error_kind) for r in results] == [("passed", "none"), ("failed", "assertion")], results


@pytest.mark.slow  # the first run on a machine fills the Go build cache (~15 s)
def test_go_testify_samples_are_fast_and_cannot_touch_the_shared_cache():
    needs("go")
    go = get_language("go")
    langdeps.prepare(go.deps, "go", go.env, SANDBOX_PATH)  # the once-per-machine build, outside the timed runs
    setup = 'package main\n\nimport (\n    "os"\n    "testing"\n    "github.com/stretchr/testify/assert"\n)\n'
    test = ("func TestAdd(t *testing.T) {\n    assert := assert.New(t)\n    assert.Equal(5, Add(2, 3))\n"
            "    if err := os.WriteFile(os.Getenv(\"GOCACHE\") + \"/poison\", []byte(\"x\"), 0o666); err == nil {\n"
            "        t.Fatal(\"the shared build cache is writable\")\n    }\n}\n")
    good = setup + "func Add(a, b int) int {\n    return a + b\n}\n" + test
    bad = setup + "func Add(a, b int) int {\n    return a * b\n}\n" + test
    start = time.perf_counter()
    results = check_programs([good, bad, good, bad], timeout=10.0, n_workers=2, language="go")
    wall = time.perf_counter() - start
    assert [(r.status, r.error_kind) for r in results] == [("passed", "none"), ("failed", "assertion")] * 2, results
    # a cold cache compiles testify and the standard packages: 16-20 s per sample on this machine
    assert max(r.duration for r in results) < 8.0, [round(r.duration, 1) for r in results]
    print(f"\n4 testify samples in {wall:.1f} s, per sample {[round(r.duration, 1) for r in results]} s")
    cache = dict(langdeps.prepare(go.deps, "go", go.env, SANDBOX_PATH).env)["GOCACHE"]
    assert not os.path.exists(os.path.join(cache, "poison"))


@pytest.mark.parametrize("task_name,patch,expect", [
    ("humanevalsynthesize-rust", ("CARGO_REGISTRY", "/nonexistent/registry"),
     "rust: crates rand, regex, md5 missing (crates rand, regex, md5, aho-corasick, memchr, regex-syntax, "
     "rand_core, rand_chacha, getrandom not in /nonexistent/registry (Debian: librust-rand-dev "
     "librust-regex+default-dev librust-md5-dev)); install Debian packages cargo librust-rand-dev "
     "librust-regex-dev librust-regex+default-dev librust-md5-dev"),
    ("humanevalsynthesize-java", ("JAVATUPLES_JAR", "/nonexistent/javatuples.jar"),
     "java: javatuples missing (/nonexistent/javatuples.jar not found); install Debian packages libjavatuples-java"),
    ("humanevalsynthesize-go", ("TESTIFY_SRC", "/nonexistent/testify"),
     "go: testify missing (testify sources not in /nonexistent/testify); "
     "install Debian packages golang-github-stretchr-testify-dev"),
])
def test_missing_library_is_one_line_per_task(monkeypatch, tmp_path, task_name, patch, expect):
    """A missing library refuses the whole task in one line naming the Debian packages, before any
    sample runs (every HumanEvalPack sample of the language needs it)."""
    task = get_task(task_name)
    lang = get_language(task.language)
    absent = [tool for tool in lang.tools if shutil.which(tool, path=SANDBOX_PATH) is None]
    if absent:
        pytest.skip(f"cannot check {lang.name} here: {', '.join(absent)} not installed (`make lang-deps`)")
    monkeypatch.setattr(langdeps, patch[0], Path(patch[1]))
    monkeypatch.setattr("codetron.eval.execution.SandboxPool", None)  # nothing may start
    if lang.name == "go":
        problems = task.load(Path(__file__).parent / "data" / "humanevalpack_go.jsonl")
    else:
        problems = RUST_PROBLEMS if lang.name == "rust" else JAVA_PROBLEMS
    with pytest.raises(CodetronError) as err:
        evaluate(problems, [[task.canonical(p)] * 3 for p in problems], ExecConfig(timeout=5), progress=False, task=task)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{task_name}: {expect} (`make lang-deps`)"), message


def test_failed_library_build_is_one_line_per_task(monkeypatch, tmp_path):
    """Crate sources that do not build (here: empty crate folders) stop the task in one line that
    names the failing command and its log; nothing is half-published in the cache."""
    needs_tools = [t for t in ("rustc", "cargo") if shutil.which(t, path=SANDBOX_PATH) is None]
    if needs_tools:
        pytest.skip(f"cannot check rust here: {', '.join(needs_tools)} not installed (`make lang-deps`)")
    registry = tmp_path / "registry"
    for crate in (*langdeps.RUST_CRATES, *langdeps.RUST_FEATURE_CRATES):
        (registry / f"{crate}-1.0.0").mkdir(parents=True)
    monkeypatch.setattr(langdeps, "CARGO_REGISTRY", registry)
    monkeypatch.setenv(langdeps.CACHE_ENV, str(tmp_path / "cache"))
    task = get_task("humanevalsynthesize-rust")
    with pytest.raises(CodetronError) as err:
        evaluate(RUST_PROBLEMS, [[task.canonical(p)] for p in RUST_PROBLEMS], ExecConfig(timeout=5), progress=False,
                 task=task)
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith("humanevalsynthesize-rust: rust: preparing crates rand, regex, md5 failed: "
                              "`cargo build --offline` exited "), message
    assert "; log: " in message
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []


def test_cache_under_a_private_tmp_is_a_config_error(monkeypatch):
    """The sandbox mounts an empty tmpfs on /tmp: a library cache there would be invisible to programs."""
    monkeypatch.setenv(langdeps.CACHE_ENV, "/tmp/lang-deps")
    with pytest.raises(ConfigError, match="CODETRON_LANG_CACHE=/tmp/lang-deps: must not be under /tmp"):
        langdeps.sandbox_dirs()


JS_MD5 = {"task_id": "JavaScript/162", "prompt": "/*\n  Return the md5 hash of 'text', null for ''.\n  */\n"
          "const stringToMd5 = (text) => {\n",
          "declaration": "\nconst stringToMd5 = (text) => {\n",
          # as published: the solution requires npm's js-md5
          "canonical_solution": "  if (text == '') { return null }\n  var md5 = require('js-md5')\n  return md5(text)\n}\n\n",
          "buggy_solution": "  if (text == '') { return null }\n  var md5 = require('js-md5')\n  return md5('text')\n}\n\n",
          "entry_point": "stringToMd5", "import": "", "test_setup": "", "example_test": "", "signature": "",
          "docstring": "", "instruction": "Write a JavaScript function `const stringToMd5 = (text)`.",
          "test": "const testStringToMd5 = () => {\n  console.assert(\n    stringToMd5('Hello world') === "
                  "'3e25960a79dbc69b674cd4ec67a72c62'\n  )\n  console.assert(stringToMd5('') === null)\n}\n\n"
                  "testStringToMd5()\n"}


@pytest.mark.skipif(toolchain_missing("js") is not None, reason=f"{toolchain_missing('js')}")
def test_js_md5_from_the_machine_cache():
    """HumanEvalPack's JavaScript/162 requires npm's js-md5: `make lang-deps` puts it in the machine
    cache and programs find it read-only through NODE_PATH (no network at run time)."""
    task = get_task("humanevalsynthesize-js")
    result = evaluate([JS_MD5], [[task.canonical(JS_MD5), JS_MD5["prompt"] + JS_MD5["buggy_solution"]]],
                      ExecConfig(timeout=10, ks=(1,)), progress=False, task=task)
    samples = result.per_problem[0]["samples"]
    assert [(s["status"], s["harness_status"]) for s in samples] == [("passed", "passed"), ("failed", "failed")], samples
    assert samples[1]["detail"].endswith("Assertion failed")


def test_missing_js_modules_is_one_line_naming_make_lang_deps(monkeypatch, tmp_path):
    if shutil.which("node", path=SANDBOX_PATH) is None:
        pytest.skip("node not installed (`make lang-deps`)")
    monkeypatch.setenv(langdeps.CACHE_ENV, str(tmp_path / "cache"))
    message = toolchain_missing("js")
    assert message == (f"js: JavaScript modules (js-md5) missing (npm packages js-md5@0.7.3 not in "
                       f"{tmp_path / 'cache' / 'js-modules'}); install Debian packages npm (`make lang-deps`)")
