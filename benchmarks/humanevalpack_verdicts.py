"""HumanEvalPack's published canonical and buggy solutions through the sandbox, all six languages.

Every canonical solution should pass and every buggy one fail. For each language the table gives
both counts by Codetron's verdict and by the reference runner's own rule (``harness_status``: the
rule of ``codetron.eval.languages.HARNESS_RULES``, what ``--harness-compatible`` scores), and every
exception is listed with both verdicts and the first line of its output, so each dataset quirk is
named with what the reference runner decides for it.

The published files are not in this repository. Give ``--data`` a folder holding, per language,
``humanevalpack_<lang>.jsonl`` (or ``<lang>.jsonl``) or the layout of the OctoPack repository
(``<lang>/data/humanevalpack.jsonl`` under ``evaluation/create/humaneval-x/data``; the same 164
records per language as the hub dataset ``bigcode/humanevalpack``). Without internet, copy those
files from a machine that has it.

    python benchmarks/humanevalpack_verdicts.py --data DIR [--languages python,js,java,go,cpp,rust]
                                                [--workers 2] [--limit N] [--out benchmarks/results]

Writes ``humanevalpack_verdicts.md`` (table + exceptions) and ``humanevalpack_verdicts.png`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LANGUAGES = ("python", "js", "java", "go", "cpp", "rust")
RUN_TIMEOUT = 60.0
"""Seconds per program's run step (the harness allows 10-300 s per language; none of these needs more)."""


def find_data(folder: Path, lang: str) -> Path:
    """The published file for ``lang`` in ``folder`` (flat or OctoPack layout)."""
    from codetron.errors import CodetronError

    for candidate in (folder / f"humanevalpack_{lang}.jsonl", folder / f"{lang}.jsonl",
                      folder / lang / "data" / "humanevalpack.jsonl"):
        if candidate.is_file():
            return candidate
    raise CodetronError(f"--data {folder}: no humanevalpack_{lang}.jsonl, {lang}.jsonl or {lang}/data/humanevalpack.jsonl")


def run_language(lang: str, path: Path, workers: int, limit: int | None) -> dict:
    """Canonical and buggy solutions of one language: counts, and every exception with both verdicts."""
    from codetron.eval.evaluate import ExecConfig, evaluate
    from codetron.eval.tasks import get_task

    task = get_task(f"humanevalsynthesize-{lang}")
    problems = task.load(path)[:limit]
    codes = [[task.canonical(p), p["prompt"] + p["buggy_solution"]] for p in problems]
    start = time.perf_counter()
    result = evaluate(problems, codes, ExecConfig(timeout=min(task.timeout, RUN_TIMEOUT), n_workers=workers, ks=(1,)),
                      progress=False, task=task)
    elapsed = time.perf_counter() - start
    row = {"language": lang, "problems": len(problems), "seconds": elapsed, "exceptions": [],
           "canonical passed": 0, "canonical passed (reference rule)": 0,
           "buggy failed": 0, "buggy failed (reference rule)": 0}
    for problem, entry in zip(problems, result.per_problem):
        for which, sample, expect in (("canonical", entry["samples"][0], "passed"),
                                      ("buggy", entry["samples"][1], "failed")):
            ours, theirs = sample["status"], sample["harness_status"]
            key = "canonical passed" if which == "canonical" else "buggy failed"
            row[key] += (ours == "passed") == (expect == "passed")
            row[f"{key} (reference rule)"] += (theirs == "passed") == (expect == "passed")
            # a timeout is a failing verdict too: only a verdict on the wrong side is an exception
            if (ours == "passed") != (expect == "passed") or (theirs == "passed") != (expect == "passed"):
                row["exceptions"].append({"task_id": problem["task_id"], "solution": which, "codetron": ours,
                                          "reference rule": theirs, "detail": sample["detail"][:160]})
    return row


def table(rows: list[dict]) -> str:
    lines = ["| language | problems | canonical passed | (reference rule) | buggy failed | (reference rule) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['language']} | {r['problems']} | {r['canonical passed']} | "
                     f"{r['canonical passed (reference rule)']} | {r['buggy failed']} | "
                     f"{r['buggy failed (reference rule)']} | {r['seconds']:.0f} |")
    lines += ["", "Exceptions (a canonical solution that does not pass or a buggy one that does not fail, by either "
              "verdict):", "", "| task | solution | Codetron | reference rule | detail |", "|---|---|---|---|---|"]
    for r in rows:
        for e in r["exceptions"]:
            detail = e["detail"].replace("|", "\\|")
            lines.append(f"| {e['task_id']} | {e['solution']} | {e['codetron']} | {e['reference rule']} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with the published HumanEvalPack files")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems per language")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    from benchmarks.chart import bar_chart
    from codetron.fileio import atomic_path

    langs = [x for x in args.languages.split(",") if x]
    rows = []
    for lang in langs:
        rows.append(run_language(lang, find_data(Path(args.data), lang), args.workers, args.limit))
        r = rows[-1]
        print(f"{lang}: canonical passed {r['canonical passed']}/{r['problems']}, buggy failed "
              f"{r['buggy failed']}/{r['problems']}, {len(r['exceptions'])} exceptions, {r['seconds']:.0f} s",
              file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "humanevalpack_verdicts.md") as tmp:
        Path(tmp).write_text("# HumanEvalPack canonical and buggy solutions\n\n" + text, encoding="utf-8")
    png = bar_chart([r["language"] for r in rows],
                    {"canonical passed": [100 * r["canonical passed"] / r["problems"] for r in rows],
                     "buggy failed": [100 * r["buggy failed"] / r["problems"] for r in rows]},
                    out / "humanevalpack_verdicts.png", "HumanEvalPack published solutions (Codetron's verdict)",
                    "% of problems")
    print(f"wrote {out / 'humanevalpack_verdicts.md'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
