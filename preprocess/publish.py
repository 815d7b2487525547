"""Publishing a dataset so that no kill can pair a ``.bin`` of one run with an ``.idx`` of another.

megatron-core opens ``PREFIX.bin`` and ``PREFIX.idx`` by name, so the two files cannot be replaced in
one atomic step (a directory swap would change the names it reads). Instead:

1. everything is written under hidden temporary names next to the outputs (removed on any error,
   Ctrl-C or SIGTERM);
2. ``PREFIX.incomplete`` is created, then the old summary removed, then ``.bin``, ``.idx`` and the
   summary renamed in that order, then the marker removed -- with SIGINT/SIGTERM blocked, so only
   SIGKILL or a crash can stop it half-way;
3. the summary records the sizes of both files and a digest of the index.

:func:`check_dataset` is the reader's side: it refuses a prefix whose marker is present (a publish
was cut short), whose ``.bin`` size disagrees with its ``.idx``, or whose files are not the ones its
summary describes -- in one line, before any training process group starts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from codetron.errors import CodetronError
from codetron.preprocess.indexed import IndexInfo, bin_path, idx_path, marker_path, summary_path


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b-128 of a file, streamed (indexes are small next to their ``.bin``)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Outputs:
    """Temporary paths of one dataset being written; see :func:`dataset_outputs`."""

    bin: Path
    idx: Path
    summary: Path

    def seal(self, summary: dict) -> dict:
        """Write ``summary`` plus the fingerprint of the finished ``.bin``/``.idx`` into the temp
        summary; call after both files are complete. Returns the summary written."""
        summary = dict(summary)
        summary["files"] = {
            "bin_bytes": os.path.getsize(self.bin),
            "idx_bytes": os.path.getsize(self.idx),
            "idx_blake2b": file_digest(self.idx),
        }
        self.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary


def _temp_next_to(final: str) -> Path:
    d, name = os.path.split(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; datasets are shared data
    return Path(tmp)


@contextlib.contextmanager
def dataset_outputs(prefix: str | os.PathLike) -> Iterator[Outputs]:
    """Yield temp paths for ``PREFIX.bin/.idx/.summary.json``; publish them together if the block
    completes (after :meth:`Outputs.seal`), delete them otherwise. The old dataset, if any, stays
    untouched until the block has succeeded."""
    prefix = str(prefix)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    finals = (bin_path(prefix), idx_path(prefix), summary_path(prefix))
    temps: list[Path] = []
    try:
        temps = [_temp_next_to(f) for f in finals]
        out = Outputs(*temps)
        yield out
        _publish(prefix, list(zip(temps, finals)))
    finally:
        for t in temps:
            with contextlib.suppress(FileNotFoundError):
                t.unlink()


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block is done (they are delivered right after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(prefix: str, moves: list[tuple[Path, str]]) -> None:
    for tmp, _ in moves:
        _fsync(tmp)  # the data must be on disk before the names point at it
    marker = marker_path(prefix)
    with _signals_blocked():
        Path(marker).write_text(json.dumps({"pid": os.getpid(), "publishing": [f for _, f in moves]}) + "\n")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(summary_path(prefix))  # the old summary must never vouch for the new files
        for tmp, final in moves:  # .bin, .idx, then the summary
            os.replace(tmp, final)
        _fsync(os.path.dirname(os.path.abspath(marker)))
        os.unlink(marker)


def check_dataset(prefix: str | os.PathLike) -> None:
    """Raise ``CodetronError`` (one line) unless ``PREFIX.bin`` and ``PREFIX.idx`` belong together.

    Checks, cheapest first: no interrupted publish (``PREFIX.incomplete``), both files present, the
    ``.bin`` size equals what the ``.idx`` says, and -- when ``PREFIX.summary.json`` carries a
    fingerprint (written by Codetron) -- the sizes and the index digest it recorded. Datasets from
    other tools (no summary) get the first three checks."""
    prefix = str(prefix)
    IndexInfo(prefix)  # marker, presence, header and .bin size against the index
    try:
        with open(summary_path(prefix), encoding="utf-8") as fh:
            files = json.load(fh).get("files")
    except FileNotFoundError:
        return
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise CodetronError(f"{summary_path(prefix)}: unreadable summary ({exc}); rerun the preprocess command that wrote it") from None
    if not isinstance(files, dict):
        return  # written before summaries carried a fingerprint
    actual = {"bin_bytes": os.path.getsize(bin_path(prefix)), "idx_bytes": os.path.getsize(idx_path(prefix))}
    for key, size in actual.items():
        if files.get(key) != size:
            raise CodetronError(f"{prefix}: {key.split('_')[0]} is {size} bytes but {summary_path(prefix)} "
                                f"recorded {files.get(key)}: the files come from different runs; rerun preprocess")
    if files.get("idx_blake2b") not in (None, file_digest(idx_path(prefix))):
        raise CodetronError(f"{idx_path(prefix)} is not the index {summary_path(prefix)} describes (digest differs): "
                            f"the files come from different runs; rerun preprocess")
