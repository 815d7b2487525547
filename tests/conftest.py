"""Shared pytest setup: markers, and the interpreter/launcher of this checkout's environment."""
import contextlib
import os
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still part of `make test`)")
    config.addinivalue_line("markers", "slurm: needs a local Slurm cluster (the fixture starts one)")
    # The eval sandbox refuses to run programs without bubblewrap. The tests' programs are our own,
    # so where it cannot run they opt in to the weak sandbox, explicitly and visibly; the tests of
    # the refusal itself unset this.
    from codetron.eval.execution import SANDBOX_ENV, bubblewrap_status

    usable, why = bubblewrap_status()
    if not usable and SANDBOX_ENV not in os.environ:
        os.environ[SANDBOX_ENV] = "weak"
        print(f"tests: bubblewrap cannot run here ({why}); {SANDBOX_ENV}=weak for the tests' own programs",
              file=sys.stderr)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def subprocess_env(**extra) -> dict:
    """Environment for child processes: this checkout first on PYTHONPATH, one thread per rank."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_check_script(script: str, work) -> dict:
    """Run a numeric-check script (``python SCRIPT WORKDIR``) in a clean child and return the JSON
    object it prints last: model checks run outside pytest so megatron's global state stays theirs."""
    import json
    import subprocess

    proc = subprocess.run([PYTHON, str(ROOT / script), str(work)], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serving(server):
    """``server.serve_forever`` in a daemon thread for the duration of the block; then shut down and
    closed, so no test leaves a listening socket behind."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def byte_level_bpe(texts, vocab_size: int, specials: list[str]):
    """A small byte-level BPE (GPT-2 / StarCoder style, no prefix space) trained on ``texts``, the
    special tokens first: the tokenizer of the tests' tiny HF models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    return tok
