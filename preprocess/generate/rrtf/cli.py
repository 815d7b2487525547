"""``codetron rrtf``: PanGu-Coder2's RRTF -- sample, rank, preprocess, train.

The whole loop on problems with unit tests (HumanEval schema or {instruction, test}):

    codetron rrtf sample --problems probs.jsonl --model hf_student/ --teacher teacher.jsonl \\
        --temperatures 0.2 0.8 --n-samples 4 --out samples.jsonl
    codetron rrtf rank --problems probs.jsonl --samples samples.jsonl --out pairs.jsonl
    codetron rrtf preprocess --input pairs.jsonl --out data/rrtf_pairs --tokenizer hf_student/
    codetron rrtf train --recipe rrtf --data.data_path data/rrtf_pairs --checkpoint.load base_ckpt \\
        --checkpoint.save runs/rrtf --optim.train_iters N

``rrtf train`` is ``codetron train --data.mode rrtf`` (any train flag works; see `codetron train
--help`). The loss is L = L_rank + L_ft with length-normalised log-probabilities; the micro-batch
must be even (a pair's chosen and rejected rows share a forward pass) and the global batch counts
rows, i.e. two per pair.

The commands span the data path: ``sample`` and ``rank`` generate data (this folder), ``preprocess``
writes the pairs dataset and ``train`` runs the trainer (both in ``megatron_ext``).
"""
from __future__ import annotations

import argparse

from codetron.cli_args import add_field
from codetron.errors import CodetronError


def build_parser() -> argparse.ArgumentParser:
    from codetron.megatron_ext.rrtf.preprocess import PairsPlan
    from codetron.preprocess.generate.rrtf.rank import RankConfig
    from codetron.preprocess.generate.rrtf.sample import SampleConfig

    p = argparse.ArgumentParser(prog="codetron rrtf", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", metavar="{sample,rank,preprocess,train}")

    s = sub.add_parser("sample", help="student responses from a HF model folder + teacher responses",
                       description="Sample n student responses per problem at each temperature from a Hugging Face "
                                   "model folder, and collect teacher responses (files or an OpenAI-compatible "
                                   "endpoint). Resumable: re-run the same command after a crash.")
    s.add_argument("--problems", required=True, help="problems jsonl with tests (HumanEval schema or instruction/test)")
    s.add_argument("--out", required=True, help="samples jsonl (appended to, resumable)")
    add_field(s, SampleConfig, "model", note="E.g. from `codetron convert`.")
    add_field(s, SampleConfig, "temperatures", nargs="+")
    for name in ("n_samples", "top_p", "max_new_tokens", "batch_size", "seed", "device", "dtype"):
        add_field(s, SampleConfig, name)
    add_field(s, SampleConfig, "backend", choices=["transformers", "vllm"])
    add_field(s, SampleConfig, "teacher_files", "--teacher", action="append", metavar="FILE", note="Repeatable.")
    add_field(s, SampleConfig, "teacher_endpoint", note="E.g. http://host:8000/v1.")
    add_field(s, SampleConfig, "teacher_model")
    add_field(s, SampleConfig, "teacher_max_new_tokens", "--teacher-max-new-tokens", "--teacher-max-tokens")
    add_field(s, SampleConfig, "teacher_api_key_env")
    add_field(s, SampleConfig, "shard", metavar="K/N")
    add_field(s, SampleConfig, "chunk")
    s.add_argument("--limit", type=int, help="only the first N problems")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("rank", help="run responses against tests, write every ranked pair + tier stats",
                       description="Score every teacher and student response in the eval sandbox (compile error < "
                                   "runtime error < partial pass < all pass) and write, per problem, one pair for every "
                                   "two distinct responses with different scores (PanGu-Coder2's L_rank sum), the "
                                   "higher-scored one chosen, plus OUT.stats.json.")
    r.add_argument("--problems", required=True, help="the problems jsonl given to `sample`")
    r.add_argument("--samples", required=True, nargs="+", help="samples jsonl file(s) (several shards allowed)")
    r.add_argument("--out", required=True, help="pairs jsonl")
    add_field(r, RankConfig, "timeout")
    add_field(r, RankConfig, "workers")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = sub.add_parser("preprocess", help="tokenize pairs into the indexed pairs dataset for training",
                       description="Tokenize ranked pairs into PREFIX.bin/.idx (documents = [prompt, chosen, rejected]) "
                                   "+ PREFIX.scores.npy + PREFIX.rrtf.json.")
    q.add_argument("--input", required=True, help="pairs jsonl from `rrtf rank`")
    q.add_argument("--out", required=True, help="output prefix")
    q.add_argument("--tokenizer", help="tokenizer.json / folder / .model (default: the bundled tokenizer)")
    add_field(q, PairsPlan, "epochs")
    add_field(q, PairsPlan, "global_batch_size")

    sub.add_parser("train", help="codetron train --data.mode rrtf (all train flags pass through)", add_help=False)
    return p


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "train":
        from codetron.megatron_ext.train import main as train_main

        rest = argv[1:]
        return train_main(rest + ["--data.mode", "rrtf"] if "--help" not in rest and "-h" not in rest else rest)
    args = build_parser().parse_args(argv)
    if args.cmd is None:
        build_parser().print_help()
        return 2
    if args.cmd == "sample":
        from codetron.preprocess.generate.rrtf.sample import SampleConfig, run

        run(SampleConfig(
            problems=args.problems, out=args.out, model=args.model, temperatures=args.temperatures,
            n_samples=args.n_samples, top_p=args.top_p, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
            seed=args.seed, device=args.device, dtype=args.dtype, backend=args.backend, teacher_files=args.teacher,
            teacher_endpoint=args.teacher_endpoint, teacher_model=args.teacher_model,
            teacher_max_new_tokens=args.teacher_max_new_tokens, teacher_api_key_env=args.teacher_api_key_env,
            shard=args.shard, chunk=args.chunk, limit=args.limit), progress=not args.no_progress)
        return 0
    if args.cmd == "rank":
        from codetron.preprocess.generate.rrtf.rank import run

        if args.timeout <= 0 or args.workers < 1:
            raise CodetronError("--timeout must be > 0 and --workers >= 1")
        run(args.problems, args.samples, args.out, args.timeout, args.workers, progress=not args.no_progress)
        return 0
    if args.cmd == "preprocess":
        from codetron.megatron_ext.rrtf.preprocess import run

        if args.epochs < 1 or args.global_batch_size < 2 or args.global_batch_size % 2:
            raise CodetronError("--epochs must be >= 1 and --global-batch-size an even number >= 2")
        run(args.input, args.out, args.tokenizer, args.epochs, args.global_batch_size)
        return 0
    raise CodetronError(f"unknown rrtf command {args.cmd!r}")
