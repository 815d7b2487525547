"""JSON Lines records: the one reader and writer of the small jsonl files stages hand each other.

Problems, samples, teacher responses, ranked pairs, generations and resumable generation logs are
all one JSON object per line. ``read_jsonl`` is the only loop that parses them: it skips blank
lines, reads ``.gz`` transparently and fails with one line naming ``file:line``, so every caller
validates fields and nothing else. It lives in ``codetron/`` because eval, preprocess and
megatron_ext all read such files and none of them may import another's internals for it.

Large training corpora (parquet, zstd, JSON arrays, millions of lines, parsed in worker processes)
go through ``codetron.preprocess.readers`` instead; this module is for files that fit in memory.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from codetron.errors import CodetronError
from codetron.fileio import atomic_open


class RecordError(ValueError):
    """One line that is not a JSON object; the message is the reason, without file or line."""


def parse_record(raw: bytes | str) -> dict:
    """Decode one jsonl line (bytes or text) into a dict, or raise ``RecordError`` saying why not."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"not UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        # without the line break, the column of an error at the end of the line is on this line
        obj = json.loads(raw.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        raise RecordError(f"bad JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path: str | os.PathLike, *, what: str = "records", hint: str = "") -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for every non-blank line of ``path`` (plain or ``.gz``).

    ``what`` names the file in the not-found error ("problems" -> "P: problems file not found");
    ``hint`` is appended to parse errors (e.g. "; pass --restart")."""
    path = Path(path)
    if not path.is_file():
        raise CodetronError(f"{path}: {what} file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        # bytes, decoded line by line: a text stream decodes ahead and would blame the wrong line
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield lineno, parse_record(raw)
                except RecordError as exc:
                    raise CodetronError(f"{path}:{lineno}: {exc}{hint}") from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise CodetronError(f"{path}:{lineno + 1}: unreadable ({exc})") from None


def read_json(path: str | os.PathLike, *, what: str = "JSON") -> object:
    """The parsed content of a whole JSON file (plain or ``.gz``): generations lists, metrics, model
    configs. Missing, unreadable or malformed files raise one line naming the file (and the line of a
    syntax error); the caller checks the shape."""
    path = Path(path)
    if not path.is_file():
        raise CodetronError(f"{path}: {what} file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise CodetronError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # BadGzipFile is an OSError
        raise CodetronError(f"{path}: unreadable {what} file ({exc})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict], *, ensure_ascii: bool = True) -> int:
    """Write ``rows`` one per line, atomically (the file appears only when complete); returns the count."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
            n += 1
    return n


def cut_torn_tail(path: str | os.PathLike) -> int:
    """Cut an unfinished last line (a crash mid-append) off an append-only jsonl file.

    Resumable writers append one whole line per finished unit and flush it; a line without its
    newline was being written when the process died, and its unit is simply done again.
    Returns the number of bytes cut."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        data = fh.read()
    good = data.rfind(b"\n") + 1
    if good < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return len(data) - good
