"""Each language's tasks end to end through the sandbox: the hand-made problems in tests/eval/data
(canonical solutions pass, buggy ones fail) for HumanEvalPack Synthesize/Fix and MultiPL-E, and a
missing toolchain reported once per task in one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from codetron.errors import CodetronError
from codetron.eval.evaluate import ExecConfig, evaluate
from codetron.eval.languages import toolchain_missing
from codetron.eval.tasks import get_task

DATA = Path(__file__).parent / "data"
# default sandbox limits: each language's compile step has its own file-size limit (Rust binaries > 16 MB)
CONFIG = ExecConfig(timeout=20, ks=(1,))


def needs(language: str) -> None:
    missing = toolchain_missing(language)
    if missing:
        pytest.skip(f"cannot check {language} here: {missing}")


# a body that ends the process with status 0 before the tests ran (Go's harness header imports no os)
EARLY_EXIT = {"python": "    import os\n    os._exit(0)\n", "js": "  process.exit(0)\n}\n\n",
              "java": "        System.exit(0);\n        return 0;\n    }\n}", "cpp": "    exit(0);\n}\n",
              "rust": "    std::process::exit(0);\n}\n"}


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["python", "js", "java", "go", "cpp", "rust"])
def test_humanevalpack_verdicts(lang):
    """Hand-written problems in the published schema (JS tests call console.assert, as published):
    canonical passes, buggy fails, an early exit fails Codetron's verdict; ``harness_status`` is the
    reference runner's, which passes an early exit everywhere but in Python."""
    needs(lang)
    task = get_task(f"humanevalsynthesize-{lang}")
    problems = task.load(DATA / f"humanevalpack_{lang}.jsonl")
    fix = get_task(f"humanevalfixdocs-{lang}")
    # Fix: the answer continues the (stripped) prompt with a body; the buggy body must fail
    codes = [[task.canonical(p), p["prompt"] + p["buggy_solution"]] for p in problems]
    codes[0].append(fix.postprocess(problems[0], "instruct", "\n" + problems[0]["canonical_solution"]))
    if lang in EARLY_EXIT:
        codes[1].append(problems[1]["prompt"] + EARLY_EXIT[lang])
    result = evaluate(problems, codes, CONFIG, progress=False, task=task)
    verdicts = [[s["passed"] for s in p["samples"]] for p in result.per_problem]
    early = [False] if lang in EARLY_EXIT else []
    assert verdicts == [[True, False, True], [True, False, *early], [True, False]], [p["samples"] for p in result.per_problem]
    harness = [[s["harness_status"] == "passed" for s in p["samples"]] for p in result.per_problem]
    early_harness = [lang != "python"] if lang in EARLY_EXIT else []
    assert harness == [[True, False, True], [True, False, *early_harness], [True, False]], result.per_problem
    assert result.strict_vs_harness_differ == sum(early_harness)
    if lang == "js":  # console.assert printed "Assertion failed" and exited 0
        buggy = result.per_problem[0]["samples"][1]
        assert buggy["error_kind"] == "assertion" and buggy["detail"].endswith("Assertion failed"), buggy


@pytest.mark.slow
@pytest.mark.parametrize("suffix,file", [("js", "multiple_js.json"), ("rs", "multiple_rs.jsonl")])
def test_multiple_verdicts(suffix, file):
    task = get_task(f"multiple-{suffix}")
    needs(task.language)
    problems = task.load(DATA / file)
    good = [task.postprocess(p, "continue", "\n" + p["canonical"] + "\n\n// trailing example") for p in problems]
    bad = [task.postprocess(p, "continue", "\n" + p["canonical"].replace("x * x", "x + x").replace("x + y", "x - y")
                            .replace("x > y", "x < y")) for p in problems]
    result = evaluate(problems, [[g, b] for g, b in zip(good, bad)], CONFIG, progress=False, task=task)
    assert [[s["passed"] for s in p["samples"]] for p in result.per_problem] == [[True, False]] * 3


def test_missing_toolchain_is_one_line_per_task(monkeypatch):
    """The sandbox refuses a language without its toolchain before running anything; the task turns
    that into one line naming itself (not one failure per sample)."""
    monkeypatch.setattr("codetron.eval.execution.toolchain_missing",
                        lambda lang: f"{lang.name}: toolchain missing (go not on PATH); install golang-go")
    task = get_task("humanevalsynthesize-go")
    problems = task.load(DATA / "humanevalpack_go.jsonl")
    with pytest.raises(CodetronError) as err:
        evaluate(problems, [[task.canonical(p)] for p in problems], ExecConfig(timeout=5), progress=False, task=task)
    message = str(err.value)
    assert "\n" not in message and message.startswith("humanevalsynthesize-go: go: toolchain missing (go not on PATH)")
