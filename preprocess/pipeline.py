"""The streaming pipeline: read chunks -> workers (parse, filter, tokenize) -> ordered writer.

Memory stays bounded: at most ``2 * workers + 1`` chunks are in flight, the writer streams tokens to
disk and keeps only 12 bytes of index per document (plus 16-byte digests for exact dedup and LSH
buckets for near dedup, which grow with the number of *unique* documents by design). Results are
written in input order, so the output does not depend on the number of workers.
"""
from __future__ import annotations

import collections
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from codetron.errors import CodetronError, ConfigError
from codetron.preprocess.config import LAYOUTS, MODES, PipelineConfig
from codetron.preprocess.indexed import IndexedWriter, token_dtype
from codetron.preprocess.publish import dataset_outputs
from codetron.preprocess.quality import ExactDeduper, NearDeduper
from codetron.preprocess.readers import (Chunk, ReadError, expand_inputs, expand_sources, iter_chunks, line_limit, resolve_stdlib,
                                         source_chunks)
from codetron.preprocess.signals import stop_on_signals
from codetron.preprocess.worker import ChunkResult, Processor, init_worker, process_chunk
from codetron.preprocess.workpool import WorkerPool


def validate(cfg: PipelineConfig) -> None:
    job = cfg.job
    if job.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {job.mode!r}")
    if job.layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {job.layout!r}")
    if job.layout == "sft" and job.mode in ("code", "text"):
        raise ConfigError(f"--layout sft needs prompt/response data (instruct or commitpack), not {job.mode}")
    if job.mode == "commitpack" and job.commit.format == "plain" and job.layout == "sft":
        raise ConfigError("--commit-format plain is pretraining text; use --layout pretrain")
    if job.sentences.split and (job.mode != "text" or job.layout != "pretrain"):
        raise ConfigError(f"--split-sentences is for text mode with the pretrain layout, not {job.mode}/{job.layout}")
    if cfg.on_error not in ("skip", "fail"):
        raise ConfigError(f"--on-error must be skip or fail, got {cfg.on_error!r}")
    if job.quality.dedup not in ("none", "exact", "near"):
        raise ConfigError(f"--dedup must be none, exact or near, got {job.quality.dedup!r}")
    i, n = cfg.shard
    if job.max_doc_chars < 0:
        raise ConfigError(f"--max-doc-chars must be >= 0 (0: no cap), got {job.max_doc_chars}")
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard must be i/n with 0 <= i < n, got {i}/{n}")
    for name in ("p_repo", "p_path", "p_stars"):
        p = getattr(job.code, name)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")


def _sharded_chunks(files: list, cfg: PipelineConfig) -> Iterator[Chunk | ReadError]:
    """Shard by file when there are at least as many files as shards (no wasted reads); otherwise
    every shard reads the input but keeps only every n-th chunk."""
    i, n = cfg.shard
    if n > 1 and len(files) >= n:
        files, n = files[i::n], 1
    if cfg.source_suffixes:
        chunks = source_chunks(files, cfg.chunk_docs, cfg.chunk_bytes, cfg.max_file_bytes)
    else:
        limit = line_limit(cfg.job.max_doc_chars)
        chunks = (c for f in files for c in iter_chunks(f, cfg.chunk_docs, cfg.chunk_bytes, limit))
    for k, chunk in enumerate(chunks):
        if n == 1 or k % n == i:
            yield chunk


class _Runner:
    """Ordered, bounded fan-out of chunks to worker processes (or inline for workers <= 1)."""

    def __init__(self, cfg: PipelineConfig):
        self.workers = cfg.workers
        self.pool = None
        init, self.process_chunk, processor = init_worker, process_chunk, Processor
        if cfg.job.sentences.split:
            from codetron.preprocess import sentences

            init, self.process_chunk, processor = sentences.init_worker, sentences.process_chunk, sentences.SentenceProcessor
        if self.workers > 1:
            self.pool = WorkerPool(self.workers, init, (cfg.job,), self.process_chunk)
        else:
            self.inline = processor(cfg.job)

    def run(self, chunks: Iterator[Chunk | ReadError]) -> Iterator[ChunkResult | ReadError]:
        if self.pool is None:
            for c in chunks:
                yield c if isinstance(c, ReadError) else self.inline.process(c)
            return
        pending: collections.deque = collections.deque()
        limit = 2 * self.workers + 1
        for c in chunks:
            pending.append(c if isinstance(c, ReadError) else _Ticket(self.pool.submit(c)))
            while len(pending) >= limit:
                yield self._resolve(pending.popleft())
        while pending:
            yield self._resolve(pending.popleft())

    def _resolve(self, item):
        return self.pool.result(item.worker) if isinstance(item, _Ticket) else item

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            self.pool.close(ok)


class _Ticket(NamedTuple):
    worker: int


