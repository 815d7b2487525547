"""``codetron evolve``: Evol-Instruct and self-instruct data generation against a model.

    codetron evolve evol seeds.jsonl -o evol.jsonl --base-url http://127.0.0.1:8000/v1 --rounds 3
    codetron evolve self-instruct snippets/ -o self.jsonl --local-model out/hf-model

Files written next to ``-o OUT.jsonl``: ``OUT.records.jsonl`` (append-only log of every kept and
dropped item: the resume point), ``OUT.stats.json`` (counts per round and per elimination rule,
judge verdicts, requests, dedup). ``OUT.jsonl`` itself is written only when the run is complete; an
interrupted run (Ctrl-C, spent ``--max-requests``, server gone) exits 3, names the last request
error, and the same command resumes it. The final line prints every elimination count.

Defaults follow WizardCoder: the output holds the seeds (those with an answer) and every kept round
of every lineage; near/exact dedup only removes a row that duplicates a row of *another* seed's
lineage (``--dedup-within-lineage`` also compares the rounds of one seed).
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

EXIT_INCOMPLETE = 3
"""Exit status of a run that stopped early and can be resumed."""

EPILOG = """\
backends:
  --base-url URL    any OpenAI-compatible server: vLLM (`vllm serve MODEL`), TGI, llama.cpp server,
                    or `codetron serve MODEL_DIR`; the URL ends in /v1. OPENAI_API_KEY is sent if set.
  --local-model DIR a Hugging Face model folder loaded in this process (slow; small runs and tests).

judge:
  The information-gain judge (WizardLM: "Equal or Not Equal") runs on the generating model unless
  --judge-base-url/--judge-model name another; answers other than Equal / Not Equal are counted as
  unparsed and drop the evolution (--judge-unparsed keep keeps it).

resume:
  Every finished item is appended to OUT.records.jsonl at once. Rerun the same command to continue
  after a crash, Ctrl-C or --max-requests; raise --rounds to add rounds. --restart starts over.

output:
  OUT.jsonl has {"instruction", "input", "output", ...} lines; turn it into training data with
    codetron preprocess instruct OUT.jsonl -o data/evol --template wizardcoder
