"""``codetron selfalign``: StarCoder2-Instruct self-alignment data, from raw code to tested instruction pairs.

    codetron selfalign seeds @stdlib my_repos/ -o seeds.jsonl --benchmark mbpp.jsonl
    codetron selfalign run seeds.jsonl -o selfalign.jsonl --base-url http://127.0.0.1:8000/v1
    codetron selfalign smart selfalign.jsonl -o selfalign-smart.jsonl
    codetron preprocess instruct selfalign-smart.jsonl -o data/sc2-instruct --template starcoder2-instruct

``seeds`` writes SEEDS.jsonl (``{"id", "seed", "source", "name"}``) and SEEDS.stats.json. ``run`` writes,
next to ``-o OUT.jsonl``: OUT.records.jsonl (every seed's concepts, instruction, responses and verdicts:
the resume point) and OUT.stats.json (the funnel per stage, counts per drop reason, requests, output
filtering). OUT.jsonl is written only when the run is complete; a stopped run (Ctrl-C, spent
``--max-requests``, server gone) exits 3 and the same command resumes it. ``smart`` is the published
last data step (SMART sanitisation) on responses in the four-tag format; it writes OUT.jsonl and
OUT.stats.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from codetron.cli_args import add_field
from codetron.errors import CodetronError
from codetron.fileio import atomic_open
from codetron.preprocess.generate.backends import add_request_args
from codetron.preprocess.generate.output import OutputConfig
from codetron.preprocess.generate.selfalign.pipeline import SelfAlignConfig
from codetron.preprocess.generate.selfalign.seeds import SeedConfig
from codetron.preprocess.generate.selfalign.smart import SmartConfig

EXIT_INCOMPLETE = 3
"""Exit status of a run that stopped early and can be resumed."""

RUN_EPILOG = """\
pipeline (per seed): S->C the snippet's concepts; C->I an instruction with a seeded category and
difficulty; I->R --responses answers, each with self-validation tests after a [Tests] line. Answers
cut at --max-tokens (finish_reason not stop or eos_token) are dropped at every step, as are answers that do
not parse, are unfinished or whose tests test nothing (static check, then the tests run against wrong
stand-ins: one returning None, one raising); the rest run (solution, then tests) in the eval sandbox;
one passing answer per instruction is kept. The prompts are byte for byte the published pipeline's
(bigcode-project/starcoder2-self-align); --fewshot takes its few-shot file as it is.

servers: any OpenAI-compatible server -- vLLM (`vllm serve bigcode/starcoder2-15b`), TGI, llama.cpp
server, or `codetron serve MODEL_DIR`. --api completions (default) sends few-shot text for a base
model to continue, as StarCoder2-Instruct did; --api chat sends the same text as one user message.
OPENAI_API_KEY is sent if set.

