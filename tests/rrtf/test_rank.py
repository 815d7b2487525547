"""Ranking on hand-made responses of every tier, for both problem schemas."""
import json

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.generate.rrtf.problems import pangu_prompt, program_code
from codetron.preprocess.generate.rrtf.rank import rank, read_samples
from codetron.preprocess.generate.rrtf.scoring import score_codes, split_tests

ADD = {
    "task_id": "toy/add", "entry_point": "add",
    "prompt": 'def add(a, b):\n    """Return the sum of a and b.\n    >>> add(1, 2)\n    3\n    """\n',
    "test": "METADATA = {'author': 'x'}\n\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"
            "    assert candidate(0, 0) == 0\n    for x in range(3):\n        assert candidate(x, 5) == x + 5\n"
            "    assert candidate(-1, 1) == 0\n",
}
REV = {  # instruction schema, MBPP-style list of asserts
    "task_id": "toy/rev", "instruction": "Write a function rev(s) that returns the string s reversed.",
    "test": ["assert rev('abc') == 'cba'", "assert rev('') == ''", "assert rev('ab') == 'ba'", "assert rev('x') == 'x'"],
}

ADD_RESPONSES = {  # body continuing the PanGu-Coder2 prompt's declaration
    "compile": "    return a +\n",
    "runtime": "    return undefined_name\n",
    "partial": "    return a + b if a < 1 else 7\n",  # passes 2 of 4 tests
    "pass": "    return a + b\n",
}
REV_RESPONSES = {  # whole programs
    "compile": "def rev(s)\n    return s[::-1]\n",
    "runtime": "import nonexistent_module_xyz\ndef rev(s):\n    return s[::-1]\n",
    "partial": "def rev(s):\n    return s\n",  # right for '' and 'x'
    "pass": "```python\ndef rev(s):\n    return s[::-1]\n```",  # a fenced chat answer counts too
}


def test_pangu_prompt_is_a_triple_quoted_docstring():
    p = pangu_prompt(ADD)
    assert p.startswith('"""\n') and '\n"""\ndef add(a, b):\n' in p and "Return the sum of a and b." in p
    q = pangu_prompt(REV)
    assert q == '"""\n    Write a function rev(s) that returns the string s reversed.\n"""\n'


def test_test_units_split_check_body():
    units = split_tests(ADD)
    assert [t for _, t in units] == [False, True, True, True, True]  # METADATA setup, then 4 tests
    assert units[3][0].startswith("for x in range(3):")
    with pytest.raises(CodetronError, match="toy/none: field 'test' has no assert"):
        split_tests({"task_id": "toy/none", "test": "x = 1\n"})


@pytest.fixture(scope="module")
def scored():
    jobs = []
    for problem, responses in ((ADD, ADD_RESPONSES), (REV, REV_RESPONSES)):
        prompt = pangu_prompt(problem)
        for tier, resp in responses.items():
            jobs.append((tier, problem["task_id"], (problem, program_code(problem, prompt, resp))))
    scores = score_codes([j[2] for j in jobs], timeout=3, progress=False)
    return {(tid, tier): s for (tier, tid, _), s in zip(jobs, scores)}


@pytest.mark.parametrize("tid", ["toy/add", "toy/rev"])
@pytest.mark.parametrize("tier", ["compile", "runtime", "partial", "pass"])
def test_each_tier(scored, tid, tier):
    s = scored[(tid, tier)]
    assert s.tier == tier, s
    expected = {"compile": 0.0, "runtime": 1.0, "partial": 2.5, "pass": 3.0}[tier]
    assert s.score == pytest.approx(expected), s


def test_timeout_and_early_exit_are_runtime():
    prompt = pangu_prompt(ADD)
    codes = [program_code(ADD, prompt, "    while True:\n        pass\n"),
             program_code(ADD, prompt, "    return a + b\nimport os\nos._exit(0)\n")]
    s = score_codes([(ADD, c) for c in codes], timeout=1.5, progress=False)
    assert [x.tier for x in s] == ["runtime", "runtime"]
    assert "timed out" in s[0].detail


def _sample(problem, teacher, students):
    return {"task_id": problem["task_id"], "prompt": pangu_prompt(problem),
            "teacher": [{"response": t} for t in teacher],
            "students": [{"response": s, "temperature": 0.8, "index": i} for i, s in enumerate(students)]}


def test_rank_pairs_drops_and_ties():
    R = ADD_RESPONSES
    samples = [
        # teacher passes; students of every lower tier, a duplicate and one that also passes (tie)
        _sample(ADD, [R["pass"]], [R["compile"], R["runtime"], R["partial"], R["runtime"], R["pass"] + "\n"]),
        # teacher only partial, a student passes: dropped
        _sample({**REV}, [REV_RESPONSES["partial"]], [REV_RESPONSES["pass"], REV_RESPONSES["compile"]]),
    ]
    pairs, stats = rank([ADD, REV], samples, timeout=3, progress=False)
    assert stats["dropped_teacher_below_student"] == 1 and stats["kept"] == 1
    assert [p["tiers"] for p in pairs] == [["pass", "compile"], ["pass", "runtime"], ["pass", "partial"], ["pass", "pass"]]
    assert [p["scores"] for p in pairs] == [[3.0, 0.0], [3.0, 1.0], [3.0, 2.5], [3.0, 3.0]]
    # on equal scores the teacher is still chosen
    assert pairs[-1]["chosen"] == R["pass"] and pairs[-1]["rejected"] == R["pass"] + "\n"
    assert stats["pairs_zero_weight"] == 1
    assert stats["teacher_tiers"] == {"compile": 0, "runtime": 0, "partial": 1, "pass": 1}
    assert stats["student_tiers"] == {"compile": 2, "runtime": 2, "partial": 1, "pass": 2}
    assert stats["pair_student_tiers"] == {"compile": 1, "runtime": 1, "partial": 1, "pass": 1}


def test_best_of_several_teachers_is_used():
    R = ADD_RESPONSES
    pairs, stats = rank([ADD], [_sample(ADD, [R["runtime"], R["pass"]], [R["partial"]])], timeout=3, progress=False)
    assert len(pairs) == 1 and pairs[0]["chosen"] == R["pass"] and pairs[0]["scores"] == [3.0, 2.5]


def test_bad_samples_file_names_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(_sample(ADD, ["x"], [])) + "\n" + json.dumps({"task_id": "a", "prompt": "p", "teacher": "no"}) + "\n")
    with pytest.raises(CodetronError, match=r"s.jsonl:2: field 'teacher' must be a list"):
        read_samples([str(path)])
