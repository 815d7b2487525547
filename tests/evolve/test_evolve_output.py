"""The training file keeps every round of a lineage (WizardCoder trains on all of them) while still
removing the same task reached from two seeds; the summary line names every elimination rule."""
from __future__ import annotations

import json

import pytest

from codetron.preprocess.generate.evolve import cli
from codetron.preprocess.generate.output import OutputConfig, write_output

BASE = "Write a function that sorts a list of integers in descending order using merge sort"
ADD = " and make it handle empty lists and lists with duplicate values correctly."


def rows_of(lineage: str, rounds: list[str]) -> list[dict]:
    return [{"instruction": text, "input": "", "output": f"{lineage}-{r}", "seed_id": lineage, "round": r}
            for r, text in enumerate(rounds)]


def test_rounds_of_one_lineage_survive_dedup_across_lineages_does_not(tmp_path):
    a = rows_of("a", [BASE + ".", BASE + ADD, BASE + ADD + " Also return the number of swaps."])
    b = rows_of("b", [BASE + ".", "Parse an ISO-8601 date string into a datetime object without packages."])
    c = rows_of("c", [BASE + ADD.replace("correctly", "correctly, please")])  # near-copy of a's round 1
    rows = a + b + c
    out = tmp_path / "o.jsonl"
    cfg = OutputConfig(dedup="near", near_threshold=0.8, decontaminate=False)
    old = write_output(rows, str(out), cfg)  # everything against everything, as before
    assert old["written"] < 5  # later rounds of lineage a removed by its own earlier rounds
    counts = write_output(rows, str(out), cfg, lineage_key="seed_id")
    kept = [json.loads(x)["output"] for x in out.read_text().splitlines()]
    # a keeps all three rounds; b's seed is a's seed verbatim (exact), c is a near-copy of a's round 1
    assert kept == ["a-0", "a-1", "a-2", "b-1"]
    assert counts == {"candidates": 6, "written": 4, "contaminated": 0, "exact_duplicate": 1, "near_duplicate": 1}
    exact = write_output(rows, str(out), OutputConfig(dedup="exact", decontaminate=False), lineage_key="seed_id")
    assert exact["written"] == 5 and exact["exact_duplicate"] == 1


def _scripted_reply(prompt, params):
    if prompt.startswith("Make the following programming question"):
        question = prompt.split("#Given Question#\n", 1)[1].split("\n\n#Rewritten Question#", 1)[0]
        if question.startswith("Reverse the words"):
            return "#Rewritten Prompt# " + question
        return question + " Also make it handle empty input and report errors clearly."
    if prompt.startswith("Below are two instructions"):
        return "Not Equal"
    return "def solve(xs):\n    return sorted(xs, reverse=True)"


@pytest.mark.parametrize("within", [False, True])
def test_cli_keeps_every_round_by_default(tmp_path, monkeypatch, capsys, scripted, within):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in (
        {"id": "s", "instruction": BASE + ".", "output": "def f(xs): ..."},
        {"id": "leak", "instruction": "Reverse the words of a sentence while keeping punctuation in place.",
         "output": "def g(s): ..."})))
    monkeypatch.setattr(cli, "make_backend", lambda args: scripted(_scripted_reply))
    out = tmp_path / "evol.jsonl"
    args = ["evol", str(seeds), "-o", str(out), "--base-url", "http://unused", "--rounds", "3", "--quiet",
            "--no-decontaminate"] + (["--dedup-within-lineage"] if within else [])
    assert cli.main(args) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    lineage_s = [r["round"] for r in rows if r["seed_id"] == "s"]
    if within:  # the old behaviour: each round is a near-duplicate of the one before
        assert len(lineage_s) < 4
    else:
        assert lineage_s == [0, 1, 2, 3]
    line = capsys.readouterr().err.strip().splitlines()[-1]
    # per-rule counts in the last line, not only in the stats file
    assert "eliminated: copied_prompt_words 3;" in line and "judge: 0 equal, 3 not equal, 0 unparsed" in line
