"""Streaming readers for jsonl (plain, .gz, .zst), JSON arrays, parquet and ``datasets`` datasets.

Nothing reads a whole input into memory: jsonl is read line by line, JSON arrays are decoded one
element at a time from a bounded buffer, parquet one record batch at a time, a ``datasets``
``save_to_disk`` directory one arrow record batch at a time and a hub dataset
(``hf://OWNER/NAME...``, see ``HubName``) with ``streaming=True``. Readers hand back
*raw* items (the undecoded bytes of a jsonl line, or an already-decoded dict) in chunks, so that the
CPU-heavy parsing happens in worker processes; ``parse_item`` turns one raw item into a dict.
Every item carries its 1-based line (jsonl/JSON) or row (parquet) number for error messages.
Other file types are read by the registered data sources (``codetron.preprocess.sources``).
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

from codetron.errors import CodetronError
from codetron.preprocess import sources
from codetron.preprocess.sources import Source
from codetron.records import RecordError, parse_record

MAX_DOC_CHARS = 10_000_000
"""Default ``--max-doc-chars``: ten times The Stack's 1 MB file limit, so no real source file is
dropped, while a data blob or a runaway record costs at most ~100 MB of memory per worker."""
SUFFIXES = sources.BUILTIN_SUFFIXES
"""The file types read here; ``sources.suffixes()`` adds the registered sources'."""


@dataclass
class Chunk:
    """A run of raw items from one file."""

    source: str
    """The file the items came from."""
    items: list[tuple[int, Union[bytes, dict]]] = field(default_factory=list)
    """(line or row number, raw jsonl line bytes or decoded dict)."""
    nbytes: int = 0
    """Approximate size of the raw items, used to bound memory per chunk."""
    too_long: int = 0
    """Lines the reader skipped for being over ``max_line_bytes`` (counted as dropped)."""


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
    """Inputs named by ``inputs``: files as given, directories walked recursively for supported
    suffixes and ``save_to_disk`` dataset directories (each one input), shell globs expanded, hub
    names (``hf://...``) checked to be reachable. Sorted within each argument, so the order is
    reproducible."""
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if item.startswith(HUB_PREFIX):
            open_hub_dataset(HubName.parse(item))  # offline or unknown: one line now, before any worker
            files.append(item)
        elif p.is_dir():
            found = _walk_inputs(p)
            if not found:
                raise CodetronError(f"{item}: directory holds no {', '.join(sources.suffixes())} files and no `datasets` save_to_disk directory")
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
        if not (_supported(f) or f.startswith(HUB_PREFIX) or is_disk_dataset(f)):
            raise CodetronError(f"{f}: unsupported input type (expected one of {', '.join(sources.suffixes())})")
    return files


def _supported(name: str) -> bool:
    return name.endswith(sources.suffixes())