def run(cfg: PipelineConfig) -> dict:
    """Process ``cfg.inputs`` into ``cfg.output_prefix``.{bin,idx,summary.json}; returns the summary."""
    validate(cfg)
    from codetron.preprocess.tokenizer import load_tokenizer

    tok = load_tokenizer(cfg.job.tokenizer)  # fail fast, before any worker starts
    cfg.job.tokenizer = str(tok.path)
    cfg.job.encoder = tok.use_encoder(cfg.job.encoder, announce=True)  # checked once here, trusted by workers
    splitter = None
    if cfg.job.sentences.split:
        from codetron.preprocess.sentences import resolve_model

        # pinned here, like the tokenizer path: every worker loads the same model, the summary names it
        cfg.job.sentences, splitter = resolve_model(cfg.job.sentences)
        print(f"split-sentences: {splitter}", file=sys.stderr)
    if cfg.source_suffixes:
        if cfg.job.mode != "code":
            raise ConfigError("--source-suffix is for code mode (files as documents)")
        inputs, exclude = resolve_stdlib(list(cfg.inputs), list(cfg.exclude))
        files = expand_sources(inputs, tuple(cfg.source_suffixes), tuple(exclude))
    else:
        files = expand_inputs(cfg.inputs)
    dtype = token_dtype(tok.vocab_size)
    exact = ExactDeduper() if cfg.job.quality.dedup in ("exact", "near") else None
    near = NearDeduper(cfg.job.quality.near) if cfg.job.quality.dedup == "near" else None

    docs_in = kept = 0
    dropped: Counter = Counter()
    error_total = 0
    error_examples: list[str] = []
    contaminated: list[str] = []
    t0 = time.perf_counter()
    prefix = cfg.output_prefix
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)

    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(unit=" docs", desc=f"preprocess {cfg.job.mode}", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def report(source: str, line: int, reason: str) -> None:
        nonlocal error_total
        error_total += 1
        where = f"{source}:{line}: {reason}"
        if cfg.on_error == "fail":
            raise CodetronError(f"{where} (--on-error fail: no output written)")
        if len(error_examples) < cfg.max_error_examples:
            error_examples.append(where)

    runner = None
    ok = False
    stopped = f"nothing written, {prefix}.bin/.idx/.summary.json left as they were"
    with stop_on_signals(stopped), dataset_outputs(prefix) as outs:
        writer = IndexedWriter(outs.bin, dtype)
        try:
            runner = _Runner(cfg)
            for res in runner.run(_sharded_chunks(files, cfg)):
                if isinstance(res, ReadError):
                    report(res.source, res.line, res.reason)
                    continue
                docs_in += res.n_in
                for source, line, reason in res.errors:
                    report(source, line, reason)
                dropped.update(res.dropped)
                for source, line, name in res.contaminated:
                    if len(contaminated) < cfg.max_error_examples:
                        contaminated.append(f"{source}:{line}: {name}")
                _write(res, writer, exact, near, dropped)
                kept = len(writer.document_indices) - 1
                if bar is not None:
                    bar.update(res.n_in)
                    secs = max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix_str(f"kept {kept:,} | {writer.tokens / secs:,.0f} tok/s", refresh=False)
            ok = True
        finally:
            if runner is not None:
                runner.close(ok)
            writer.close()
            if bar is not None:
                bar.close()
        kept = len(writer.document_indices) - 1
        if kept == 0:
            reasons = ", ".join(f"{k}={v}" for k, v in dropped.most_common()) or "none"
            first = f"; first error: {error_examples[0]}" if error_examples else ""
            raise CodetronError(f"no documents kept from {docs_in} read (dropped: {reasons}; errors: {error_total}{first})")
        writer.finalize(outs.idx)
        secs = time.perf_counter() - t0
        summary = {
            "output": str(prefix),
            "mode": cfg.job.mode,
            "layout": cfg.job.layout,
            "inputs": cfg.inputs if cfg.source_suffixes else files,
            "input_files": len(files),
            "shard": f"{cfg.shard[0]}/{cfg.shard[1]}",
            "tokenizer": cfg.job.tokenizer,
            **({"sentence_splitter": splitter} if splitter else {}),
            "vocab_size": tok.vocab_size,
            "dtype": np.dtype(dtype).name,
            "docs_in": docs_in,
            "docs_kept": kept,
            "dropped": dict(sorted(dropped.items())),
            "errors_total": error_total,
            "errors": error_examples,
            "contaminated": contaminated,
            "sequences": len(writer.sequence_lengths),
            "tokens_out": writer.tokens,
            "seconds": round(secs, 3),
            "docs_per_s": round(docs_in / secs, 1),
            "tokens_per_s": round(writer.tokens / secs, 1),
            "config": _config_dict(cfg),
        }
        summary = outs.seal(summary)
    return summary


def _write(res: ChunkResult, writer: IndexedWriter, exact, near, dropped: Counter) -> None:
    """Dedup decisions (in input order), then append the surviving documents in one write."""
    n_docs = len(res.seqs_per_doc)
    if n_docs == 0:
        return
    keep = np.ones(n_docs, dtype=bool)
    for d in range(n_docs):
        if exact is not None and exact.seen_key(res.keys[d]):
            keep[d] = False
            dropped["exact_duplicate"] += 1
        elif near is not None and near.seen_signature(res.signatures[d]):
            keep[d] = False
            dropped["near_duplicate"] += 1
    seqs_per_doc = np.asarray(res.seqs_per_doc, dtype=np.int64)
    if keep.all():
        writer.add_batch(res.tokens, res.seq_lengths, seqs_per_doc)
        return
    seq_keep = np.repeat(keep, seqs_per_doc)
    tok_keep = np.repeat(seq_keep, res.seq_lengths)
    writer.add_batch(res.tokens[tok_keep], res.seq_lengths[seq_keep], seqs_per_doc[keep])


def _config_dict(cfg: PipelineConfig) -> dict:
    import dataclasses

    def clean(o):
        if dataclasses.is_dataclass(o):
            return {f.name: clean(getattr(o, f.name)) for f in dataclasses.fields(o)}
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    d = clean(cfg.job)
    d.pop("fields", None)
    d.update(workers=cfg.workers, on_error=cfg.on_error)
    return d
