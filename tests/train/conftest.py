import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env

VOCAB = 256


def run_train(args: list[str], nproc: int = 1, timeout: int = 240, env: dict | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [PYTHON, "-m", "codetron", "train", *args]
    else:
        cmd = [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone", "-m", "codetron", "train", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def assert_curves_match(ref: list[dict], got: list[dict], iters: int, label: str) -> None:
    """A parallel layout's step log equals the single-process one (loss 1e-5, grad norm 1e-4), and the
    reference learned something, so agreement is not agreement on a constant."""
    assert [r["step"] for r in got] == list(range(1, iters + 1))
    for a, b in zip(ref, got):
        assert abs(a["loss"] - b["loss"]) < 1e-5, (label, a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4, (label, a, b)
    assert ref[-1]["loss"] < ref[0]["loss"] - 0.05


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> str:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("data") / "syn"), VOCAB)


def base_args(data: str, iters: int = 6) -> list[str]:
    return ["--preset", "debug-tiny", "--data.data_path", data, "--data.tokenizer", f"null:{VOCAB}",
            "--optim.train_iters", str(iters), "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "1"]
