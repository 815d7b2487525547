"""Every shell example in the docs and every command in a ``--help`` text runs as written.

Examples are found, not listed: fenced ``bash``/``sh``/``shell``/``console`` blocks of every Markdown file
in the repository (plus ``codetron ...`` lines of unlabelled blocks), and command lines in the
description and epilog of every parser reached from ``codetron <stage>``, walking the stages' own
argparse objects (``codetron.cli.STAGES``). Each one is either

(i) run as written with ``bash`` in one shared scratch workspace, in document order (the README's
    training finds the data the preprocess README wrote, conversion finds that run), where
    ``codetron``/``torchrun`` are this checkout's and ``sbatch`` is a stub that syntax-checks the
    script it is given; ``SCALED`` lists the few that run with a documented substitution (a smaller
    iteration count, a bundled sample as the input file) and says why; or
(ii) listed in ``NOT_HERE`` with the reason it cannot run on this CPU-only, offline machine. A
    ``codetron`` command there is still checked against the real parser: every flag it names exists.

An example in neither table is run, so a new example that does not run fails here until it is fixed
or listed; a table entry that names no example fails too, so the tables cannot rot.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env

SHELL_LANGS = {"bash", "sh", "shell", "console"}
COMMAND_STARTS = ("codetron ", "torchrun ", "python -m codetron", "curl ", "vllm ")


# ------------------------------------------------------------------------------------ extraction

@dataclass(frozen=True)
class Example:
    source: str
    """``README.md:18`` or ``codetron slurm --help``."""
    text: str
    """The command with continuations joined, trailing comment removed, whitespace collapsed."""


def strip_comment(line: str) -> str:
    """Drop an unquoted ``# ...`` that starts a word (``out/code.*`` and ``'#'`` stay)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
        # a backslash-escaped character never opens a quote or a comment
    return line


def join_continuations(lines: list[str]) -> list[tuple[int, str]]:
    """(index of first line, logical line) with ``\\``-continued lines joined."""
    out, buf, start = [], "", 0
    for i, line in enumerate(lines):
        if not buf:
            start = i
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf += (stripped[:-1].lstrip() if buf else stripped[:-1]) + " "
            continue
        out.append((start, buf + (line.lstrip() if buf else line)))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def normalise(text: str) -> str:
    return " ".join(text.split())


def markdown_files() -> list[Path]:
    skip = {"build", "dist", "node_modules", "demo_out"}
    found = []
    for path in sorted(ROOT.rglob("*.md")):
        rel = path.relative_to(ROOT)
        if any(p.startswith(".") or p in skip or p.endswith(".egg-info") for p in rel.parts[:-1]):
            continue
        found.append(rel)
    return found


FENCE = re.compile(r"^\s*```\s*([\w-]*)")


def markdown_examples(rel: Path) -> list[Example]:
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    examples, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, j = m.group(1).lower(), i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        for k, logical in join_continuations(lines[i + 1:j]):
            text = normalise(strip_comment(logical))
            if lang == "console" and text.startswith("$ "):
                text = text[2:]
            if not text or (lang not in SHELL_LANGS and not text.startswith(COMMAND_STARTS)):
                continue  # diagrams, log lines, config files, python
            examples.append(Example(f"{rel}:{i + 2 + k}", text))
        i = j + 1
    return examples


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def stage_parsers() -> dict[str, argparse.ArgumentParser]:
    """``codetron <stage>`` -> the parser its ``main`` builds, caught where main starts parsing."""
    from codetron.cli import STAGES

    def grab(self, *args, **kwargs):
        raise _Captured(self)

    parsers = {}
    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = grab
    try:
        for stage, (module, _) in STAGES.items():
            try:
                importlib.import_module(module).main(["--help"])
            except _Captured as c:
                parsers[stage] = c.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    missing = sorted(set(STAGES) - set(parsers))
    assert not missing, f"stages whose main never parsed its arguments: {missing}"
    return parsers


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]):
    yield words, parser
    for name, sub in subparsers(parser).items():
        yield from walk(sub, words + (name,))


def help_examples() -> list[Example]:
    """Command lines in every parser's description and epilog (an aligned annotation after three or
    more spaces, as in ``codetron eval formats      list prompt formats``, is not part of it)."""
    examples, seen = [], set()
    for stage, parser in stage_parsers().items():
        for words, p in walk(parser, (stage,)):
            text = "\n".join(t for t in (p.description, p.epilog) if t)
            for _, logical in join_continuations(text.splitlines()):
                line = logical.strip()
                if not line.startswith(COMMAND_STARTS) or re.match(r"codetron \S+:", line):
                    continue  # prose, or a title such as "codetron convert: megatron-core <-> .."
                parts = re.split(r"\s{3,}", line)
                line = normalise(strip_comment(" ".join(parts[:-1] if len(parts) > 1 else parts)))
                if line not in seen:
                    seen.add(line)
                    examples.append(Example(f"codetron {' '.join(words)} --help", line))
    return examples


# Markdown files in the order their examples run: later ones use what earlier ones wrote.
DOC_ORDER = ["preprocess/README.md", "README.md", "convert/README.md", "slurm/README.md", "docs/operations.md"]


# ------------------------------------------------------------------------------------- handling

