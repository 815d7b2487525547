"""What a data source is, and the registry of them.

A source reads one kind of input file into records (dicts); the pipeline then treats its records as
it treats a jsonl line's: the same field names (``--field`` maps others), the same filters,
rendering and tokenization. The built-in inputs (jsonl/JSON/parquet files, ``datasets`` directories
and hub names) are ``codetron.preprocess.readers``'s own; sources add other file types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from codetron.errors import CodetronError

BUILTIN_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".parquet", ".ndjson")
"""File types ``codetron.preprocess.readers`` reads itself (streaming raw lines to the workers)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One registered input file type."""

    name: str
    """Short name, for messages."""
    suffixes: tuple[str, ...]
    """File name endings this source reads (``.csv``); a directory input is walked for them too."""
    rows: Callable[[str], Iterator[dict]]
    """``rows(path)``: the file's records in order, one dict each; read lazily (a file may be large).
    An exception stops the file there and is reported with the row it was reading."""


SOURCES: dict[str, Source] = {}
"""Every registered source by name."""


def register(name: str, suffixes: tuple[str, ...]) -> Callable[[Callable[[str], Iterator[dict]]], Callable]:
    """Decorator for ``rows(path)``: files ending in ``suffixes`` are read through it."""
    def deco(rows: Callable[[str], Iterator[dict]]) -> Callable[[str], Iterator[dict]]:
        for suffix in suffixes:
            taken = [s.name for s in SOURCES.values() if suffix in s.suffixes and s.name != name]
            if suffix in BUILTIN_SUFFIXES or taken:
                raise CodetronError(f"data source {name!r}: {suffix} files are already read by "
                                    f"{taken[0] if taken else 'codetron.preprocess.readers'}")
        SOURCES[name] = Source(name, tuple(suffixes), rows)
        return rows
    return deco
