import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env

VOCAB = 256


def run_cli(args: list[str], nproc: int = 1, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """``codetron ARGS`` in a child process (torchrun for nproc > 1)."""
    if nproc == 1:
        cmd = [PYTHON, "-m", "codetron", *args]
    else:
        cmd = [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone", "-m", "codetron", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


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


@pytest.fixture(scope="session")
def pairs_prefix(tmp_path_factory) -> str:
    from codetron.megatron_ext.rrtf.pairs import write_pairs

    prefix = str(tmp_path_factory.mktemp("pairs") / "pairs")
    write_pairs(prefix, synthetic_pairs(), VOCAB, VOCAB - 1)
    return prefix
