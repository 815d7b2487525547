"""Prompt formats render every HumanEval problem into valid code prefixes; extraction and truncation."""
from __future__ import annotations

import pytest

from codetron.errors import CodetronError
from codetron.eval.execution import check_programs
from codetron.eval.formats import FORMATS, postprocess, render
from codetron.eval.prompts import STOP_CONTINUE, extract_code, program_for, split_problem, to_completion, truncate


def test_every_format_renders_every_problem(humaneval):
    for fmt in FORMATS:
        for p in humaneval:
            text, prefix = render(p, fmt)
            assert text.endswith(prefix)
            if fmt != "continue":
                assert p["entry_point"] in text


def test_exact_texts(humaneval):
    """The instruction formats render HumanEval as the harness's humanevalsynthesize-python: the whole
    prompt (signature and docstring) after the answer marker, end stripped (Codetron used to put the
    bare declaration there, matching 0/164 harness prompts)."""
    p = humaneval[0]
    parts = split_problem(p)
    assert parts.signature == "has_close_elements(numbers: List[float], threshold: float) -> bool"
    assert parts.declaration == "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
    assert parts.docstring.startswith("Check if in given list of numbers, are any two numbers closer")
    inp = ("Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool` "
           "to solve the following problem:\n" + parts.docstring)
    body = p["prompt"].rstrip()
    assert body.endswith('True\n    """')
    assert render(p, "octocoder") == (f"Question: {inp}\n\nAnswer:\n{body}", body)
    assert render(p, "starchat")[0] == f"<|system|>\n<|end|>\n<|user|>\n{inp}<|end|>\n<|assistant|>\n{body}"
    assert render(p, "instruct")[0] == f"{inp}\n\n{body}"
    assert render(p, "wizardcoder")[0] == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{inp}\n\n### Response:\n{body}")
    text, prefix = render(p, "pangu-coder2")
    assert text.startswith('"""\n    Check if in given list') and text.endswith(parts.declaration) and prefix == text


@pytest.mark.parametrize("fmt", ["octocoder", "pangu-coder2"])
def test_prefix_plus_canonical_body_passes(humaneval, fmt):
    """The code prefix each format hands the model, completed by the canonical body, is correct code:
    this checks the declaration split on all 164 prompts (helpers, decorators, multi-line defs)."""
    programs = []
    for p in humaneval:
        _, prefix = render(p, fmt)
        # the model continues the stripped prompt: its output starts with the whitespace cut off
        output = p["prompt"][len(prefix):] + p["canonical_solution"] if fmt == "octocoder" else p["canonical_solution"]
        code = postprocess(p, fmt, prefix, output)
        programs.append(program_for(p, code))
    results = check_programs(programs, timeout=10.0, n_workers=2)
    assert [p["task_id"] for p, r in zip(humaneval, results) if not r.passed] == []


def test_truncate_at_earliest_stop():
    out = "    return x\n\ndef other():\n    pass\nif __name__"
    assert truncate(out, STOP_CONTINUE) == "    return x\n"
    assert truncate("    return 1<|end|>junk", FORMATS["starchat"].stop) == "    return 1"
    assert truncate("abc", []) == "abc"


def test_extract_code_from_chat_answers():
    answer = ("Here is a helper:\n```\nprint(1)\n```\nAnd the solution:\n```python\ndef add(a, b):\n"
              "    return a + b\n```\nDone.")
    assert extract_code(answer, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code("```py\nx = 1\n```", "add") == "x = 1\n"
    assert extract_code("Sure!\n```python\ndef add(a, b):\n    return a +", "add") == "def add(a, b):\n    return a +"
    assert extract_code("def add(a, b): return a + b", "add") == "def add(a, b): return a + b"


def test_instruction_format_cuts_the_body_like_the_harness(humaneval):
    p = humaneval[2]  # truncate_number
    text, prefix = render(p, "octocoder")
    output = "\n    return number % 1.0\n\n\nprint(truncate_number(3.5))\n"
    code = postprocess(p, "octocoder", prefix, output)
    assert code == p["prompt"].rstrip() + "\n    return number % 1.0\n\n"
    completion = to_completion(p, code)
    [result] = check_programs([program_for(p, p["prompt"] + completion)], timeout=5.0, n_workers=1)
    assert result.passed, result


def test_unknown_format_and_bad_prompt():
    with pytest.raises(CodetronError, match="unknown prompt format"):
        render({"prompt": "", "entry_point": "f", "task_id": "x"}, "llama")
    with pytest.raises(CodetronError, match="T/1: entry point 'g'"):
        split_problem({"task_id": "T/1", "prompt": "def f():\n    '''doc'''\n", "entry_point": "g"})
    with pytest.raises(CodetronError, match="not valid Python"):
        split_problem({"task_id": "T/2", "prompt": "def f(:\n", "entry_point": "f"})


def test_formats_are_registered_modules_and_tasks_never_test_their_names():
    """One module per format in eval/formats/, found by discovery; every format's default task takes
    it; no task module compares a format name (the format object carries what differs)."""
    import ast
    from pathlib import Path

    from codetron.eval import formats
    from codetron.eval.formats.base import PromptFormat, register
    from codetron.eval.tasks import all_tasks

    assert sorted(FORMATS) == ["continue", "instruct", "octocoder", "pangu-coder2", "starchat", "starcoder2-instruct",
                               "wizardcoder"]
    folder = Path(formats.__file__).parent
    for name, fmt in FORMATS.items():
        module = type(fmt).__module__
        assert module.startswith("codetron.eval.formats.") and (folder / f"{module.rsplit('.', 1)[1]}.py").is_file()
        assert all_tasks()[fmt.default_task].check_format(name) == name
    with pytest.raises(CodetronError, match="prompt format 'octocoder' registered twice"):
        register(type("Again", (PromptFormat,), {"name": "octocoder", "source": "-"}))

    offending = []
    for path in sorted((Path(__file__).resolve().parents[2] / "eval" / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = {n.id for n in [node.left, *node.comparators] if isinstance(n, ast.Name)}
                if "fmt" in names and any(isinstance(c, (ast.Constant, ast.Tuple, ast.List)) for c in
                                          [node.left, *node.comparators]):
                    offending.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id == "fmt":
                offending.append(f"{path.name}:{node.lineno}")  # a table keyed by format name
    assert not offending, offending