resume: every seed is appended to OUT.records.jsonl as soon as its model calls return, before its
tests run; rerun the same command after a crash, a kill, Ctrl-C or --max-requests (seeds generated but
not yet executed are executed then, without new requests). Settings that shape the records must
match (--restart starts over).
"""

SMART_EPILOG = """\
per four-tag pair, as sanitize_data.py (bigcode-project/starcoder2-self-align 0b19dbcd, README:198): the
response becomes its sections without the tags; the tests go unless the instruction mentions tests;
explanation and reasoning each go with probability 0.5; whole-line comments leave the code blocks;
with probability 0.5 the instruction gets 1-5 of the asserts ("Your code should pass the following
assertion(s)"). Unfinished answers (todo, fixme, ...) are dropped. One random stream seeded with
--seed runs over the file in order; --seed 0 on the same file gives the official output byte for byte.
Pairs without the four tags (Codetron's own few-shot format) pass through unchanged and are counted.
"""


def _backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--base-url", required=True, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="model name sent to the server (default: the first in /v1/models)")
    add_field(g, SelfAlignConfig, "api", choices=("completions", "chat"))
    add_field(g, SelfAlignConfig, "concurrency")
    add_request_args(g, SelfAlignConfig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codetron selfalign", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="mode", required=True)

    s = sub.add_parser("seeds", help="gather seed functions from raw Python code",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Documented top-level Python functions found with ast, minus those that do "
                                   "not parse, take no argument, return nothing, are placeholders (TODO, pass), "
                                   "are too long, overlap HumanEval/MBPP, or are (near-)duplicates; optionally "
                                   "minus those pyright rejects.")
    s.add_argument("inputs", nargs="+", help=".py files, directories (@stdlib = this Python's standard library), "
                                             "or jsonl/parquet records with a content/code field")
    s.add_argument("-o", "--output", required=True, help="seeds jsonl (stats written beside it)")
    add_field(s, SeedConfig, "benchmarks", "--benchmark", dest="benchmarks", action="append", metavar="FILE",
              note="Repeatable.")
    add_field(s, SeedConfig, "decontaminate", "--no-decontaminate", negate=True)
    add_field(s, SeedConfig, "typecheck", choices=("auto", "pyright", "off"))
    for name in ("max_lines", "min_lines", "near_threshold"):
        add_field(s, SeedConfig, name)
    add_field(s, SeedConfig, "exclude", action="append", metavar="GLOB", note="Repeatable.")
    s.add_argument("--limit", type=int, help="write only the first N seeds")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("run", help="S->C, C->I, I->R against a server; execution filter; selection",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG,
                       description="Generate tested instruction/response pairs from seed functions.")
    r.add_argument("seeds", nargs="+", help="seeds jsonl from `codetron selfalign seeds` (or .py files/directories)")
    r.add_argument("-o", "--output", required=True, help="output jsonl (records log and stats beside it)")
    _backend_args(r)
    g = r.add_argument_group("generation")
    for name in ("responses", "fewshots", "fewshots_response"):
        add_field(g, SelfAlignConfig, name)
    g.add_argument("--fewshot", "--fewshot-file", dest="fewshot", metavar="FILE",
                   help="few-shot file in the published format, e.g. starcoder2-self-align's "
                        "prompts/self-ossinstruct-fewshot.txt (default: Codetron's own fewshot.txt)")
    add_field(g, SelfAlignConfig, "seed")
    add_field(g, SelfAlignConfig, "sampling.temperature")
    add_field(g, SelfAlignConfig, "sampling.top_p")
    add_field(g, SelfAlignConfig, "sampling.max_new_tokens", "--max-new-tokens", "--max-tokens")
    g.add_argument("--limit", type=int, help="use only the first N seeds")
    x = r.add_argument_group("execution")
    add_field(x, SelfAlignConfig, "exec_timeout")
    add_field(x, SelfAlignConfig, "exec_workers")
    o = r.add_argument_group("output")
    add_field(o, OutputConfig, "dedup", choices=("none", "exact", "near"))
    add_field(o, OutputConfig, "near_threshold")
    add_field(o, OutputConfig, "benchmarks", "--benchmark", dest="benchmarks", action="append", metavar="FILE",
              note="Repeatable.")
    add_field(o, OutputConfig, "decontaminate", "--no-decontaminate", negate=True)
    o.add_argument("--restart", action="store_true", help="discard OUT.records.jsonl and start over")
    o.add_argument("--quiet", action="store_true", help="no progress bars")

    m = sub.add_parser("smart", help="the published SMART sanitisation of four-tag responses",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SMART_EPILOG,
                       description="Rewrite pairs whose response has [Reasoning] [Implementation] [Explanation] "
                                   "[Tests] as StarCoder2-Instruct's SMART=1 sanitize_data.py does.")
    m.add_argument("input", help="jsonl pairs: instruction and output (selfalign run) or response")
    m.add_argument("-o", "--output", required=True, help="output jsonl (stats written beside it)")
    add_field(m, SmartConfig, "seed")
    return p


def _stem(output: str) -> str:
    return output[: -len(".jsonl")] if output.endswith(".jsonl") else output


def _write_json(path: str, obj: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def seeds_main(args) -> int:
    from codetron.preprocess.generate.selfalign.seeds import gather_seeds
    from codetron.records import write_jsonl

    cfg = SeedConfig(max_lines=args.max_lines, min_lines=args.min_lines, near_threshold=args.near_threshold,
                     decontaminate=args.decontaminate, benchmarks=tuple(args.benchmarks),
                     typecheck=args.typecheck, exclude=tuple(args.exclude))
    cfg.validate()
    report = gather_seeds(args.inputs, cfg, progress=not args.quiet)
    seeds = report.seeds[: args.limit] if args.limit is not None else report.seeds
    if not seeds:
        raise CodetronError(f"{', '.join(args.inputs)}: no seed survived the filters "
                            f"({json.dumps(report.stats()['dropped'])})")
    write_jsonl(args.output, seeds, ensure_ascii=False)
    stats = report.stats()
    stats["written"] = len(seeds)
    _write_json(_stem(args.output) + ".stats.json", stats)
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
    print(f"codetron selfalign: wrote {len(seeds)} seeds to {args.output} from {stats['functions']} documented "
          f"functions in {stats['files']} files (dropped: {dropped}; type check: {stats['typecheck']})",
          file=sys.stderr)
    return 0


def run_main(args) -> int:
    from codetron.preprocess.generate.backends import BackendError, BudgetExhausted, OpenAIBackend, request_policy
    from codetron.preprocess.generate.output import OutputConfig, training_records, write_output
    from codetron.preprocess.generate.seeds import load_code_seeds
    from codetron.preprocess.generate.selfalign.pipeline import run_selfalign, summary
    from codetron.preprocess.generate.selfalign.prompts import load_fewshot
    from codetron.preprocess.generate.selfalign.seeds import decontaminator
    from codetron.preprocess.generate.store import RecordLog

    from codetron.sampling import SamplingParams

    cfg = SelfAlignConfig(api=args.api, responses=args.responses, fewshots=args.fewshots,
                          fewshots_response=args.fewshots_response, seed=args.seed,
                          sampling=SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                                  max_new_tokens=args.max_new_tokens), exec_timeout=args.exec_timeout,
                          exec_workers=args.exec_workers, concurrency=args.concurrency,
                          max_failures=args.max_failures)
    fewshot = load_fewshot(args.fewshot)
    cfg.validate(fewshot)
    retry, budget = request_policy(args)
    for path in args.benchmarks:
        decontaminator([path])  # a bad benchmark file fails now, not after hours of generation
    out_cfg = OutputConfig(dedup=args.dedup, near_threshold=args.near_threshold, benchmarks=tuple(args.benchmarks),
                           decontaminate=args.decontaminate)
    seeds = load_code_seeds(args.seeds, args.limit)
    stem = _stem(args.output)
    records_path, stats_path = stem + ".records.jsonl", stem + ".stats.json"
    started = time.time()
    try:
        backend = OpenAIBackend(args.base_url, args.model, api="chat" if args.api == "chat" else "completions",
                                retry=retry, budget=budget)
    except (BackendError, BudgetExhausted) as exc:
        raise CodetronError(f"cannot reach the server: {exc}") from None
    with RecordLog(records_path, cfg.header(fewshot), restart=args.restart) as log:
        if log.resumed:
            print(f"codetron selfalign: resuming {records_path}: {log.resumed} seeds already done", file=sys.stderr)
        try:
            status = run_selfalign(seeds, backend, cfg, fewshot, log, progress=not args.quiet)
        except KeyboardInterrupt:
            print(f"codetron selfalign: interrupted; rerun the same command to resume from {records_path}",
                  file=sys.stderr)
            return 130
        order = {s.id: i for i, s in enumerate(seeds)}
        recs = sorted((r for r in log.records.values() if r["seed_id"] in order), key=lambda r: order[r["seed_id"]])
    stats = summary(recs)
    stats.update(backend=backend.describe(), fewshot=fewshot.path, fewshot_sha=fewshot.sha, seeds=len(seeds),
                 requests=backend.budget.used, retries=backend.retries, seconds=round(time.time() - started, 1),
                 complete=status.complete, records=records_path)
    if status.complete:
        rows = [dict(r, source="selfalign") for r in training_records(recs)]
        decon = decontaminator(args.benchmarks) if out_cfg.decontaminate else None
        stats["output"] = write_output(rows, args.output, out_cfg, decontaminator=decon)
    _write_json(stats_path, stats)
    if not status.complete:
        why = ("request budget spent" if status.budget_exhausted else status.aborted
               or f"{status.failed} seeds failed: {status.errors[0] if status.errors else ''}")
        print(f"codetron selfalign: incomplete ({why}); {args.output} not written. Rerun the same command to "
              f"resume from {records_path}.", file=sys.stderr)
        return EXIT_INCOMPLETE
    o, st = stats["output"], stats["stages"]
    print(f"codetron selfalign: wrote {o['written']} pairs to {args.output} ({st['seeds']} seeds -> "
          f"{st['instructions']} instructions -> {st['passed']}/{st['responses']} responses passed their tests -> "
          f"{st['selected']} selected; {o['contaminated']} contaminated, "
          f"{o['exact_duplicate'] + o['near_duplicate']} duplicates; {stats['requests']} requests); "
          f"stats in {stats_path}", file=sys.stderr)
    return 0


def smart_main(args) -> int:
    from codetron.preprocess.generate.selfalign.smart import smart_rows
    from codetron.records import read_jsonl, write_jsonl

    rows, report = smart_rows(read_jsonl(args.input, what="pairs"), SmartConfig(seed=args.seed), args.input)
    write_jsonl(args.output, rows, ensure_ascii=False)
    stats = report.stats()
    stats.update(seed=args.seed, written=len(rows))
    _write_json(_stem(args.output) + ".stats.json", stats)
    print(f"codetron selfalign: wrote {len(rows)} pairs to {args.output} ({stats['sanitised']} sanitised, "
          f"{stats['dropped_incomplete']} unfinished dropped, {stats['passed_through']} not in the four-tag "
          f"format passed through unchanged, {stats['instructions_with_asserts']} instructions got asserts)",
          file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return {"seeds": seeds_main, "run": run_main, "smart": smart_main}[args.mode](args)
