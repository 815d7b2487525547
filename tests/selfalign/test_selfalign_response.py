"""Few-shot file, prompt layout and response parsing (no server)."""
from __future__ import annotations

import random

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.generate.selfalign.prompts import DEFAULT_FEWSHOT, cut_answer, load_fewshot
from codetron.preprocess.generate.selfalign.response import parse_response
from codetron.preprocess.generate.testcheck import programs, vacuous_reason


def test_shipped_examples_pass_their_own_filter():
    """Every shipped example's response parses, has real tests, and passes them in the sandbox."""
    from codetron.eval.execution import check_programs

    fs = load_fewshot()
    assert len(fs.examples) == 4 and set(fs.systems) == {"S->C", "C->I", "I->R"}
    parsed = [parse_response(ex.response) for ex in fs.examples]
    assert all(not isinstance(p, str) for p in parsed), parsed
    assert [vacuous_reason(p.solution, p.tests) for p in parsed] == [None] * 4
    # the real run passes, the two stand-ins of testcheck fail
    runs = [programs(p.solution, p.tests) for p in parsed]
    assert [len(r) for r in runs] == [3] * 4
    results = check_programs([prog for r in runs for prog in r], timeout=10)
    assert [r.status for r in results] == ["passed", "failed", "failed"] * 4, [r.detail for r in results]
    # each [Solution] (code, then its tests) runs as well: I->R prompts may show it
    solutions = [ex.solution.removeprefix("```python\n").removesuffix("```") for ex in fs.examples]
    assert [r.status for r in check_programs(solutions, timeout=10)] == ["passed"] * 4
    # and each example's solution is what its tests check: breaking it makes them fail
    broken = [p.solution.replace("return ", "return None and ", 1) + "\n\n" + p.tests for p in parsed]
    assert [r.status for r in check_programs(broken, timeout=10)] == ["failed"] * 4
    text = DEFAULT_FEWSHOT.read_text()
    assert "Source: written for Codetron" in text and "bigcode-project/starcoder2-self-align" in text


def test_prompt_layout():
    fs = load_fewshot()
    prompt = fs.prompt("S->C", 2, random.Random(0), snippet="def f(x):\n    return x")
    system, body = prompt.split("\n\n## Example 1\n")
    assert system == fs.systems["S->C"]
    assert body.startswith("### Snippet\n") and body.count("\n\n## Example ") == 2
    # stripped at the end, as published: the model continues right after "### Concepts"
    assert prompt.endswith("## Example 3\n### Snippet\ndef f(x):\n    return x\n\n### Concepts")
    shown = [ex for ex in fs.examples if ex.snippet in body]
    assert len(shown) == 2 and all(", ".join(ex.property.concepts) in body for ex in shown)
    # the same rng state draws the same examples; I->R shows whole responses
    assert fs.prompt("S->C", 2, random.Random(0), snippet="x") == fs.prompt("S->C", 2, random.Random(0), snippet="x")
    prompt = fs.prompt("I->R", 1, random.Random(1), instruction="Do X.")
    assert "[Tests]" in prompt and prompt.endswith("## Example 2\n### Instruction\nDo X.\n\n### Response")
    prompt = fs.prompt("C->I", 1, random.Random(2), property="category: c\nlanguage: Python\nconcepts: a, b\n"
                                                             "difficulty: hard")
    # the examples' properties in the published order: category, language, concepts, difficulty
    assert "\n### Property\ncategory: code generation (" in prompt
    assert "\nlanguage: Python\nconcepts: " in prompt and "\ndifficulty: " in prompt
    assert prompt.endswith("concepts: a, b\ndifficulty: hard\n\n### Instruction")


def test_fewshot_file_errors_name_the_line(tmp_path):
    good = DEFAULT_FEWSHOT.read_text()
    cases = {
        "no system": (good.replace("### System: C->I", "### Sys: C->I"), "no system prompt for C->I"),
        "unknown step": (good.replace("### System: C->I", "### System: C->X"), r":20: unknown step 'C->X'"),
        "no solution marker": (good.replace("[Solution]\n", "", 1), r":26: example lacks a \[Solution\] line"),
        "property": (good.replace("difficulty: medium\n", "", 1), r":26: \[Property\] needs the lines"),
        "no examples": (good[:good.index("### Example 1")], "no examples"),
    }
    for name, (text, match) in cases.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        with pytest.raises(CodetronError, match=match):
            load_fewshot(path)
    # an example without a [Solution] is shown in S->C and C->I, never in I->R
    path = tmp_path / "nosolution.txt"
    body = good[good.index("[Solution]\n") + len("[Solution]\n"):good.index("[Response]\n")]
    path.write_text(good.replace(body, "\n", 1))
    fs = load_fewshot(path)
    assert fs.examples[0].solution is None and len(fs.pool("I->R")) == 3 and len(fs.pool("S->C")) == 4
    assert all(fs.examples[0].response not in fs.prompt("I->R", 3, random.Random(s), instruction="x")
               for s in range(20))


def test_cut_answer_at_the_next_example():
    # what a server honouring the stop "## Example" returns, for servers that ignore it
    assert cut_answer("a, b\n\n## Example 5\n### Snippet\nx") == "a, b"
    text = "## Approach\nUse a loop.\n\n### Instruction\nnext task\n"
    assert cut_answer(text) == text.strip()


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