@dataclass(frozen=True)
class Scaled:
    """Run with a documented substitution, for the reason given."""

    why: str
    replace: tuple[tuple[str, str], ...] = ()
    add: str = ""
    """Appended to the command line."""


@dataclass(frozen=True)
class NotHere:
    """Cannot run on this CPU-only, offline machine; a codetron command is still checked against its
    parser (every flag it names exists)."""

    reason: str


TINY_TRAIN = ("--preset debug-tiny --parallel.tensor_model_parallel_size 1 --parallel.pipeline_model_parallel_size 1 "
              "--model.seq_length 128 --optim.global_batch_size 8 --optim.micro_batch_size 2 --optim.train_iters 2")
SERVER = ("needs a model server with a model that follows instructions (a random tiny model's answers are dropped "
          "by every filter); tests/evolve and tests/selfalign drive the same commands against scripted servers")
SYNOPSIS = "synopsis with placeholders, not a command"
RRTF = ("samples and ranks with a trained student model and a teacher's answers; tests/rrtf/test_pipeline.py runs "
        "sample -> rank -> preprocess -> train on a tiny model")

EXTENDING = ("runs after the walk-through's module is added (acme.py, csvfiles.py, santacoder_pretrain.py), with "
             "its own input files; tests/test_extending.py writes the module from the doc into a plug-in folder and "
             "runs these commands")

