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
from pathlib import Path

from codetron.errors import ConfigError
from codetron.preprocess.readers import MAX_DOC_CHARS

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


def _add_common(p: argparse.ArgumentParser, default_layout: str) -> None:
    p.add_argument("inputs", nargs="+", help="files, directories or globs: .jsonl[.gz|.zst], .json (array or lines), .parquet; "
                                             "`datasets` save_to_disk directories; hub datasets, streamed: "
                                             "hf://OWNER/NAME[@REVISION][/DATA_DIR][:CONFIG][:SPLIT] (split default train)")
    p.add_argument("-o", "--output-prefix", required=True, help="writes PREFIX.bin, PREFIX.idx, PREFIX.summary.json")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json, a directory with one, or a sentencepiece .model (default: bundled data/tokenizer)")
    p.add_argument("--layout", choices=["pretrain", "sft"], default=default_layout, help=f"pretrain: [text+EOD] per document; sft: [prompt, response+EOD] (default {default_layout})")
    p.add_argument("--workers", type=int, default=2, help="worker processes (0/1 = in-process; default 2)")
    p.add_argument("--encoder", choices=["auto", "tiktoken", "tokenizers"], default="auto",
                   help="auto (default): tiktoken (~3x faster) when a start-up self-check on built-in probes gives ids identical "
                        "to the tokenizer's own library, else that library with one line saying why; tiktoken: require it; "
                        "tokenizers: never use tiktoken")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N", help="process shard I of N (Slurm arrays); merge the outputs with `merge`")
    p.add_argument("--on-error", choices=["skip", "fail"], default="skip", help="bad records: skip and report (default) or stop with no output")
    p.add_argument("--dedup", choices=["none", "exact", "near"], default="exact", help="drop identical (exact) or also near-identical (MinHash-LSH) documents (default exact)")
    p.add_argument("--near-threshold", type=float, default=0.7, help="near dedup: Jaccard threshold (default 0.7, as BigCode)")
    p.add_argument("--near-num-perm", type=int, default=256, help="near dedup: MinHash permutations (default 256)")
    p.add_argument("--near-ngram", type=int, default=5, help="near dedup: word shingle size (default 5)")
    p.add_argument("--no-decontaminate", action="store_true", help="keep documents overlapping HumanEval prompts/solutions (default: drop them)")
    p.add_argument("--decontam-ngram", type=int, default=13, help="words a document must share in a row with HumanEval to be dropped (default 13)")
    p.add_argument("--field", action="append", default=[], metavar="NAME=KEY", help="read logical field NAME (content, repo, path, stars, lang, instruction, input, output, text) from KEY")
    p.add_argument("--seed", type=int, default=1234, help="seed for random choices (hashed with file and line: reproducible)")
    p.add_argument("--chunk-docs", type=int, default=512, help="records per work unit (default 512)")
    p.add_argument("--max-doc-chars", type=int, default=MAX_DOC_CHARS, metavar="N",
                   help=f"drop documents longer than N characters, counted as doc_too_long; longer jsonl lines are skipped "
                        f"after reading at most 12 bytes per allowed character (default {MAX_DOC_CHARS:,}: ten times The Stack's 1 MB file limit; 0: no cap)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
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
    t.add_argument("--vocab-size", type=int, default=8192, help="total vocabulary incl. specials (default 8192; StarCoder: 49152)")
    t.add_argument("--suffix", action="append", default=None, help="source file suffixes to read (default .py)")
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--max-file-bytes", type=int, default=200_000, help="skip larger files (default 200000)")

    c = sub.add_parser("code", help="pretraining code with StarCoder metadata", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Code documents as <reponame>REPO<filename>PATH<gh_stars>BUCKET\\nCODE<|endoftext|>, each metadata field kept with its probability.")
    _add_common(c, "pretrain")
    c.add_argument("--p-repo", type=_prob, default=0.2, help="probability of <reponame> (default 0.2, StarCoder)")
    c.add_argument("--p-path", type=_prob, default=0.2, help="probability of <filename> (default 0.2, StarCoder)")
    c.add_argument("--p-stars", type=_prob, default=0.2, help="probability of <gh_stars> (default 0.2, StarCoder)")
    c.add_argument("--languages", default="", help="comma-separated languages to keep (lang field), e.g. python,java")
    c.add_argument("--source-suffix", action="append", default=[], help="inputs are source trees (or @stdlib, this Python's standard library): each file with this suffix is a document (e.g. .py)")
    c.add_argument("--exclude", action="append", default=[], help="source trees: fnmatch glob of relative paths to skip (e.g. 'test/*')")
    c.add_argument("--max-file-bytes", type=int, default=1 << 20, help="source trees: drop larger files (default 1 MiB)")

    from codetron.preprocess.commitpack import RULES

    m = sub.add_parser("commitpack", help="CommitPack with CommitPackFT filters", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="CommitPack records (old_contents, new_contents, subject, message, ...) filtered by CommitPackFT's rules: " + ", ".join(RULES))
    _add_common(m, "pretrain")
    m.add_argument("--commit-format", choices=["starcoder", "octocoder", "plain"], default="starcoder",
                   help="starcoder: <commit_before>OLD<commit_msg>SUBJECT<commit_after>NEW; octocoder: Question: OLD\\nSUBJECT\\n\\nAnswer: NEW; plain: the new file as code")
    m.add_argument("--commit-filename", action="store_true", help="starcoder format: prefix <filename>NEW_FILE")
    m.add_argument("--disable-rule", action="append", default=[], choices=RULES, metavar="RULE", help=f"switch a rule off (repeatable): {', '.join(RULES)}")
    m.add_argument("--verbs", choices=["extended", "octopack"], default="extended",
                   help="not_imperative: octopack = exactly OctoPack's published verb list; extended (default) adds "
                        "common verbs it lacks (Close, Open, Warn, Pass, Fill, Do, Avoid, Ensure, ...)")
    m.add_argument("--min-tokens", type=int, default=50, help="token_count: min tokens of old+EOD+new (default 50)")
    m.add_argument("--max-tokens", type=int, default=768, help="token_count: max tokens of old+EOD+new (default 768)")
    m.add_argument("--max-old-chars", type=int, default=50_000, help="old_file_too_long: limit (default 50000)")
    m.add_argument("--bump-drop-prob", type=_prob, default=0.9, help="bump_version: drop probability (default 0.9)")

    i = sub.add_parser("instruct", help="Evol-Instruct / CodeAlpaca instruction data", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Instruction records (instruction, optional input, output) rendered with a template; sft layout keeps the prompt/response boundary.")
    _add_common(i, "sft")
    i.add_argument("--template", choices=["wizardcoder", "octocoder", "plain", "starcoder2-instruct"], default="wizardcoder", help="prompt template (default wizardcoder, exact Alpaca text; starcoder2-instruct: its chat template's system line, ### Instruction, ### Response)")

    x = sub.add_parser("text", help="plain text documents (field text)", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(x, "pretrain")
    x.add_argument("--split-sentences", action="store_true", help="each sentence (nltk Punkt) its own sequence within the document, EOD after the last (Megatron-LM's --split-sentences)")
    x.add_argument("--keep-newlines", action="store_true", help="with --split-sentences: keep the whitespace/newlines between sentences at the end of the one before")
    x.add_argument("--lang", default="english", help="Punkt model looked up as tokenizers/punkt_tab/LANG on nltk's data path (NLTK_DATA); default english")
    x.add_argument("--punkt-model", default=None, metavar="DIR", help="a punkt_tab language directory to use, or `default` (untrained Punkt); without either, the one found on the data path, else default parameters (said in one line)")

    g = sub.add_parser("merge", help="concatenate datasets (e.g. --shard outputs) without loading them",
                       description="Concatenate PREFIX.bin/.idx datasets in the given order; summaries are summed.")
    g.add_argument("inputs", nargs="+", help="dataset prefixes (without .bin/.idx)")
    g.add_argument("-o", "--output-prefix", required=True)

    gc = sub.add_parser("git-commits", help="a local repository's history as CommitPack jsonl",
                        description="One CommitPack record per changed text file per non-merge commit; feed the output to `commitpack`.")
    gc.add_argument("repo", help="path inside a git work tree")
    gc.add_argument("-o", "--output", required=True, help="jsonl file to write")
    gc.add_argument("--rev", default="HEAD", help="revision or range (default HEAD)")
    gc.add_argument("--max-commits", type=int, default=None)
    gc.add_argument("--max-file-bytes", type=int, default=1_000_000)

    s = sub.add_parser("inspect", help="decode the first documents of a dataset")
    s.add_argument("prefix", help="dataset prefix")
    s.add_argument("-n", "--docs", type=int, default=2, help="documents to show (default 2)")
    s.add_argument("--tokenizer", default=None, help="tokenizer (default: the one in PREFIX.summary.json, else bundled)")
    s.add_argument("--max-chars", type=int, default=600, help="truncate each shown sequence (default 600)")
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
            decontaminate=not args.no_decontaminate,
            decontam=DecontamConfig(ngram=args.decontam_ngram, min_tokens=args.decontam_ngram),
        ),
    )
    if mode == "code":
        job.code = CodeConfig(p_repo=args.p_repo, p_path=args.p_path, p_stars=args.p_stars,
                              languages=frozenset(x.strip().lower() for x in args.languages.split(",") if x.strip()))
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
        suffixes = tuple(args.suffix or [".py"])
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
        source_suffixes=tuple(getattr(args, "source_suffix", []) or ()),
        exclude=tuple(getattr(args, "exclude", []) or ()),
        max_file_bytes=getattr(args, "max_file_bytes", 1 << 20),
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
