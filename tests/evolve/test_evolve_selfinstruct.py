"""Self-instruct keeps only answers whose own tests pass in the eval sandbox."""
from __future__ import annotations

import json

import pytest

from codetron.preprocess.generate.evolve.cli import main
from codetron.preprocess.generate.evolve.selfinstruct import (SelfInstructConfig, parse_concepts, parse_instruction,
                                                     run_self_instruct, split_response)
from codetron.preprocess.generate.output import OutputConfig, training_records, write_output
from codetron.preprocess.generate.seeds import Seed, extract_functions, load_code_seeds
from codetron.preprocess.generate.store import RecordLog

GOOD = """[Reasoning]
Walk the list once.

[Implementation]
```python
def running_max(xs):
    out, best = [], None
    for x in xs:
        best = x if best is None or x > best else best
        out.append(best)
    return out
```

[Tests]
```python
assert running_max([1, 3, 2, 5]) == [1, 3, 3, 5]
assert running_max([]) == []
```
"""
WRONG = GOOD.replace("x > best", "x < best")  # a bug the tests catch
NO_ASSERT = GOOD.replace("assert running_max([1, 3, 2, 5]) == [1, 3, 3, 5]\nassert running_max([]) == []",
                         "print(running_max([1, 2]))")
HANGS = GOOD.replace("    return out", "    while True:\n        pass")
CRASHES = GOOD.replace("out, best = [], None", "out, best = [], undefined_name")
NO_CODE = "I would write a loop that keeps the maximum so far."
GOOD_TESTS = "assert running_max([1, 3, 2, 5]) == [1, 3, 3, 5]\nassert running_max([]) == []"
# the case: a wrong implementation whose tests check nothing passed the execution filter
VACUOUS = WRONG.replace(GOOD_TESTS, "assert True")
# tests that call the function but accept anything it does (no result checked, every error caught):
# the static check of codetron.preprocess.generate.testcheck rejects them before execution
SWALLOWED = WRONG.replace(GOOD_TESTS, "try:\n    running_max([1, 2])\nexcept Exception:\n    pass\nassert True")
# tests that reach the function yet hold for any function (issue 23): only the stand-ins catch them
WEAK = WRONG.replace(GOOD_TESTS, "assert callable(running_max)\nassert running_max is not None")
TRUNCATED = (GOOD, "length")  # complete-looking text, but the server says it was cut at max_tokens

ANSWERS = {"good": [GOOD], "wrong": [WRONG], "noassert": [NO_ASSERT], "hangs": [HANGS], "crashes": [CRASHES],
           "nocode": [NO_CODE], "second": [WRONG, GOOD], "vacuous": [VACUOUS], "weak": [WEAK], "swallowed": [SWALLOWED],
           "truncated": [TRUNCATED], "weakthengood": [WEAK, GOOD]}
"""Seed name -> the answers the scripted model gives for that seed's task."""


def script(prompt, params):
    if prompt.startswith("Read the Python code below"):
        name = prompt.split("def seed_", 1)[1].split("(", 1)[0]
        return "Concepts: " + ("" if name == "noconcepts" else f"loops, running maximum, {name}")
    if prompt.startswith("Write one self-contained"):
        name = prompt.split("running maximum, ", 1)[1].split(".", 1)[0]
        return f"Instruction: Write running_max(xs) returning the running maximum of xs. [{name}]"
    name = prompt.rsplit("[", 1)[1].rstrip("]")
    answers = ANSWERS[name]
    return (answers * params.n)[:params.n]


def seed(name: str) -> Seed:
    return Seed(name, f'def seed_{name}(xs):\n    """Doc."""\n    return max(xs)\n')


def test_only_passing_answers_are_kept(tmp_path, scripted):
    names = list(ANSWERS) + ["noconcepts"]
    cfg = SelfInstructConfig(responses=2, exec_timeout=2.0, chunk=3, concurrency=2)
    backend = scripted(script)
    with RecordLog(tmp_path / "log.jsonl", cfg.header()) as log:
        status, stats = run_self_instruct([seed(n) for n in names], backend, cfg, log, progress=False)
        recs = {r["seed_id"]: r for r in log.records.values()}
    assert status.complete
    kept = {sid for sid, r in recs.items() if r["status"] == "kept"}
    assert kept == {"good", "second", "weakthengood"}
    assert {sid: r["rule"] for sid, r in recs.items() if sid not in kept} == {
        "wrong": "tests_failed", "hangs": "tests_failed", "crashes": "tests_failed", "noassert": "no_tests",
        "nocode": "no_tests", "noconcepts": "no_concepts", "vacuous": "tests_vacuous", "swallowed": "tests_vacuous",
        "weak": "tests_pass_wrong_impl", "truncated": "truncated_response"}
    # the sandbox's verdicts are recorded: a wrong answer fails its assert, a hang is stopped
    assert {e["status"] for e in recs["hangs"]["exec"]} <= {"timeout", "failed"}, recs["hangs"]["exec"]
    assert [e["detail"] for e in recs["wrong"]["exec"]] == ["AssertionError"] * 2
    assert [e["detail"].split(":")[0] for e in recs["crashes"]["exec"]] == ["NameError"] * 2
    assert [(e["answer"], e["status"]) for e in recs["second"]["exec"]] == [(0, "failed"), (1, "passed")]
    # weak tests pass against their (wrong) implementation and against both stand-ins too
    assert [(e["status"], e["passes_wrong_impl"]) for e in recs["weak"]["exec"]] == \
        [("passed", ["returns_none", "raises"])] * 2
    assert [e["passes_wrong_impl"] for e in recs["good"]["exec"]] == [[], []]
    assert recs["weakthengood"]["output"] == GOOD.strip() and "vacuous" not in {r["seed_id"] for r in recs.values()
                                                                               if r["status"] == "kept"}
    assert "exec" not in recs["vacuous"]  # never executed: its tests use nothing of the implementation
    assert "exec" not in recs["swallowed"]
    assert recs["second"]["output"] == GOOD.strip() and "assert running_max" in recs["good"]["tests"]
    assert stats == {"items": 13, "kept": 3, "dropped": 10,
                     "eliminated": {"no_concepts": 1, "no_instruction": 0, "truncated_response": 1, "no_tests": 2,
                                    "tests_vacuous": 2, "tests_failed": 3, "tests_pass_wrong_impl": 1}}
    rows = training_records(list(recs.values()))
    out = tmp_path / "self.jsonl"
    counts = write_output(rows, str(out), OutputConfig(dedup="exact"))
    # the kept tasks have the same instruction text apart from the tag, so all survive exact dedup
    assert counts["written"] == 3
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert all("```python" in r["output"] and r["concepts"] for r in written)


