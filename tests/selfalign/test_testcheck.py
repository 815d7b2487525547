"""The shared check of generated tests (``codetron.preprocess.generate.testcheck``): the static rules,
and the stand-ins run in the sandbox -- used by ``selfalign run`` and ``evolve self-instruct`` alike."""
from __future__ import annotations

import pytest

from codetron.preprocess.generate.testcheck import WRONG_IMPLEMENTATIONS, fooled, programs, vacuous_reason

SOLUTION = "def f(x):\n    return x * 2\n\n\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"


@pytest.mark.parametrize("tests,vacuous", [
    ("assert True", True),
    ("assert 1 == 1\nassert [2] == [2]", True),
    ("x = 3\nassert x == 3", True),                              # never touches the solution
    ("assert f(1) == f(1)", True),                               # tautology
    ("def test():\n    assert f(2) == 4", True),                 # helper never called
    ("try:\n    assert f(2) == 5\nexcept AssertionError:\n    pass", True),
    ("try:\n    assert f(2) == 5\nexcept:\n    pass", True),
    ("def f(x):\n    return 4\n\n\nassert f(2) == 4", True),       # tests bring their own f
    ("from math import floor as f\nassert f(2.5) == 2", True),   # ... or import one
    ("def check(fn):\n    assert fn(2) == 4\ncheck(lambda x: 4)", True),
    ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(f(2), 4)\n",
     True),                                                      # TestCase defined, never run
    ("assert f(2) == 4", False),
    ("r = f(2)\ns = r + 1\nassert s == 5", False),               # through variables
    ("for x, y in [(1, 2), (2, 4)]:\n    assert f(x) == y", False),
    ("def test():\n    assert f(2) == 4\n\ntest()", False),
    ("def check(fn):\n    assert fn(2) == 4\n\ncheck(f)", False),
    ("b = Box(3)\nassert b.v == 3", False),
    ("try:\n    f(None)\nexcept TypeError:\n    pass\nelse:\n    raise AssertionError\nassert f(0) == 0", False),
    ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(f(2), 4)\n"
     "unittest.main()", False),
])
def test_vacuous_tests(tests, vacuous):
    assert (vacuous_reason(SOLUTION, tests) is not None) == vacuous


def test_vacuous_reasons_name_the_problem():
    assert vacuous_reason("X = 1\n", "assert X == 1") == "the solution defines no function or class"
    assert vacuous_reason(SOLUTION, "def Box():\n    pass\nassert Box() is None") == "the tests define Box themselves"


def test_stand_ins_catch_what_the_static_check_cannot():
    """Issue 23's three tests reach f, so the static check lets them through; the returns-None stand-in
    passes all three (the raising one two), so both pipelines drop them. Real tests fail both stand-ins."""
    from codetron.eval.execution import check_programs

    weak = ["assert callable(f)", "assert f is not None", "assert f(2) == 4 or True"]
    real = "assert f(2) == 4\nassert Box(3).v == 3"
    assert [vacuous_reason(SOLUTION, t) for t in weak + [real]] == [None] * 4
    runs = [programs(SOLUTION, t) for t in weak + [real]]
    results = check_programs([p for r in runs for p in r], timeout=10)
    passed = [r.passed for r in results]
    verdicts = [fooled(passed[3 * i:3 * i + 3]) for i in range(4)]
    assert verdicts == [["returns_none", "raises"], ["returns_none", "raises"], ["returns_none"], []]
    assert passed[0::3] == [True] * 4  # every real run passes: only the stand-ins tell them apart
    assert list(WRONG_IMPLEMENTATIONS) == ["returns_none", "raises"]
    assert programs(SOLUTION, "assert True") == [SOLUTION.rstrip() + "\n\n\nassert True\n"]  # nothing to stand in for
