"""Each elimination rule with examples it keeps and examples it drops, alone and inside the evolver."""
from __future__ import annotations

import pytest

from codetron.preprocess.generate.evolve.eliminator import (check_instruction, check_response, copied_prompt_words,
                                                   is_sorry_short, is_stopwords_only, parse_judgement)
from codetron.preprocess.generate.evolve.evolver import EvolConfig, run_evol
from codetron.preprocess.generate.evolve.templates import COPIED_PROMPT_WORDS, METHODS, equality_prompt, evolution_prompt
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.store import RecordLog

PARENT = "Write a function that returns the largest element of a list."


@pytest.mark.parametrize("text", [
    "Here is the #Rewritten Prompt#: write a function that returns the largest element.",
    "The given prompt asks for the maximum; also handle empty lists.",
    "Rewritten prompt: find the maximum of a list without using max().",
    "#Given Question# Write a function ...",
])
def test_copied_prompt_words_dropped(text):
    assert copied_prompt_words(text)
    assert check_instruction(PARENT, text) == "copied_prompt_words"


@pytest.mark.parametrize("text", [
    "Write a function that returns the largest element of a list without using max(), in O(n) time.",
    "Prompt the user for a number and print whether the given number is even.",  # 'given' alone is fine
])
def test_copied_prompt_words_kept(text):
    assert copied_prompt_words(text) is None
    assert check_instruction(PARENT, text) is None


def test_every_template_marker_is_a_leak_phrase():
    # the markers our own templates use must be caught if the model echoes them
    prompt = evolution_prompt("pangu", "complexity", PARENT)
    for marker in ("#Given Question#", "#Rewritten Question#", "Programming Contest Designer"):
        assert marker in prompt and copied_prompt_words(marker)
    assert len(METHODS) == 5 and all(p == p.lower() for p in COPIED_PROMPT_WORDS)


def test_no_information_gain_identical_text():
    assert check_instruction(PARENT, "  write a FUNCTION that returns the largest\n element of a list. ") \
        == "no_information_gain"
    assert check_instruction(PARENT, PARENT + " Ignore negative numbers.") is None
    assert check_instruction(PARENT, "   \n") == "empty_instruction"


@pytest.mark.parametrize("answer,verdict", [
    ("Equal", True), ("equal.", True), ("**Equal**", True), ("Judgement: Equal", True), ('"Equal"', True),
    ("Equal - only the wording is different", True),  # the old parser read "different" here
    ("Not Equal", False), ("not  equal.", False), ("Not Equal\nThe second adds a constraint.", False),
    ("Your judgement: Not Equal", False),
    # everything else is unparsed: the question allowed exactly two answers
    ("NotEqual", None), ("Yes", None), ("No", None), ("Different", None), ("They are the same.", None),
    ("unequal", None), ("Equally difficult", None), ("Equal or Not Equal", None), ("banana", None), ("", None),
])
def test_judgement_parsing_is_strict(answer, verdict):
    assert parse_judgement(answer) is verdict


def test_judge_prompt_asks_wizardlm_question():
    prompt = equality_prompt("first task", "second task")
    assert "exactly Equal or Not Equal" in prompt and "constraints and requirements" in prompt
    assert "depth and breadth" in prompt and prompt.index("first task") < prompt.index("second task")


def test_sorry_short_rule():
    assert is_sorry_short("Sorry, I cannot help with that.")
    assert check_response("I'm SORRY but this task is impossible.") == "sorry_short"
    long_sorry = "Sorry for the long answer. " + " ".join(["def f(x): return x"] * 25)  # 80+ words
    assert len(long_sorry.split()) >= 80 and not is_sorry_short(long_sorry)
    assert check_response(long_sorry) is None
    assert check_response("def largest(xs):\n    return max(xs)") is None


def test_stopwords_only_rule():
    for text in ("", "...", "the of and, to!", "It is what it is.", "Yes, I will."):
        assert is_stopwords_only(text), text
        assert check_response(text) == "stopwords_only"
    for text in ("return max(xs)", "The answer is 42.", "Use sorted."):
        assert not is_stopwords_only(text), text
        assert check_response(text) is None


def _script(prompt, params):
    """Evolution replies chosen by the seed's text; the judge and the responder by the instruction."""
    if prompt.startswith("Make the following programming question"):
        question = prompt.split("#Given Question#\n", 1)[1].split("\n\n#Rewritten Question#", 1)[0]
        if "LEAK" in question:
            return "#Rewritten Prompt#\n" + question
        if "SAME" in question:
            return question
        return question + " Also handle empty input."
    if prompt.startswith("Below are two instructions"):
        return "Equal" if "JUDGE-EQUAL" in prompt else "Not equal"
    if "SORRY" in prompt:
        return "Sorry, I can't do that."
    if "STOP" in prompt:
        return "It is, and it will be."
    return "def solve(xs):\n    return sorted(xs)"