HANDLING: dict[str, Scaled | NotHere] = {
    # --- README.md
    "make demo": Scaled(
        "the demo's own flags make it 2+2 steps on 2 problems (~90 s instead of minutes); `make -n` checks the "
        "target is the demo", replace=(("make demo", f"make -n -C {ROOT} demo | grep -q -- '-m codetron demo' && "
                                                     "codetron demo --pretrain-iters 2 --sft-iters 2 --problems 2"),)),
    "make test": Scaled("the suite cannot run itself; `make -n` checks the target and its recipe",
                        replace=(("make test", f"make -n -C {ROOT} test"),)),
    "pip download --python-version 3.12 --only-binary=:all: --implementation cp --platform manylinux_2_28_x86_64 "
    "--no-deps -d .whl -r benchmarks/gpu_wheels.txt": NotHere(
        "needs the network (PyPI); tests/train/test_gpu_check.py fills .whl/ from the same list offline"),
    "benchmarks/gpu_check.sh": NotHere("needs a GPU; tests/train/test_gpu_check.py runs its --cpu-dry-run"),
    "torchrun --standalone --nproc-per-node 4 -m codetron train --preset debug-tiny "
    "--parallel.tensor_model_parallel_size 2 --parallel.pipeline_model_parallel_size 2 --data.data_path out/code "
    "--checkpoint.save runs/tiny-tp2pp2": Scaled(
        "4 gloo ranks on 2 cores: 4 steps show the layout trains and saves (tests/train/test_parity.py compares "
        "the layouts' numbers)", add="--optim.train_iters 4"),
    "codetron train --recipe wizardcoder-sft --data.data_path out/sft --checkpoint.load runs/base "
    "--checkpoint.finetune true --checkpoint.save runs/wizard": Scaled(
        "the recipe is StarCoder-15B on 8 GPUs: the tiny preset, one rank, 2 steps; runs/base is any pretrained "
        "run, here runs/tiny from above", replace=(("runs/base", "runs/tiny"),), add=TINY_TRAIN),
    "codetron preprocess code saved_ds/ 'hf://bigcode/the-stack-smol/data/python' -o out/hf": NotHere(
        "streams a Hugging Face hub dataset (network)"),
    "codetron serve hf/my-model --port 8000 --engine transformers &": NotHere(SERVER),
    "codetron evolve evol code_alpaca.jsonl --rounds 3 --base-url http://127.0.0.1:8000/v1 -o evol.jsonl "
    "--judge-base-url http://judge-host:8000/v1 --judge-model wizardcoder-15b": NotHere(SERVER + "; a judge host"),
    "codetron evolve self-instruct snippets.jsonl --base-url http://127.0.0.1:8000/v1 -o self.jsonl": NotHere(SERVER),
    "codetron serve hf/my-model --port 8000 --engine vllm &": NotHere("vLLM needs a GPU"),
    "codetron evolve evol code_alpaca.jsonl --rounds 4 --base-url http://127.0.0.1:8000/v1 -o evol.jsonl "
    "--concurrency 64 --max-tokens 2048": NotHere(SERVER + " (vLLM on a GPU)"),
    "codetron selfalign seeds @stdlib my_code/ -o seeds.jsonl --benchmark mbpp.jsonl": Scaled(
        "pyright type-checking the whole standard library takes ~2 min on 2 cores; my_code/ alone runs every filter",
        replace=(("@stdlib ", ""),)),
    "codetron selfalign run seeds.jsonl -o sa.jsonl --base-url http://127.0.0.1:8000/v1 --responses 10":
        NotHere(SERVER),
    "codetron rrtf sample --problems problems.jsonl --model hf/student --teacher teacher.jsonl --temperatures 0.2 0.8 "
    "--n-samples 4 --out samples.jsonl": NotHere(RRTF),
    "codetron rrtf rank --problems problems.jsonl --samples samples.jsonl --out pairs.jsonl": NotHere(RRTF),
    "codetron rrtf preprocess --input pairs.jsonl --out pairs --tokenizer hf/student": NotHere(RRTF),
    "codetron rrtf train --recipe rrtf --data.data_path pairs --checkpoint.load base --checkpoint.finetune true "
    "--checkpoint.save runs/rrtf": NotHere(RRTF),
    "codetron convert from-hf hf/starcoderbase-1b ckpt/sc1b --tp 2 --pp 2": Scaled(
        "starcoderbase-1b is a 4.5 GB download; hf/tiny, written by to-hf above, is a GPTBigCode folder too",
        replace=(("hf/starcoderbase-1b", "hf/tiny"),)),
    "codetron convert from-hf hf/starcoder2-15b ckpt/sc2 --tp 4 --pp 2": NotHere(
        "a 15B model from the hub (tests/convert/test_starcoder2.py converts a tiny StarCoder2 with --tp 4)"),
    "codetron convert from-hf hf/deepseek-coder-6.7b-base ckpt/ds --tp 2": NotHere(
        "a 6.7B model from the hub (tests/convert/test_llama.py converts tiny Llama and Qwen2 models in TP1/2/4 x PP1/2)"),
    "torchrun --standalone --nproc-per-node 4 -m codetron train --config ckpt/sc1b/iter_0000000/codetron_config.yaml "
    "--data.data_path out/sft --checkpoint.save runs/ft": Scaled("2 steps of the converted tiny model on 4 ranks",
                                                                 add="--optim.train_iters 2"),
    "codetron eval run --task humaneval --model hf/tiny --n-samples 20 --temperature 0.2 --k 1,10 --out eval/he":
        Scaled("a tiny random model on 2 cores: 2 problems, 16 new tokens", add="--limit 2 --max-new-tokens 16"),
    "codetron eval run --task humanevalsynthesize-js --problems humanevalpack/js/test.parquet --prompt octocoder "
    "--model hf/tiny --out eval/hep-js": NotHere("the published HumanEvalPack file is a hub download"),
    "codetron eval generate --task humanevalexplaindescribe-go --problems go.jsonl --prompt instruct --model M --out d":
        NotHere("HumanEvalPack Go problems are a hub download; M is an instruction-tuned model"),
    "codetron eval run --task humanevalexplainsynthesize-go --problems go.jsonl --descriptions d/generations.json "
    "--prompt instruct --model M --out s": NotHere("HumanEvalPack Go problems are a hub download; M as above"),
    "codetron eval run --task humanevalplus --problems HumanEvalPlus.jsonl.gz --prompt starcoder2-instruct "
    "--model hf/sc2-instruct --out eval/heplus": NotHere("EvalPlus data and StarCoder2-Instruct are hub downloads"),
    "codetron eval execute --task mbpp --generations generations.json --out eval/x": NotHere(
        "MBPP problems and harness generations come from the hub / another machine"),
    "codetron eval data fetch mbpp mbppplus humanevalplus humanevalsynthesize-go multiple-rs --data-dir "
    "/shared/eval-data": NotHere("downloads from the Hugging Face hub (network); tests/eval/test_eval_data.py fetches "
                                 "from a local server in the hub's URL layout and reads the cache offline"),
    "codetron eval execute --task mbpp --data-dir /shared/eval-data --generations run1/generations.json --label "
    "sc2-3b-t0.2 --out eval/sc2-3b": NotHere("reads the cache the fetch above fills (network) and generations "
                                            "made elsewhere; tests/eval/test_eval_data.py runs tasks on a fetched cache"),
    "codetron slurm submit train --recipe wizardcoder-sft --profile my.yaml --data out/sft --load ckpt/base": Scaled(
        "submit checks that --load holds the recipe's model (StarCoder-15B); the checkpoint here is runs/tiny, "
        "trained above, so the model is the tiny preset", replace=(("ckpt/base", "runs/tiny"),),
        add="--preset debug-tiny --model.seq_length 128"),
    # --- convert/README.md
    "codetron convert to-hf RUN_OR_ITER_DIR HF_OUT [--dtype bf16] [--max-shard-size 2GB] [--tokenizer T | "
    "--no-tokenizer] [--check] [--overwrite]": NotHere(SYNOPSIS),
    "codetron convert from-hf HF_DIR CKPT_OUT --tp N --pp M [--vpp V] [--dtype bf16] [--overwrite]": NotHere(SYNOPSIS),
    "codetron convert check RUN_OR_ITER_DIR HF_DIR [--atol 1e-4]": NotHere(SYNOPSIS),
    # --- --help texts
    "codetron eval run --model DIR --out DIR [--limit 10] [--prompt continue]": NotHere(SYNOPSIS),
    "codetron eval generate --model DIR --out DIR": NotHere(SYNOPSIS),
    "codetron eval execute --generations FILE --out DIR (alias: evaluate)": NotHere(SYNOPSIS),
    "codetron eval execute --canonical --out DIR": NotHere(SYNOPSIS),
    "codetron eval report METRICS.json ... --out DIR": NotHere(SYNOPSIS),
    "codetron eval data fetch TASK... [--data-dir DIR]": NotHere(SYNOPSIS),
    "codetron slurm render convert | eval ...": NotHere(SYNOPSIS),
    "codetron slurm examples [--check]": NotHere(SYNOPSIS + " (without --check it rewrites the shipped slurm/*.sbatch;"
                                                 " tests/slurm checks them)"),
    "codetron rrtf sample --problems probs.jsonl --model hf_student/ --teacher teacher.jsonl --temperatures 0.2 0.8 "
    "--n-samples 4 --out samples.jsonl": NotHere(RRTF),
    "codetron rrtf rank --problems probs.jsonl --samples samples.jsonl --out pairs.jsonl": NotHere(RRTF),
    "codetron rrtf preprocess --input pairs.jsonl --out data/rrtf_pairs --tokenizer hf_student/": NotHere(RRTF),
    "codetron rrtf train --recipe rrtf --data.data_path data/rrtf_pairs --checkpoint.load base_ckpt "
    "--checkpoint.save runs/rrtf --optim.train_iters N": NotHere(RRTF),
    "codetron preprocess instruct OUT.jsonl -o data/evol --template wizardcoder": Scaled(
        "OUT.jsonl is evolve's output; evol.jsonl holds the bundled Evol-Instruct sample in that format",
        replace=(("OUT.jsonl", "evol.jsonl"),)),
    "codetron selfalign seeds @stdlib my_repos/ -o seeds.jsonl --benchmark mbpp.jsonl": Scaled(
        "as the README's seeds example: my_repos/ without the 2-minute standard-library type check",
        replace=(("@stdlib ", ""),)),
    "codetron selfalign run seeds.jsonl -o selfalign.jsonl --base-url http://127.0.0.1:8000/v1": NotHere(SERVER),
    "codetron serve out/hf-model --port 8000": NotHere(SERVER + "; a long-running server (tests/eval/test_serve_*)"),
    "curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{\"messages\": [{\"role\": "
    "\"user\", \"content\": \"Write a Python function that reverses a string.\"}], \"max_tokens\": 128, "
    "\"temperature\": 0}'": NotHere("talks to the server above"),
    "codetron curves runs/bf16/loss.jsonl=bf16 runs/fp32/loss.jsonl=fp32 -o bf16_vs_fp32.png": NotHere(
        "loss logs of a GPU bf16 run and its fp32 reference (benchmarks/gpu_check.sh)"),
    # --- docs/extending.md: each needs the plug-in module its walk-through writes
    "codetron eval execute --task acme-python --problems acme.jsonl --canonical --out out/acme-canonical":
        NotHere(EXTENDING),
    "codetron eval execute --task acme-python --problems acme.jsonl --generations generations.json --out out/acme":
        NotHere(EXTENDING),
    "codetron preprocess code snippets.csv -o out/snippets --workers 0": NotHere(EXTENDING),
    "codetron preprocess inspect out/snippets -n 1": NotHere(EXTENDING),
    "codetron train --recipe santacoder-pretrain --print-config": NotHere(EXTENDING),
    "codetron train --recipe santacoder-pretrain --preset debug-tiny --model.seq_length 64 "
    "--optim.global_batch_size 4 --optim.train_iters 2 --optim.lr_warmup_iters 1 --data.data_path out/stack "
    "--data.tokenizer data/tokenizer/tokenizer.json --checkpoint.save runs/santacoder-tiny "
    "--logging.loss_log runs/santacoder-tiny.jsonl": NotHere(EXTENDING),
    "codetron convert from-hf mistral-hf ckpt/mistral": NotHere(EXTENDING),
    "codetron convert to-hf ckpt/mistral hf/mistral --check": NotHere(EXTENDING),
}