def _walk_inputs(root: Path) -> list[str]:
    """Supported files under ``root``; a ``save_to_disk`` directory counts as one input (its
    state.json / dataset_info.json are metadata, not records)."""
    if is_disk_dataset(root):
        return [str(root)]
    _refuse_dataset_dict(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            if is_disk_dataset(here / d):
                found.append(str(here / d))
                dirnames.remove(d)
            else:
                _refuse_dataset_dict(here / d)
        found.extend(str(here / f) for f in filenames if _supported(f))
    return sorted(found)


# --- `datasets` inputs: save_to_disk directories and hub names --------------------------------

HUB_PREFIX = "hf://"


def is_disk_dataset(path: Union[str, Path]) -> bool:
    """A directory written by ``datasets.Dataset.save_to_disk``."""
    p = Path(path)
    return (p / "state.json").is_file() and (p / "dataset_info.json").is_file()


def _refuse_dataset_dict(path: Path) -> None:
    # A DatasetDict holds several splits; reading all of them into one training set would mix
    # test data into it, so the user names the split directory.
    marker = path / "dataset_dict.json"
    if marker.is_file():
        try:
            splits = json.loads(marker.read_text()).get("splits") or []
        except (OSError, ValueError, AttributeError):
            splits = []
        example = path / (splits[0] if splits else "train")
        raise CodetronError(f"{path}: a `datasets` DatasetDict (splits: {', '.join(splits) or '?'}); "
                            f"pass one split's directory, e.g. {example}")


def _import_datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise CodetronError(f"{what}: reading it needs the `datasets` package (pip install 'codetron[data]')") from None
    return datasets


def _first_line(exc: BaseException) -> str:
    return ((str(exc).splitlines() or [""])[0] or type(exc).__name__)[:300]


@dataclass(frozen=True)
class HubName:
    """A hub dataset as an input: ``hf://OWNER/NAME[@REVISION][/DATA_DIR][:CONFIG][:SPLIT]``.

    ``hf://bigcode/the-stack-smol`` (split ``train``), ``hf://OWNER/NAME:CONFIG``,
    ``hf://OWNER/NAME::test`` (no config, split ``test``), ``hf://bigcode/the-stack/data/python``
    (``data_dir``), ``hf://OWNER/NAME@v1.0`` (a revision)."""

    text: str
    """The input as written (used in messages and as the records' source)."""
    repo: str
    """``OWNER/NAME`` on the hub."""
    revision: str | None = None
    """Branch, tag or commit."""
    data_dir: str | None = None
    """Sub-directory of the repository to read (``load_dataset(data_dir=...)``)."""
    config: str | None = None
    """Configuration name (``load_dataset(name=...)``)."""
    split: str = "train"
    """Split to stream."""

    @classmethod
    def parse(cls, text: str) -> "HubName":
        head, *rest = text[len(HUB_PREFIX):].split(":")
        owner, _, tail = head.partition("/")
        name_rev, _, data_dir = tail.partition("/")
        name, at, revision = name_rev.partition("@")
        word = re.compile(r"[\w.-]+")
        if not (word.fullmatch(owner) and word.fullmatch(name)) or (at and not revision) or len(rest) > 2:
            raise CodetronError(f"{text}: expected hf://OWNER/NAME[@REVISION][/DATA_DIR][:CONFIG][:SPLIT]")
        config, split = (rest + ["", ""])[:2]
        return cls(text=text, repo=f"{owner}/{name}", revision=revision or None, data_dir=data_dir or None,
                   config=config or None, split=split or "train")


def open_hub_dataset(hub: HubName):
    """The hub dataset as a streaming ``IterableDataset`` (nothing downloaded up front); a
    ``CodetronError`` naming it when it cannot be reached (offline, unknown, gated, bad split)."""
    datasets = _import_datasets(hub.text)
    try:
        return datasets.load_dataset(hub.repo, hub.config, split=hub.split, data_dir=hub.data_dir,
                                     revision=hub.revision, streaming=True)
    except Exception as exc:  # offline, unknown name, gated, bad split/config: one line either way
        offline = " (the hub is switched off here: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)" if _hub_offline(datasets) else ""
        raise CodetronError(f"{hub.text}: cannot stream dataset {hub.repo} from the Hugging Face hub{offline}: "
                            f"{_first_line(exc)}; on a machine without network, pass a save_to_disk "
                            "directory or its parquet/jsonl files instead") from None


def _hub_offline(datasets) -> bool:
    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False) or getattr(datasets.config, "HF_DATASETS_OFFLINE", False))


def _dataset_chunks(source: str, open_rows, max_items: int, max_bytes: int) -> Iterator[Union[Chunk, ReadError]]:
    """Rows of a ``datasets`` dataset in chunks bounded by count and size; ``open_rows()`` gives
    an iterator of column batches (dict of lists), opened here so its errors become ReadErrors."""
    chunk = Chunk(source)
    row = 0
    try:
        for batch in open_rows():
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                rec = dict(zip(columns, values))
                row += 1
                chunk.items.append((row, rec))
                chunk.nbytes += sum(len(v) for v in values if isinstance(v, (str, bytes)))
                if len(chunk.items) >= max_items or chunk.nbytes >= max_bytes:
                    yield chunk
                    chunk = Chunk(source)
    except Exception as exc:  # a dropped connection or a damaged arrow file mid-way
        if chunk.items:
            yield chunk
        reason = (str(exc).removeprefix(f"{source}: ") if isinstance(exc, CodetronError)
                  else f"unreadable from here on ({type(exc).__name__}: {_first_line(exc)})")
        yield ReadError(source, row + 1, reason)
        return
    if chunk.items:
        yield chunk


# Rows per batch read from a dataset: small, because a batch is materialized as Python objects
# before the chunk size bound applies (64 rows of The Stack are a few MB).
_DATASET_BATCH_ROWS = 64


