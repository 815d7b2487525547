"""``codetron preprocess``: code, CommitPack and instruction data -> megatron-core .bin/.idx.

Subcommands (``codetron preprocess SUBCOMMAND --help`` for each):
  train-tokenizer  byte-level BPE with StarCoder's special tokens
  code             The Stack-style records or source trees, StarCoder metadata format
  commitpack       CommitPack records, CommitPackFT filters, StarCoder/OctoCoder format
  instruct         Evol-Instruct / CodeAlpaca records, WizardCoder/OctoCoder/plain template
  text             any records with a ``text`` field, as plain pretraining documents
  merge            concatenate shard outputs (streaming)
  git-commits      a local git repository's history as CommitPack jsonl
  inspect          decode the first documents of an output, to check it
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from codetron.cli_args import Repeat, add_field
from codetron.errors import ConfigError

EPILOG = """Output: PREFIX.bin + PREFIX.idx (megatron-core IndexedDataset; uint16 tokens when the vocab
fits, else int32) and PREFIX.summary.json (docs in/kept, drops per reason, errors with file:line,
tokens, time). Layouts: pretrain = one sequence per document ending in EOD; sft = two sequences per
document, [prompt, response+EOD] (loss on the response only). See {readme}.""".format(
    readme=Path(__file__).resolve().with_name("README.md"))  # ships as package data: its installed path


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/8), got {text!r}") from None
    return i, n


def _prob(text: str) -> float:
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability must be in [0, 1], got {text}")
    return p


@dataclass(kw_only=True, slots=True)
class InspectConfig:
    """What ``codetron preprocess inspect`` shows."""

    docs: int = 2
    """Documents to decode, from the first."""
    max_chars: int = 600
    """Characters shown per sequence; the rest is counted, not printed."""


def _languages(text: str) -> frozenset[str]:
    return frozenset(x.strip().lower() for x in text.split(",") if x.strip())


def _add_common(p: argparse.ArgumentParser, mode: str) -> None:
    from codetron.preprocess.config import DEFAULT_LAYOUT, JobConfig, PipelineConfig

    p.add_argument("inputs", nargs="+", help="files, directories or globs: .jsonl[.gz|.zst], .json (array or lines), .parquet; "
                                             "`datasets` save_to_disk directories; hub datasets, streamed: "
                                             "hf://OWNER/NAME[@REVISION][/DATA_DIR][:CONFIG][:SPLIT] (split default train)")
    p.add_argument("-o", "--output-prefix", required=True, help="writes PREFIX.bin, PREFIX.idx, PREFIX.summary.json")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json, a directory with one, or a sentencepiece .model (default: bundled data/tokenizer)")
    add_field(p, JobConfig, "layout", choices=["pretrain", "sft"], note=f"Here: {DEFAULT_LAYOUT[mode]}.")
    add_field(p, PipelineConfig, "workers")
    add_field(p, JobConfig, "encoder", choices=["auto", "tiktoken", "tokenizers"])
    add_field(p, PipelineConfig, "shard", type=_shard, metavar="I/N", show=lambda s: f"{s[0]}/{s[1]}",
              note="Merge the outputs with `merge`.")
    add_field(p, PipelineConfig, "on_error", choices=["skip", "fail"])
    add_field(p, JobConfig, "quality.dedup", choices=["none", "exact", "near"])
    add_field(p, JobConfig, "quality.near.threshold", "--near-threshold")
    add_field(p, JobConfig, "quality.near.num_perm", "--near-num-perm")
    add_field(p, JobConfig, "quality.near.ngram", "--near-ngram")
    add_field(p, JobConfig, "quality.decontaminate", "--no-decontaminate", negate=True)
    add_field(p, JobConfig, "quality.decontam.ngram", "--decontam-ngram")
    p.add_argument("--field", action="append", default=[], metavar="NAME=KEY", help="read logical field NAME (content, repo, path, stars, lang, instruction, input, output, text) from KEY")
    add_field(p, JobConfig, "seed")
    add_field(p, PipelineConfig, "chunk_docs")
    add_field(p, JobConfig, "max_doc_chars", metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from codetron.preprocess.config import JobConfig, PipelineConfig
    from codetron.preprocess.gitcommits import GitCommitsConfig
    from codetron.preprocess.tokenizer import TokenizerTrainConfig

    parser = argparse.ArgumentParser(
        prog="codetron preprocess",
        description="Tokenize code, CommitPack and instruction data into megatron-core .bin/.idx, streaming, on all cores.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    sub.required = True

    t = sub.add_parser("train-tokenizer", help="train a byte-level BPE with StarCoder's special tokens",
                       description="Train a byte-level BPE (digits split individually, StarCoder's 19 special tokens first) on source files or jsonl.")
    t.add_argument("inputs", nargs="+", help="source files/directories (files ending in --suffix), @stdlib (this Python's standard library), or jsonl/parquet with content/text")
    t.add_argument("--exclude", action="append", default=[], help="fnmatch glob of relative paths to skip (e.g. 'test/*')")
    t.add_argument("-o", "--output-dir", required=True, help="directory to write tokenizer.json into")
    add_field(t, TokenizerTrainConfig, "vocab_size")
    add_field(t, TokenizerTrainConfig, "suffixes", "--suffix", action=Repeat, note="Repeatable.")
    add_field(t, TokenizerTrainConfig, "min_frequency")
    add_field(t, TokenizerTrainConfig, "max_file_bytes")

    c = sub.add_parser("code", help="pretraining code with StarCoder metadata", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Code documents as <reponame>REPO<filename>PATH<gh_stars>BUCKET\\nCODE<|endoftext|>, each metadata field kept with its probability.")
    _add_common(c, "code")
    for name in ("p_repo", "p_path", "p_stars"):
        add_field(c, JobConfig, f"code.{name}", type=_prob)
    add_field(c, JobConfig, "code.languages", "--languages", type=_languages, metavar="LANG,LANG",
              note="Comma-separated, e.g. python,java.")
    add_field(c, PipelineConfig, "source_suffixes", "--source-suffix", action="append",
              note="Repeatable; @stdlib as an input is this Python's standard library.")
    add_field(c, PipelineConfig, "exclude", action="append", note="Repeatable.")
    add_field(c, PipelineConfig, "max_file_bytes")

    from codetron.preprocess.commitpack import RULES

    m = sub.add_parser("commitpack", help="CommitPack with CommitPackFT filters", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="CommitPack records (old_contents, new_contents, subject, message, ...) filtered by CommitPackFT's rules: " + ", ".join(RULES))
    _add_common(m, "commitpack")
    add_field(m, JobConfig, "commit.format", "--commit-format", choices=["starcoder", "octocoder", "plain"])
    add_field(m, JobConfig, "commit.filename", "--commit-filename")
    add_field(m, JobConfig, "commit.filters.disabled", "--disable-rule", action="append", choices=RULES, metavar="RULE",
              note=f"Repeatable: {', '.join(RULES)}.")
    add_field(m, JobConfig, "commit.filters.verbs", "--verbs", choices=["extended", "octopack"])
    for name in ("min_tokens", "max_tokens", "max_old_chars"):
        add_field(m, JobConfig, f"commit.filters.{name}")
    add_field(m, JobConfig, "commit.filters.bump_drop_prob", type=_prob)

    i = sub.add_parser("instruct", help="Evol-Instruct / CodeAlpaca instruction data", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Instruction records (instruction, optional input, output) rendered with a template; sft layout keeps the prompt/response boundary.")
    _add_common(i, "instruct")
    add_field(i, JobConfig, "instruct.template", "--template",
              choices=["wizardcoder", "octocoder", "plain", "starcoder2-instruct"])

    x = sub.add_parser("text", help="plain text documents (field text)", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(x, "text")
    add_field(x, JobConfig, "sentences.split", "--split-sentences")
    add_field(x, JobConfig, "sentences.keep_newlines", "--keep-newlines", note="Needs --split-sentences.")
    add_field(x, JobConfig, "sentences.lang", "--lang", note="nltk's data path is NLTK_DATA.")
    add_field(x, JobConfig, "sentences.punkt_model", "--punkt-model", metavar="DIR")

    g = sub.add_parser("merge", help="concatenate datasets (e.g. --shard outputs) without loading them",
                       description="Concatenate PREFIX.bin/.idx datasets in the given order; summaries are summed.")
    g.add_argument("inputs", nargs="+", help="dataset prefixes (without .bin/.idx)")
    g.add_argument("-o", "--output-prefix", required=True)

    gc = sub.add_parser("git-commits", help="a local repository's history as CommitPack jsonl",
                        description="One CommitPack record per changed text file per non-merge commit; feed the output to `commitpack`.")
    gc.add_argument("repo", help="path inside a git work tree")
    gc.add_argument("-o", "--output", required=True, help="jsonl file to write")
    for name in ("rev", "max_commits", "max_file_bytes"):
        add_field(gc, GitCommitsConfig, name)

    s = sub.add_parser("inspect", help="decode the first documents of a dataset")
    s.add_argument("prefix", help="dataset prefix")
    add_field(s, InspectConfig, "docs", "-n", "--docs")
    s.add_argument("--tokenizer", default=None, help="tokenizer (default: the one in PREFIX.summary.json, else bundled)")
    add_field(s, InspectConfig, "max_chars")
    return parser


def _job_from_args(args, mode: str):
    from codetron.preprocess.commitpack import CommitFilterConfig
    from codetron.preprocess.config import FIELD_ALIASES, CodeConfig, CommitConfig, InstructConfig, JobConfig, QualityConfig, SentenceConfig
    from codetron.preprocess.quality import DecontamConfig, NearDedupConfig
    from codetron.preprocess.tokenizer import default_tokenizer_path

    fields = dict(FIELD_ALIASES)
    for spec in args.field:
        name, sep, key = spec.partition("=")
        if not sep or name not in fields or not key:
            raise ConfigError(f"--field {spec!r}: expected NAME=KEY with NAME in {', '.join(fields)}")
        fields[name] = (key,)
    job = JobConfig(
        mode=mode,
        layout=args.layout,
        tokenizer=str(args.tokenizer or default_tokenizer_path()),
        encoder=args.encoder,
        fields=fields,
        seed=args.seed,
        max_doc_chars=args.max_doc_chars,
        quality=QualityConfig(
            dedup=args.dedup,
            near=NearDedupConfig(threshold=args.near_threshold, num_perm=args.near_num_perm, ngram=args.near_ngram),
            decontaminate=args.decontaminate,
            decontam=DecontamConfig(ngram=args.decontam_ngram, min_tokens=args.decontam_ngram),
        ),
    )
    if mode == "code":
        job.code = CodeConfig(p_repo=args.p_repo, p_path=args.p_path, p_stars=args.p_stars,
                              languages=frozenset(args.languages))
    elif mode == "commitpack":
        job.commit = CommitConfig(
            format=args.commit_format,
            filename=args.commit_filename,
            filters=CommitFilterConfig(disabled=frozenset(args.disable_rule), verbs=args.verbs, min_tokens=args.min_tokens, max_tokens=args.max_tokens,
                                       max_old_chars=args.max_old_chars, bump_drop_prob=args.bump_drop_prob, seed=args.seed),
        )
    elif mode == "instruct":
        job.instruct = InstructConfig(template=args.template)
    elif mode == "text":
        job.sentences = SentenceConfig(split=args.split_sentences, keep_newlines=args.keep_newlines, lang=args.lang, punkt_model=args.punkt_model)
        if (args.keep_newlines or args.punkt_model) and not args.split_sentences:
            raise ConfigError("--keep-newlines and --punkt-model need --split-sentences")
    return job


def _print_summary(summary: dict) -> None:
    drops = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.get("dropped", {}).items(), key=lambda kv: -kv[1])) or "none"
    print(f"wrote {summary['output']}.bin/.idx ({summary['dtype']}): {summary['docs_kept']:,} of {summary['docs_in']:,} documents, "
          f"{summary['tokens_out']:,} tokens in {summary['seconds']:.1f}s ({summary['tokens_per_s']:,.0f} tokens/s)")
    print(f"  dropped: {drops}")
    if summary.get("errors_total"):
        print(f"  bad records: {summary['errors_total']:,} (first: {summary['errors'][0]})")
    print(f"  summary: {summary['output']}.summary.json")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "train-tokenizer":
        from codetron.preprocess.tokenizer import TokenizerTrainConfig, iter_training_texts, train_tokenizer_to

        cfg = TokenizerTrainConfig(vocab_size=args.vocab_size, min_frequency=args.min_frequency, max_file_bytes=args.max_file_bytes)
        suffixes = tuple(args.suffix)
        tok = train_tokenizer_to(args.output_dir, iter_training_texts(args.inputs, suffixes, cfg, args.exclude), cfg)
        size = Path(tok.path).stat().st_size
        print(f"wrote {tok.path} (vocab {tok.vocab_size}, eod {tok.eod}, pad {tok.pad}, {size / 1024:.0f} KiB)")
        return 0
    if args.cmd == "merge":
        import glob
        import re

        from codetron.preprocess.merge import merge

        # An unquoted `out/code.*-of-16` matches no file (they end in .bin/.idx), so the shell hands the
        # pattern over: it names the prefixes whose .idx exists, in natural order (shard 2 before 10).
        inputs = []
        for arg in args.inputs:
            found = [m[:-len(".idx")] for m in glob.glob(arg + ".idx")] if any(c in arg for c in "*?[") else []
            inputs += sorted(found, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]) or [arg]
        s = merge(inputs, args.output_prefix)
        print(f"wrote {args.output_prefix}.bin/.idx: {s['documents']:,} documents, {s['sequences']:,} sequences, {s['tokens_out']:,} tokens from {len(inputs)} inputs")
        return 0
    if args.cmd == "git-commits":
        from codetron.preprocess.gitcommits import GitCommitsConfig, export

        n = export(args.repo, args.output, GitCommitsConfig(rev=args.rev, max_commits=args.max_commits, max_file_bytes=args.max_file_bytes))
        print(f"wrote {args.output}: {n} file changes")
        return 0
    if args.cmd == "inspect":
        return _inspect(args)

    from codetron.preprocess.config import PipelineConfig
    from codetron.preprocess.pipeline import run

    job = _job_from_args(args, args.cmd)
    cfg = PipelineConfig(
        inputs=args.inputs,
        output_prefix=args.output_prefix,
        job=job,
        workers=args.workers,
        chunk_docs=args.chunk_docs,
        on_error=args.on_error,
        shard=args.shard,
        progress=not args.quiet,
        # source trees are `code`'s alone: the other modes keep PipelineConfig's defaults
        **({"source_suffixes": tuple(args.source_suffix), "exclude": tuple(args.exclude),
            "max_file_bytes": args.max_file_bytes} if args.cmd == "code" else {}),
    )
    _print_summary(run(cfg))
    return 0


def _inspect(args) -> int:
    from codetron.preprocess.indexed import IndexInfo
    from codetron.preprocess.layout import dataset_layout
    from codetron.preprocess.tokenizer import load_tokenizer

    info = IndexInfo(args.prefix)
    tok_path = args.tokenizer
    if tok_path is None:
        try:
            tok_path = json.loads(Path(f"{args.prefix}.summary.json").read_text())["tokenizer"]
        except (OSError, KeyError, json.JSONDecodeError):
            tok_path = None
    tok = load_tokenizer(tok_path)
    import numpy as np

    data = np.memmap(f"{args.prefix}.bin", dtype=info.dtype, mode="r") if info.tokens else np.zeros(0, info.dtype)
    starts = np.concatenate([[0], np.cumsum(info.lengths, dtype=np.int64)])
    print(f"{args.prefix}: {info.n_doc_idx - 1:,} documents, {info.n_seq:,} sequences, {info.tokens:,} tokens, "
          f"dtype {np.dtype(info.dtype).name}, layout {dataset_layout(args.prefix) or 'unknown'}")
    for d in range(min(args.docs, info.n_doc_idx - 1)):
        lo, hi = int(info.document_indices[d]), int(info.document_indices[d + 1])
        for s in range(lo, hi):
            text = tok.decode(data[starts[s] : starts[s + 1]])
            if len(text) > args.max_chars:
                text = text[: args.max_chars] + f"... [{len(text) - args.max_chars} more chars]"
            print(f"--- doc {d} seq {s - lo} ({int(info.lengths[s])} tokens) ---\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
