"""Few-shot file, prompt layout, response parsing and the vacuous-test check (no server)."""
from __future__ import annotations

import random

import pytest

from codetron.preprocess.generate.selfalign.prompts import DEFAULT_FEWSHOT, cut_answer, load_fewshot
from codetron.preprocess.generate.selfalign.response import parse_response, vacuous_reason


def test_shipped_examples_pass_their_own_filter():
    """Every shipped example's response parses, has real tests, and passes them in the sandbox."""
    from codetron.eval.execution import check_programs

    fs = load_fewshot()
    assert len(fs.examples) == 4 and set(fs.systems) == {"S->C", "C->I", "I->R"}
    parsed = [parse_response(ex.response) for ex in fs.examples]
    assert all(not isinstance(p, str) for p in parsed), parsed
    assert [vacuous_reason(p.solution, p.tests) for p in parsed] == [None] * 4
    results = check_programs([p.solution + "\n\n" + p.tests for p in parsed], timeout=10)
    assert [r.status for r in results] == ["passed"] * 4, [r.detail for r in results]
    # and each example's solution is what its tests check: breaking it makes them fail
    broken = [p.solution.replace("return ", "return None and ", 1) + "\n\n" + p.tests for p in parsed]
    assert [r.status for r in check_programs(broken, timeout=10)] == ["failed"] * 4
    text = DEFAULT_FEWSHOT.read_text()
    assert "Source: written for Codetron" in text and "bigcode-project/starcoder2-self-align" in text


def test_prompt_layout():
    fs = load_fewshot()
    system, body = fs.prompt("S->C", 2, random.Random(0), snippet="def f(x):\n    return x")
    assert system == fs.systems["S->C"]
    blocks = body.split("\n\n## Example ")
    assert blocks[0].startswith("## Example 1\n### Snippet\n") and len(blocks) == 3
    assert body.endswith("## Example 3\n### Snippet\ndef f(x):\n    return x\n\n### Concepts\n")
    shown = [ex for ex in fs.examples if ex.snippet in body]
    assert len(shown) == 2 and all(", ".join(ex.property.concepts) in body for ex in shown)
    # the same rng state draws the same examples; I->R shows whole responses
    assert fs.prompt("S->C", 2, random.Random(0), snippet="x") == fs.prompt("S->C", 2, random.Random(0), snippet="x")
    _, body = fs.prompt("I->R", 1, random.Random(1), instruction="Do X.")
    assert "[Tests]" in body and body.endswith("## Example 2\n### Instruction\nDo X.\n\n### Response\n")
    _, body = fs.prompt("C->I", 1, random.Random(2), property="category: c\nlanguage: Python\ndifficulty: hard\n"
                                                               "concepts: a, b")
    assert "\n### Property\ncategory: " in body and body.endswith("concepts: a, b\n\n### Instruction\n")


def test_cut_answer_at_the_next_example():
    assert cut_answer("a, b\n\n## Example 5\n### Snippet\nx", "S->C") == "a, b"
    assert cut_answer("Write f.\n### Snippet\nmore", "C->I") == "Write f."
    # a response may hold markdown headings of its own; only a new example or instruction ends it
    text = "## Approach\nUse a loop.\n\n### Instruction\nnext task"
    assert cut_answer(text, "I->R") == "## Approach\nUse a loop."


GOOD = "Use a set.\n\n```python\ndef uniq(xs):\n    return sorted(set(xs))\n```\n\n[Tests]\n```python\n" \
       "assert uniq([2, 1, 2]) == [1, 2]\n```\n\nDone, hope it helps."


@pytest.mark.parametrize("text,rule", [
    ("No code at all.", "response_unparsed"),
    (GOOD.replace("[Tests]", "Tests:"), "response_unparsed"),                                    # no marker
    (GOOD + "\n[Tests]\n```python\nassert 1\n```", "response_unparsed"),                        # two markers
    (GOOD.replace("assert uniq([2, 1, 2]) == [1, 2]", "assert uniq(("), "response_unparsed"),   # tests broken
    (GOOD.replace("\n```\n\nDone", "\n\nDone"), "response_unparsed"),                           # unclosed block
    (GOOD.split("[Tests]")[0].replace("```python\ndef", "```\ndef (") + "[Tests]" + GOOD.split("[Tests]")[1],
     "no_solution"),
    (GOOD.replace("Use a set.", "Use a set. TODO: handle None."), "incomplete"),
    (GOOD.replace("return sorted", "raise NotImplementedError\n    return sorted"), "incomplete"),
])
def test_parse_rejects(text, rule):
    assert parse_response(text) == rule


def test_parse_keeps_solution_tests_and_cuts_the_tail():
    p = parse_response("Mastodon-style: " + GOOD)  # "mastodon" holds "todo" but is no marker
    assert p.solution == "def uniq(xs):\n    return sorted(set(xs))\n"
    assert p.tests == "assert uniq([2, 1, 2]) == [1, 2]\n"
    assert p.response.endswith("assert uniq([2, 1, 2]) == [1, 2]\n```") and "hope it helps" not in p.response
    two = GOOD.replace("Use a set.", "Helper first:\n\n```python\nKEY = 1\n```\n\nThen:")
    assert parse_response(two).solution == "KEY = 1\n\ndef uniq(xs):\n    return sorted(set(xs))\n"


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
