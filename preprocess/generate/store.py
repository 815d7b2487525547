"""Append-only jsonl logs that make generation runs resumable.

``AppendLog``: one JSON line per finished unit of work, flushed and fsynced at once, so a crash, a
Ctrl-C or a spent request budget loses at most the units in flight; on reopening, a torn last line
(a crash mid-write) is cut off and its unit is done again. RRTF sampling writes its samples file
this way.

``RecordLog`` adds a header and keys on top (``OUT.records.jsonl`` of ``codetron evolve``): one header
line (what run this is) and then one line per unit keyed by ``key`` (``"<seed id>:<round>"`` for
Evol-Instruct, ``"<seed id>:<k>"`` for self-instruct), kept or dropped. On restart the log is read
back and only missing keys are generated. A header that does not match the new run's settings is
refused (``--restart`` starts over).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from codetron.errors import CodetronError
from codetron.records import cut_torn_tail, read_jsonl

HEADER_KEY = "_codetron_evolve"
"""Marks the header line; its value is the log format version."""
FORMAT_VERSION = 1


class AppendLog:
    """Append whole JSON lines to ``path`` durably (thread-safe); a torn tail is cut on opening."""

    def __init__(self, path: str | os.PathLike, ensure_ascii: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn_bytes = cut_torn_tail(self.path)
        """Bytes of an unfinished last line cut off on opening (0 after a clean stop)."""
        self.ensure_ascii = ensure_ascii
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict) -> None:
        with self._lock:
            self._fh.write(json.dumps(obj, ensure_ascii=self.ensure_ascii) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordLog(AppendLog):
    """Read back existing records, then append new ones (thread-safe)."""

    def __init__(self, path: str | os.PathLike, header: dict, restart: bool = False):
        path = Path(path)
        if restart and path.exists():
            path.unlink()
        super().__init__(path, ensure_ascii=False)
        self.records: dict[str, dict] = {}
        self.resumed = 0
        if self.path.stat().st_size > 0:
            self._load(header)
        else:
            self.write({HEADER_KEY: FORMAT_VERSION, **header})

    def _load(self, header: dict) -> None:
        hint = "; remove the line or pass --restart"
        lines = iter(read_jsonl(self.path, what="record log", hint=hint))
        first = next(lines, (1, {}))[1]
        if first.get(HEADER_KEY) != FORMAT_VERSION:
            raise CodetronError(f"{self.path}:1: not a codetron evolve record log; remove it or pass --restart")
        old = {k: v for k, v in first.items() if k != HEADER_KEY}
        for key in sorted(set(old) | set(header)):
            if old.get(key) != header.get(key):
                raise CodetronError(
                    f"{self.path}:1: was written with {key}={old.get(key)!r}, this run has "
                    f"{key}={header.get(key)!r}; use the same settings to resume or pass --restart")
        for lineno, rec in lines:
            if not isinstance(rec.get("key"), str):
                raise CodetronError(f"{self.path}:{lineno}: corrupt record (no 'key'){hint}")
            self.records[rec["key"]] = rec
        self.resumed = len(self.records)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict) -> None:
        with self._lock:
            self.records[record["key"]] = record
        self.write(record)

    def __enter__(self) -> "RecordLog":
        return self