# Which earlier documents' outputs a document's examples read.
DEPENDS = {"README.md": ["preprocess/README.md"], "convert/README.md": ["README.md"], "slurm/README.md": ["README.md"],
           "--help": ["README.md"]}


# ------------------------------------------------------------------------------------ workspace

SBATCH_STUB = """#!/bin/bash
# No cluster here: record the submission, check the script parses, answer like sbatch.
echo "$*" >> "$SBATCH_LOG"
bash -n "${@: -1}" || exit 1
case " $* " in *" --parsable "*) echo 4242 ;; *) echo "Submitted batch job 4242" ;; esac
"""


def stack_record(path: Path, repo: str) -> dict:
    return {"content": path.read_text(encoding="utf-8"), "max_stars_repo_name": repo,
            "max_stars_repo_path": path.name, "max_stars_count": 3, "lang": "Python"}


def yaml_block(rel: str) -> str:
    """The first ```yaml block of a document (the slurm README's profile is the test's my.yaml)."""
    text = (ROOT / rel).read_text(encoding="utf-8")
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)


def make_workspace(ws: Path) -> dict:
    """Inputs the examples name but nothing earlier writes, each a bundled sample or a tiny stand-in,
    and the environment they run in (this checkout's codetron and torchrun, a stub sbatch, HOME)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    samples = ROOT / "data" / "samples"
    shutil.copytree(samples, ws / "data" / "samples")
    shutil.copytree(ROOT / "data" / "tokenizer", ws / "data" / "tokenizer")
    # commitpack inputs: commits.jsonl / commits/*.jsonl are CommitPack records; the bundled sample is one
    (ws / "commits").mkdir()
    shutil.copy(samples / "commitpack_sample.jsonl", ws / "commits.jsonl")
    shutil.copy(samples / "commitpack_sample.jsonl", ws / "commits" / "part-0.jsonl")
    shutil.copy(samples / "evol_instruct_sample.json", ws / "evol.json")
    evol = json.loads((samples / "evol_instruct_sample.json").read_text())
    (ws / "evol.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evol))
    # self-alignment output: instruction/response pairs
    pairs = [{"instruction": r["instruction"], "response": r["output"]} for r in evol]
    for name in ("sa.jsonl", "selfalign.jsonl"):
        (ws / name).write_text("".join(json.dumps(r) + "\n" for r in pairs))
    # 16 files for the 16-way shard examples (fewer than 16 files would shard by chunk and leave
    # shard 3 empty): one The Stack record each, from distinct stdlib modules
    sources = sorted(Path(shutil.__file__).parent.glob("*.py"))[:16]
    (ws / "raw").mkdir()
    (ws / "stack").mkdir()
    for i, src in enumerate(sources):
        rec = stack_record(src, f"python/cpython{i}")
        (ws / "raw" / f"part-{i:02d}.jsonl").write_text(json.dumps(rec) + "\n")
        pq.write_table(pa.Table.from_pylist([rec]), ws / "stack" / f"part-{i:02d}.parquet")
    # selfalign seeds: your own code and a benchmark to decontaminate against
    (ws / "my_code").mkdir()
    (ws / "my_code" / "util.py").write_text(
        'def clamp(value: float, low: float, high: float) -> float:\n'
        '    """Limit value to the closed range [low, high]."""\n'
        '    if low > high:\n        raise ValueError("low > high")\n'
        '    return max(low, min(high, value))\n\n\n'
        'def word_counts(text: str) -> dict[str, int]:\n'
        '    """Count how often each whitespace-separated word occurs in text."""\n'
        '    counts: dict[str, int] = {}\n'
        '    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n'
        '    return counts\n')
    shutil.copytree(ws / "my_code", ws / "my_repos")
    (ws / "mbpp.jsonl").write_text(json.dumps({
        "task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
        "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
        "test_list": ["assert set(similar_elements((3, 4), (4, 5))) == {4}"]}) + "\n")
    # a results file of bigcode-evaluation-harness (another model, another task) for `eval report`
    (ws / "harness").mkdir()
    (ws / "harness" / "evaluation_results.json").write_text(json.dumps({
        "humanevalsynthesize-js": {"pass@1": 0.25},
        "config": {"model": "bigcode/octocoder", "prompt": "octocoder", "n_samples": 1, "temperature": 0.2}}))
    (ws / "wiki.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in (
        "Python is a programming language. It was created by Guido van Rossum.\nIt is widely used.",
        "A compiler translates source code. An interpreter runs it directly. Both are common.")))
    (ws / "my.yaml").write_text(yaml_block("slurm/README.md"))
    # `train --recipe wizardcoder-sft --config sft.yaml`: the user's YAML is where a run is scaled to this
    # machine (tiny preset, one rank), fine-tuning runs/tiny, which the README trains
    (ws / "sft.yaml").write_text(
        "preset: debug-tiny\nmodel: {seq_length: 128}\n"
        "parallel: {tensor_model_parallel_size: 1, pipeline_model_parallel_size: 1}\n"
        "data: {data_path: out/sft}\noptim: {global_batch_size: 8, micro_batch_size: 2}\n"
        "checkpoint: {load: runs/tiny, save: runs/sft-yaml}\n")
    # `git-commits ~/src/myrepo`: HOME is the workspace's, holding a repository with a non-ASCII name
    repo = ws / "home" / "src" / "myrepo"
    repo.mkdir(parents=True)
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "café.py").write_text("def f():\n    return 1\n")
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "Add the first helper"], check=True)
    (repo / "café.py").write_text("def f():\n    return 2\n")
    subprocess.run(git + ["commit", "-q", "-am", "Return two from the helper"], check=True)

    bin_dir = ws / ".bin"
    bin_dir.mkdir()
    for name, body in {"codetron": f'#!/bin/sh\nexec "{PYTHON}" -m codetron "$@"\n',
                       "torchrun": f'#!/bin/sh\nexec "{TORCHRUN}" "$@"\n', "sbatch": SBATCH_STUB}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return subprocess_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HOME=str(ws / "home"),
                          SBATCH_LOG=str(ws / "sbatch.log"), PYTHON=PYTHON)


# ------------------------------------------------------------------------------------ checks

def summary(ws: Path, prefix: str) -> dict:
    return json.loads((ws / f"{prefix}.summary.json").read_text())


def latest(ws: Path, run: str) -> int:
    return int((ws / run / "latest_checkpointed_iteration.txt").read_text())


def check_tokenizer(ws, out):
    # the bundled tokenizer is exactly what its documented command trains
    assert (ws / "data/tokenizer/tokenizer.json").read_bytes() == (ROOT / "data/tokenizer/tokenizer.json").read_bytes()


def check_stack_sample(ws, out, prefix="out/code"):
    s = summary(ws, prefix)
    # the sample holds one exact copy and one HumanEval/0 file (data/samples/build_samples.py)
    assert (s["docs_in"], s["docs_kept"], s["dropped"]) == (13, 11, {"contaminated": 1, "exact_duplicate": 1}), s


def check_commitpack_sample(ws, out):
    from collections import Counter

    expected = Counter(json.loads((ROOT / "data/samples/commitpack_sample_expected_drops.json").read_text()))
    assert Counter(summary(ws, "out/commits")["dropped"]) == expected


def check_git_commits(ws, out):
    rows = [json.loads(line) for line in (ws / "commits.jsonl").read_text().splitlines()]
    assert {(r.get("new_file"), r.get("repos")) for r in rows} == {("café.py", "myrepo")}, rows
    assert len(rows) == 2


def check_shard(prefix):
    def check(ws, out):
        s = summary(ws, prefix)
        assert s["docs_in"] == 1 and s["docs_kept"] == 1, s  # file 3 of 16 only
    return check


def check_merge(shard, merged):
    def check(ws, out):
        # one shard merged: the same token stream, byte for byte
        for ext in (".bin", ".idx"):
            assert (ws / f"{merged}{ext}").read_bytes() == (ws / f"{shard}{ext}").read_bytes()
    return check


def check_run(run, iters):
    def check(ws, out):
        assert latest(ws, run) == iters
    return check


def check_to_hf(ws, out):
    config = json.loads((ws / "hf/tiny/config.json").read_text())
    assert config["model_type"] == "gpt_bigcode" and config["n_layer"] == 4
    diff = re.search(r"max \|logit diff\| (\S+) \(atol ([^,]+),", out)
    assert diff and float(diff.group(1)) <= float(diff.group(2)) and "check passed" in out, out[-2000:]


def check_eval(ws, out):
    metrics = json.loads((ws / "eval/he/metrics.json").read_text())
    text = json.dumps(metrics)
    assert "pass@1" in text and "pass@10" in text, text[:2000]


def check_report(ws, out):
    text = "\n".join(p.read_text() for p in (ws / "report").glob("*.md"))
    # our run (2 problems, 20 samples) and the harness's file side by side; pass@k in percent
    assert re.search(r"\| tiny \| continue \| humaneval \| 2 \| 20 \|", text), text
    assert re.search(r"\| octocoder \| octocoder \| humanevalsynthesize-js \|.*\| 25\.00 \|", text), text


def check_render(ws, out):
    script = ws / "slurm/starcoder-pretrain.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "--recipe starcoder-pretrain" in script.read_text()


def check_submitted(n):
    def check(ws, out):
        assert out.count("4242") >= n, out
    return check


CHECKS = {
    "codetron preprocess train-tokenizer @stdlib -o data/tokenizer --vocab-size 8192": check_tokenizer,
    "codetron preprocess code data/samples/the_stack_sample.jsonl -o out/code": check_stack_sample,
    "codetron preprocess code data/samples/the_stack_sample.jsonl -o out/stack":
        lambda ws, out: check_stack_sample(ws, out, "out/stack"),
    "codetron preprocess commitpack data/samples/commitpack_sample.jsonl -o out/commits": check_commitpack_sample,
    "codetron preprocess git-commits ~/src/myrepo -o commits.jsonl": check_git_commits,
    "codetron preprocess code 'stack/*.parquet' --shard 3/16 -o out/stack.3-of-16": check_shard("out/stack.3-of-16"),
    "codetron preprocess merge out/stack.*-of-16 -o out/all": check_merge("out/stack.3-of-16", "out/all"),
    "codetron preprocess merge out/code.*-of-16 -o out/code": check_merge("out/code.3-of-16", "out/code"),
    "codetron train --recipe wizardcoder-sft --config sft.yaml --optim.train_iters 10": check_run("runs/sft-yaml", 10),
    "codetron preprocess code raw/ --shard 3/16 -o out/code.3-of-16": check_shard("out/code.3-of-16"),
    "codetron train --preset debug-tiny --data.data_path out/code --checkpoint.save runs/tiny": check_run("runs/tiny", 20),
    "codetron convert to-hf runs/tiny hf/tiny --check": check_to_hf,
    "codetron convert check runs/tiny hf/tiny": check_to_hf,
    "codetron eval run --task humaneval --model hf/tiny --n-samples 20 --temperature 0.2 --k 1,10 --out eval/he":
        check_eval,
    "codetron eval report eval/*/metrics.json harness/evaluation_results.json --out report/": check_report,
    "codetron slurm render train --recipe starcoder-pretrain --profile a100-64node -o slurm/": check_render,
    "codetron slurm submit preprocess --mode code --inputs 'raw/*.jsonl' --output data/code --shards 16":
        check_submitted(2),
}
def check_sentences(ws, out):
    s = summary(ws, "out/wiki")
    assert s["docs_kept"] == 2 and s["sequences"] == 6, s  # one sequence per sentence: 3 + 3


CHECKS.update({
    "codetron preprocess text wiki.jsonl --split-sentences --keep-newlines -o out/wiki": check_sentences,
    "torchrun --standalone --nproc-per-node 4 -m codetron train --preset debug-tiny "
    "--parallel.tensor_model_parallel_size 2 --parallel.pipeline_model_parallel_size 2 --data.data_path out/code "
    "--checkpoint.save runs/tiny-tp2pp2": check_run("runs/tiny-tp2pp2", 4),
    "codetron train --recipe wizardcoder-sft --data.data_path out/sft --checkpoint.load runs/base "
    "--checkpoint.finetune true --checkpoint.save runs/wizard": check_run("runs/wizard", 2),
    "torchrun --standalone --nproc-per-node 4 -m codetron train --config ckpt/sc1b/iter_0000000/codetron_config.yaml "
    "--data.data_path out/sft --checkpoint.save runs/ft": check_run("runs/ft", 2),
})


# ------------------------------------------------------------------------------------ running

def train_fields() -> set[str]:
    import dataclasses

    from codetron.megatron_ext.config import SECTIONS, TrainConfig

    cfg = TrainConfig()
    return {f"--{sec}.{f.name}" for sec in SECTIONS for f in dataclasses.fields(getattr(cfg, sec))}


def unknown_flags(text: str, parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Flags of a ``codetron`` command line that its (sub)parser does not define; trainer fields
    count for the commands that pass them to the trainer (train, rrtf train, slurm ... train)."""
    words = [w.strip("[]") for w in shlex.split(text.replace("|", " "))]
    words = words[words.index("codetron") + 1:]
    parser, path = parsers[words[0]], [words[0]]
    for w in words[1:]:
        sub = subparsers(parser)
        if w not in sub:
            break
        parser, path = sub[w], path + [w]
    known = {s for a in parser._actions for s in a.option_strings}
    if path[0] == "train" or path[-1] == "train":
        known |= train_fields() | {s for a in parsers["train"]._actions for s in a.option_strings}
        known.add("--section.field")  # the docs' name for "any of them"
    bad = []
    for w in words:
        if w == "--":
            break
        if w.startswith("-") and not re.fullmatch(r"-\d[\d.e-]*", w) and w.split("=")[0] not in known:
            bad.append(w)
    return bad


