"""Seed data: instructions (CodeAlpaca-style records) for Evol-Instruct, code snippets for self-instruct."""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from codetron.errors import CodetronError

INSTRUCTION_FIELDS = ("instruction", "prompt", "question")
"""Where a seed's instruction is looked for, in order."""
CODE_FIELDS = ("code", "content", "seed", "solution")
"""Where a code seed's snippet is looked for, in order (jsonl input)."""


@dataclass(slots=True)
class Seed:
    id: str
    """Stable identifier: the record's ``id`` field, else ``<file stem>:<line>``."""
    text: str
    """The instruction (with its ``input`` appended, if any) or the code snippet."""
    output: str = ""
    """The seed's own response, if the seed data has one (CodeAlpaca does)."""


ON_ERROR = ("fail", "skip")
"""What a bad seed line does: stop the run naming file:line, or be skipped and counted."""


@dataclass(kw_only=True, slots=True)
class SeedOptions:
    """How a generation CLI reads its seed files."""

    on_error: str = "fail"
    """What a bad seed line (broken JSON, no instruction or code, duplicate id) does: "fail" names its
    file:line and stops; "skip" leaves it out and counts it."""


class SeedErrors(list):
    """The bad seed lines skipped with ``on_error="skip"`` (one ``file:line: why`` message each)."""

    def add(self, message: str, on_error: str) -> None:
        if on_error == "fail":
            raise CodetronError(message)
        self.append(message)


def _records(inputs: list[str], on_error: str = "fail", errors: SeedErrors | None = None):
    from codetron.preprocess.readers import ItemError, ReadError, expand_inputs, iter_chunks, parse_item

    if on_error not in ON_ERROR:
        raise CodetronError(f"--on-error {on_error!r}: choose fail or skip")
    errors = errors if errors is not None else SeedErrors()
    for path in expand_inputs(inputs):
        for chunk in iter_chunks(path):
            if isinstance(chunk, ReadError):  # the rest of the file is unreadable
                errors.add(f"{chunk.source}:{chunk.line}: {chunk.reason}", on_error)
                break
            for line, item in chunk.items:
                try:
                    data = parse_item(item)
                except ItemError as exc:
                    errors.add(f"{path}:{line}: {exc}", on_error)
                    continue
                yield path, line, data


def _seed_id(path: str, line: int, data: dict, seen: set[str]) -> str:
    sid = str(data["id"]) if data.get("id") not in (None, "") else f"{Path(path).name}:{line}"
    if sid in seen:
        raise CodetronError(f"{path}:{line}: duplicate seed id {sid!r} (ids key the resumable log)")
    seen.add(sid)
    return sid


def load_instruction_seeds(inputs: list[str], limit: int | None = None, *, on_error: str = "fail",
                           errors: SeedErrors | None = None) -> list[Seed]:
    """CodeAlpaca-style records: ``instruction`` (or prompt/question), optional ``input`` and ``output``.
    ``on_error="skip"`` skips bad lines (broken JSON, no instruction, duplicate id) into ``errors``."""
    seeds: list[Seed] = []
    seen: set[str] = set()
    errors = errors if errors is not None else SeedErrors()
    for path, line, data in _records(inputs, on_error, errors):
        field = next((f for f in INSTRUCTION_FIELDS if isinstance(data.get(f), str) and data[f].strip()), None)
        if field is None:
            errors.add(f"{path}:{line}: no non-empty 'instruction' field "
                       f"(looked for {', '.join(INSTRUCTION_FIELDS)})", on_error)
            continue
        try:
            sid = _seed_id(path, line, data, seen)
        except CodetronError as exc:
            errors.add(str(exc), on_error)
            continue
        text = data[field].strip()
        extra = data.get("input")
        if isinstance(extra, str) and extra.strip():
            # the evolved instruction must stand alone, so the input becomes part of it
            text = f"{text}\n{extra.strip()}"
        out = data.get("output") if isinstance(data.get("output"), str) else ""
        seeds.append(Seed(sid, text, out))
        if limit is not None and len(seeds) >= limit:
            break
    if not seeds:
        raise CodetronError(f"{', '.join(inputs)}: no seed records")
    return seeds


def extract_functions(source: str, min_lines: int = 3) -> list[tuple[str, str]]:
    """(name, source) of top-level functions with a docstring (StarCoder2-Instruct seeds documented
    functions); ``min_lines`` drops trivial one-liners."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
            seg = ast.get_source_segment(source, node)
            if seg and seg.count("\n") + 1 >= min_lines:
                out.append((node.name, seg))
    return out


def load_code_seeds(inputs: list[str], limit: int | None = None, *, on_error: str = "fail",
                    errors: SeedErrors | None = None) -> list[Seed]:
    """Code snippets from jsonl records (``code``/``content``/``seed``/``solution``) or from ``.py``
    files/directories (their documented top-level functions). ``on_error`` as for instruction seeds."""
    errors = errors if errors is not None else SeedErrors()
    seeds: list[Seed] = []
    seen: set[str] = set()
    py_files: list[Path] = []
    data_inputs: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and any(p.rglob("*.py")):
            py_files.extend(sorted(p.rglob("*.py")))
        elif p.suffix == ".py":
            if not p.is_file():
                raise CodetronError(f"{item}: no such file")
            py_files.append(p)
        else:
            data_inputs.append(item)
    for f in py_files:
        try:
            source = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise CodetronError(f"{f}: cannot read: {exc}") from None
        for name, seg in extract_functions(source):
            sid = f"{f.name}:{name}:{hashlib.sha1(seg.encode()).hexdigest()[:8]}"
            if sid not in seen:
                seen.add(sid)
                seeds.append(Seed(sid, seg))
    if data_inputs:
        for path, line, data in _records(data_inputs, on_error, errors):
            field = next((f for f in CODE_FIELDS if isinstance(data.get(f), str) and data[f].strip()), None)
            if field is None:
                errors.add(f"{path}:{line}: no code field (looked for {', '.join(CODE_FIELDS)})", on_error)
                continue
            try:
                seeds.append(Seed(_seed_id(path, line, data, seen), data[field].strip("\n")))
            except CodetronError as exc:
                errors.add(str(exc), on_error)
    if limit is not None:
        seeds = seeds[:limit]
    if not seeds:
        raise CodetronError(f"{', '.join(inputs)}: no code seeds (documented functions or code records)")
    return seeds