"""


def _common(p: argparse.ArgumentParser, cfg_cls) -> None:
    """Options of both modes; ``cfg_cls`` (EvolConfig or SelfInstructConfig) holds their defaults."""
    from codetron.preprocess.generate.backends import BackendConfig
    from codetron.preprocess.generate.output import OutputConfig
    from codetron.preprocess.generate.seeds import SeedOptions

    p.add_argument("seeds", nargs="+", help="seed files or directories")
    p.add_argument("-o", "--output", required=True, help="output jsonl (log and stats are written beside it)")
    g = p.add_argument_group("backend")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    src.add_argument("--local-model", metavar="DIR", help="Hugging Face model folder loaded in-process")
    g.add_argument("--model", help="model name sent to the server (default: the first in /v1/models)")
    add_field(g, BackendConfig, "api", choices=("chat", "completions"))
    add_field(g, BackendConfig, "prompt_template", choices=("wizardcoder", "octocoder", "plain"))
    add_field(g, BackendConfig, "device")
    add_field(g, cfg_cls, "concurrency")
    add_request_args(g, cfg_cls)
    add_field(g, SeedOptions, "on_error", choices=("fail", "skip"))
    s = p.add_argument_group("sampling")
    add_field(s, cfg_cls, "seed")
    add_field(s, cfg_cls, "sampling.temperature")
    add_field(s, cfg_cls, "sampling.top_p")
    add_field(s, cfg_cls, "sampling.max_new_tokens", "--max-new-tokens", "--max-tokens")
    s.add_argument("--limit", type=int, help="use only the first N seeds")
    add_field(s, cfg_cls, "keep_truncated")
    o = p.add_argument_group("output")
    add_field(o, OutputConfig, "dedup", choices=("none", "exact", "near"))
    add_field(o, OutputConfig, "near_threshold")
    o.add_argument("--dedup-within-lineage", action="store_true",
                   help="also dedup the rounds of one seed against each other (default: only across seeds)")
    add_field(o, OutputConfig, "decontaminate", "--no-decontaminate", negate=True)
    o.add_argument("--restart", action="store_true", help="discard OUT.records.jsonl and start over")
    o.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from codetron.preprocess.generate.evolve.evolver import EvolConfig
    from codetron.preprocess.generate.evolve.selfinstruct import SelfInstructConfig
    from codetron.preprocess.generate.evolve.templates import EVOL_TEMPLATES, METHODS

    p = argparse.ArgumentParser(prog="codetron evolve", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = p.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("evol", help="Evol-Instruct (WizardCoder / PanGu-Coder2) over seed instructions",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Evolve CodeAlpaca-style seed instructions (jsonl with instruction, "
                                   "optional input/output) for --rounds rounds with WizardCoder's five "
                                   "in-depth methods, eliminate failed evolutions (WizardLM rules), answer "
                                   "the survivors.")
    _common(e, EvolConfig)
    add_field(e, EvolConfig, "rounds")
    add_field(e, EvolConfig, "template", choices=tuple(EVOL_TEMPLATES))
    add_field(e, EvolConfig, "methods", type=_methods, metavar="M1,M2,...",
              note=f"Comma-separated, from {','.join(METHODS)}.")
    add_field(e, EvolConfig, "judge", "--no-judge", negate=True,
              note="(Elimination rule 1 then keeps only its identical-text check.)")
    e.add_argument("--judge-base-url", help="server of the information-gain judge (default: the generator's)")
    e.add_argument("--judge-model", help="judge model name (default: the generator's model when on the same "
                                         "server, else the first in the judge's /v1/models)")
    add_field(e, EvolConfig, "judge_unparsed", choices=("drop", "keep"))
    e.add_argument("--no-seeds", action="store_true",
                   help="leave the seeds out of OUT.jsonl (by default seeds with an output are written first, "
                        "as WizardCoder trains on seeds + every evolved round)")
    e.add_argument("--include-seeds", action="store_true", help=argparse.SUPPRESS)  # the default now
    si = sub.add_parser("self-instruct", help="StarCoder2-Instruct style: snippet -> concepts -> task -> tested answer",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="From seed code (.py files/directories: their documented functions; or jsonl "
                                    "with a code field) write new tasks and answers with tests; keep answers "
                                    "whose tests pass in the eval sandbox.")
    _common(si, SelfInstructConfig)
    for name in ("instructions_per_seed", "responses", "exec_timeout", "exec_workers"):
        add_field(si, SelfInstructConfig, name)
    return p


def _methods(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def make_backend(args):
    from codetron.preprocess.generate.backends import OpenAIBackend, TransformersBackend, request_policy

    retry, budget = request_policy(args)
    if args.local_model:
        return TransformersBackend(args.local_model, device=args.device, budget=budget)
    return OpenAIBackend(args.base_url, args.model, api=args.api, prompt_template=args.prompt_template,
                         retry=retry, budget=budget)


def _sampling(args):
    from codetron.sampling import SamplingParams

    return SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)


def make_judge(args, backend):
    """The judge backend: ``backend`` itself unless --judge-base-url/--judge-model name another."""
    from codetron.preprocess.generate.backends import OpenAIBackend, api_root, request_policy

    if args.judge_base_url is None and args.judge_model is None:
        return backend
    if args.judge_base_url is None and args.base_url is None:
        raise CodetronError("--judge-model with --local-model needs --judge-base-url (the judge is a server)")
    url = args.judge_base_url or args.base_url
    model = args.judge_model
    if model is None and args.base_url is not None and api_root(url) == api_root(args.base_url):
        model = backend.model
    retry, _ = request_policy(args)
    # one budget for both: --max-requests bounds everything this run sends
    return OpenAIBackend(url, model, api="chat", retry=retry, budget=backend.budget)


def _paths(output: str) -> tuple[str, str]:
    stem = output[: -len(".jsonl")] if output.endswith(".jsonl") else output
    return stem + ".records.jsonl", stem + ".stats.json"


def summary_counts(stats: dict) -> str:
    """The final line's elimination part: every rule that fired, judge verdicts, skipped seed lines."""
    fired = [f"{rule} {n}" for rule, n in stats["eliminated"].items() if n]
    parts = [f"eliminated: {', '.join(fired) if fired else 'none'}"]
    if "judge" in stats:
        j = stats["judge"]
        parts.append(f"judge: {j['equal']} equal, {j['not_equal']} not equal, {j['unparsed']} unparsed")
    if stats.get("seed_errors"):
        parts.append(f"{stats['seed_errors']['skipped']} bad seed lines skipped")
    return "; ".join(parts)