def command_for(text: str, handling) -> str:
    if isinstance(handling, Scaled):
        for old, new in handling.replace:
            assert old in text, (old, text)
            text = text.replace(old, new)
        if handling.add:
            text = f"{text} {handling.add}"
    return text


class Session:
    """The shared workspace, what ran in it, and each document's failures."""

    def __init__(self, ws: Path):
        self.ws, self.env = ws, make_workspace(ws)
        self.ran: dict[str, float] = {}  # command -> seconds
        self.done: dict[str, list[str]] = {}
        self.parsers = stage_parsers()

    def run(self, ex: Example) -> str | None:
        """None when the example ran (or was checked) and passed, else why not."""
        handling = HANDLING.get(ex.text)
        if isinstance(handling, NotHere):
            if ex.text.startswith("codetron "):
                bad = unknown_flags(ex.text, self.parsers)
                if bad:
                    return f"{ex.source}: `{ex.text}` names flags the CLI does not have: {bad}"
            return None
        if ex.text in self.ran:  # the same command in two places runs once
            return None
        cmd = command_for(ex.text, handling)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["bash", "-c", cmd], cwd=self.ws, env=self.env, capture_output=True, text=True,
                                  timeout=900)
        except subprocess.TimeoutExpired:
            return f"{ex.source}: `{cmd}` did not finish in 900 s"
        self.ran[ex.text] = time.monotonic() - t0
        print(f"{self.ran[ex.text]:6.1f}s  {ex.source}: {cmd}")  # with -s: where the time goes
        if proc.returncode != 0:
            return (f"{ex.source}: `{cmd}` exited {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}")
        check = CHECKS.get(ex.text)
        if check:
            try:
                check(self.ws, proc.stdout + proc.stderr)
            except AssertionError as exc:
                return f"{ex.source}: `{cmd}` ran but its result is wrong: {exc}"
        return None

    def run_source(self, name: str, examples: list[Example]) -> list[str]:
        if name not in self.done:
            for dep in DEPENDS.get(name, []):
                self.run_source(dep, markdown_examples(Path(dep)))
            self.done[name] = [msg for ex in examples if (msg := self.run(ex))]
        return self.done[name]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Session:
    return Session(tmp_path_factory.mktemp("examples"))


