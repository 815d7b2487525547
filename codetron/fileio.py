"""Atomic output: write under a temporary name in the same directory, rename on success.

A crash or a bad record half-way never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; published outputs should get the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(final: str | os.PathLike, mode: str = "w", **kwargs):
    """``open`` for writing that only publishes the file when the block completes."""
    with atomic_path(final) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, discard_old: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temp directory; put it in place of ``final`` if the block succeeds.

    An existing ``final`` is exchanged with the finished temp directory in one step (``exchange_dirs``),
    so there is never a moment without a complete ``final``; only then are the old contents, now
    under the temp name, handed to ``discard_old`` (default: deleted). A failed block removes the temp
    directory and leaves ``final`` as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if not final.exists():
            os.replace(tmp, final)
            return
        old = exchange_dirs(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # after the exchange a failure here must not touch ``old`` (it is the previous output now)
    (discard_old or _delete_tree)(old)


def _delete_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


RENAME_EXCHANGE = 2
"""renameat2(2) flag: swap two existing paths atomically (Linux 3.15+, glibc 2.28+)."""


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux/glibc
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange_dirs(new: Path, final: Path) -> Path:
    """Put directory ``new`` at ``final``'s name in one atomic step; returns where the old ``final`` is
    now (``new``'s former name). File systems without an atomic exchange (and other systems) get two
    renames: the old folder goes aside first, so a kill in between leaves it complete under
    ``<new>.old`` rather than deleted."""
    if _RENAMEAT2 is not None:
        at_cwd = -100  # AT_FDCWD
        if _RENAMEAT2(at_cwd, os.fsencode(new), at_cwd, os.fsencode(final), RENAME_EXCHANGE) == 0:
            return new
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # anything but "not supported here"
            raise OSError(err, os.strerror(err), str(final))
    old = new.with_suffix(".old")
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    return old


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (tokenizer manifests, fetched eval data)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
