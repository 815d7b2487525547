"""``codetron rrtf rank``: score sampled responses with unit tests and write (teacher, student) pairs.

For every problem: each teacher and student response runs against the problem's tests in the eval
sandbox and gets a tier and score (``scoring.py``). The best teacher response is the teacher (the
first on equal scores). A problem is dropped when its teacher scores below its best student -- the
teacher is not a trustworthy target there. Otherwise every distinct student response makes one pair
(chosen = teacher, rejected = student); on equal scores the teacher is still the chosen side (such a
pair has zero rank weight and only trains L_ft).

Output: ``OUT`` (jsonl, one pair per line: task_id, prompt, chosen, rejected, scores, tiers,
passed/total, student temperature) and ``OUT.stats.json`` with counts per score tier; both are
written atomically.
"""
from __future__ import annotations

import json
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
        start = len(jobs)
        for r in rec["teacher"] + rec["students"]:
            jobs.append((problem, program_code(problem, rec["prompt"], r["response"])))
        spans.append((rec, problem, start))
    scores = score_codes(jobs, timeout=timeout, n_workers=n_workers, progress=progress)

    stats = {
        "problems": len(samples), "kept": 0, "dropped_no_teacher": 0, "dropped_teacher_below_student": 0,
        "dropped_no_distinct_student": 0, "pairs": 0, "pairs_zero_weight": 0,
        "teacher_tiers": Counter(), "student_tiers": Counter(), "pair_student_tiers": Counter(),
        "chosen_tiers": Counter(),
    }
    pairs = []
    for rec, problem, start in spans:
        nt = len(rec["teacher"])
        t_scores: list[Score] = scores[start:start + nt]
        s_scores: list[Score] = scores[start + nt:start + nt + len(rec["students"])]
        stats["teacher_tiers"].update(s.tier for s in t_scores)
        stats["student_tiers"].update(s.tier for s in s_scores)
        if not t_scores:
            stats["dropped_no_teacher"] += 1
            continue
        best_t = max(range(nt), key=lambda i: (t_scores[i].score, -i))
        teacher, t_score = rec["teacher"][best_t], t_scores[best_t]
        if s_scores and t_score.score < max(s.score for s in s_scores):
            stats["dropped_teacher_below_student"] += 1
            continue
        seen = {teacher["response"]}
        made = 0
        for student, s_score in zip(rec["students"], s_scores):
            if student["response"] in seen:
                continue
            seen.add(student["response"])
            made += 1
            pairs.append({
                "task_id": rec["task_id"], "prompt": rec["prompt"],
                "chosen": teacher["response"], "rejected": student["response"],
                "scores": [t_score.score, s_score.score], "tiers": [t_score.tier, s_score.tier],
                "tests": [[t_score.passed, t_score.total], [s_score.passed, s_score.total]],
                "rejected_temperature": student.get("temperature"), "chosen_source": teacher.get("source", "teacher"),
            })
            stats["pair_student_tiers"][s_score.tier] += 1
            stats["chosen_tiers"][t_score.tier] += 1
            stats["pairs_zero_weight"] += int(s_score.score == t_score.score)
        if made:
            stats["kept"] += 1
        else:
            stats["dropped_no_distinct_student"] += 1
    stats["pairs"] = len(pairs)
    for key in ("teacher_tiers", "student_tiers", "pair_student_tiers", "chosen_tiers"):
        stats[key] = {t: stats[key].get(t, 0) for t in TIERS}
    return pairs, stats


def format_stats(stats: dict) -> str:
    lines = [f"problems {stats['problems']} | kept {stats['kept']} | dropped: teacher below student "
             f"{stats['dropped_teacher_below_student']}, no teacher {stats['dropped_no_teacher']}, "
             f"no distinct student {stats['dropped_no_distinct_student']}",
             f"pairs {stats['pairs']} (equal scores, L_ft only: {stats['pairs_zero_weight']})",
             f"{'tier':<10}{'teacher':>10}{'student':>10}{'in pairs':>10}"]
    for t in TIERS:
        lines.append(f"{t:<10}{stats['teacher_tiers'][t]:>10}{stats['student_tiers'][t]:>10}"
                     f"{stats['pair_student_tiers'][t]:>10}")
    return "\n".join(lines)


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
