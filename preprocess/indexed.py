"""Writing megatron-core ``IndexedDataset`` files (``PREFIX.bin`` + ``PREFIX.idx``) with bounded
memory, and reading their index (``preprocess/merge.py`` concatenates datasets, ``publish.py``
publishes them).

The on-disk format is megatron-core's (``megatron/core/datasets/indexed_dataset.py``, v0.16):
``.bin`` holds the token ids back to back; ``.idx`` is the header ``MMIDIDX\\0\\0``, version
``<Q 1``, dtype code ``<B``, sequence count ``<Q``, document-index count ``<Q``, then int32 sequence
lengths, int64 byte pointers and int64 document indices (``[0, end_of_doc_1, ...]`` in sequences).
We write it with numpy instead of ``IndexedDatasetBuilder`` because the builder keeps Python lists
(~36 bytes per sequence) and builds the pointer list in a Python loop; a test checks the bytes are
identical to the builder's and that ``IndexedDataset`` reads every output. Importing this module
does not import torch/megatron (the CLI stays fast, workers stay small).
"""
from __future__ import annotations

import os
import struct
from array import array

import numpy as np

from codetron.errors import CodetronError

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES: dict[type, int] = {
    np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7, np.uint16: 8,
}
"""numpy dtype -> megatron-core ``DType`` code (checked against megatron-core in the tests)."""
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


def token_dtype(vocab_size: int) -> type:
    """uint16 when every id fits (megatron-core's own rule: vocab < 65,500), else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


def make_readable(*paths: str | os.PathLike) -> None:
    """Give temp outputs the permissions a normal ``open`` would (mkstemp makes them 0600), so
    datasets written on a cluster can be shared with other users/jobs."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)


def bin_path(prefix: str | os.PathLike) -> str:
    return f"{prefix}.bin"


def idx_path(prefix: str | os.PathLike) -> str:
    return f"{prefix}.idx"


def summary_path(prefix: str | os.PathLike) -> str:
    return f"{prefix}.summary.json"


MARKER_SUFFIX = ".incomplete"


def marker_path(prefix: str | os.PathLike) -> str:
    """The file that exists only while (or because) a publish of ``prefix`` did not finish
    (``codetron.preprocess.publish``); a reader refuses the dataset while it is there."""
    return f"{prefix}{MARKER_SUFFIX}"


class IndexedWriter:
    """Appends documents to an open ``.bin``; ``finalize`` writes the ``.idx``.

    Memory: 4 bytes per sequence + 8 per document (compact arrays), never the tokens.
    """

    def __init__(self, bin_file: str | os.PathLike, dtype: type):
        self.dtype = np.dtype(dtype).type
        if self.dtype not in DTYPE_CODES:
            raise CodetronError(f"unsupported token dtype {dtype}")
        self._fh = open(bin_file, "wb")
        self.sequence_lengths = array("i")
        self.document_indices = array("q", [0])
        self.tokens = 0

    def add_document(self, sequences: list) -> None:
        """One document made of one or more sequences (lists/arrays of token ids)."""
        arrays = [np.asarray(s, dtype=self.dtype) for s in sequences]
        for a in arrays:
            self._fh.write(a.tobytes(order="C"))
            self.sequence_lengths.append(a.size)
            self.tokens += a.size
        self.document_indices.append(len(self.sequence_lengths))

    def add_batch(self, tokens: np.ndarray, seq_lengths: np.ndarray, seqs_per_doc: np.ndarray) -> None:
        """Many documents at once: ``tokens`` concatenated, ``seq_lengths`` per sequence,
        ``seqs_per_doc`` per document (sum(seqs_per_doc) == len(seq_lengths))."""
        self._fh.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        base = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(np.asarray(seq_lengths, dtype=np.int32).tobytes())
        ends = base + np.cumsum(np.asarray(seqs_per_doc, dtype=np.int64))
        self.document_indices.frombytes(ends.astype(np.int64).tobytes())
        self.tokens += int(tokens.size)

    def finalize(self, idx_file: str | os.PathLike) -> None:
        self._fh.close()
        lengths = np.frombuffer(self.sequence_lengths, dtype=np.int32) if self.sequence_lengths else np.zeros(0, np.int32)
        doc_idx = np.frombuffer(self.document_indices, dtype=np.int64)
        with open(idx_file, "wb") as fh:
            write_index_header(fh, self.dtype, len(lengths), len(doc_idx))
            fh.write(lengths.tobytes())
            fh.write(pointers(lengths, self.dtype).tobytes())
            fh.write(doc_idx.tobytes())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def write_index_header(fh, dtype, n_seq: int, n_doc_idx: int) -> None:
    fh.write(INDEX_HEADER)
    fh.write(struct.pack("<Q", INDEX_VERSION))
    fh.write(struct.pack("<B", DTYPE_CODES[dtype]))
    fh.write(struct.pack("<Q", n_seq))
    fh.write(struct.pack("<Q", n_doc_idx))


def pointers(lengths: np.ndarray, dtype, start: int = 0) -> np.ndarray:
    """Byte offset of each sequence in the .bin."""
    itemsize = np.dtype(dtype).itemsize
    ptr = np.empty(len(lengths), dtype=np.int64)
    if len(lengths):
        ptr[0] = 0
        np.cumsum(lengths[:-1].astype(np.int64) * itemsize, out=ptr[1:])
    return ptr + start


class IndexInfo:
    """The index of one dataset, memory-mapped (nothing is loaded)."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = str(prefix)
        path = idx_path(prefix)
        if os.path.exists(marker_path(prefix)):
            raise CodetronError(f"{prefix}: an earlier run was stopped while publishing it ({marker_path(prefix)} exists), "
                                f"so {prefix}.bin and {prefix}.idx may come from different runs; rerun the preprocess command that writes it")
        if not os.path.isfile(path) or not os.path.isfile(bin_path(prefix)):
            raise CodetronError(f"{prefix}: missing {prefix}.idx or {prefix}.bin")
        with open(path, "rb") as fh:
            header = fh.read(9)
            if header != INDEX_HEADER:
                raise CodetronError(f"{path}: not a megatron-core index (bad header)")
            (version,) = struct.unpack("<Q", fh.read(8))
            (code,) = struct.unpack("<B", fh.read(1))
            (self.n_seq,) = struct.unpack("<Q", fh.read(8))
            (self.n_doc_idx,) = struct.unpack("<Q", fh.read(8))
            offset = fh.tell()
        if version != INDEX_VERSION or code not in CODE_DTYPES:
            raise CodetronError(f"{path}: unsupported index version {version} / dtype code {code}")
        self.dtype = CODE_DTYPES[code]
        size = os.path.getsize(path)
        expected = offset + self.n_seq * (4 + 8) + self.n_doc_idx * 8
        if size < expected:
            raise CodetronError(f"{path}: truncated index ({size} bytes, expected {expected})")
        self.lengths = np.memmap(path, dtype=np.int32, mode="r", offset=offset, shape=(self.n_seq,)) if self.n_seq else np.zeros(0, np.int32)
        doc_off = offset + self.n_seq * 12
        self.document_indices = np.memmap(path, dtype=np.int64, mode="r", offset=doc_off, shape=(self.n_doc_idx,))
        self.tokens = int(self.lengths.sum(dtype=np.int64))
        bin_size = os.path.getsize(bin_path(prefix))
        if bin_size != self.tokens * np.dtype(self.dtype).itemsize:
            raise CodetronError(f"{bin_path(prefix)}: size {bin_size} does not match its index ({self.tokens} tokens)")
