"""``codetron preprocess git-commits PATH``: a local repository's history as CommitPack jsonl.

One record per changed text file per non-merge commit (additions and modifications; deletions and
binary files are skipped), with CommitPack's fields: commit, old_file, new_file, old_contents,
new_contents, subject, message, lang, license, repos. Feed the output to
``codetron preprocess commitpack`` to filter and tokenize it like CommitPackFT.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from codetron.errors import CodetronError
from codetron.fileio import atomic_open

EXTENSION_LANG = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".mjs": "JavaScript", ".ts": "TypeScript",
    ".tsx": "TypeScript", ".java": "Java", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++",
    ".cxx": "C++", ".cu": "Cuda", ".go": "Go", ".rs": "Rust", ".rb": "Ruby", ".php": "PHP", ".cs": "C#",
    ".kt": "Kotlin", ".scala": "Scala", ".swift": "Swift", ".sh": "Shell", ".bash": "Shell", ".lua": "Lua",
    ".r": "R", ".jl": "Julia", ".m": "Objective-C", ".sql": "SQL", ".html": "HTML", ".css": "CSS",
    ".md": "Markdown", ".rst": "reStructuredText", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML",
    ".toml": "TOML", ".xml": "XML", ".tex": "TeX", ".hs": "Haskell", ".ml": "OCaml", ".f90": "Fortran",
    ".dart": "Dart", ".pl": "Perl", ".vue": "Vue", ".zig": "Zig",
}
"""File extension -> language name (CommitPack's ``lang`` values)."""
SPECIAL_NAMES = {"Makefile": "Makefile", "Dockerfile": "Dockerfile", "CMakeLists.txt": "CMake"}

_LICENSE_MARKERS = (
    ("apache license", "apache-2.0"), ("mit license", "mit"), ("permission is hereby granted, free of charge", "mit"),
    ("bsd 3-clause", "bsd-3-clause"), ("redistribution and use in source and binary forms", "bsd-3-clause"),
    ("gnu general public license", "gpl-3.0"), ("gnu lesser general public license", "lgpl-3.0"),
    ("mozilla public license", "mpl-2.0"), ("the unlicense", "unlicense"), ("isc license", "isc"),
)


@dataclass(kw_only=True)
class GitCommitsConfig:
    """What to export from a repository."""

    rev: str = "HEAD"
    """Revision (or range, e.g. ``v1.0..HEAD``) whose history is exported."""
    max_commits: int | None = None
    """Stop after this many commits (newest first); ``None`` exports all."""
    max_file_bytes: int = 1_000_000
    """Skip file versions larger than this."""


def lang_of(path: str) -> str | None:
    name = os.path.basename(path)
    if name in SPECIAL_NAMES:
        return SPECIAL_NAMES[name]
    return EXTENSION_LANG.get(os.path.splitext(name)[1].lower())


def _git_bytes(repo: Path, *args: str) -> bytes:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    except FileNotFoundError:
        raise CodetronError("git is not installed or not on PATH") from None
    except subprocess.CalledProcessError as exc:
        msg = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CodetronError(f"{repo}: git {' '.join(args[:2])} failed: {msg[0] if msg else exc.returncode}") from None
    return out.stdout


def _git(repo: Path, *args: str) -> str:
    return _git_bytes(repo, *args).decode("utf-8", "replace")


def _paths(raw: bytes) -> list[str]:
    """NUL-separated output of a ``-z`` git command. Names are bytes in git; undecodable bytes are
    kept as surrogates so the name can be handed back to git unchanged."""
    return [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0")]


def _printable(name: str) -> str:
    """A name with non-UTF-8 bytes shown as U+FFFD (jsonl must be valid UTF-8)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def repo_name(remote: str, top: Path) -> str:
    """CommitPack's ``repos`` value, ``owner/name``, from a remote URL: ``https://host/owner/name.git``,
    ``git@host:owner/name.git``, ``ssh://user@host:22/owner/name``, a local path or ``file://`` URL
    (its last two components). Without a remote, the work tree's directory name. User names and
    tokens in the URL never reach the output."""
    url = remote.strip().rstrip("/")
    if not url:
        return top.name
    if "://" in url:
        path = url.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path and not url.startswith("file://") else path
    elif re.match(r"^[\w.-]+@[\w.-]+:", url) or re.match(r"^[\w.-]+:(?!/)", url):
        path = url.split(":", 1)[1]  # scp-like ssh syntax
    else:
        path = url  # a local path
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1][: -len(".git")]
    parts = [p for p in parts if p]
    return "/".join(parts[-2:]) if parts else top.name


class _Blobs:
    """Reads file versions through one ``git cat-file --batch`` process."""

    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def get(self, spec: str) -> bytes | None:
        assert self.proc.stdin and self.proc.stdout
        raw = spec.encode("utf-8", "surrogateescape")
        if b"\n" in raw:
            return None  # --batch reads one name per line; such a file cannot be asked for
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().decode().split()
        if len(header) < 3 or header[-1] == "missing":
            return None
        size = int(header[2])
        data = self.proc.stdout.read(size)
        self.proc.stdout.read(1)  # trailing newline
        return data if header[1] == "blob" else None

    def close(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def detect_license(repo: Path, rev: str = "HEAD") -> str | None:
    """SPDX-like id of the top-level LICENSE/COPYING file at ``rev``, if recognisable."""
    try:
        names = _paths(_git_bytes(repo, "ls-tree", "-z", "--name-only", rev))
    except CodetronError:
        return None
    for name in names:
        if name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            text = _git(repo, "show", f"{rev}:{name}").lower()
            for marker, spdx in _LICENSE_MARKERS:
                if marker in text:
                    return spdx
            return "unknown"
    return None


def _decode(data: bytes | None, limit: int) -> str | None:
    if data is None or len(data) > limit or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def iter_commit_records(repo: str | os.PathLike, cfg: GitCommitsConfig) -> Iterator[dict]:
    repo = Path(repo)
    if not (repo / ".git").exists() and _git(repo, "rev-parse", "--is-inside-work-tree").strip() != "true":
        raise CodetronError(f"{repo}: not a git repository")
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    license_id = detect_license(top, cfg.rev.split("..")[-1] or "HEAD")
    try:
        remote = _git(top, "config", "--get", "remote.origin.url").strip()
    except CodetronError:
        remote = ""
    repos = repo_name(remote, top)
    # NUL-separated fields, record separator \x1e: hash, parents, full message
    args = ["log", "--no-merges", "--format=%H%x00%P%x00%B%x1e", cfg.rev]
    if cfg.max_commits:
        args.insert(1, f"--max-count={cfg.max_commits}")
    log = _git(top, *args)
    blobs = _Blobs(top)
    try:
        for entry in log.split("\x1e"):
            entry = entry.strip("\n")
            if not entry:
                continue
            sha, parents, message = entry.split("\x00", 2)
            parent = parents.split()[0] if parents.split() else None
            message = message.strip()
            subject = message.split("\n", 1)[0].strip()
            # -z: names verbatim (without it git quotes non-ASCII names and cat-file cannot find them)
            diff_args = ["diff-tree", "--no-commit-id", "-r", "-M", "--name-status", "-z"]
            if parent is None:
                diff_args.append("--root")
            fields = _paths(_git_bytes(top, *diff_args, sha))
            k = 0
            while k < len(fields) and fields[k]:
                status = fields[k][:1]
                if status in ("R", "C"):
                    old_file, new_file = fields[k + 1], fields[k + 2]
                    k += 3
                else:
                    old_file = new_file = fields[k + 1]
                    k += 2
                if status == "D":
                    continue
                new = _decode(blobs.get(f"{sha}:{new_file}"), cfg.max_file_bytes)
                if new is None:
                    continue
                old = "" if status == "A" or parent is None else _decode(blobs.get(f"{parent}:{old_file}"), cfg.max_file_bytes)
                if old is None:
                    continue
                yield {
                    "commit": sha,
                    "old_file": _printable(old_file),
                    "new_file": _printable(new_file),
                    "old_contents": old,
                    "new_contents": new,
                    "subject": subject,
                    "message": message,
                    "lang": lang_of(new_file),
                    "license": license_id,
                    "repos": repos,
                }
    finally:
        blobs.close()


def export(repo: str | os.PathLike, out_path: str | os.PathLike, cfg: GitCommitsConfig) -> int:
    """Write the records as jsonl (atomically); returns how many were written."""
    n = 0
    with atomic_open(out_path, "w", encoding="utf-8") as fh:
        for rec in iter_commit_records(repo, cfg):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
        from codetron.preprocess.indexed import make_readable

        make_readable(fh.name)
    return n