def test_eliminator_inside_the_evolver(tmp_path, scripted):
    seeds = [Seed(name, f"Task {name}: sort a list.") for name in ("LEAK", "SAME", "JUDGE-EQUAL", "SORRY", "STOP", "OK")]
    backend = scripted(_script)
    cfg = EvolConfig(rounds=2, concurrency=3)
    with RecordLog(tmp_path / "log.jsonl", cfg.header()) as log:
        result = run_evol(seeds, backend, cfg, log, progress=False)
        recs = dict(log.records)
    assert result.status.complete and result.rounds_done == 2
    expect = {"LEAK": "copied_prompt_words", "SAME": "no_information_gain", "JUDGE-EQUAL": "no_information_gain",
              "SORRY": "sorry_short", "STOP": "stopwords_only", "OK": None}
    for sid, rule in expect.items():
        assert recs[f"{sid}:1"]["rule"] == rule, sid
        assert recs[f"{sid}:1"]["status"] == ("kept" if rule is None else "dropped")
    # a dropped lineage evolves its parent again; a kept one evolves its own evolution
    assert recs["LEAK:2"]["parent"] == "Task LEAK: sort a list."
    assert recs["OK:2"]["parent"] == recs["OK:1"]["instruction"] == "Task OK: sort a list. Also handle empty input."
    assert recs["OK:2"]["instruction"].endswith("empty input. Also handle empty input.")
    assert result.stats["eliminated"] == {"empty_instruction": 0, "copied_prompt_words": 2,
                                          "truncated_instruction": 0, "no_information_gain": 4, "judge_unparsed": 0,
                                          "truncated_response": 0, "sorry_short": 2, "stopwords_only": 2}
    assert result.stats["judge"] == {"equal": 2, "not_equal": 6, "unparsed": 0}
    assert result.stats["rounds"]["1"] == {"evolved": 6, "kept": 1, "dropped": 5}
    # calls: evolve for all 12; judge unless a cheap rule fired (LEAK, SAME: 4); respond only if still alive
    assert len(backend.calls) == 12 + (12 - 4) + (12 - 4 - 2)
    # the judge ran on the text pair, greedy
    assert any("First instruction:\nTask OK" in c for c in backend.calls)


def _judged(prompt, params):
    """Evolutions that gain text; a judge whose answer depends on the seed's tag; truncation by tag."""
    if prompt.startswith("Make the following programming question"):
        question = prompt.split("#Given Question#\n", 1)[1].split("\n\n#Rewritten Question#", 1)[0]
        if "CUT-Q" in question:
            return ("Write a function that, given a list of intervals, merges every", "length")
        return question + " Also handle empty input."
    if prompt.startswith("Below are two instructions"):
        for tag, answer in (("YES", "Yes"), ("NOTEQ", "NotEqual"), ("DASH", "Equal - wording is different")):
            if f"Task {tag}" in prompt:
                return answer
        return "Not Equal"
    if "CUT-R" in prompt:
        return ("def merge(intervals):\n    out = []\n    for a, b in sorted(", "length")
    return "def solve(xs):\n    return sorted(xs)"


def _run(tmp_path, cfg, seeds, backend, judge=None):
    with RecordLog(tmp_path / f"log-{cfg.judge_unparsed}-{cfg.keep_truncated}.jsonl", cfg.header()) as log:
        result = run_evol(seeds, backend, cfg, log, progress=False, judge=judge)
        return result, {k.split(":")[0]: v for k, v in log.records.items()}


def test_unparsed_judge_answers_drop_by_default_and_are_counted(tmp_path, scripted):
    seeds = [Seed(t, f"Task {t}: sort a list.") for t in ("YES", "NOTEQ", "DASH", "GOOD")]
    result, recs = _run(tmp_path, EvolConfig(rounds=1), seeds, scripted(_judged))
    # "Yes" and "NotEqual" used to keep the evolution; "Equal - wording is different" used to read as different
    assert {t: recs[t]["rule"] for t in recs} == {"YES": "judge_unparsed", "NOTEQ": "judge_unparsed",
                                                  "DASH": "no_information_gain", "GOOD": None}
    assert recs["NOTEQ"]["judge_answer"] == "NotEqual" and recs["GOOD"]["judge"] == "not_equal"
    assert result.stats["judge"] == {"equal": 1, "not_equal": 1, "unparsed": 2}
    assert result.stats["eliminated"]["judge_unparsed"] == 2
    kept, recs = _run(tmp_path, EvolConfig(rounds=1, judge_unparsed="keep"), seeds, scripted(_judged))
    assert {t for t in recs if recs[t]["status"] == "kept"} == {"YES", "NOTEQ", "GOOD"}
    assert kept.stats["judge"]["unparsed"] == 2 and kept.stats["eliminated"]["judge_unparsed"] == 0


def test_truncated_generations_are_dropped_unless_kept(tmp_path, scripted):
    seeds = [Seed(t, f"Task {t}: merge intervals.") for t in ("CUT-Q", "CUT-R", "GOOD")]
    backend = scripted(_judged)
    result, recs = _run(tmp_path, EvolConfig(rounds=1), seeds, backend)
    assert {t: recs[t]["rule"] for t in recs} == {"CUT-Q": "truncated_instruction", "CUT-R": "truncated_response",
                                                  "GOOD": None}
    # a truncated instruction is neither judged nor answered
    assert not any("merges every" in c for c in backend.calls[1:] if not c.startswith("Make the following"))
    assert result.stats["eliminated"]["truncated_instruction"] == result.stats["eliminated"]["truncated_response"] == 1
    _, recs = _run(tmp_path, EvolConfig(rounds=1, keep_truncated=True), seeds, scripted(_judged))
    assert all(r["status"] == "kept" for r in recs.values())


def test_judge_runs_on_its_own_backend(tmp_path, scripted):
    generator = scripted(lambda p, params: "Not Equal" if p.startswith("Below") else _judged(p, params))
    judge = scripted(lambda p, params: "Equal")
    seeds = [Seed("GOOD", "Task GOOD: sort a list."), Seed("OTHER", "Task OTHER: reverse a list.")]
    result, recs = _run(tmp_path, EvolConfig(rounds=1), seeds, generator, judge=judge)
    assert len(judge.calls) == 2 and all(c.startswith("Below are two instructions") for c in judge.calls)
    assert not any(c.startswith("Below") for c in generator.calls)
    assert {r["rule"] for r in recs.values()} == {"no_information_gain"}  # the judge's verdict counted
