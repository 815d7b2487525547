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


def test_rank_writes_every_pair_of_different_scores():
    R = ADD_RESPONSES
    wrong = "    return 100\n"  # runs, fails all 4 tests: partial, 2 + 0/4
    samples = [
        # the toy query: teacher 3, students 2, 0, 3 (a passing variant), plus a duplicate
        _sample(ADD, [R["pass"]], [wrong, R["compile"], R["pass"] + "\n", wrong]),
        # a student beats the teacher: it is the top response (L_ft target), chosen against the teacher
        _sample({**REV}, [REV_RESPONSES["partial"]], [REV_RESPONSES["pass"], REV_RESPONSES["compile"]]),
    ]
    pairs, stats = rank([ADD, REV], samples, timeout=3, progress=False)
    add = [p for p in pairs if p["task_id"] == "toy/add"]
    assert [p["scores"] for p in add] == [[3.0, 2.0], [3.0, 0.0], [2.0, 0.0], [3.0, 2.0], [3.0, 0.0]]
    assert [(p["chosen"], p["rejected"]) for p in add] == [
        (R["pass"], wrong), (R["pass"], R["compile"]), (wrong, R["compile"]),
        (R["pass"] + "\n", wrong), (R["pass"] + "\n", R["compile"])]  # the teacher and the tied student: no pair
    assert [p["sources"] for p in add[:3]] == [["teacher", "student"]] * 2 + [["student", "student"]]
    rev = [p for p in pairs if p["task_id"] == "toy/rev"]
    assert [(p["scores"], p["sources"]) for p in rev] == [
        ([3.0, 2.5], ["student", "teacher"]), ([3.0, 0.0], ["student", "student"]), ([2.5, 0.0], ["teacher", "student"])]
    assert rev[0]["chosen"] == REV_RESPONSES["pass"] and not any(p["ft_only"] for p in pairs)
    assert stats["kept"] == 2 and stats["best_is_student"] == 1 and stats["pairs"] == 8 and stats["ft_only"] == 0
    assert stats["teacher_tiers"] == {"compile": 0, "runtime": 0, "partial": 1, "pass": 1}
    assert stats["student_tiers"] == {"compile": 2, "runtime": 0, "partial": 2, "pass": 2}
    assert stats["best_tiers"] == {"compile": 0, "runtime": 0, "partial": 0, "pass": 2}


def test_all_tied_problem_keeps_its_l_ft():
    R = ADD_RESPONSES
    pairs, stats = rank([ADD], [_sample(ADD, [R["pass"]], [R["pass"], R["pass"] + "\n"])], timeout=3, progress=False)
    assert len(pairs) == 1 and pairs[0]["ft_only"] and pairs[0]["chosen"] == pairs[0]["rejected"] == R["pass"]
    assert pairs[0]["scores"] == [3.0, 3.0] and stats["ft_only"] == 1 and stats["kept"] == 1


def test_best_of_several_teachers_is_used():
    R = ADD_RESPONSES
    pairs, stats = rank([ADD], [_sample(ADD, [R["runtime"], R["pass"]], [R["partial"]])], timeout=3, progress=False)
    # every response is ranked: pass > partial > runtime, the passing teacher on top
    assert [p["scores"] for p in pairs] == [[3.0, 1.0], [3.0, 2.5], [2.5, 1.0]] and pairs[0]["chosen"] == R["pass"]


def test_bad_samples_file_names_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(_sample(ADD, ["x"], [])) + "\n" + json.dumps({"task_id": "a", "prompt": "p", "teacher": "no"}) + "\n")
    with pytest.raises(CodetronError, match=r"s.jsonl:2: field 'teacher' must be a list"):
        read_samples([str(path)])