def all_examples() -> list[Example]:
    docs = [ex for rel in markdown_files() for ex in markdown_examples(rel)]
    return docs + help_examples()


# ------------------------------------------------------------------------------------ tests

def test_extraction_finds_the_examples():
    """The extractor sees every kind of source: a fenced README block with a continuation, a help
    epilog with an aligned annotation, an unlabelled block's synopsis."""
    texts = {ex.text for ex in all_examples()}
    assert "codetron eval tasks" in texts and "codetron eval formats" in texts  # annotation stripped
    assert any(t.startswith("torchrun ") and t.endswith("--checkpoint.save runs/tiny-tp2pp2") for t in texts)
    assert any(t.startswith("codetron convert to-hf RUN_OR_ITER_DIR") for t in texts)
    assert strip_comment("codetron merge out/code.*-of-16 -o out/code   # merge") == "codetron merge out/code.*-of-16 -o out/code   "
    assert strip_comment("echo '#x' # c") == "echo '#x' "


def test_every_table_entry_names_an_example():
    texts = {ex.text for ex in all_examples()}
    stale = sorted((set(HANDLING) | set(CHECKS)) - texts)
    assert not stale, f"entries naming no example (update them with the docs): {stale}"


def test_examples_not_runnable_here_name_real_flags():
    """A command listed in NOT_HERE still matches the CLI: every flag it names exists."""
    parsers = stage_parsers()
    bad = [f"{ex.source}: {ex.text}: {flags}" for ex in all_examples()
           if isinstance(HANDLING.get(ex.text), NotHere) and ex.text.startswith("codetron ")
           and (flags := unknown_flags(ex.text, parsers))]
    assert not bad, "\n".join(bad)
    # the check is not vacuous: a renamed flag is caught
    assert unknown_flags("codetron convert to-hf A B --dtyp bf16", parsers) == ["--dtyp"]
    assert unknown_flags("codetron rrtf train --data.data_pth x", parsers) == ["--data.data_pth"]


