"""Per-chunk work, run in worker processes: parse, validate, filter, render, tokenize.

Each raw item becomes a document (one or two texts, see ``JobConfig.layout``), a drop (a rule
said no, counted by reason) or an error (bad input, reported with file:line). Dedup decisions need
global state, so workers only compute keys/signatures and the main process decides.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from codetron.preprocess import formats
from codetron.preprocess.commitpack import check_commit, check_token_count, clean_subject, first_line, unit_random
from codetron.preprocess.config import JobConfig
from codetron.preprocess.quality import Decontaminator, NearDeduper, exact_key
from codetron.preprocess.readers import Chunk, ItemError, parse_item
from codetron.preprocess.signals import ignore_interrupts_in_worker


class BadRecord(ValueError):
    """Missing/wrongly typed field or empty document."""


class Drop(Exception):
    """A filter rule removed the record (not an input error)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk (compact: token ids as one array)."""

    source: str
    n_in: int
    tokens: np.ndarray
    seq_lengths: np.ndarray
    lines: list[int] = field(default_factory=list)
    """Per kept document: its line/row."""
    seqs_per_doc: list[int] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    """Per kept document: exact-dedup digest."""
    signatures: list[np.ndarray] | None = None
    """Per kept document: MinHash signature (near dedup only)."""
    dropped: Counter = field(default_factory=Counter)
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    """(file, line, reason) per bad record."""
    contaminated: list[tuple[str, int, str]] = field(default_factory=list)
    """(file, line, benchmark item) per decontaminated record."""


class Processor:
    """Holds the per-process state (tokenizer, decontaminator, MinHash permutations)."""

    def __init__(self, job: JobConfig):
        from codetron.preprocess.tokenizer import load_tokenizer

        self.job = job
        self.tok = load_tokenizer(job.tokenizer)
        # "tiktoken" here was proven by pipeline.run on the same file (or demanded by the caller)
        self.tok.use_encoder(job.encoder, check=job.encoder != "tiktoken")
        self.eod = self.tok.eod
        self.dtype = np.uint16 if self.tok.vocab_size < 65500 else np.int32
        self.decon = Decontaminator.humaneval(job.quality.decontam) if job.quality.decontaminate else None
        self.near = NearDeduper(job.quality.near) if job.quality.dedup == "near" else None

    # --- fields -------------------------------------------------------------------------------
    def _get(self, rec: dict, name: str, required: bool = False, kind=str):
        for key in self.job.fields[name]:
            if key in rec and rec[key] is not None:
                value = rec[key]
                if kind is str and not isinstance(value, str):
                    raise BadRecord(f"field {key!r} must be a string, got {type(value).__name__}")
                return value
        if required:
            raise BadRecord(f"missing field {'/'.join(repr(k) for k in self.job.fields[name])}")
        return None

    # --- rendering ----------------------------------------------------------------------------
    def render(self, rec: dict, ident: tuple) -> tuple[list[str], str]:
        """Texts of one document -- [text] (pretrain) or [prompt, response] (sft) -- and the text
        that identifies it for dedup (the code without the randomly added metadata)."""
        mode = self.job.mode
        if mode == "code":
            return self._render_code(rec, ident)
        if mode == "text":
            text = self._get(rec, "text", required=True)
            if not text.strip():
                raise BadRecord("empty document")
            return [text], text
        if mode == "instruct":
            instruction = self._get(rec, "instruction", required=True)
            output = self._get(rec, "output", required=True)
            inp = self._get(rec, "input") or ""
            if not instruction.strip() or not output.strip():
                raise BadRecord("empty document (instruction or output is blank)")
            prompt, response = formats.INSTRUCTION_TEMPLATES[self.job.instruct.template](instruction, output, inp)
            return self._layout(prompt, response), prompt + response
        raise AssertionError(mode)

    def _layout(self, prompt: str, response: str) -> list[str]:
        return [prompt, response] if self.job.layout == "sft" else [prompt + response]

    def _render_code(self, rec: dict, ident: tuple) -> tuple[list[str], str]:
        cfg, seed = self.job.code, self.job.seed
        content = self._get(rec, "content", required=True)
        if not content.strip():
            if rec.get("__source_file__"):
                raise Drop("empty_file")  # e.g. empty __init__.py: normal in a source tree
            raise BadRecord("empty document")
        if cfg.languages:
            lang = self._get(rec, "lang")
            if not lang or lang.lower() not in cfg.languages:
                raise Drop("language")
        repo = self._get(rec, "repo")
        path = self._get(rec, "path")
        stars = self._get(rec, "stars", kind=object)
        if stars is not None and not isinstance(stars, (int, float)):
            raise BadRecord(f"stars field must be a number, got {type(stars).__name__}")
        # Three independent coins per document, as in StarCoder.
        repo = repo if repo and unit_random(seed, "repo", *ident) < cfg.p_repo else None
        path = path if path and unit_random(seed, "path", *ident) < cfg.p_path else None
        stars = stars if stars is not None and unit_random(seed, "stars", *ident) < cfg.p_stars else None
        return [formats.render_code(content, repo, path, stars)], content

    def _commit_fields(self, rec: dict) -> tuple[str, str, str]:
        for key in ("old_contents", "new_contents"):
            if key not in rec or rec[key] is None:
                raise BadRecord(f"missing field {key!r}")
            if not isinstance(rec[key], str):
                raise BadRecord(f"field {key!r} must be a string, got {type(rec[key]).__name__}")
        subject = rec.get("subject")
        if subject is None:
            if not isinstance(rec.get("message"), str):
                raise BadRecord("missing field 'subject' (and no 'message')")
            subject = first_line(rec["message"])
        if not isinstance(subject, str):
            raise BadRecord(f"field 'subject' must be a string, got {type(subject).__name__}")
        return rec["old_contents"], subject.strip(), rec["new_contents"]

    def _render_commit(self, rec: dict, old: str, subject: str, new: str) -> list[str]:
        cfg = self.job.commit
        if cfg.format == "plain":
            if not new.strip():
                raise Drop("empty_new_file")
            return [new]
        if cfg.format == "octocoder":
            prompt, response = formats.render_commit_octocoder(old, subject, new)
        else:
            fname = (rec.get("new_file") or rec.get("old_file")) if cfg.filename else None
            prompt, response = formats.render_commit_starcoder(old, subject, new, fname)
        return self._layout(prompt, response)

    # --- the chunk ----------------------------------------------------------------------------
    def process(self, chunk: Chunk) -> ChunkResult:
        base = os.path.basename(chunk.source)
        res = ChunkResult(chunk.source, len(chunk.items) + chunk.too_long, np.zeros(0, self.dtype), np.zeros(0, np.int32))
        if chunk.too_long:
            res.dropped["doc_too_long"] += chunk.too_long
        cap = self.job.max_doc_chars
        docs: list[tuple[tuple[str, int], list[str], str]] = []
        commit_sizes: list[tuple[str, str]] = []
        for line, item in chunk.items:
            where = (chunk.source, line)
            ident = (base, line)
            if isinstance(item, dict) and "__file__" in item:  # a source file: its path is its identity
                where, ident = (item["__file__"], 1), (item["path"], 0)
                if item["__file_bytes__"] is None:
                    res.dropped["file_too_large"] += 1
                    continue
            try:
                rec = parse_item(item)
                if self.job.mode == "commitpack":
                    old, subject, new = self._commit_fields(rec)
                    new_file = rec.get("new_file") if isinstance(rec.get("new_file"), str) else None
                    reason = check_commit({"old_contents": old, "new_contents": new, "subject": subject, "new_file": new_file},
                                          self.job.commit.filters, ident)
                    if reason:
                        raise Drop(reason)
                    subject = clean_subject(subject)  # the dataset holds the cleaned subject, as CommitPackFT
                    texts = self._render_commit(rec, old, subject, new)
                    key = f"{old}\0{subject}\0{new}"
                    commit_sizes.append((old, new))
                else:
                    texts, key = self.render(rec, ident)
                if cap and sum(map(len, texts)) > cap:
                    raise Drop("doc_too_long")
            except ItemError as exc:
                res.errors.append((*where, str(exc).removeprefix(f"{where[0]}: ")))
                continue
            except BadRecord as exc:
                res.errors.append((*where, str(exc)))
                continue
            except Drop as d:
                res.dropped[d.reason] += 1
                continue
            docs.append((where, texts, key))

        if self.job.mode == "commitpack" and docs and "token_count" not in self.job.commit.filters.disabled:
            try:
                counts = [len(ids) for ids in self.tok.encode_batch([t for pair in commit_sizes for t in pair])]
            except (UnicodeEncodeError, TypeError) as exc:  # a lone surrogate: those commits are bad records
                clean = [i for i, pair in enumerate(commit_sizes) if not _surrogate(pair, docs[i], res)]
                if len(clean) == len(docs):
                    raise exc
                docs, commit_sizes = [docs[i] for i in clean], [commit_sizes[i] for i in clean]
                counts = [len(ids) for ids in self.tok.encode_batch([t for pair in commit_sizes for t in pair])]
            kept = []
            for i, doc in enumerate(docs):
                if check_token_count(counts[2 * i] + 1 + counts[2 * i + 1], self.job.commit.filters):  # old + EOD + new
                    res.dropped["token_count"] += 1
                else:
                    kept.append(doc)
            docs = kept

        if self.decon is not None:
            clean = []
            for doc in docs:
                hit = self.decon.match("".join(doc[1]))
                if hit:
                    res.dropped["contaminated"] += 1
                    res.contaminated.append((*doc[0], hit))
                else:
                    clean.append(doc)
            docs = clean
        if not docs:
            return res

        encoded, docs = self._encode(docs, res)
        if not docs:
            return res
        eod = np.asarray([self.eod], dtype=self.dtype)
        # BOS opens the document for templates trained that way (codetron.templates.BOS_TEMPLATES)
        bos = self.job.mode == "instruct" and self.job.instruct.template in formats.BOS_TEMPLATES
        seqs: list[np.ndarray] = []
        kept_docs = []
        pos = 0
        for doc in docs:
            (_, line), texts, key = doc
            n = len(texts)
            doc_seqs = encoded[pos : pos + n]
            pos += n
            if any(s is None for s in doc_seqs):
                res.dropped["pretoken_too_long"] += 1
                continue
            doc_seqs[-1] = np.concatenate([doc_seqs[-1], eod])  # EOD closes the document (response in sft)
            if bos:
                doc_seqs[0] = np.concatenate([eod, doc_seqs[0]])
            seqs.extend(doc_seqs)
            res.lines.append(line)
            res.seqs_per_doc.append(n)
            res.keys.append(exact_key(key) if self.job.quality.dedup != "none" else b"")  # the digest is 1% of the CPU
            kept_docs.append(doc)
        if self.near is not None:
            res.signatures = [self.near.signature(key) for _, _, key in kept_docs]
        res.seq_lengths = np.fromiter((s.size for s in seqs), dtype=np.int32, count=len(seqs))
        res.tokens = np.concatenate(seqs) if seqs else np.zeros(0, self.dtype)
        return res


    def _encode(self, docs: list, res: ChunkResult) -> tuple[list, list]:
        """Ids of every text of ``docs`` (long ones in pieces: bounded memory). JSON escapes can
        make lone surrogates, which no encoder accepts: such a document is a bad record, found
        only when the chunk's encode fails, so clean chunks pay nothing for the check."""
        try:
            return self.tok.encode_arrays([t for _, texts, _ in docs for t in texts], self.dtype), docs
        except (UnicodeEncodeError, TypeError) as exc:  # tiktoken's and tokenizers' refusals
            failure = exc
        clean = [doc for doc in docs if not _surrogate(doc[1], doc, res)]
        if len(clean) == len(docs):
            raise failure  # not a surrogate: a real error, with its traceback
        return (self.tok.encode_arrays([t for _, texts, _ in clean for t in texts], self.dtype) if clean else []), clean


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate(texts, doc, res: ChunkResult) -> bool:
    """Whether ``texts`` hold a lone surrogate; if so ``doc`` is reported as a bad record."""
    bad = next((m for t in texts if (m := _SURROGATE.search(t))), None)
    if bad is not None:
        res.errors.append((*doc[0], f"text holds a lone surrogate U+{ord(bad.group()):04X} (not Unicode text; no tokenizer encodes it)"))
    return bad is not None


_PROCESSOR: Processor | None = None


def init_worker(job: JobConfig) -> None:
    """Pool initializer: one tokenizer per process, Rust-side threading off (processes give the
    parallelism; threads on top would oversubscribe the cores)."""
    global _PROCESSOR
    ignore_interrupts_in_worker()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    _PROCESSOR = Processor(job)


def process_chunk(chunk: Chunk) -> ChunkResult:
    assert _PROCESSOR is not None, "init_worker was not called"
    return _PROCESSOR.process(chunk)
