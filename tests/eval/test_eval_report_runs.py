"""`eval report` keeps every run: runs scored from generation files carry a label (``--label``, else
the file's folder/name) and what the files beside them record (model, prompt, temperature); three
runs of one task give three rows in both tables, none merged."""
from __future__ import annotations

import json

from codetron.eval.cli import main
from codetron.eval.problems import read_problems


def table(md: str, title: str) -> list[str]:
    """The data rows of the first markdown table after ``title``."""
    lines = md.split(title, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| ")) + 2  # after head and rule
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("| ")), len(lines))
    return lines[start:end]


def test_three_runs_from_generation_files_stay_three(tmp_path, capsys):
    problems = read_problems()[:4]
    right = [p["prompt"] + p["canonical_solution"] for p in problems]
    wrong = [p["prompt"] + "    return None\n" for p in problems]
    # three runs of humaneval: 4/4, 2/4 and 1/4 correct
    runs = {"a": right, "b": right[:2] + wrong[2:], "c": right[:1] + wrong[1:]}
    for name, codes in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "generations.json").write_text(json.dumps([[c] for c in codes]))
    # b was written by `codetron eval generate` (its config beside it), c by bigcode-evaluation-harness
    (tmp_path / "b" / "generation_config.json").write_text(json.dumps(
        {"model": "/ckpt/hf/sc2-3b", "task": "humaneval", "prompt": "continue", "temperature": 0.2, "n_samples": 1}))
    (tmp_path / "c" / "evaluation_results.json").write_text(json.dumps(
        {"humaneval": {"pass@1": 0.25}, "config": {"model": "bigcode/starcoderbase-1b", "temperature": 0.8,
                                                    "n_samples": 1, "tasks": "humaneval"}}))
    metrics = []
    for name in runs:
        out = tmp_path / f"ex-{name}"
        label = ["--label", "baseline"] if name == "a" else []
        assert main(["execute", "--generations", str(tmp_path / name / "generations.json"), "--tasks", "0-3",
                     "--out", str(out)] + label) == 0
        metrics.append(str(out / "metrics.json"))
    configs = [json.loads(open(m).read())["config"] for m in metrics]
    assert [c["label"] for c in configs] == ["baseline", "b/generations.json", "c/generations.json"]
    assert (configs[1]["model"], configs[1]["temperature"]) == ("/ckpt/hf/sc2-3b", 0.2)
    assert (configs[2]["model"], configs[2]["temperature"]) == ("bigcode/starcoderbase-1b", 0.8)
    assert [json.loads(open(m).read())["humaneval"]["pass@1"] for m in metrics] == [1.0, 0.5, 0.25]

    capsys.readouterr()
    assert main(["report", *metrics, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    runs_table = table(md, "# Evaluation report")
    assert runs_table == [
        "| baseline | ? | ? | humaneval | 4 | 1 | ? | 100.00 | 0 |",
        "| b/generations.json | sc2-3b | continue | humaneval | 4 | 1 | 0.2 | 50.00 | 0 |",
        "| c/generations.json | starcoderbase-1b | ? | humaneval | 4 | 1 | 0.8 | 25.00 | 0 |"]
    by_language = table(md, "## By task and language")
    assert by_language == ["| baseline | ? | ? | ? | 1 | humaneval | 100.0 |",
                           "| b/generations.json | sc2-3b | continue | 0.2 | 1 | humaneval | 50.0 |",
                           "| c/generations.json | starcoderbase-1b | ? | 0.8 | 1 | humaneval | 25.0 |"]


def test_same_named_runs_are_not_merged(tmp_path):
    """Two metrics files that agree on every name (one task, one label) still give two rows; two
    languages of one run share a row."""
    files = []
    for i, (task, p1) in enumerate([("humaneval", 0.5), ("humaneval", 0.8), ("multiple-js", 0.3)]):
        f = tmp_path / f"m{i}.json"
        f.write_text(json.dumps({task: {"pass@1": p1}, "config": {"model": "m", "label": "same", "prompt": "continue",
                                                                  "temperature": 0.2, "n_samples": 1}}))
        files.append(str(f))
    assert main(["report", *files, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert table(md, "## By task and language") == [
        "| same | m | continue | 0.2 | 1 | humaneval | 50.0 |  |",
        "| same | m | continue | 0.2 | 1 | humaneval | 80.0 |  |",
        "| same | m | continue | 0.2 | 1 | multiple |  | 30.0 |"]


def test_report_counts_verdicts_that_differ_from_the_reference_rule(tmp_path):
    """metrics.json's strict_vs_harness_differ reaches the report; a harness file without it shows -."""
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"humanevalsynthesize-cpp": {"pass@1": 0.5, "strict_vs_harness_differ": 3},
                                "config": {"model": "m", "prompt": "instruct", "n_samples": 1}}))
    theirs = tmp_path / "evaluation_results.json"
    theirs.write_text(json.dumps({"humanevalsynthesize-cpp": {"pass@1": 0.6}, "config": {"model": "m"}}))
    assert main(["report", str(ours), str(theirs), "--out", str(tmp_path / "rep")]) == 0
    rows = table((tmp_path / "rep" / "report.md").read_text(), "# Evaluation report")
    assert [r.rsplit("|", 2)[-2].strip() for r in rows] == ["3", "-"], rows
