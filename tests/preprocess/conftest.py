"""Shared fixtures for the preprocess tests: the bundled tokenizer, tiny input writers, a reader."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from codetron.preprocess.config import JobConfig, PipelineConfig, QualityConfig
from codetron.preprocess.tokenizer import default_tokenizer_path, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


@pytest.fixture(scope="session")
def tok():
    return load_tokenizer(default_tokenizer_path())


def write_jsonl(path: Path, records, compress: str | None = None) -> Path:
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    if compress == "gz":
        path.write_bytes(gzip.compress(lines))
    elif compress == "zst":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(lines))
    else:
        path.write_bytes(lines)
    return path


def make_cfg(inputs, out, mode="code", layout="pretrain", workers=1, dedup="none", decontaminate=False, **kw) -> PipelineConfig:
    job = JobConfig(mode=mode, layout=layout, tokenizer=str(default_tokenizer_path()),
                    quality=QualityConfig(dedup=dedup, decontaminate=decontaminate))
    for k in ("code", "commit", "instruct", "seed"):
        if k in kw:
            setattr(job, k, kw.pop(k))
    return PipelineConfig(inputs=[str(i) for i in inputs], output_prefix=str(out), job=job, workers=workers, progress=False, **kw)


def read_docs(prefix) -> list[list[np.ndarray]]:
    """Every document of a dataset, read with megatron-core's IndexedDataset."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix))
    di = ds.document_indices
    # copies: the arrays are views of a memory map that closes with the dataset
    return [[np.array(ds[s]) for s in range(di[d], di[d + 1])] for d in range(len(di) - 1)]