def test_resume_does_not_regenerate(tmp_path, scripted):
    cfg = SelfInstructConfig(exec_timeout=2.0)
    seeds = [seed("good"), seed("wrong")]
    with RecordLog(tmp_path / "log.jsonl", cfg.header()) as log:
        run_self_instruct(seeds[:1], scripted(script), cfg, log, progress=False)
    again = scripted(script)
    with RecordLog(tmp_path / "log.jsonl", cfg.header()) as log:
        status, stats = run_self_instruct(seeds, again, cfg, log, progress=False)
    assert status.complete and stats["items"] == 2
    assert len(again.calls) == 3 and all("seed_good" not in c and "[good]" not in c for c in again.calls)


def test_names_under_test_and_wrong_programs():
    from codetron.preprocess.generate.testcheck import names_under_test, programs

    impl = "def helper(x):\n    return x\n\ndef f(x):\n    return helper(x) + 1\n\nclass Box:\n    pass\n"
    assert names_under_test(impl, "assert f(1) == 2\nassert isinstance(Box(), Box)") == ["Box", "f"]
    assert names_under_test(impl, "assert True\nassert 1 + 1 == 2") == []
    assert names_under_test(impl, "assert list(map(f, [1])) == [2]") == ["f"]  # used, not called: still exercised
    assert names_under_test("def (:", "assert f(1)") is None
    _, none, raises = programs(impl, "assert f(1) == 2")
    ns: dict = {}
    exec(none.replace("assert f(1) == 2", ""), ns)
    assert ns["f"](1) is None and ns["helper"](3) == 3
    with pytest.raises(NotImplementedError):
        exec(raises.replace("assert f(1) == 2", "f(1)"), {})


def test_parsers():
    assert parse_concepts("Sure.\nConcepts: recursion, memoization , dict lookup.") == \
        ["recursion", "memoization", "dict lookup"]
    assert parse_concepts("Concepts: recursion, memoization") == ["recursion", "memoization"]
    assert parse_concepts("") == []
    assert parse_instruction("Here you go.\nInstruction: Write f(x).\nIt must be fast.") == \
        "Write f(x).\nIt must be fast."
    impl, tests = split_response(GOOD)
    assert impl.startswith("def running_max") and tests.startswith("assert")
    assert split_response("```python\na = 1\n```\ntext\n```python\nassert a == 1\n```") == ("a = 1\n", "assert a == 1\n")
    assert split_response(NO_CODE) is None


def test_code_seeds_from_python_files(tmp_path):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "m.py").write_text('def documented(a):\n    """Add one."""\n    b = a + 1\n    return b\n\n'
                              'def undocumented(a):\n    return a\n\nclass C:\n    pass\n')
    (src / "broken.py").write_text("def (:\n")
    assert [n for n, _ in extract_functions((src / "m.py").read_text())] == ["documented"]
    seeds = load_code_seeds([str(src)])
    assert len(seeds) == 1 and seeds[0].text.startswith("def documented") and seeds[0].id.startswith("m.py:documented:")
    jl = tmp_path / "code.jsonl"
    jl.write_text(json.dumps({"content": "def f():\n    return 1"}) + "\n")
    assert load_code_seeds([str(jl)])[0].id == "code.jsonl:1"


def test_cli_self_instruct_against_server(server, tmp_path, tiny_model_dir):
    """The real command: a random model writes no tests, so nothing passes and nothing is kept."""
    snippets = tmp_path / "code.jsonl"
    snippets.write_text("".join(json.dumps({"code": f"def f{i}(x):\n    '''Doc.'''\n    return x + {i}"}) + "\n"
                                for i in range(3)))
    out = tmp_path / "self.jsonl"
    rc = main(["self-instruct", str(snippets), "-o", str(out), "--base-url", server.url, "--max-tokens", "8",
               "--quiet", "--responses", "2"])
    assert rc == 0 and out.read_text() == ""
    stats = json.loads((tmp_path / "self.stats.json").read_text())
    assert stats["items"] == 3 and stats["kept"] == 0
    assert sum(stats["eliminated"].values()) == 3
    assert stats["requests"] == 1 + 3 * 3 - stats["eliminated"]["no_concepts"] * 2 \
        - stats["eliminated"]["no_instruction"]
