"""Fixtures: a scripted OpenAI-compatible server on loopback, seed code that exercises every rule."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from codetron.preprocess.generate.selfalign.prompts import PREFIXES

# --- the seed corpus ------------------------------------------------------------------------------

GOOD = '''\
import math
from collections import Counter


def scale(values, factor):
    """Multiply every value by factor."""
    return [v * factor for v in values]


def mean(values):
    """The arithmetic mean of a non-empty list."""
    return math.fsum(values) / len(values)


def clamp(x, lo, hi):
    """Limit x to the closed range [lo, hi]."""
    return max(lo, min(hi, x))


def shout(text):
    """Upper-case text and add an exclamation mark."""
    return text.upper() + "!"


def area(width, height):
    """Area of a width x height rectangle."""
    return width * height


def greet(name):
    """A greeting for name."""
    return "Hello, " + name


def tally(words):
    """How often each word occurs, most common first."""
    return Counter(words).most_common()


def undocumented(x):
    return x
'''
"""Seven documented functions that pass every seed rule (one per run scenario) and one without a docstring."""

RULES = '''\
def now():
    """The current tick (no arguments)."""
    return 1


def log(message):
    """Print message (returns nothing)."""
    print(message)


def later(x):
    """Not written yet."""
    raise NotImplementedError


def soon(x):
    """Half done."""
    # TODO: handle negative x
    return x


def long_one(x):
    """Too long with --max-lines 25."""
    x = x * 2 + 1
    x = x * 3 + 1
    x = x * 4 + 1
    x = x * 5 + 1
    x = x * 6 + 1
    x = x * 7 + 1
    x = x * 8 + 1
    x = x * 9 + 1
    x = x * 10 + 1
    x = x * 11 + 1
    x = x * 12 + 1
    x = x * 13 + 1
    x = x * 14 + 1
    x = x * 15 + 1
    x = x * 16 + 1
    x = x * 17 + 1
    x = x * 18 + 1
    x = x * 19 + 1
    x = x * 20 + 1
    x = x * 21 + 1
    x = x * 22 + 1
    x = x * 23 + 1
    x = x * 24 + 1
    x = x * 25 + 1
    x = x * 26 + 1
    x = x * 27 + 1
    x = x * 28 + 1
    x = x * 29 + 1
    return x
'''
"""One function per per-function drop rule: no_arguments, no_return, placeholder (x2), too_long."""

DUPLICATES = '''\
def scale(values, factor):
    """Multiply every value by factor."""
    return [v * factor for v in values]


def weighted_total(items, weights, default_weight):
    """Sum of item values times their weights; items without a weight use default_weight."""
    total = 0.0
    for name, value in items.items():
        weight = weights.get(name, default_weight)
        if weight < 0:
            raise ValueError("negative weight for " + name)
        total += value * weight
    return total


def weighted_sum(items, weights, default_weight):
    """Sum of item values times their weights; items without a weight use default_weight."""
    total = 0.0
    for name, value in items.items():
        weight = weights.get(name, default_weight)
        if weight < 0:
            raise ValueError("negative weight given for " + name)
        total += value * weight
    return total


def private_helper(rows, column):
    """Sum one column of a table given as a list of dicts, skipping rows without it."""
    return sum(row[column] for row in rows if column in row and row[column] is not None)
'''
"""An exact copy of GOOD's scale, a function and its near copy (renamed, one word more), and a function the
MBPP-shaped benchmark holds."""

MBPP_LIKE = [{"task_id": 901, "text": "Write a function to sum one column of a table of dicts.",
              "code": "def private_helper(rows, column):\n    return sum(row[column] for row in rows if column in row "
                      "and row[column] is not None)",
              "test_list": ["assert private_helper([{'a': 1}], 'a') == 1"]}]
"""A benchmark record in MBPP's schema (made up here: the real MBPP is not shipped offline)."""


def humaneval_seed() -> str:
    """HumanEval/0 written out as a documented function: must be dropped as contaminated."""
    from codetron.preprocess.quality import load_humaneval

    p = load_humaneval()[0]
    return p["prompt"] + p["canonical_solution"]


def write_corpus(root: Path) -> Path:
    """good.py (seven seeds), pkg/ with one file per rule, a broken file and HumanEval/0."""
    (root / "pkg").mkdir(parents=True)
    (root / "good.py").write_text(GOOD)
    (root / "pkg" / "rules.py").write_text(RULES)
    (root / "pkg" / "dups.py").write_text(DUPLICATES)
    (root / "pkg" / "broken.py").write_text("def broken(:\n    return 1\n")
    (root / "pkg" / "bench.py").write_text(humaneval_seed())
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture(scope="module")
def module_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


# --- the scripted server ---------------------------------------------------------------------------

