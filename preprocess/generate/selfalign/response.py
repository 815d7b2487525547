"""Reading one I->R response: its solution and its self-validation tests.

A response is free text with ```python blocks, then a ``[Tests]`` line and exactly one ```python block
of tests (the published sanitiser's shape). ``parse_response`` returns the sanitised response (cut
right after the tests block: what follows is the model rambling on), the solution code (every block
before ``[Tests]`` that compiles, joined: the published execution filter runs the same) and the tests,
or the drop reason.

Whether the tests test anything is ``codetron.preprocess.generate.testcheck``'s call (shared with
``evolve self-instruct``).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

RESPONSE_RULES = ("response_unparsed", "no_solution", "incomplete")
"""Why a response is dropped by parsing, in checking order."""

INCOMPLETE_MARKERS = re.compile(r"\btodo\b|\bfixme\b|your code (?:here|goes here)|notimplemented", re.I)
"""Text that marks an unfinished answer (the published sanitiser's list, as whole words: "mastodon"
holds "todo")."""

_BLOCK = re.compile(r"^```[ \t]*(python|py)?[ \t]*\n(.*?)^```", re.S | re.M)
_TESTS = "[Tests]"


@dataclass(slots=True)
class Parsed:
    response: str
    """The sanitised response (training text)."""
    solution: str
    """Solution code (compilable blocks before [Tests])."""
    tests: str
    """The tests block."""


def compiles(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def parse_response(text: str) -> Parsed | str:
    """A ``Parsed`` response, or the name of the rule it fails."""
    text = text.strip()
    if text.count(_TESTS) != 1:
        return "response_unparsed"
    at = text.index(_TESTS)
    blocks = list(_BLOCK.finditer(text, at))
    if len(blocks) != 1 or text.count("```", at) != 2 or not compiles(blocks[0].group(2)):
        return "response_unparsed"
    before = [m.group(2) for m in _BLOCK.finditer(text[:at])]
    solution = "\n\n".join(code.strip("\n") for code in before if compiles(code) and code.strip())
    if not solution:
        return "no_solution"
    kept = text[:blocks[0].end()].rstrip()
    if INCOMPLETE_MARKERS.search(kept):
        return "incomplete"
    return Parsed(kept, solution + "\n", blocks[0].group(2))