def _disk_dataset_rows(path: str):
    """Column batches of a ``save_to_disk`` directory, read from its arrow stream files in the
    order state.json lists them. Plain reads rather than ``datasets.load_from_disk``: its memory
    map leaves every page read resident, so peak RSS grew with the dataset (+95 MB for a 91 MB
    one, measured); this way it holds one record batch."""
    import pyarrow as pa

    try:
        state = json.loads((Path(path) / "state.json").read_text())
        files = [Path(path) / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CodetronError(f"{path}: unreadable `datasets` state.json ({type(exc).__name__}: {_first_line(exc)})") from None
    if state.get("_indices_data_files"):  # never written by save_to_disk (it applies indices), but be sure
        raise CodetronError(f"{path}: dataset with an indices mapping; re-save it with save_to_disk")
    for f in files:
        with pa.OSFile(str(f)) as fh:
            for batch in pa.ipc.open_stream(fh):
                for start in range(0, batch.num_rows, _DATASET_BATCH_ROWS):
                    yield batch.slice(start, _DATASET_BATCH_ROWS).to_pydict()


def _source_batches(source: Source, path: str):
    """A registered source's records as one-row column batches (what ``_dataset_chunks`` takes)."""
    for row, rec in enumerate(source.rows(path), 1):
        if not isinstance(rec, dict):
            raise CodetronError(f"{path}: data source {source.name!r} gave a {type(rec).__name__} at row {row}, "
                                "not a record (dict)")
        yield {key: [value] for key, value in rec.items()}


def _hub_rows(name: str):
    return open_hub_dataset(HubName.parse(name)).iter(batch_size=_DATASET_BATCH_ROWS)


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


def line_limit(max_doc_chars: int) -> int:
    """Bytes of a jsonl line beyond which its document certainly exceeds ``max_doc_chars``
    characters (0: no limit): one character is at most 12 bytes of JSON (an escaped surrogate
    pair), plus 1 MiB for the other fields."""
    return 12 * max_doc_chars + (1 << 20) if max_doc_chars > 0 else 0


def iter_chunks(path: str, max_items: int = 512, max_bytes: int = 1 << 20,
                max_line_bytes: int = 0) -> Iterator[Union[Chunk, ReadError]]:
    """Yield chunks of at most ``max_items`` items / about ``max_bytes`` bytes, or a ``ReadError``
    (after which the file yields nothing more). jsonl lines longer than ``max_line_bytes`` (0: no
    limit) are skipped in bounded memory and counted in ``Chunk.too_long``."""
    if path.startswith(HUB_PREFIX):
        yield from _dataset_chunks(path, lambda: _hub_rows(path), max_items, max_bytes)
    elif is_disk_dataset(path):
        yield from _dataset_chunks(path, lambda: _disk_dataset_rows(path), max_items, max_bytes)
    elif (source := sources.source_for(path)) is not None:
        yield from _dataset_chunks(path, lambda: _source_batches(source, path), max_items, max_bytes)
    elif path.endswith(".parquet"):
        yield from _parquet_chunks(path, max_items)
    elif path.endswith((".json", ".json.gz", ".json.zst")) and _first_char(path) == b"[":
        yield from _json_array_chunks(path, max_items, max_bytes)
    else:
        yield from _jsonl_chunks(path, max_items, max_bytes, max_line_bytes)


def _lines(fh, limit: int) -> Iterator[bytes | None]:
    """The file's lines; ``None`` for one longer than ``limit`` bytes: at most ``limit + 1`` of its
    bytes are held, the rest is read past in 1 MiB blocks."""
    if not limit:
        yield from fh
        return
    while line := fh.readline(limit + 1):
        if len(line) <= limit or line == line[:limit] + b"\n":
            yield line
            continue
        while not line.endswith(b"\n"):
            line = fh.readline(1 << 20)
            if not line:
                break
        yield None


def _jsonl_chunks(path, max_items, max_bytes, max_line_bytes=0):
    chunk = Chunk(path)
    lineno = 0
    try:
        with _open_binary(path) as fh:
            for lineno, line in enumerate(_lines(fh, max_line_bytes), 1):
                if line is None:
                    chunk.too_long += 1
                    continue
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
    if chunk.items or chunk.too_long:
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
