"""The RRTF pairs dataset on disk: megatron-core indexed form plus a scores sidecar.

``PREFIX.bin`` / ``PREFIX.idx``   megatron-core ``IndexedDataset``; document k holds exactly three
                                 sequences: [prompt, chosen response, rejected response]. Responses
                                 end with the tokenizer's EOD (the model learns to stop); the prompt
                                 does not.
``PREFIX.scores.npy``            float64 ``[num_pairs, 2]``: (chosen score, rejected score), the
                                 unit-test rewards of ``codetron.preprocess.generate.rrtf.scoring`` (chosen >= rejected).
``PREFIX.rrtf.json``             format tag, pair count, vocabulary size, EOD id and the tokenizer.

All three files are written under temporary names and renamed only when complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from codetron.errors import CodetronError

FORMAT = "codetron-rrtf-pairs/1"


def scores_path(prefix: str) -> str:
    return f"{prefix}.scores.npy"


def meta_path(prefix: str) -> str:
    return f"{prefix}.rrtf.json"


def write_pairs(prefix: str, pairs: Iterable[tuple[Sequence[int], Sequence[int], Sequence[int], float, float]],
                vocab_size: int, eod: int, tokenizer: str | None = None, extra: dict | None = None) -> dict:
    """Write ``(prompt ids, chosen ids, rejected ids, chosen score, rejected score)`` tuples.

    Ids are written as given (callers append EOD to responses). Returns the metadata dict."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from codetron.fileio import atomic_path

    dtype = np.uint16 if vocab_size <= 65535 else np.int32
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    scores: list[tuple[float, float]] = []
    with atomic_path(prefix + ".bin") as tmp_bin, atomic_path(prefix + ".idx") as tmp_idx:
        builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
        for k, (prompt, chosen, rejected, r_c, r_r) in enumerate(pairs):
            for name, seq in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
                if len(seq) == 0:
                    raise CodetronError(f"pair {k}: empty {name} sequence")
                if max(seq) >= vocab_size or min(seq) < 0:
                    raise CodetronError(f"pair {k}: {name} has token ids outside the {vocab_size}-token vocabulary")
                builder.add_item(torch.tensor(list(seq), dtype=torch.int64))
            builder.end_document()
            scores.append((float(r_c), float(r_r)))
        builder.finalize(str(tmp_idx))
        if not scores:
            raise CodetronError(f"{prefix}: no pairs to write")
        with atomic_path(scores_path(prefix)) as tmp_scores:
            with open(tmp_scores, "wb") as fh:
                np.save(fh, np.asarray(scores, dtype=np.float64))
            meta = {"format": FORMAT, "pairs": len(scores), "vocab_size": int(vocab_size), "eod": int(eod),
                    "tokenizer": tokenizer, **(extra or {})}
            with atomic_path(meta_path(prefix)) as tmp_meta:
                tmp_meta.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


class PairDataset:
    """Random access to ``(prompt, chosen, rejected, (r_chosen, r_rejected))`` numpy arrays."""

    def __init__(self, prefix: str):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        self.prefix = prefix
        for path in (prefix + ".bin", prefix + ".idx", scores_path(prefix)):
            if not os.path.isfile(path):
                raise CodetronError(f"{path} does not exist (write pairs with `codetron rrtf preprocess`)")
        self.meta = {}
        if os.path.isfile(meta_path(prefix)):
            self.meta = json.loads(Path(meta_path(prefix)).read_text())
            if self.meta.get("format") != FORMAT:
                raise CodetronError(f"{meta_path(prefix)}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.index = IndexedDataset(prefix, mmap=True)
        docs = np.asarray(self.index.document_indices)
        if len(docs) < 2 or not np.all(np.diff(docs) == 3):
            raise CodetronError(f"{prefix}.idx: not an RRTF pairs dataset (every document must hold 3 sequences: "
                                f"prompt, chosen, rejected)")
        self.scores = np.load(scores_path(prefix))
        self._keys: tuple[np.ndarray, np.ndarray] | None = None
        if self.scores.shape != (len(docs) - 1, 2):
            raise CodetronError(f"{scores_path(prefix)}: shape {self.scores.shape}, expected ({len(docs) - 1}, 2)")

    @property
    def vocab_size(self) -> int | None:
        return self.meta.get("vocab_size")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, k: int):
        base = 3 * k
        return (self.index[base], self.index[base + 1], self.index[base + 2], self.scores[k])

    def query_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: (query id, chosen-response id), ids numbering distinct contents.

        A query is a prompt; ``rrtf rank`` writes every pair of its responses with r_i < r_j, so its
        top response is the chosen side of several pairs while PanGu-Coder2's L_ft counts it once.
        Identity by content needs no extra field in the file and stays right for pairs made by
        other tools."""
        if self._keys is None:
            prompts: dict[bytes, int] = {}
            responses: dict[bytes, int] = {}
            q = np.empty(len(self), dtype=np.int64)
            c = np.empty(len(self), dtype=np.int64)
            for k in range(len(self)):
                q[k] = prompts.setdefault(self.index[3 * k].tobytes(), len(prompts))
                c[k] = responses.setdefault(self.index[3 * k + 1].tobytes(), len(responses))
            self._keys = (q, c)
        return self._keys
