"""The training file of every generator: kept records -> decontaminated, deduplicated instruction jsonl.

Each line is ``{"instruction", "input": "", "output", "source", ...provenance}``, the record shape
``codetron preprocess instruct`` reads (its ``--template wizardcoder`` renders the Alpaca prompt).
Decontamination (HumanEval prompts and canonical solutions, 13-word overlap) and dedup reuse
``codetron.preprocess.quality``; the published file is written atomically.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from codetron.records import write_jsonl
from codetron.preprocess.quality import (DecontamConfig, Decontaminator, ExactDeduper, NearDedupConfig, NearDeduper,
                                filter_texts)


@dataclass(kw_only=True)
class OutputConfig:
    """Filtering of the final file."""

    dedup: str = "near"
    """"none", "exact" (same instruction up to whitespace) or "near" (also MinHash-LSH near-duplicates)."""
    near_threshold: float = 0.8
    """Jaccard threshold of near dedup on instructions (evolved siblings share wording, so stricter than 0.7)."""
    decontaminate: bool = True
    """Drop pairs sharing a 13-word run with HumanEval prompts or solutions."""
    decontam_ngram: int = 13
    """Words in a row that count as contamination."""
    benchmarks: tuple[str, ...] = ()
    """More benchmark files to decontaminate against beside HumanEval (MBPP jsonl: text/code, or problems
    in the HumanEval schema); ``codetron selfalign run`` reads them."""


def training_records(records: list[dict]) -> list[dict]:
    """Kept records in the output shape, in a stable order."""
    out = []
    for rec in records:
        if rec.get("status") != "kept":
            continue
        row = {"instruction": rec["instruction"], "input": "", "output": rec["output"]}
        for key in ("source", "seed_id", "round", "method", "template", "index", "concepts", "category",
                    "difficulty"):
            if key in rec:
                row[key] = rec[key]
        out.append(row)
    return out


class LineageDeduper:
    """Exact and near dedup where a row only counts as a duplicate of a kept row of *another* lineage.

    Evol-Instruct's rounds of one seed rewrite the same task a little each time; WizardCoder trains
    on all of them, so they must not remove each other, while the same task reached from two seeds
    is still one task."""

    def __init__(self, near: bool, threshold: float):
        from datasketch import MinHash, MinHashLSH

        self._exact: dict[bytes, set] = {}
        self._near = NearDeduper(NearDedupConfig(threshold=threshold)) if near else None
        if self._near is not None:
            cfg = self._near.cfg
            self._lsh = MinHashLSH(threshold=threshold, num_perm=cfg.num_perm)
            self._scheme = MinHash(num_perm=cfg.num_perm, seed=cfg.seed).scheme  # what signature() hashes with
            self._owner: list = []

    def check(self, text: str, lineage) -> str | None:
        """"exact_duplicate", "near_duplicate" or None (then ``text`` is remembered as kept)."""
        from datasketch import LeanMinHash

        from codetron.preprocess.quality import exact_key

        key = exact_key(text, normalize_whitespace=True)
        if self._exact.get(key, set()) - {lineage}:
            return "exact_duplicate"
        m = None
        if self._near is not None:
            m = LeanMinHash(seed=self._near.cfg.seed, hashvalues=self._near.signature(text), scheme=self._scheme)
            if any(self._owner[i] != lineage for i in self._lsh.query(m)):
                return "near_duplicate"
        self._exact.setdefault(key, set()).add(lineage)
        if m is not None:
            self._lsh.insert(len(self._owner), m, check_duplication=False)
            self._owner.append(lineage)
        return None


def write_output(rows: list[dict], path: str, cfg: OutputConfig, decontaminator: Decontaminator | None = None,
                 lineage_key: str | None = None) -> dict:
    """Filter ``rows`` and write them atomically to ``path``; returns removal counts. ``decontaminator``
    replaces the HumanEval-only default (e.g. HumanEval + MBPP). With ``lineage_key`` (e.g.
    ``"seed_id"``), rows sharing that field's value never remove each other (``LineageDeduper``)."""
    counts: Counter = Counter()
    exact = ExactDeduper(normalize_whitespace=True) if cfg.dedup in ("exact", "near") else None
    near = NearDeduper(NearDedupConfig(threshold=cfg.near_threshold)) if cfg.dedup == "near" else None
    if decontaminator is None and cfg.decontaminate:
        decontaminator = Decontaminator.humaneval(DecontamConfig(ngram=cfg.decontam_ngram))
    decon = decontaminator if cfg.decontaminate else None
    # decontaminate on instruction + answer; dedup on the instruction (two answers to one task are one task)
    survivors = [r for r in filter_texts(rows, lambda r: r["instruction"] + "\n" + r["output"],
                                         decontaminator=decon, counts=counts)]
    if lineage_key is not None and cfg.dedup != "none":
        dedup = LineageDeduper(cfg.dedup == "near", cfg.near_threshold)
        kept = []
        for r in survivors:
            why = dedup.check(r["instruction"], r.get(lineage_key))
            if why:
                counts[why] += 1
            else:
                kept.append(r)
        survivors = kept
    else:
        survivors = list(filter_texts(survivors, lambda r: r["instruction"], exact=exact, near=near, counts=counts))
    write_jsonl(path, survivors, ensure_ascii=False)
    return {"candidates": len(rows), "written": len(survivors),
            "contaminated": counts["contaminated"], "exact_duplicate": counts["exact_duplicate"],
            "near_duplicate": counts["near_duplicate"]}
