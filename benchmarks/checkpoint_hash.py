"""Throughput of the hashes a checkpoint manifest could use (issue 24 item 3), on one file.

    python benchmarks/checkpoint_hash.py                  # a 256 MiB file in the temp directory
    python benchmarks/checkpoint_hash.py --mib 1024 --dir /lustre/scratch

The file is read in 8 MiB blocks, as ``codetron.megatron_ext.manifest`` reads a checkpoint file;
the first pass ("read only") warms the page cache, so the others measure the hash, not the disk.
On a shared CPU machine (2026-12-06, noisy), lightly loaded: read only 7719 MiB/s, zlib.crc32 2437,
sha1 1155, sha256 941, blake2b 469, md5 459; under a load average of 29: crc32 305-481, xxh3_64
662-760, blake2b 109-124. Why CRC-32 all the same: ``megatron_ext/manifest.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import zlib


def _crc32():
    state = [0]

    def update(block: bytes) -> None:
        state[0] = zlib.crc32(block, state[0])
    return update


HASHES = {
    "read only": lambda: (lambda block: None),
    "zlib.crc32": _crc32,
    "sha1": lambda: hashlib.sha1().update,
    "sha256": lambda: hashlib.sha256().update,
    "blake2b": lambda: hashlib.blake2b(digest_size=16).update,
    "md5": lambda: hashlib.md5().update,
}
try:
    import xxhash

    HASHES["xxh3_64"] = lambda: xxhash.xxh3_64().update
except ImportError:
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="file size in MiB")
    ap.add_argument("--dir", default=None, help="where to write the file (default: the temp directory)")
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(dir=args.dir, suffix=".bin")
    try:
        chunk = os.urandom(8 << 20)
        with os.fdopen(fd, "wb") as fh:
            for _ in range(args.mib // 8):
                fh.write(chunk)
        for name, make in HASHES.items():
            update = make()
            t0 = time.perf_counter()
            with open(path, "rb") as fh:
                while block := fh.read(8 << 20):
                    update(block)
            print(f"{name:12s} {args.mib / (time.perf_counter() - t0):8.0f} MiB/s")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
