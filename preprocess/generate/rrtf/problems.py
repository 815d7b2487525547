"""RRTF problems: prompts with unit tests, and the PanGu-Coder2 prompt format.

Two record schemas, one JSON object per line (``task_id`` and ``test`` always required):

* HumanEval schema -- ``prompt`` (a function signature with its docstring) and ``entry_point``.
  The model input is eval's ``pangu-coder2`` format: the docstring in a triple-quoted string, then the
  declaration; the response continues the declaration (the function body).
* Instruction schema (Evol-Instruct / CodeAlpaca with tests) -- ``instruction`` (and optional
  ``entry_point``). The model input is the instruction in a triple-quoted docstring; the response
  is the whole program.

``test`` is either a string (a ``def check(candidate)`` function as in HumanEval, or top-level
``assert`` statements) or a list of assert strings (MBPP's ``test_list``). See ``scoring.py`` for
how each assert becomes one test.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from codetron.errors import CodetronError

INSTRUCTION_STOP = ('\n"""', "\nif __name__")
"""Stops for whole-program responses: a new docstring prompt or a script's main guard."""


def is_humaneval(problem: dict) -> bool:
    return "prompt" in problem and "instruction" not in problem


def read_problems(path: str | Path) -> list[dict]:
    """Read and validate a problems jsonl; errors name ``file:line`` and the field."""
    from codetron.eval.problems import read_task_records

    return read_task_records(path, _check_schema, what="problems")


def _check_schema(rec: dict, where: str) -> None:
    test = rec.get("test")
    if not (isinstance(test, str) or (isinstance(test, list) and all(isinstance(t, str) for t in test))):
        raise CodetronError(f"{where}: field 'test' must be a string or a list of strings")
    if "instruction" in rec:
        if not isinstance(rec["instruction"], str) or not rec["instruction"].strip():
            raise CodetronError(f"{where}: field 'instruction' must be a non-empty string")
    elif not (isinstance(rec.get("prompt"), str) and isinstance(rec.get("entry_point"), str)):
        raise CodetronError(f"{where}: needs 'instruction', or 'prompt' and 'entry_point' (HumanEval schema)")
    if "entry_point" in rec and not isinstance(rec["entry_point"], str):
        raise CodetronError(f"{where}: field 'entry_point' must be a string")


def pangu_prompt(problem: dict) -> str:
    """The model input in the PanGu-Coder2 format (shared with eval's ``pangu-coder2`` prompt)."""
    from codetron.eval.formats import render
    from codetron.eval.formats.pangu_coder2 import PANGU_TEMPLATE

    if is_humaneval(problem):
        return render(problem, "pangu-coder2")[0]
    return PANGU_TEMPLATE.format(docstring=textwrap.indent(problem["instruction"].strip(), "    "), declaration="")


def stop_sequences(problem: dict) -> tuple[str, ...]:
    from codetron.eval.formats import get_format

    return get_format("pangu-coder2").stop if is_humaneval(problem) else INSTRUCTION_STOP


def normalize_response(problem: dict, text: str) -> str:
    """A response as the training target: fenced chat answers to instruction problems become their
    code; everything is cut at the format's stop sequences."""
    from codetron.eval.prompts import extract_code, truncate

    if "```" in text and not is_humaneval(problem):
        text = extract_code(text, problem.get("entry_point"))
    return truncate(text, stop_sequences(problem))


def program_code(problem: dict, prompt: str, response: str) -> str:
    """The code under test for a response: the prompt (docstring + declaration) it continues, then
    the response. A fenced chat answer runs its code block instead; for a HumanEval-schema problem
    after the original prompt, so the block redefines the entry point (as eval does)."""
    from codetron.eval.prompts import extract_code

    if "```" in response:
        code = extract_code(response, problem.get("entry_point"))
        return problem["prompt"] + "\n" + code if is_humaneval(problem) else prompt + code
    return prompt + response
