"""The list of files a conversion wrote (``codetron_export.json``): what ``--overwrite`` may replace.

Each output of ``to-hf`` and ``from-hf`` carries one, written last into the temp folder before it
is renamed into place. It records every file's size and, for files up to ``HASH_LIMIT`` bytes (the
configs, tokenizer files and index: where hand edits happen), its sha256. Larger files (weight
shards) are compared by size only: hashing them would cost a full read of the old output on every
overwrite, and a weight shard is what the next export rewrites anyway.

Example::

    {"written_by": "codetron convert to-hf", "format": 1,
     "files": {"config.json": {"bytes": 712, "sha256": "9f2c..."},
               "model-00001-of-00002.safetensors": {"bytes": 1999998432}, ...}}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from codetron.errors import CodetronError
from codetron.fileio import sha256_file

MANIFEST = "codetron_export.json"
"""The manifest's name in an output folder."""
HASH_LIMIT = 64 << 20
"""Files up to this many bytes are recorded with a sha256, larger ones with their size only."""
FORMAT = 1


def _record(path: Path, size: int) -> dict:
    return {"bytes": size, "sha256": sha256_file(path)} if size <= HASH_LIMIT else {"bytes": size}


def write_manifest(folder: Path, written_by: str) -> dict:
    """List every file below ``folder`` (the finished output, before it is published) in its manifest."""
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST:
                files[rel] = _record(path, path.lstat().st_size)
    manifest = {"written_by": written_by, "format": FORMAT, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _safe_relative(rel: object) -> bool:
    """A manifest may only name files inside its folder: removing ``../x`` would reach outside."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    parts = PurePosixPath(rel).parts
    return not PurePosixPath(rel).is_absolute() and all(p not in ("", ".", "..") for p in parts) \
        and "/".join(parts) == rel


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, None when it has none; a one-line error when it is not one."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodetronError(f"{path}: not a readable export manifest ({exc}); "
                            f"move the folder away or choose another output") from None
    files = data.get("files") if isinstance(data, dict) else None
    bad = "'files' is not an object" if not isinstance(files, dict) else next(
        (f"entry {rel!r}" for rel, rec in files.items()
         if not _safe_relative(rel) or not isinstance(rec, dict) or not isinstance(rec.get("bytes"), int)
         or not isinstance(rec.get("sha256", ""), str)), None)
    if bad or not isinstance(data.get("written_by"), str):
        raise CodetronError(f"{path}: not a valid export manifest ({bad or 'no written_by'}); "
                            f"move the folder away or choose another output")
    return data


@dataclass
class Survey:
    """How a folder differs from its manifest."""

    unknown: list[str] = field(default_factory=list)
    """Entries no export wrote (folders end in ``/`` and stand for everything below them)."""
    changed: list[str] = field(default_factory=list)
    """Files the export wrote whose size or content differs now (or that became a link)."""


def _changed(path: Path, rec: dict) -> bool:
    st = path.lstat()
    if not path.is_file() or path.is_symlink() or st.st_size != rec["bytes"]:
        return True
    return "sha256" in rec and sha256_file(path) != rec["sha256"]


def survey(folder: Path, manifest: dict) -> Survey:
    """Compare ``folder`` with ``manifest``: what it holds that no export wrote, and what was edited.
    A listed file that is missing is neither (nothing of the user's is lost by rewriting it)."""
    files = manifest["files"]
    dirs = {str(PurePosixPath(rel).parents[i]) for rel in files for i in range(len(PurePosixPath(rel).parts) - 1)}
    found = Survey()

    def walk(d: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            rel = prefix + entry.name
            if rel == MANIFEST:
                continue
            if entry.is_dir(follow_symlinks=False):
                if rel in dirs:
                    walk(Path(entry.path), rel + "/")
                else:
                    found.unknown.append(rel + "/")
            elif rel in files:
                if _changed(Path(entry.path), files[rel]):
                    found.changed.append(rel)
            else:
                found.unknown.append(rel)

    walk(folder, "")
    return found


def remove_listed(folder: Path, manifest: dict | None) -> list[str]:
    """Delete what ``manifest`` lists (and the manifest), then the folders left empty; returns the
    entries that remain (none unless something was added after the last check)."""
    for rel in (manifest or {}).get("files", {}):
        path = folder / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    for root, _, _ in sorted(os.walk(folder), key=lambda w: -len(Path(w[0]).parts)):  # deepest first
        try:
            os.rmdir(root)
        except OSError:  # not empty: holds something the manifest does not list
            pass
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def name_list(entries: list[str], most: int = 6) -> str:
    """``a, b, c and 4 more``: a list that keeps an error message to one line."""
    shown = ", ".join(entries[:most])
    return shown + (f" and {len(entries) - most} more" if len(entries) > most else "")
