"""Our numpy index writer against megatron-core's own builder and reader."""
import numpy as np
import pytest

from codetron.errors import CodetronError
from codetron.preprocess.indexed import DTYPE_CODES, INDEX_HEADER, IndexedWriter, IndexInfo, token_dtype
from codetron.preprocess.merge import merge


def _docs(rng, n, max_seq=3, vocab=60000):
    return [[rng.integers(0, vocab, rng.integers(1, 40)) for _ in range(rng.integers(1, max_seq + 1))] for _ in range(n)]


def test_format_constants_match_megatron():
    from megatron.core.datasets import indexed_dataset as mi

    assert INDEX_HEADER == mi._INDEX_HEADER
    for dt, code in DTYPE_CODES.items():
        assert mi.DType.code_from_dtype(dt) == code
    assert token_dtype(8192) is np.uint16 and token_dtype(49152) is np.uint16
    assert token_dtype(65500) is np.int32 and token_dtype(151_000) is np.int32
    assert token_dtype(8192) is mi.DType.optimal_dtype(8192)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_bytes_identical_to_indexed_dataset_builder(tmp_path, dtype):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

    docs = _docs(np.random.default_rng(0), 50)
    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=dtype)
    ours = IndexedWriter(tmp_path / "ours.bin", dtype)
    for i, doc in enumerate(docs):
        ref.add_document(torch.from_numpy(np.concatenate(doc).astype(np.int64)), [len(s) for s in doc])
        if i % 2:
            ours.add_document(doc)
        else:  # the batch path must agree with the per-document path
            ours.add_batch(np.concatenate(doc), np.array([len(s) for s in doc]), np.array([len(doc)]))
    ref.finalize(str(tmp_path / "ref.idx"))
    ours.finalize(tmp_path / "ours.idx")
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    ds = IndexedDataset(str(tmp_path / "ours"))
    assert len(ds.document_indices) == 51 and np.array_equal(np.array(ds[3]), docs[1][0 if len(docs[1]) == 1 else 0])


def test_merge_matches_builder_add_index(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

    rng = np.random.default_rng(1)
    prefixes = []
    for k in range(3):
        w = IndexedWriter(tmp_path / f"p{k}.bin", np.uint16)
        for doc in _docs(rng, 20 + k):
            w.add_document(doc)
        w.finalize(tmp_path / f"p{k}.idx")
        prefixes.append(str(tmp_path / f"p{k}"))
    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for p in prefixes:
        ref.add_index(p)
    ref.finalize(str(tmp_path / "ref.idx"))
    merge(prefixes, str(tmp_path / "m"), block_seqs=7)  # small blocks exercise the streaming path
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"m{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    assert len(IndexedDataset(str(tmp_path / "m")).document_indices) == 1 + 20 + 21 + 22


def test_merge_rejects_mixed_dtypes_and_bad_files(tmp_path):
    for name, dt in (("a", np.uint16), ("b", np.int32)):
        w = IndexedWriter(tmp_path / f"{name}.bin", dt)
        w.add_document([[1, 2, 3]])
        w.finalize(tmp_path / f"{name}.idx")
    with pytest.raises(CodetronError, match="different token dtypes"):
        merge([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "m"))
    (tmp_path / "c.idx").write_bytes(b"garbage")
    (tmp_path / "c.bin").write_bytes(b"")
    with pytest.raises(CodetronError, match="bad header"):
        IndexInfo(str(tmp_path / "c"))
    (tmp_path / "a.bin").write_bytes(b"\0")  # truncated .bin
    with pytest.raises(CodetronError, match="does not match its index"):
        IndexInfo(str(tmp_path / "a"))
    assert not list(tmp_path.glob("m.*"))