def main(argv: list[str]) -> int:
    from codetron.preprocess.generate.backends import BackendError, BudgetExhausted
    from codetron.preprocess.generate.output import OutputConfig, training_records, write_output
    from codetron.preprocess.generate.seeds import SeedErrors
    from codetron.preprocess.generate.store import RecordLog

    args = build_parser().parse_args(argv)
    records_path, stats_path = _paths(args.output)
    out_cfg = OutputConfig(dedup=args.dedup, near_threshold=args.near_threshold,
                           decontaminate=args.decontaminate)
    started = time.time()
    seed_errors = SeedErrors()
    if args.mode == "evol":
        from codetron.preprocess.generate.evolve.evolver import EvolConfig, run_evol
        from codetron.preprocess.generate.seeds import load_instruction_seeds

        cfg = EvolConfig(rounds=args.rounds, template=args.template, methods=args.methods, seed=args.seed,
                         sampling=_sampling(args), judge=args.judge, concurrency=args.concurrency,
                         max_failures=args.max_failures, judge_unparsed=args.judge_unparsed,
                         keep_truncated=args.keep_truncated)
        cfg.validate()
        if not args.judge and (args.judge_base_url or args.judge_model):
            raise CodetronError("--no-judge with --judge-base-url/--judge-model: choose one")
        seeds = load_instruction_seeds(args.seeds, args.limit, on_error=args.on_error, errors=seed_errors)
    else:
        from codetron.preprocess.generate.evolve.selfinstruct import SelfInstructConfig, run_self_instruct
        from codetron.preprocess.generate.seeds import load_code_seeds

        cfg = SelfInstructConfig(instructions_per_seed=args.instructions_per_seed, responses=args.responses,
                                 seed=args.seed, sampling=_sampling(args), exec_timeout=args.exec_timeout,
                                 exec_workers=args.exec_workers, concurrency=args.concurrency,
                                 max_failures=args.max_failures, keep_truncated=args.keep_truncated)
        cfg.validate()
        seeds = load_code_seeds(args.seeds, args.limit, on_error=args.on_error, errors=seed_errors)
    if seed_errors:
        print(f"codetron evolve: skipped {len(seed_errors)} bad seed lines (first: {seed_errors[0]})",
              file=sys.stderr)
    try:
        backend = make_backend(args)
        judge = make_judge(args, backend) if args.mode == "evol" else None
    except (BackendError, BudgetExhausted) as exc:
        raise CodetronError(f"cannot reach the backend: {exc}") from None
    lineage = None
    with RecordLog(records_path, cfg.header(), restart=args.restart) as log:
        if log.resumed:
            print(f"codetron evolve: resuming {records_path}: {log.resumed} items already done", file=sys.stderr)
        try:
            if args.mode == "evol":
                result = run_evol(seeds, backend, cfg, log, progress=not args.quiet, judge=judge)
                status, stats = result.status, result.stats
                order = {s.id: i for i, s in enumerate(seeds)}
                recs = sorted((r for r in log.records.values() if r["seed_id"] in order and r["round"] <= cfg.rounds),
                              key=lambda r: (r["round"], order[r["seed_id"]]))
                # WizardCoder trains on the seeds and every round: seeds first, as round 0
                rows = ([] if args.no_seeds else
                        [{"instruction": s.text, "input": "", "output": s.output, "source": "seed", "seed_id": s.id,
                          "round": 0} for s in seeds if s.output.strip()])
                rows += [dict(r, source="evol-instruct") for r in training_records(recs)]
                lineage = None if args.dedup_within_lineage else "seed_id"
            else:
                status, stats = run_self_instruct(seeds, backend, cfg, log, progress=not args.quiet)
                order = {s.id: i for i, s in enumerate(seeds)}
                recs = sorted((r for r in log.records.values() if r["seed_id"] in order),
                              key=lambda r: (order[r["seed_id"]], r["index"]))
                rows = [dict(r, source="self-instruct") for r in training_records(recs)]
        except KeyboardInterrupt:
            print(f"codetron evolve: interrupted; rerun the same command to resume from {records_path}",
                  file=sys.stderr)
            return 130
    retries = backend.retries + (judge.retries if judge is not None and judge is not backend else 0)
    stats.update(backend=backend.describe(), seeds=len(seeds), requests=backend.budget.used,
                 retries=retries, seconds=round(time.time() - started, 1), complete=status.complete,
                 records=records_path)
    if judge is not None and judge is not backend:
        stats["judge_backend"] = judge.describe()
    if seed_errors:
        stats["seed_errors"] = {"skipped": len(seed_errors), "first": seed_errors[:10]}
    if not status.complete and status.last_error:
        stats["last_error"] = status.last_error
    if status.complete:
        stats["output"] = write_output(rows, args.output, out_cfg, lineage_key=lineage)
    with atomic_open(stats_path, "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=2)
        fh.write("\n")
    if not status.complete:
        print(f"codetron evolve: incomplete ({status.reason()}); {args.output} not written. Rerun the same "
              f"command to resume from {records_path}.", file=sys.stderr)
        return EXIT_INCOMPLETE
    o = stats["output"]
    print(f"codetron evolve: wrote {o['written']} pairs to {args.output} ({o['candidates']} kept, "
          f"{o['contaminated']} contaminated, {o['exact_duplicate'] + o['near_duplicate']} duplicates; "
          f"{summary_counts(stats)}; {stats['requests']} requests, {stats['retries']} retries); "
          f"stats in {stats_path}", file=sys.stderr)
    return 0
