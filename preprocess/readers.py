"""Streaming readers for jsonl (plain, .gz, .zst), JSON arrays and parquet, file by file.

Nothing reads a whole file into memory: jsonl is read line by line, JSON arrays are decoded one
element at a time from a bounded buffer, parquet one record batch at a time. Readers hand back
*raw* items (the undecoded bytes of a jsonl line, or an already-decoded dict) in chunks, so that the
CPU-heavy parsing happens in worker processes; ``parse_item`` turns one raw item into a dict.
Every item carries its 1-based line (jsonl/JSON) or row (parquet) number for error messages.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

from codetron.errors import CodetronError
from codetron.records import RecordError, parse_record

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".parquet", ".ndjson")


@dataclass
class Chunk:
    """A run of raw items from one file."""

    source: str
    """The file the items came from."""
    items: list[tuple[int, Union[bytes, dict]]] = field(default_factory=list)
    """(line or row number, raw jsonl line bytes or decoded dict)."""
    nbytes: int = 0
    """Approximate size of the raw items, used to bound memory per chunk."""


@dataclass
class ReadError:
    """A problem that stopped reading a file (truncated archive, broken JSON array)."""

    source: str
    line: int
    reason: str


@dataclass
class Record:
    """One decoded input record."""

    source: str
    line: int
    data: dict


ItemError = RecordError
"""A single bad item (bad JSON, not UTF-8, not an object): the shared jsonl line parser's error."""


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files named by ``inputs``: files as given, directories walked recursively for supported
    suffixes, shell globs expanded. Sorted within each argument, so the order is reproducible."""
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and _supported(f.name))
            if not found:
                raise CodetronError(f"{item}: directory holds no {', '.join(SUFFIXES)} files")
            files.extend(found)
        elif p.is_file():
            files.append(str(p))
        elif any(ch in item for ch in "*?["):
            found = sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f))
            if not found:
                raise CodetronError(f"{item}: glob matched no files")
            files.extend(found)
        else:
            raise CodetronError(f"{item}: no such file or directory")
    for f in files:
        if not _supported(f):
            raise CodetronError(f"{f}: unsupported input type (expected one of {', '.join(SUFFIXES)})")
    return files


def _supported(name: str) -> bool:
    return name.endswith(SUFFIXES)


def _open_binary(path: str) -> io.BufferedIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _first_char(path: str) -> bytes:
    try:
        with _open_binary(path) as fh:
            while True:
                block = fh.read(4096)
                if not block:
                    return b""
                stripped = block.lstrip()
                if stripped:
                    return stripped[:1]
    except (OSError, EOFError, ValueError):
        return b""  # the chunk reader reports the archive error with its line


def iter_chunks(path: str, max_items: int = 512, max_bytes: int = 1 << 20) -> Iterator[Union[Chunk, ReadError]]:
    """Yield chunks of at most ``max_items`` items / about ``max_bytes`` bytes, or a ``ReadError``
    (after which the file yields nothing more)."""
    if path.endswith(".parquet"):
        yield from _parquet_chunks(path, max_items)
    elif path.endswith((".json", ".json.gz", ".json.zst")) and _first_char(path) == b"[":
        yield from _json_array_chunks(path, max_items, max_bytes)
    else:
        yield from _jsonl_chunks(path, max_items, max_bytes)


def _jsonl_chunks(path, max_items, max_bytes):
    chunk = Chunk(path)
    lineno = 0
    try:
        with _open_binary(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                chunk.items.append((lineno, line))
                chunk.nbytes += len(line)
                if len(chunk.items) >= max_items or chunk.nbytes >= max_bytes:
                    yield chunk
                    chunk = Chunk(path)
    except Exception as exc:
        # gzip raises EOFError/BadGzipFile(OSError), zstandard raises ZstdError(Exception)
        if not isinstance(exc, (EOFError, OSError)) and type(exc).__name__ != "ZstdError":
            raise
        if chunk.items:
            yield chunk
        yield ReadError(path, lineno + 1, f"unreadable from here on ({_archive_reason(exc)})")
        return
    if chunk.items:
        yield chunk


def _archive_reason(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, EOFError):
        return f"truncated archive: {msg}"
    return f"{type(exc).__name__}: {msg}"


def _parquet_chunks(path, max_items):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        yield ReadError(path, 0, f"not a parquet file ({str(exc).splitlines()[0][:120]})")
        return
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=max_items):
            chunk = Chunk(path)
            for rec in batch.to_pylist():
                row += 1
                chunk.items.append((row, rec))
            chunk.nbytes = batch.nbytes
            yield chunk
    except Exception as exc:
        yield ReadError(path, row + 1, f"unreadable parquet from here on ({str(exc).splitlines()[0][:120]})")


def _json_array_chunks(path, max_items, max_bytes, read_size: int = 1 << 20):
    """Decode ``[ {...}, {...} ]`` one element at a time (Evol-Instruct ships JSON arrays)."""
    decoder = json.JSONDecoder()
    chunk = Chunk(path)
    err: ReadError | None = None
    line = 1  # line number of buf[0]
    try:
        fh = io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="strict")
        with fh:
            buf = fh.read(read_size)
            pos = buf.index("[") + 1
            eof = False
            while True:
                # skip whitespace and separators
                while True:
                    while pos < len(buf) and buf[pos] in " \t\r\n,":
                        pos += 1
                    if pos < len(buf) or eof:
                        break
                    line += buf.count("\n", 0, pos)
                    buf, pos = fh.read(read_size), 0
                    eof = not buf
                if pos >= len(buf):
                    err = ReadError(path, line, "JSON array is not closed with ']'")
                    break
                if buf[pos] == "]":
                    break
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if not eof and len(buf) - pos < max(max_bytes, 64 << 20):
                        more = fh.read(read_size)
                        if more:
                            line += buf.count("\n", 0, pos)
                            buf, pos = buf[pos:] + more, 0
                            continue
                        eof = True
                        continue
                    err = ReadError(path, line + buf.count("\n", 0, exc.pos), f"bad JSON ({exc.msg}); rest of file skipped")
                    break
                item_line = line + buf.count("\n", 0, pos)
                chunk.items.append((item_line, obj))
                chunk.nbytes += end - pos
                pos = end
                if len(chunk.items) >= max_items or chunk.nbytes >= max_bytes:
                    yield chunk
                    chunk = Chunk(path)
                # drop the consumed prefix so the buffer stays bounded
                if pos > read_size:
                    line += buf.count("\n", 0, pos)
                    buf, pos = buf[pos:], 0
    except UnicodeDecodeError as exc:
        err = ReadError(path, line, f"not UTF-8 ({exc.reason}); rest of file skipped")
    except (EOFError, OSError) as exc:
        err = ReadError(path, line, f"unreadable from here on ({_archive_reason(exc)})")
    except ValueError:  # no '[' found
        err = ReadError(path, 1, "expected a JSON array")
    if chunk.items:
        yield chunk
    if err is not None:
        yield err


def parse_item(item: Union[bytes, dict]) -> dict:
    """Decode one raw item into a dict, raising ``ItemError`` with a short reason."""
    if isinstance(item, dict):
        if "__file_bytes__" in item:
            try:
                content = item["__file_bytes__"].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ItemError(f"{item['__file__']}: not UTF-8 (byte {exc.start}: {exc.reason})") from None
            return {"content": content, "path": item["path"], "repo": item["repo"], "__source_file__": True}
        return item
    return parse_record(item)


def iter_records(path: str, on_error: str = "fail") -> Iterator[Record]:
    """Decoded records of one file (single process; for small inputs, tools and tests).
    ``on_error="fail"`` raises ``CodetronError`` naming file:line; ``"skip"`` skips bad items."""
    for chunk in iter_chunks(path):
        if isinstance(chunk, ReadError):
            if on_error == "fail":
                raise CodetronError(f"{chunk.source}:{chunk.line}: {chunk.reason}")
            return
        for line, item in chunk.items:
            try:
                yield Record(path, line, parse_item(item))
            except ItemError as exc:
                if on_error == "fail":
                    raise CodetronError(f"{path}:{line}: {exc}") from None


# --- source trees (code files as documents) ----------------------------------------------------


STDLIB = "@stdlib"
STDLIB_EXCLUDES = ("site-packages/*", "dist-packages/*", "test/*", "*/test/*", "*/tests/*", "idlelib/*",
                   "lib2to3/*", "config-*", "__pycache__/*", "*/__pycache__/*", "ensurepip/*", "turtledemo/*")
"""Left out of ``@stdlib``: installed packages, the test suite (odd encodings, huge data files)."""


def resolve_stdlib(inputs: list[str], exclude: list[str]) -> tuple[list[str], list[str]]:
    """Replace the word ``@stdlib`` by this interpreter's standard library directory and add
    ``STDLIB_EXCLUDES`` -- a real code corpus on every machine, whatever its install path."""
    if STDLIB not in inputs:
        return inputs, exclude
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    return [stdlib if i == STDLIB else i for i in inputs], list(exclude) + list(STDLIB_EXCLUDES)


def expand_sources(inputs: list[str], suffixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(root, file) pairs for every file under ``inputs`` whose name ends in one of ``suffixes``,
    minus those whose path relative to the root matches an ``exclude`` glob (fnmatch)."""
    import fnmatch

    out: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            out.append((str(p.parent), str(p)))
            continue
        if not p.is_dir():
            raise CodetronError(f"{item}: no such file or directory")
        for f in sorted(p.rglob("*")):
            rel = str(f.relative_to(p))
            if f.is_file() and f.name.endswith(suffixes) and not any(fnmatch.fnmatch(rel, pat) for pat in exclude):
                out.append((str(p), str(f)))
    if not out:
        raise CodetronError(f"no files ending in {', '.join(suffixes)} under {', '.join(inputs)}")
    return out


def source_chunks(files: list[tuple[str, str]], max_items: int = 512, max_bytes: int = 1 << 20, max_file_bytes: int = 1 << 20) -> Iterator[Union[Chunk, ReadError]]:
    """Chunks of source files; each item is ``{"__file_bytes__": bytes, "path": rel, "repo": root name}``
    (decoded in the worker, so a non-UTF-8 file is reported like any bad record)."""
    chunk = Chunk("<source files>")
    for root, f in files:
        try:
            size = os.path.getsize(f)
            # too-large files travel as None and are counted as a drop (generated code, data blobs)
            data = Path(f).read_bytes() if size <= max_file_bytes else None
        except OSError as exc:
            yield ReadError(f, 1, f"unreadable ({exc.strerror})")
            continue
        rel = os.path.relpath(f, root)
        chunk.items.append((1, {"__file_bytes__": data, "__file__": f, "path": rel, "repo": os.path.basename(os.path.abspath(root))}))
        chunk.nbytes += len(data or b"")
        if len(chunk.items) >= max_items or chunk.nbytes >= max_bytes:
            yield chunk
            chunk = Chunk("<source files>")
    if chunk.items:
        yield chunk