def doc_params():
    names = [str(p) for p in markdown_files() if markdown_examples(p)]  # a file without examples has no test
    ordered = [n for n in DOC_ORDER if n in names] + [n for n in names if n not in DOC_ORDER]
    return [pytest.param(n, marks=pytest.mark.slow) for n in ordered]


@pytest.mark.parametrize("doc", doc_params())
def test_markdown_examples_run(session, doc):
    failures = session.run_source(doc, markdown_examples(Path(doc)))
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_help_examples_run(session):
    failures = session.run_source("--help", help_examples())
    assert not failures, "\n\n".join(failures)


# Inline `codetron ...` spans of the prose mostly name a stage or show a synopsis; their flags must
# exist all the same, and those that are whole commands run (cheap listings and checks).
INLINE_RUN = {
    "codetron presets": "debug-tiny",
    "codetron train --fields": "--model.num_layers",
    "codetron eval tasks": "humaneval",
    "codetron eval formats": "wizardcoder",
    "codetron slurm profiles": "a100-64node",
    "codetron slurm examples --check": "",  # the shipped slurm/*.sbatch equal a fresh render
}


def inline_commands() -> list[Example]:
    found = []
    for rel in markdown_files():
        prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"),
                       (ROOT / rel).read_text(encoding="utf-8"), flags=re.S)
        for m in re.finditer(r"`(codetron [^`]+)`", prose):
            line = prose.count("\n", 0, m.start()) + 1
            found.append(Example(f"{rel}:{line}", normalise(m.group(1).replace("\\|", "|"))))
    return found


