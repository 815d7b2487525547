"""Each elimination rule with examples it keeps and examples it drops, alone and inside the evolver."""
from __future__ import annotations

import pytest

from codetron.preprocess.generate.evolve.eliminator import (check_instruction, check_response, copied_prompt_words,
                                                   is_sorry_short, is_stopwords_only, parse_judgement)
from codetron.preprocess.generate.evolve.evolver import EvolConfig, run_evol
from codetron.preprocess.generate.evolve.templates import COPIED_PROMPT_WORDS, METHODS, evolution_prompt
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
    ("Equal", True), ("equal.", True), ("They are the same.", True),
    ("Not Equal", False), ("Different", False), ("unequal", False), ("not the same", False),
    ("banana", None), ("", None),
])
def test_judgement_parsing(answer, verdict):
    assert parse_judgement(answer) is verdict


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
    if prompt.startswith("Here are two instructions"):
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
    assert result.stats["eliminated"] == {"empty_instruction": 0, "copied_prompt_words": 2, "no_information_gain": 4,
                                          "sorry_short": 2, "stopwords_only": 2}
    assert result.stats["rounds"]["1"] == {"evolved": 6, "kept": 1, "dropped": 5}
    # calls: evolve for all 12; judge unless a cheap rule fired (LEAK, SAME: 4); respond only if still alive
    assert len(backend.calls) == 12 + (12 - 4) + (12 - 4 - 2)
    # the judge ran on the text pair, greedy
    assert any("First instruction:\nTask OK" in c for c in backend.calls)
