import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runs import run_codetron

VOCAB = 256


def run_cli(args: list[str], nproc: int = 1, timeout: int = 300, check: bool = True):
    """``codetron ARGS`` in a child process (torchrun for nproc > 1)."""
    return run_codetron(args, nproc=nproc, timeout=timeout, check=check)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def synthetic_pairs(n: int = 48, vocab: int = VOCAB, seed: int = 0, per_query: int = 3):
    """Pairs of token ids: the chosen response continues the prompt's arithmetic pattern, the
    rejected one is noise; scores are a teacher 3.0 against student tiers 0..2.5 (and some ties).
    Like ``rrtf rank`` output, each query (prompt + teacher) has ``per_query`` consecutive pairs."""
    rng = np.random.default_rng(seed)
    eod = vocab - 1
    out = []
    for k in range(n):
        if k % per_query == 0:
            start, step = int(rng.integers(0, vocab - 2)), int(rng.integers(1, 5))
            plen, clen = int(rng.integers(5, 30)), int(rng.integers(5, 40))
            seq = [(start + step * j) % (vocab - 2) for j in range(plen + clen)]
            prompt, chosen = seq[:plen], seq[plen:] + [eod]
        rlen = int(rng.integers(5, 40))
        rejected = [int(x) for x in rng.integers(0, vocab - 2, rlen)] + [eod]
        r_rej = [0.0, 1.0, 2.0, 2.5, 3.0][k % 5]
        out.append((prompt, chosen, rejected, 3.0, r_rej))
    return out


def ranked_synthetic_pairs(n_queries: int = 12, vocab: int = VOCAB, seed: int = 0):
    """Pairs as `rrtf rank` writes them: per query a teacher (continuing the prompt's pattern) and
    three noise students with scores from 0..3, ties and a student above the teacher included;
    every pair with r_i < r_j (``ranked_pairs``), an all-tie query as its one L_ft-only pair."""
    from codetron.preprocess.generate.rrtf.rank import ranked_pairs

    rng = np.random.default_rng(seed)
    eod = vocab - 1
    tiers = [0.0, 1.0, 2.0, 2.5, 3.0]
    out = []
    for q in range(n_queries):
        start, step = int(rng.integers(0, vocab - 2)), int(rng.integers(1, 5))
        plen, clen = int(rng.integers(5, 30)), int(rng.integers(5, 40))
        seq = [(start + step * j) % (vocab - 2) for j in range(plen + clen)]
        responses = [seq[plen:] + [eod]] + [[int(x) for x in rng.integers(0, vocab - 2, int(rng.integers(5, 40)))] + [eod]
                                            for _ in range(3)]
        scores = [3.0] + [tiers[int(rng.integers(0, 5))] for _ in range(3)]
        if q % 4 == 1:
            scores[0] = 2.0  # a student may beat the teacher
        if q % 6 == 5:
            scores = [1.0] * 4  # every response tied
        best, ranked = ranked_pairs(scores)
        for j, i in ranked or [(best, best)]:
            out.append((seq[:plen], responses[j], responses[i], scores[j], scores[i]))
    return out


@pytest.fixture(scope="session")
def ranked_pairs_prefix(tmp_path_factory) -> str:
    from codetron.megatron_ext.rrtf.pairs import write_pairs

    prefix = str(tmp_path_factory.mktemp("ranked") / "pairs")
    write_pairs(prefix, ranked_synthetic_pairs(), VOCAB, VOCAB - 1)
    return prefix


@pytest.fixture(scope="session")
def pairs_prefix(tmp_path_factory) -> str:
    from codetron.megatron_ext.rrtf.pairs import write_pairs

    prefix = str(tmp_path_factory.mktemp("pairs") / "pairs")
    write_pairs(prefix, synthetic_pairs(), VOCAB, VOCAB - 1)
    return prefix
