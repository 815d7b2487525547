"""``codetron eval``: generate samples, execute them in a sandbox, report pass@k.

  codetron eval run      --model DIR --out DIR [--limit 10] [--prompt continue]   generate + execute
  codetron eval generate --model DIR --out DIR                                    samples only
  codetron eval execute  --generations FILE --out DIR     (alias: evaluate)       score samples
  codetron eval execute  --canonical --out DIR                                    check the sandbox
  codetron eval report   METRICS.json ... --out DIR                               table + chart
  codetron eval formats                                                           list prompt formats

Generations are read and written in both the bigcode-evaluation-harness format (``.json``: a list
per problem of code strings) and human-eval's (``.jsonl``: task_id + completion).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codetron.errors import CodetronError

TASK_HUMANEVAL = "humaneval"


def _problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problems")
    g.add_argument("--problems", default=None, metavar="FILE",
                   help="jsonl(.gz) in the HumanEval schema (task_id, prompt, test, entry_point); "
                        "default: HumanEval's 164 problems from the human-eval package")
    g.add_argument("--limit", type=int, default=None, help="only the first N problems (after --tasks)")
    g.add_argument("--tasks", default=None,
                   help="comma-separated task ids or file indices/ranges, e.g. 'HumanEval/0,5-9'")


def _gen_args(p: argparse.ArgumentParser) -> None:
    from codetron.eval.prompts import FORMATS

    g = p.add_argument_group("generation")
    g.add_argument("--model", required=True, help="Hugging Face model folder (e.g. from `codetron convert`)")
    g.add_argument("--prompt", default="continue", choices=list(FORMATS), help="prompt format (see `codetron eval formats`)")
    g.add_argument("--n-samples", type=int, default=1, help="samples per problem (n)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--max-new-tokens", type=int, default=512)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--seed", type=int, default=0, help="base seed; each (problem, sample) derives its own")
    g.add_argument("--stop", action="append", default=None,
                   help="stop sequence (repeatable); default: the prompt format's list")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    g.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])


def _exec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--timeout", type=float, default=3.0, help="wall-clock seconds per program")
    g.add_argument("--workers", type=int, default=2, help="parallel sandbox workers")
    g.add_argument("--k", default="1,10,100", help="pass@k values (k > n is left out)")
    g.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per program")
    g.add_argument("--allow-network", action="store_true", help="do not isolate the network")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codetron eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="generate and execute; print pass@k")
    _problem_args(p)
    _gen_args(p)
    _exec_args(p)
    p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("generate", help="sample completions from a model folder")
    _problem_args(p)
    _gen_args(p)
    p.add_argument("--out", required=True, help="output folder (generations.json, samples.jsonl)")

    for name in ("execute", "evaluate"):
        p = sub.add_parser(name, help="execute samples in the sandbox and compute pass@k")
        _problem_args(p)
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--generations", help="harness generations .json or human-eval samples .jsonl")
        src.add_argument("--canonical", action="store_true", help="score the problems' canonical solutions")
        _exec_args(p)
        p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("report", help="markdown table + PNG chart from metrics files")
    p.add_argument("metrics", nargs="+", help="metrics.json files (ours or bigcode-evaluation-harness)")
    p.add_argument("--out", required=True, help="output folder (report.md, pass_at_k.png)")

    sub.add_parser("formats", help="list the prompt formats and their sources")
    return parser


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CodetronError(f"--k {text!r}: expected comma-separated integers like 1,10,100") from None
    if not ks or min(ks) < 1:
        raise CodetronError(f"--k {text!r}: every k must be >= 1")
    return ks


def _problems(args):
    from codetron.eval.problems import read_problems, select

    return select(read_problems(args.problems), args.limit, args.tasks)


def _task_name(args) -> str:
    return TASK_HUMANEVAL if args.problems in (None, "humaneval") else Path(args.problems).name.split(".")[0]


def _exec_config(args):
    from codetron.eval.evaluate import ExecConfig
    from codetron.eval.execution import SandboxConfig, SandboxLimits

    if args.timeout <= 0 or args.workers < 1 or args.memory_mb < 64:
        raise CodetronError("--timeout must be > 0, --workers >= 1 and --memory-mb >= 64")
    limits = SandboxLimits(memory_bytes=args.memory_mb << 20)
    return ExecConfig(timeout=args.timeout, n_workers=args.workers, ks=_parse_ks(args.k),
                      sandbox=SandboxConfig(limits=limits, isolate_network=not args.allow_network))


def _gen_config(args):
    from codetron.eval.generate import GenerationConfig

    return GenerationConfig(model=args.model, prompt=args.prompt, n_samples=args.n_samples,
                            temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, seed=args.seed,
                            stop=tuple(args.stop) if args.stop else None, device=args.device,
                            dtype=args.dtype, backend=args.backend)


def _write_generations(out: Path, problems, codes, raw, gen_config: dict) -> None:
    from codetron.eval.harness_io import write_generations, write_json, write_samples_jsonl

    write_json(out / "generation_config.json", gen_config)
    write_generations(out / "generations.json", codes)
    write_samples_jsonl(out / "samples.jsonl", problems, codes)
    if raw is not None:
        write_json(out / "raw_outputs.json", raw)


def _execute(args, problems, codes, out: Path, config_extra: dict) -> dict:
    from dataclasses import asdict

    from codetron.eval.evaluate import evaluate
    from codetron.eval.harness_io import write_json, write_samples_jsonl

    exec_cfg = _exec_config(args)
    result = evaluate(problems, codes, exec_cfg)
    task = _task_name(args)
    config = {**config_extra, "problems": len(problems), "problem_file": args.problems or TASK_HUMANEVAL,
              "n_samples": max((len(c) for c in codes), default=0),
              "timeout": exec_cfg.timeout, "n_workers": exec_cfg.n_workers,
              "sandbox": asdict(exec_cfg.sandbox), "isolation": result.isolation}
    config.setdefault("prompt", "?")
    config.setdefault("model", "?")
    write_json(out / "metrics.json", {task: result.metrics, "config": config})
    write_json(out / "per_problem.json", result.per_problem)
    write_samples_jsonl(out / "results.jsonl", problems, codes, result.verdicts)
    return result.metrics


def _print_metrics(metrics: dict, problems: int, out: Path) -> None:
    text = "  ".join(f"{k} = {v:.4f}" for k, v in metrics.items()) or "no pass@k (k > n samples)"
    print(f"{problems} problems: {text}")
    print(f"wrote {out / 'metrics.json'}")


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "formats":
        from codetron.eval.prompts import FORMATS

        for f in FORMATS.values():
            print(f"{f.name:13s} {f.source}")
        return 0
    if args.command == "report":
        from codetron.eval.report import write_report

        md, png = write_report(args.metrics, args.out)
        print(md.read_text(encoding="utf-8"))
        print(f"wrote {md} and {png}")
        return 0

    out = Path(args.out)
    problems = _problems(args)
    if args.command in ("run", "generate"):
        from dataclasses import asdict

        from codetron.eval.generate import generate

        gen_cfg = _gen_config(args)
        if args.command == "run":
            _exec_config(args)  # fail on bad execution flags before spending time on generation
        codes, raw = generate(problems, gen_cfg)
        _write_generations(out, problems, codes, raw, asdict(gen_cfg))
        print(f"wrote {out / 'generations.json'} ({len(problems)} problems x {gen_cfg.n_samples} samples)")
        if args.command == "generate":
            return 0
        metrics = _execute(args, problems, codes, out, asdict(gen_cfg))
        _print_metrics(metrics, len(problems), out)
        return 0

    # execute / evaluate
    if args.canonical:
        missing = [p["task_id"] for p in problems if not isinstance(p.get("canonical_solution"), str)]
        if missing:
            raise CodetronError(f"--canonical: {missing[0]} has no canonical_solution")
        codes = [[p["prompt"] + p["canonical_solution"]] for p in problems]
        extra = {"model": "canonical", "prompt": "continue"}
    else:
        from codetron.eval.harness_io import read_samples

        codes = read_samples(args.generations, problems)
        extra = {"generations": str(args.generations)}
        # written by `codetron eval generate` next to its generations: keeps model/prompt in the report
        meta = Path(args.generations).with_name("generation_config.json")
        if meta.exists():
            try:
                extra.update(json.loads(meta.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError, ValueError):
                pass
    metrics = _execute(args, problems, codes, out, extra)
    _print_metrics(metrics, len(problems), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
