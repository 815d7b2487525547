"""``codetron rrtf rank``: score sampled responses with unit tests and write ranked pairs.

PanGu-Coder2 (arXiv:2307.14936 Sec. 3.2) ranks *all* responses of a query -- teacher and student
alike -- by their test score r and trains on

    L_rank = sum over every pair with r_i < r_j of max(0, p_i - p_j)
    L_ft   = -log P(y_i'),  i' = argmax_i r_i        (the top-scored response, whoever wrote it)

so for every problem this writes one pair (chosen y_j, rejected y_i) for every two distinct responses
with r_i < r_j: teacher vs student, student vs teacher (a student that beats the teacher is the
chosen side), student vs student. Responses are the teacher responses in order, then the students in
order; identical texts count once (a duplicate sample would weigh its pairs twice).

Ties, as in the paper's sum (strictly r_i < r_j) and RRHF's code it follows
(GanjinZero/RRHF ``train.py`` ``rrhf_loss``: ``rw_diff > 0``): equal scores make no pair. The
top-scored response on a tie is the first in the order above (RRHF's ``sft_loss`` takes
``torch.argmax`` of the scores, the first maximum), so a teacher that ties a student stays the L_ft
target. Its pairs are written first, which is how training finds it again (``teacher_weights``).
A problem whose responses all tie (a single distinct response included) has no ranked pair but
still has the paper's L_ft: it gets one *L_ft-only* pair, chosen = rejected = its top response, equal
scores, so no rank term ("ft_only": true in the record).

Output: ``OUT`` (jsonl, one pair per line: task_id, prompt, chosen, rejected, scores, tiers,
passed/total, sources, rejected temperature, ft_only) and ``OUT.stats.json`` with counts per score
tier; both are written atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from collections import Counter

from codetron.errors import CodetronError
from codetron.fileio import atomic_open
from codetron.records import read_jsonl, write_jsonl
from codetron.preprocess.generate.rrtf.problems import program_code, read_problems
from codetron.preprocess.generate.rrtf.scoring import TIERS, Score, score_codes


def read_samples(paths: list[str]) -> list[dict]:
    """Sample records (from ``rrtf sample``), validated; several files (shards) are concatenated."""
    out, seen = [], {}
    for path in paths:
        for lineno, rec in read_jsonl(path, what="samples"):
            where = f"{path}:{lineno}"
            if not isinstance(rec.get("task_id"), str) or not isinstance(rec.get("prompt"), str):
                raise CodetronError(f"{where}: expected an object with string fields 'task_id' and 'prompt'")
            for key in ("teacher", "students"):
                if not isinstance(rec.get(key), list) or not all(isinstance(r, dict) and isinstance(r.get("response"), str)
                                                                 for r in rec[key]):
                    raise CodetronError(f"{where}: field {key!r} must be a list of objects with a string 'response'")
            if rec["task_id"] in seen:
                raise CodetronError(f"{where}: task_id {rec['task_id']!r} already sampled at {seen[rec['task_id']]}")
            seen[rec["task_id"]] = where
            out.append(rec)
    return out


def ranked_pairs(scores: list[float]) -> tuple[int, list[tuple[int, int]]]:
    """``(best, pairs)`` for one query's responses in order: ``best`` = the first top score, and
    every ``(j, i)`` with ``scores[i] < scores[j]`` (chosen j, rejected i), ``best``'s pairs first,
    then by chosen, then rejected position."""
    best = max(range(len(scores)), key=lambda k: (scores[k], -k))
    order = [best] + [j for j in range(len(scores)) if j != best]
    return best, [(j, i) for j in order for i in range(len(scores)) if scores[i] < scores[j]]


def rank(problems: list[dict], samples: list[dict], timeout: float = 5.0, n_workers: int = 2,
         progress: bool = True) -> tuple[list[dict], dict]:
    """Return (pairs, stats)."""
    by_id = {p["task_id"]: p for p in problems}
    jobs: list[tuple[dict, str]] = []
    spans = []
    for rec in samples:
        problem = by_id.get(rec["task_id"])
        if problem is None:
            raise CodetronError(f"samples: task_id {rec['task_id']!r} is not in the problems file")
        responses = ([dict(r, role="teacher") for r in rec["teacher"]]
                     + [dict(r, role="student") for r in rec["students"]])
        start = len(jobs)
        for r in responses:
            jobs.append((problem, program_code(problem, rec["prompt"], r["response"])))
        spans.append((rec, responses, start))
    scores = score_codes(jobs, timeout=timeout, n_workers=n_workers, progress=progress)

    stats = {
        "problems": len(samples), "kept": 0, "dropped_no_response": 0, "ft_only": 0, "best_is_student": 0,
        "pairs": 0, "teacher_tiers": Counter(), "student_tiers": Counter(), "best_tiers": Counter(),
        "rejected_tiers": Counter(),
    }
    pairs = []
    for rec, responses, start in spans:
        got: list[Score] = scores[start:start + len(responses)]
        for r, s in zip(responses, got):
            stats[f"{r['role']}_tiers"][s.tier] += 1
        distinct, seen = [], set()
        for r, s in zip(responses, got):
            if r["response"] not in seen:
                seen.add(r["response"])
                distinct.append((r, s))
        if not distinct:
            stats["dropped_no_response"] += 1
            continue
        best, ranked = ranked_pairs([s.score for _, s in distinct])
        stats["kept"] += 1
        stats["best_tiers"][distinct[best][1].tier] += 1
        stats["best_is_student"] += int(distinct[best][0]["role"] == "student")
        if not ranked:
            stats["ft_only"] += 1
            ranked = [(best, best)]
        for j, i in ranked:
            (cr, cs), (rr, rs) = distinct[j], distinct[i]
            pairs.append({
                "task_id": rec["task_id"], "prompt": rec["prompt"], "chosen": cr["response"], "rejected": rr["response"],
                "scores": [cs.score, rs.score], "tiers": [cs.tier, rs.tier],
                "tests": [[cs.passed, cs.total], [rs.passed, rs.total]],
                "sources": [cr.get("source", cr["role"]), rr.get("source", rr["role"])],
                "rejected_temperature": rr.get("temperature"), "ft_only": i == j,
            })
            if i != j:
                stats["rejected_tiers"][rs.tier] += 1
    stats["pairs"] = len(pairs)
    for key in ("teacher_tiers", "student_tiers", "best_tiers", "rejected_tiers"):
        stats[key] = {t: stats[key].get(t, 0) for t in TIERS}
    return pairs, stats


def format_stats(stats: dict) -> str:
    lines = [f"problems {stats['problems']} | kept {stats['kept']} (top response a student's: "
             f"{stats['best_is_student']}) | dropped, no response: {stats['dropped_no_response']}",
             f"pairs {stats['pairs']} (L_ft-only, every response tied: {stats['ft_only']})",
             f"{'tier':<10}{'teacher':>10}{'student':>10}{'top':>10}{'rejected':>10}"]
    for t in TIERS:
        lines.append(f"{t:<10}{stats['teacher_tiers'][t]:>10}{stats['student_tiers'][t]:>10}"
                     f"{stats['best_tiers'][t]:>10}{stats['rejected_tiers'][t]:>10}")
    return "\n".join(lines)


@dataclass(kw_only=True, slots=True)
class RankConfig:
    """How ``codetron rrtf rank`` executes responses."""

    timeout: float = 5.0
    """Wall-clock seconds per program in the eval sandbox."""
    workers: int = 2
    """Sandbox worker processes."""


def run(problems_path: str, samples_paths: list[str], out: str, timeout: float, workers: int,
        progress: bool = True) -> dict:
    problems = read_problems(problems_path)
    samples = read_samples(samples_paths)
    pairs, stats = rank(problems, samples, timeout, workers, progress)
    write_jsonl(out, pairs)
    with atomic_open(out + ".stats.json") as fh:
        json.dump(stats, fh, indent=1)
    print(format_stats(stats))
    print(f"wrote {out} and {out}.stats.json")
    return stats
