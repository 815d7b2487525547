"""``codetron slurm``: sbatch launchers from presets, submission with checks, capacity planning.

  codetron slurm plan --recipe starcoder-pretrain --gpus 512            memory per GPU, step time, days
  codetron slurm render train --recipe starcoder-pretrain --profile a100-64node -o slurm/
  codetron slurm submit train --recipe wizardcoder-sft --profile my.yaml --data out/sft --load ckpt/base
  codetron slurm submit preprocess --mode code --inputs 'raw/*.jsonl' --output data/code --shards 16
  codetron slurm render convert | eval ...                                conversion, eval array
  codetron slurm profiles                                                 built-in cluster profiles
  codetron slurm examples [--check]                                       (re)write slurm/*.sbatch

Trainer settings not covered by a flag here pass through as ``--section.field value`` (as for
``codetron train``); preprocessing/eval flags go after ``--``. ``submit`` validates the layout, the
paths and the memory estimate first, renders into ``<log_dir>/sbatch/`` and runs ``sbatch`` (the
merge job of a preprocessing array waits ``afterok`` on the array). See slurm/README.md.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codetron.cli_args import add_field
from codetron.errors import ConfigError
from codetron.slurm.profile import BUILTIN, ClusterProfile, load_profile, profile_yaml
from codetron.slurm.render import Script, render_convert, render_eval, render_preprocess, render_train

REPO_SLURM_DIR = Path(__file__).resolve().parent


@dataclass(kw_only=True, slots=True)
class PreprocessJob:
    """The tokenization job array of ``codetron slurm render|submit preprocess``."""

    mode: str = "code"
    """preprocess subcommand each array task runs: code, commitpack, instruct or text."""
    shards: int = 8
    """Array size: task i runs ``codetron preprocess MODE ... --shard i/N``."""


@dataclass(kw_only=True, slots=True)
class EvalJob:
    """The pass@k job array of ``codetron slurm render|submit eval``."""

    prompt: str = "continue"
    """Prompt format the jobs pass to ``codetron eval run`` (``codetron eval formats``)."""


@dataclass(kw_only=True, slots=True)
class RenderOptions:
    """Where rendered scripts go."""

    out_dir: str = "."
    """render: directory for NAME.sbatch."""


@dataclass(kw_only=True, slots=True)
class ExamplesOptions:
    """``codetron slurm examples``."""

    out_dir: str = str(REPO_SLURM_DIR)
    """Directory the example scripts are written to (the shipped ones in the installed package)."""


@dataclass(kw_only=True, slots=True)
class PlanOptions:
    """``codetron slurm plan`` assumptions."""

    mfu: float = 0.35
    """Assumed model-FLOPs utilisation of the step-time estimate."""


def _profile_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster profile (a built-in name or a YAML file; flags override its fields)")
    g.add_argument("--profile", help=f"built-in ({', '.join(BUILTIN)}) or YAML path (default a100-64node)")
    g.add_argument("--nodes", type=int, help="nodes for training")
    g.add_argument("--gpus-per-node", type=int, dest="gpus_per_node")
    g.add_argument("--tasks-per-node", type=int, dest="tasks_per_node", help="ranks per node (CPU clusters)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--time", help="Slurm time limit of training jobs, e.g. 2-00:00:00")
    g.add_argument("--launcher", choices=["srun", "torchrun"])
    g.add_argument("--requeue", choices=["requeue", "resubmit", "none"], help="what a preempted run does")
    g.add_argument("--python", help="interpreter with codetron installed")
    g.add_argument("--log-dir", dest="log_dir")
    g.add_argument("--name", help="job name and file stem (default from the recipe/preset/mode)")


def _profile(args) -> ClusterProfile:
    keys = ("nodes", "gpus_per_node", "tasks_per_node", "partition", "account", "time", "launcher", "requeue",
            "python", "log_dir")
    return load_profile(args.profile, {k: getattr(args, k) for k in keys})


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codetron slurm", description=__doc__.split("\n\n")[0],
                                     # the README ships as package data: name where it is installed
                                     epilog=__doc__.split("\n\n", 1)[1].replace(
                                         "slurm/README.md", str(REPO_SLURM_DIR / "README.md")), allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    for verb in ("render", "submit"):
        vp = sub.add_parser(verb, allow_abbrev=False, help=("write sbatch scripts" if verb == "render" else
                                                             "check, render and sbatch (with dependencies)"))
        kinds = vp.add_subparsers(dest="kind", metavar="KIND")
        kinds.required = True
        t = kinds.add_parser("train", allow_abbrev=False, help="pretraining or fine-tuning (codetron train)",
                             description="Training job: one task per GPU, USR1 before the time limit -> checkpoint "
                                         "-> requeue -> automatic resume. Extra --section.field value flags go to "
                                         "the trainer.")
        t.add_argument("--preset", help="model preset (codetron presets)")
        t.add_argument("--recipe", help="recipe: starcoder-pretrain, octocoder-sft, wizardcoder-sft, rrtf")
        t.add_argument("--config", help="trainer YAML; its values are written into the script")
        t.add_argument("--data", nargs="+", help="data.data_path: prefix or 'w1 p1 w2 p2' blend")
        t.add_argument("--save", help="checkpoint.save (resume directory)")
        t.add_argument("--load", help="checkpoint.load (base model for fine-tuning)")
        t.add_argument("--tokenizer", help="data.tokenizer")
        _profile_args(t)
        pp = kinds.add_parser("preprocess", allow_abbrev=False, help="tokenization as a job array + merge",
                              description="A job array over --shards running `codetron preprocess MODE ... --shard i/n`, "
                                          "then `codetron preprocess merge` afterok. Flags after -- go to preprocess.")
        add_field(pp, PreprocessJob, "mode")
        pp.add_argument("--inputs", nargs="+", required=True, help="input files/dirs/globs")
        pp.add_argument("--output", required=True, help="final dataset prefix")
        add_field(pp, PreprocessJob, "shards")
        pp.add_argument("--max-parallel", type=int, help="at most this many array tasks at once (%%N)")
        _profile_args(pp)
        c = kinds.add_parser("convert", allow_abbrev=False, help="megatron checkpoint -> HF (codetron convert to-hf)")
        c.add_argument("--checkpoint", help="run or iter_* directory (default: $CKPT at submit time)")
        c.add_argument("--output", help="HF folder (default: $OUT at submit time)")
        _profile_args(c)
        e = kinds.add_parser("eval", allow_abbrev=False, help="pass@k of many checkpoints as a job array")
        e.add_argument("--run", help="training run directory with iter_* checkpoints")
        e.add_argument("--iterations", help="comma-separated iterations (default: every iter_* under --run)")
        e.add_argument("--output", help="results directory (default RUN/eval)")
        add_field(e, EvalJob, "prompt")
        _profile_args(e)
        for k in (t, pp, c, e):
            add_field(k, RenderOptions, "out_dir", "-o", "--out-dir")
            k.add_argument("--stdout", action="store_true", help="render: print the script(s) instead of writing")
            if verb == "submit":
                k.add_argument("--dry-run", action="store_true", help="check and render, print the sbatch commands")
            k.add_argument("--no-check-data", action="store_true", help="skip checks that paths exist")

    pl = sub.add_parser("plan", allow_abbrev=False, help="memory per GPU and step time of a layout",
                        description="Estimate memory per GPU (weights, grads, optimizer with/without the distributed "
                                    "optimizer, activations with/without recompute; Korthikanti et al. 2022) and step "
                                    "time from FLOPs at an assumed MFU. --section.field value flags change the config.")
    pl.add_argument("--preset")
    pl.add_argument("--recipe")
    pl.add_argument("--config")
    pl.add_argument("--gpus", type=int, help="devices (default: the recipe's published count, else the profile's)")
    pl.add_argument("--gpu", help="GPU model (default the profile's: a100-80gb)")
    pl.add_argument("--profile", help=f"built-in ({', '.join(BUILTIN)}) or YAML path (default a100-64node)")
    add_field(pl, PlanOptions, "mfu")
    pl.add_argument("--tokens", type=float, help="token budget for the days estimate (default: the recipe's)")
    pl.add_argument("--vocab", type=int, help="vocabulary when the preset leaves it to the tokenizer")

    sub.add_parser("profiles", help="print the built-in cluster profiles")
    ex = sub.add_parser("examples", help="write the example scripts shipped in slurm/")
    add_field(ex, ExamplesOptions, "out_dir", "-o", "--out-dir")
    ex.add_argument("--check", action="store_true", help="exit 1 if the shipped scripts differ from a fresh render")
    return parser


def _split_dashdash(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _train_config(args, rest: list[str]):
    from codetron.megatron_ext.config import load_yaml, parse_cli_overrides
    from codetron.megatron_ext.presets import get_recipe, resolve_config

    user = parse_cli_overrides(rest)
    explicit: dict[str, Any] = {}
    if args.recipe:
        explicit.update(get_recipe(args.recipe).overrides())
    if args.config:
        explicit.update({k: v for k, v in load_yaml(args.config).items() if k not in ("preset", "recipe")})
    explicit.update(user)
    paths: dict[str, Any] = {}
    if args.data:
        paths["data.data_path"] = args.data
    if args.save:
        paths["checkpoint.save"] = args.save
    if args.load:
        paths["checkpoint.load"] = args.load
    if args.tokenizer:
        paths["data.tokenizer"] = args.tokenizer
    cfg = resolve_config(args.preset, args.recipe, args.config, {**user, **paths})
    if not cfg.preset and not args.config:
        raise ConfigError("give --preset or --recipe (see `codetron presets`)")
    return cfg, explicit


def build_scripts(args, rest: list[str], command: str, check_data: bool,
                  quiet: bool = False) -> tuple[list[Script], ClusterProfile]:
    """Render the scripts of one ``render``/``submit`` invocation, after the checks."""
    from codetron.slurm.checks import check_train

    profile = _profile(args)
    if args.kind == "train":
        cfg, explicit = _train_config(args, rest)
        est = check_train(profile, cfg, check_data=check_data, at_submit=args.cmd == "render")
        if est is not None and not quiet:
            from codetron.slurm.plan import GiB

            print(f"checks passed: {profile.world_size} ranks, estimated {est.total / GiB:.1f} GiB per {profile.gpu} "
                  f"(capacity from profile {profile.name})", file=sys.stderr)
        name = args.name or cfg.recipe or cfg.preset
        return [render_train(profile, cfg, explicit, name=name, command=command, data=args.data, save=args.save,
                             load=args.load, tokenizer=args.tokenizer)], profile
    if args.kind == "preprocess":
        if check_data:
            import glob

            for pattern in args.inputs:
                if not glob.glob(pattern):
                    raise ConfigError(f"--inputs: {pattern} matches no file")
        name = args.name or f"preprocess-{args.mode}"
        return render_preprocess(profile, name=name, command=command, mode=args.mode, inputs=args.inputs,
                                 output=args.output, shards=args.shards, extra=rest,
                                 max_parallel=args.max_parallel), profile
    if args.kind == "convert":
        if check_data and args.checkpoint and not Path(args.checkpoint).exists():
            raise ConfigError(f"--checkpoint: {args.checkpoint} does not exist")
        return [render_convert(profile, name=args.name or "convert", command=command, checkpoint=args.checkpoint,
                               output=args.output, extra=rest)], profile
    if args.kind == "eval":
        if args.iterations:
            try:
                iters = [int(x) for x in args.iterations.split(",") if x.strip()]
            except ValueError:
                raise ConfigError(f"--iterations: expected comma-separated integers, got {args.iterations!r}") from None
        elif args.run:
            iters = sorted(int(d.name[5:]) for d in Path(args.run).glob("iter_[0-9]*") if d.is_dir())
            if not iters:
                raise ConfigError(f"--run: {args.run} has no iter_* checkpoints (or give --iterations)")
        else:
            raise ConfigError("eval: give --run DIR or --iterations 1000,2000")
        if check_data and args.run:
            missing = [i for i in iters if not (Path(args.run) / f"iter_{i:07d}").is_dir()]
            if missing:
                raise ConfigError(f"--run: {args.run}/iter_{missing[0]:07d} does not exist")
        return [render_eval(profile, name=args.name or "eval", command=command, run_dir=args.run, iterations=iters,
                            output=args.output, prompt=args.prompt, extra=rest)], profile
    raise ConfigError(f"unknown job kind {args.kind!r}")


# The example scripts shipped in slurm/: (command-line arguments after `codetron slurm render`).
EXAMPLES: list[list[str]] = [
    ["train", "--recipe", "starcoder-pretrain", "--profile", "a100-64node"],
    ["train", "--recipe", "octocoder-sft", "--profile", "h100-8node", "--parallel.use_distributed_optimizer", "true"],
    ["train", "--recipe", "wizardcoder-sft", "--profile", "h100-8node", "--parallel.use_distributed_optimizer", "true"],
    ["train", "--recipe", "rrtf", "--profile", "h100-8node", "--parallel.use_distributed_optimizer", "true"],
    ["preprocess", "--mode", "code", "--inputs", "/data/the-stack/*.jsonl.zst", "--output", "/data/tokens/code",
     "--shards", "64", "--profile", "a100-64node", "--", "--dedup", "near"],
    ["convert", "--profile", "a100-64node"],
    ["eval", "--iterations", "50000,100000,150000,200000,250000", "--profile", "a100-64node", "--", "--n-samples", "20",
     "--temperature", "0.2"],
]


def render_examples() -> list[Script]:
    parser = _build_parser()
    scripts: list[Script] = []
    for ex in EXAMPLES:
        argv, after = _split_dashdash(["render", *ex])
        args, rest = parser.parse_known_args(argv)
        command = "codetron slurm " + " ".join(shlex.quote(a) for a in ["render", *ex])
        scripts += build_scripts(args, rest + after, command, check_data=False, quiet=True)[0]
    return scripts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    head, after = _split_dashdash(argv)
    args, rest = parser.parse_known_args(head)
    if args.cmd == "profiles":
        for name in BUILTIN:
            print(f"# {name}\n{profile_yaml(load_profile(name))}")
        return 0
    if args.cmd == "examples":
        return _examples(args)
    if args.cmd == "plan":
        return _plan(args, rest)
    if args.kind != "train" and rest:
        raise ConfigError(f"unexpected arguments {' '.join(rest)!r} (tool flags go after --)")
    rest = rest + after
    command = "codetron slurm " + " ".join(shlex.quote(a) for a in argv)
    scripts, profile = build_scripts(args, rest, command, check_data=not args.no_check_data)
    if args.cmd == "render":
        if args.stdout:
            for s in scripts:
                print(s.text, end="")
            return 0
        from codetron.slurm.submit import write_scripts

        for path in write_scripts(scripts, args.out_dir):
            print(f"wrote {path}")
        return 0
    from codetron.slurm.submit import submit

    for script, path, job in submit(scripts, profile.log_dir, dry_run=args.dry_run):
        dep = f" (afterok {script.after})" if script.after else ""
        print(f"submitted {script.name}{dep}: job {job}  script {path}  log {profile.log_dir}/")
    return 0


def _examples(args) -> int:
    scripts = render_examples()
    out = Path(args.out_dir)
    if args.check:
        stale = [s.name for s in scripts if not (out / f"{s.name}.sbatch").is_file()
                 or (out / f"{s.name}.sbatch").read_text() != s.text]
        if stale:
            print(f"out of date: {', '.join(stale)} (run `codetron slurm examples`)", file=sys.stderr)
            return 1
        print(f"{len(scripts)} example scripts are up to date")
        return 0
    from codetron.slurm.submit import write_scripts

    for path in write_scripts(scripts, out):
        print(f"wrote {path}")
    return 0


def _plan(args, rest: list[str]) -> int:
    from codetron.megatron_ext.config import parse_cli_overrides
    from codetron.megatron_ext.presets import RECIPES, resolve_config
    from codetron.slurm.plan import get_gpu, report

    cfg = resolve_config(args.preset, args.recipe, args.config, parse_cli_overrides(rest))
    if not cfg.preset:
        raise ConfigError("give --preset or --recipe (see `codetron presets`)")
    rec = RECIPES[cfg.recipe] if cfg.recipe else None
    published_gpus = rec.published_gpus if rec else None
    published_tokens = rec.published_tokens if rec else None
    profile = load_profile(args.profile) if args.profile else None
    gpus = args.gpus or published_gpus or (profile.world_size if profile else None)
    if not gpus:
        raise ConfigError("give --gpus N (or a --profile / a recipe with a published GPU count)")
    gpu = get_gpu(args.gpu or (profile.gpu if profile else "a100-80gb"))
    from codetron.megatron_ext.validate import validate

    validate(cfg, gpus, check_data=False)
    print(report(cfg, gpus, gpu, args.mfu, args.tokens or published_tokens, args.vocab))
    if rec and rec.published_days and published_tokens and gpus == published_gpus:
        from codetron.slurm.plan import estimate_step, implied_mfu

        mfu = implied_mfu(cfg, gpus, gpu, published_tokens, rec.published_days, args.vocab)
        days = estimate_step(cfg, gpus, gpu, args.mfu, args.vocab).days_for(published_tokens)
        print(f"published: {published_gpus} GPUs, {rec.published_days:g} days for {published_tokens:.3g} tokens -> "
              f"MFU {mfu:.1%} under this accounting; the estimate at MFU {args.mfu:.0%} is {days:.1f} days "
              f"({days / rec.published_days:.2f}x)")
    return 0

build_parser = _build_parser  # the name tests/test_cli_defaults.py looks for in every stage