def test_inline_commands_match_the_cli():
    parsers = stage_parsers()
    spans = [ex for ex in inline_commands() if ex.text.split()[1] in parsers]
    bad = [f"{ex.source}: `{ex.text}`: {flags}" for ex in spans if (flags := unknown_flags(ex.text, parsers))]
    assert not bad, "flags the CLI does not have:\n" + "\n".join(bad)
    texts = {ex.text for ex in spans}
    assert set(INLINE_RUN) <= texts, f"no longer in the docs: {set(INLINE_RUN) - texts}"
    for text, expected in INLINE_RUN.items():
        proc = subprocess.run([PYTHON, "-m", "codetron", *text.split()[1:]], cwd=ROOT, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and expected in proc.stdout, (text, proc.stdout[-1000:], proc.stderr[-2000:])


# ------------------------------------------------------------------------ what the examples point to

def test_slurm_help_names_its_readme_where_installed(tmp_path, capsys):
    """`codetron slurm --help` sends readers to slurm/README.md: the path it prints exists, and the
    README is package data, so a built (wheel) tree holds it at that place."""
    from codetron.slurm import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    named = re.findall(r"See (\S+README\.md)", capsys.readouterr().out)
    assert named and Path(named[0]).is_file() and Path(named[0]).parent == Path(cli.__file__).resolve().parent
    proc = subprocess.run([PYTHON, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("slurm", "preprocess", "convert"):
        assert (tmp_path / "codetron" / stage / "README.md").read_bytes() == (ROOT / stage / "README.md").read_bytes()


@pytest.mark.slow
def test_rendered_convert_job_can_run_again(session, tmp_path):
    """A requeued or re-submitted convert job finds its own finished output: it replaces it instead of
    failing on "exists; pass --overwrite" (srun is a stub that runs the command)."""
    session.run_source("README.md", markdown_examples(Path("README.md")))
    run, out = session.ws / "runs" / "tiny", tmp_path / "hf"
    proc = subprocess.run([PYTHON, "-m", "codetron", "slurm", "render", "convert", "--checkpoint", str(run),
                           "--output", str(out), "--stdout"], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "job.sbatch").write_text(proc.stdout)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    (tmp_path / "bin" / "srun").chmod(0o755)
    env = subprocess_env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", PYTHON=PYTHON)
    for attempt in (1, 2):
        job = subprocess.run(["bash", "job.sbatch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert job.returncode == 0, f"attempt {attempt}: {job.stderr[-2000:]}"
        assert json.loads((out / "config.json").read_text())["model_type"] == "gpt_bigcode"