def block(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def answer(solution: str | None, tests: str | None, prose: str = "Here is a solution.") -> str:
    parts = [prose]
    if solution is not None:
        parts.append(block(solution))
    if tests is not None:
        parts += ["[Tests]", block(tests)]
    return "\n\n".join(parts) + "\n\nThe tests cover the examples."


DOUBLE = "def double_all(xs):\n    return [2 * x for x in xs]"
DOUBLE_FOR = "def double_all(xs):\n    out = []\n    for x in xs:\n        out.append(x + x)\n    return out"
DOUBLE_TESTS = "assert double_all([1, 2]) == [2, 4]\nassert double_all([]) == []"

RESPONSES = {
    # scale: one response per response rule, and two that pass (selection picks one of them)
    "double_all": [
        "I would use a list comprehension, no code needed.",                            # response_unparsed
        answer(None, DOUBLE_TESTS),                                                    # no_solution
        answer("def double_all(xs):\n    # TODO: validate input\n    return [2 * x for x in xs]",
               DOUBLE_TESTS),                                                          # incomplete
        answer(DOUBLE, "assert True\nassert [2] == [2]"),                              # vacuous_tests
        answer("def double_all(xs):\n    return list(xs)", DOUBLE_TESTS),              # tests_failed
        answer("def double_all(xs):\n    while True:\n        pass", DOUBLE_TESTS),     # tests_timeout
        answer(DOUBLE, DOUBLE_TESTS, "A list comprehension doubles each item."),       # passes
        answer(DOUBLE_FOR, DOUBLE_TESTS, "A loop appends each doubled item."),         # passes
        (answer(DOUBLE, DOUBLE_TESTS), "length"),                                      # truncated
        # issue 23's three: they reach double_all, yet hold for a stand-in returning None
        answer(DOUBLE, "assert callable(double_all)\nassert double_all is not None"),    # tests_pass_wrong_impl
        answer(DOUBLE, "assert double_all([2]) == [4] or True"),                       # tests_pass_wrong_impl
    ],
    # area: nothing passes -> no_passing_response
    "rect_area": [answer("def rect_area(w, h):\n    return w + h", "assert rect_area(2, 3) == 6")],
    # greet: passes, but its instruction is a near-duplicate of scale's (output dedup)
    "double_every": [answer("def double_every(xs):\n    return [2 * x for x in xs]",
                            "assert double_every([3]) == [6]")],
    # tally: passes, but the pair quotes HumanEval/0 (output decontamination)
    "has_close_elements": None,
    # mean's twin scenario is concepts_unparsed, clamp's instruction_empty, shout's mentions the snippet
}

DOUBLE_TASK = ("Return a new list in which every element of the input list xs is doubled, keeping the order of the "
               "elements and leaving the input list itself unchanged. Write it as a Python function named `{name}(xs)`.")
"""scale's and greet's instructions: near-duplicates (estimated Jaccard 0.89 on word 5-grams)."""

INSTRUCTIONS = {
    "scale": DOUBLE_TASK.format(name="double_all"),
    "area": "Write a Python function `rect_area(w, h)` that returns the area of a w by h rectangle.",
    "greet": DOUBLE_TASK.format(name="double_every"),
    "shout": "Rewrite the code snippet above so that it also handles lists of strings.",
    "clamp": "",
}


def concepts_for(snippet: str) -> str:
    name = re.search(r"^def (\w+)", snippet, re.M).group(1)
    return "" if name == "mean" else f"{name} logic, return values, arithmetic"


def instruction_for(prop: str) -> str:
    from codetron.preprocess.quality import load_humaneval

    name = re.search(r"concepts: (\w+) logic", prop).group(1)
    if name == "tally":
        return "Complete the following function.\n" + load_humaneval()[0]["prompt"]
    return INSTRUCTIONS[name]


def responses_for(instruction: str, n: int) -> list[str]:
    if "has_close_elements" in instruction:
        from codetron.preprocess.quality import load_humaneval

        p = load_humaneval()[0]
        out = [answer(p["prompt"] + p["canonical_solution"],
                      "assert has_close_elements([1.0, 2.0, 2.1], 0.2)\nassert not has_close_elements([1.0, 3.0], 0.5)")]
    else:
        name = re.search(r"`(\w+)\(", instruction).group(1)
        out = RESPONSES[name]
    return [out[i % len(out)] for i in range(n)]


def new_item(prompt: str) -> tuple[str, str]:
    """(step, the new item's field) of a few-shot prompt: the text after the last example header."""
    last = prompt.rsplit("## Example ", 1)[1].split("\n", 1)[1]
    for step, prefix in PREFIXES.items():
        # the published pipeline strips the prompt's end: it stops at "### Concepts", no newline
        head, tail = prefix.split("{")[0], prefix.split("}")[1].rstrip()
        if last.startswith(head) and last.endswith(tail):
            return step, last[len(head):len(last) - len(tail)]
    raise AssertionError(f"unrecognised prompt tail: {last[-200:]!r}")


def scripted_reply(prompt: str, n: int) -> tuple[str, list[str]]:
    step, field = new_item(prompt)
    if step == "S->C":
        return step, [concepts_for(field)] * n
    if step == "C->I":
        return step, [instruction_for(field)] * n
    return step, responses_for(field, n)


@pytest.fixture(scope="module")
def fake_server():
    """start(faults=[], delay=0) -> a running scripted server (``scripted_reply``) with .url, .posts, .bodies
    and .steps (requests per pipeline step); ``delay`` seconds before each reply, 503s for ``faults``."""
    from tests.helpers.openai_server import scripted_server

    with contextlib.ExitStack() as running:

        def start(faults=(), delay=0.0):
            steps: dict[str, int] = {}

            def reply(prompt: str, body: dict) -> list[str]:
                step, texts = scripted_reply(prompt, body.get("n", 1))
                with srv.count_lock:
                    steps[step] = steps.get(step, 0) + 1
                return texts

            srv = running.enter_context(scripted_server(reply, faults=list(faults), delay=delay))
            srv.steps = steps
            return srv

        yield start
