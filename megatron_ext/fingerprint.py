"""What a dataset *is*, independent of where it lives: the seed material for data order and FIM.

Shuffles and per-sample draws were salted with the dataset path as typed, so ``data/sft`` and its
absolute path -- or the same files copied elsewhere, or a test's temporary folder -- gave different
runs. They are salted with this fingerprint instead: the md5 of the ``.idx`` file (sequence lengths,
byte offsets and document boundaries) and the ``.bin`` size. Two copies of the same data agree; two
datasets that differ in any sequence or document length differ. Reading the index is cheap next to
the tokens it describes (about 10 bytes per sequence).
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache


@lru_cache(maxsize=64)
def _fingerprint(idx: str, bin_size: int, mtime_ns: int, idx_size: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(f"{bin_size}|".encode())
    with open(idx, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(prefix: str) -> str:
    """Hex digest naming the content of the indexed dataset ``PREFIX.bin/.idx``."""
    idx = os.path.realpath(prefix + ".idx")
    st = os.stat(idx)
    return _fingerprint(idx, os.path.getsize(prefix + ".bin"), st.st_mtime_ns, st.st_size)


def content_salt(*parts: object) -> int:
    """A 64-bit seed component from a fingerprint and plain values (split name, ...)."""
    key = "|".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.md5(key, usedforsecurity=False).digest()[:8], "little")
