"""``codetron preprocess merge``: concatenate datasets into one, streaming, published atomically."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from codetron.errors import CodetronError
from codetron.preprocess.indexed import IndexInfo, bin_path, pointers, summary_path, write_index_header
from codetron.preprocess.publish import check_dataset, dataset_outputs


def merge(prefixes: list[str], out_prefix: str, block_seqs: int = 1 << 20) -> dict:
    """Concatenate datasets into ``out_prefix`` streaming both files: the ``.bin`` files are copied
    block by block and the index arrays are read from memory maps ``block_seqs`` at a time, so memory
    does not grow with the inputs. Summaries (if present) are summed into the output summary."""
    if not prefixes:
        raise CodetronError("merge: no input datasets given")
    infos = [IndexInfo(p) for p in prefixes]
    dtypes = {i.dtype for i in infos}
    if len(dtypes) != 1:
        raise CodetronError("merge: inputs have different token dtypes: " + ", ".join(f"{i.prefix}={np.dtype(i.dtype).name}" for i in infos))
    dtype = infos[0].dtype
    n_seq = sum(i.n_seq for i in infos)
    n_doc_idx = 1 + sum(i.n_doc_idx - 1 for i in infos)
    summaries = [_read_summary(p) for p in prefixes]
    for p in prefixes:
        check_dataset(p)
    with dataset_outputs(out_prefix) as outs:
        tmp_idx, tmp_bin = outs.idx, outs.bin
        with open(tmp_bin, "wb") as out:
            for info in infos:
                with open(bin_path(info.prefix), "rb") as fh:
                    shutil.copyfileobj(fh, out, 16 << 20)
        with open(tmp_idx, "wb") as fh:
            write_index_header(fh, dtype, n_seq, n_doc_idx)
            for info in infos:  # lengths
                for s in range(0, info.n_seq, block_seqs):
                    fh.write(np.asarray(info.lengths[s : s + block_seqs]).tobytes())
            start = 0
            itemsize = np.dtype(dtype).itemsize
            for info in infos:  # pointers, continuing across inputs
                for s in range(0, info.n_seq, block_seqs):
                    block = np.asarray(info.lengths[s : s + block_seqs])
                    fh.write(pointers(block, dtype, start).tobytes())
                    start += int(block.sum(dtype=np.int64)) * itemsize
            fh.write(np.zeros(1, np.int64).tobytes())
            seq_base = 0
            for info in infos:  # document indices, shifted by the sequences before
                for s in range(1, info.n_doc_idx, block_seqs):
                    fh.write((np.asarray(info.document_indices[s : s + block_seqs]) + seq_base).tobytes())
                seq_base += info.n_seq
        summary = outs.seal(_merge_summaries(prefixes, summaries, infos, out_prefix))
    return summary


def _read_summary(prefix: str) -> dict | None:
    try:
        return json.loads(Path(summary_path(prefix)).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _merge_summaries(prefixes, summaries, infos, out_prefix) -> dict:
    total: dict = {
        "output": str(out_prefix),
        "merged_from": list(map(str, prefixes)),
        "dtype": np.dtype(infos[0].dtype).name,
        "documents": sum(i.n_doc_idx - 1 for i in infos),
        "sequences": sum(i.n_seq for i in infos),
        "tokens_out": sum(i.tokens for i in infos),
    }
    known = [s for s in summaries if s]
    if known:
        for key in ("docs_in", "docs_kept", "errors_total", "seconds"):
            total[key] = sum(s.get(key, 0) for s in known)
        dropped: dict[str, int] = {}
        for s in known:
            for k, v in s.get("dropped", {}).items():
                dropped[k] = dropped.get(k, 0) + v
        total["dropped"] = dropped
        for key in ("mode", "layout", "tokenizer"):
            vals = {json.dumps(s.get(key), sort_keys=True) for s in known}
            if len(vals) == 1:
                total[key] = known[0].get(key)
    return total
