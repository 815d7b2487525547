"""Which output folders a conversion may write, decided before anything is read or written, and
how a finished output replaces an old one.

Conversion builds its output in a temp folder next to ``OUT`` and, when it is complete, exchanges
it with ``OUT`` in one atomic step (``atomic_dir``). The rules:

* ``OUT`` must not be an input, lie inside one, or contain one (symlinks resolved): replacing it
  would delete the training run or the source model, and a temp folder inside an input pollutes it.
* An existing, non-empty ``OUT`` is replaced only with ``--overwrite`` and only if it holds nothing
  but what an earlier export of the same command wrote, as its manifest (``codetron_export.json``,
  ``manifest.py``) lists it. Anything else is refused, even with ``--overwrite``, in one line that
  lists what is in the way: entries no export wrote (a nested training run, notes, eval results),
  files of the export edited since (a changed size or, for small files, content: a hand-tuned
  ``generation_config.json`` is the user's work now), or a folder without a manifest.
* An empty folder (e.g. made by a job script) is written into without asking.
* After the exchange the old output is removed file by file as its manifest lists them, never as a
  whole tree: whatever appeared in it during the conversion is kept and named in a warning.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from codetron.errors import CodetronError
from codetron.fileio import atomic_dir
from codetron.convert.manifest import MANIFEST, name_list, read_manifest, remove_listed, survey, write_manifest

WRITERS = {"to-hf": "codetron convert to-hf", "from-hf": "codetron convert from-hf"}
"""The manifest's ``written_by`` of each conversion: one replaces only its own earlier outputs."""


def _real(p: Path) -> Path:
    # resolve() follows symlinks of the existing part of the path, so a link to the input is the input
    return Path(os.path.realpath(p))


def _overlap(out: Path, inputs: dict[str, Path]) -> None:
    o = _real(out)
    for what, path in inputs.items():
        i = _real(path)
        if o == i:
            raise CodetronError(f"refusing to write {out}: it is the input {what} {path}")
        if o in i.parents:
            raise CodetronError(f"refusing to write {out}: it contains the input {what} {path}, "
                                f"which replacing it would delete")
        if i in o.parents:
            raise CodetronError(f"refusing to write {out}: it is inside the input {what} {path}; "
                                f"choose a folder outside it")


def source_from(source: Path, out: str | Path) -> str:
    """``source`` relative to ``out``, as ``codetron_conversion.json`` records it: it still resolves
    from the output folder when the two move together, and an output published to a model hub does
    not carry the converting machine's absolute paths (home directories, scratch mounts)."""
    return Path(os.path.relpath(_real(source), _real(Path(out)))).as_posix()


def check_output(out: str | Path, inputs: dict[str, Path], kind: str, overwrite: bool) -> None:
    """Raise a one-line ``CodetronError`` unless ``out`` may be (re)written by conversion ``kind``
    (``"to-hf"`` or ``"from-hf"``); ``inputs`` names each input path for the message."""
    out = Path(out)
    _overlap(out, inputs)
    if out.is_symlink():
        raise CodetronError(f"refusing to write {out}: it is a symbolic link; name the real folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise CodetronError(f"refusing to write {out}: it exists and is not a folder")
    entries = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in out.iterdir())
    if not entries:
        return
    manifest = read_manifest(out)
    if manifest is None:
        raise CodetronError(f"refusing to write {out}: it holds {name_list(entries)} but no {MANIFEST} (the list "
                            f"of files an export wrote), so replacing it could delete files of yours; choose a "
                            f"new or empty folder")
    if manifest["written_by"] != WRITERS[kind]:
        raise CodetronError(f"refusing to write {out}: it is a `{manifest['written_by']}` output, which "
                            f"`{WRITERS[kind]}` does not replace; choose another folder")
    found = survey(out, manifest)
    if found.unknown:
        raise CodetronError(f"refusing to write {out}: it holds {len(found.unknown)} entr"
                            f"{'y' if len(found.unknown) == 1 else 'ies'} no export wrote "
                            f"({name_list(found.unknown)}); move them out of it or choose another folder")
    if found.changed:
        raise CodetronError(f"refusing to write {out}: {name_list(found.changed)} changed since the export wrote "
                            f"{'it' if len(found.changed) == 1 else 'them'} and may hold your edits; move "
                            f"{'it' if len(found.changed) == 1 else 'them'} out of {out} (or delete), then rerun")
    if not overwrite:
        raise CodetronError(f"{out} exists (a previous `{WRITERS[kind]}` output); pass --overwrite to replace it")


def discard_previous(old: Path, out: Path) -> None:
    """Remove the replaced output (now at ``old``) file by file, as its manifest lists them."""
    try:
        left = remove_listed(old, read_manifest(old))
    except (CodetronError, OSError) as exc:
        left = [str(exc)]
    if left:
        print(f"warning: {out} gained {name_list(left)} during the conversion; the previous output is kept "
              f"in {old} with it (the new one is complete in {out})", file=sys.stderr)


@contextlib.contextmanager
def export_dir(out: str | Path, inputs: dict[str, Path], kind: str, overwrite: bool) -> Iterator[Path]:
    """A temp folder for the conversion's output; on success its manifest is written, ``out`` is
    checked once more (a conversion takes minutes; files may have arrived meanwhile), and the folder
    replaces ``out`` atomically. On failure ``out`` is left as it was."""
    out = Path(out)
    with atomic_dir(out, discard_old=lambda old: discard_previous(old, out)) as tmp:
        yield tmp
        write_manifest(tmp, WRITERS[kind])
        check_output(out, inputs, kind, overwrite)
