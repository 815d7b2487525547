"""``codetron rrtf preprocess``: tokenize ranked pairs into the indexed pairs dataset (``pairs.py``).

Input: the jsonl of ``rrtf rank`` (fields ``prompt``, ``chosen``, ``rejected``, ``scores`` =
[chosen, rejected] with chosen >= rejected). Prompt and responses are tokenized separately (the
loss boundary is a token boundary); each response ends with the tokenizer's EOD.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from codetron.errors import CodetronError
from codetron.records import read_jsonl
from codetron.megatron_ext.rrtf.pairs import write_pairs


def read_pairs(path: str) -> list[dict]:
    p = Path(path)
    out = []
    for lineno, rec in read_jsonl(p, what="pairs"):
        where = f"{p}:{lineno}"
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise CodetronError(f"{where}: field {key!r} missing or not a non-empty string")
        sc = rec.get("scores")
        if not (isinstance(sc, list) and len(sc) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in sc)):
            raise CodetronError(f"{where}: field 'scores' must be [chosen score, rejected score]")
        if sc[0] < sc[1]:
            raise CodetronError(f"{where}: chosen score {sc[0]} is below rejected score {sc[1]} (swap them, or re-run rank)")
        out.append(rec)
    if not out:
        raise CodetronError(f"{p}: no pairs in file")
    return out


def suggested_iters(pairs: int, epochs: int, global_batch_size: int) -> int:
    """Optimizer steps for ``epochs`` passes; a pair is two rows of the global batch."""
    return max(1, math.ceil(epochs * 2 * pairs / global_batch_size))


@dataclass(kw_only=True, slots=True)
class PairsPlan:
    """What ``codetron rrtf preprocess`` turns into the printed ``--optim.train_iters``."""

    epochs: int = 6
    """Passes over the pairs (PanGu-Coder2: 6)."""
    global_batch_size: int = 512
    """Rows per training step; two rows (chosen, rejected) per pair, so an even number."""


def run(input_path: str, out_prefix: str, tokenizer_path: str | None, epochs: int, global_batch_size: int) -> dict:
    from tqdm import tqdm

    from codetron.preprocess.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    records = read_pairs(input_path)

    def encoded():
        for rec in tqdm(records, desc="tokenizing", unit="pair"):
            prompt, chosen, rejected = tok.encode_batch([rec["prompt"], rec["chosen"], rec["rejected"]])
            yield prompt, chosen + [tok.eod], rejected + [tok.eod], rec["scores"][0], rec["scores"][1]

    meta = write_pairs(out_prefix, encoded(), tok.vocab_size, tok.eod, str(tok.path),
                       extra={"source": str(input_path)})
    iters = suggested_iters(meta["pairs"], epochs, global_batch_size)
    print(f"wrote {meta['pairs']} pairs to {out_prefix}.bin/.idx (+ .scores.npy, .rrtf.json)")
    # Training counts pairs of the train split only (data.split); this is the whole file's count.
    print(f"{epochs} epochs at global batch {global_batch_size} rows ({global_batch_size // 2} pairs): "
          f"--optim.train_epochs {epochs} --optim.global_batch_size {global_batch_size} "
          f"(about {iters} steps)")
    return meta
