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


def write_output(rows: list[dict], path: str, cfg: OutputConfig) -> dict:
    """Filter ``rows`` and write them atomically to ``path``; returns removal counts."""
    counts: Counter = Counter()
    exact = ExactDeduper(normalize_whitespace=True) if cfg.dedup in ("exact", "near") else None
    near = NearDeduper(NearDedupConfig(threshold=cfg.near_threshold)) if cfg.dedup == "near" else None
    decon = Decontaminator.humaneval(DecontamConfig(ngram=cfg.decontam_ngram)) if cfg.decontaminate else None
    # decontaminate on instruction + answer; dedup on the instruction (two answers to one task are one task)
    survivors = [r for r in filter_texts(rows, lambda r: r["instruction"] + "\n" + r["output"],
                                         decontaminator=decon, counts=counts)]
    survivors = list(filter_texts(survivors, lambda r: r["instruction"], exact=exact, near=near, counts=counts))
    write_jsonl(path, survivors, ensure_ascii=False)
    return {"candidates": len(rows), "written": len(survivors),
            "contaminated": counts["contaminated"], "exact_duplicate": counts["exact_duplicate"],
            "near_duplicate": counts["near_duplicate"]}
