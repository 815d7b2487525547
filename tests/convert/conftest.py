"""Fixtures for convert tests: a tiny real tokenizer, token data, and models trained once per session.

Two runs are trained (a few steps, 4 ranks on gloo): TP2xPP2 with tied embeddings (the StarCoder
case) and TP2xPP2xVPP2 with untied embeddings. The tokenizer is a byte-level BPE with StarCoder's
special tokens plus an added ``[PAD]`` (as WizardCoder grows its vocab), 321 tokens -- not a multiple
of 128, so megatron pads the embedding to 384 rows and conversion must strip them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env
from tests.helpers.models import byte_level_bpe

SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"]
BPE_VOCAB = 320
ITERS = 3


def stdlib_text(max_files: int = 40) -> list[str]:
    """Real code every machine has: the standard library's own sources."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py"))[:max_files]
    return [p.read_text(errors="replace") for p in files]


def make_tokenizer(path: Path) -> Path:
    tok = byte_level_bpe(stdlib_text(), BPE_VOCAB, SPECIALS)
    tok.add_special_tokens(["[PAD]"])  # vocab grown by an added token
    tok.save(str(path))
    return path


def write_token_data(prefix: str, tokenizer_path: Path) -> str:
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    eod = tok.token_to_id("<|endoftext|>")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for text in stdlib_text(80):
        ids = tok.encode(text).ids[:2000] + [eod]
        builder.add_item(torch.tensor(ids, dtype=torch.int64))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def run(cmd: list[str], timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def train(save: Path, data: str, tokenizer: Path, extra: list[str], nproc: int = 4, iters: int = ITERS) -> Path:
    launcher = [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone"] if nproc > 1 else [PYTHON]
    run([*launcher, "-m", "codetron", "train", "--preset", "debug-tiny", "--data.data_path", data,
         "--data.tokenizer", str(tokenizer), "--optim.train_iters", str(iters), "--optim.lr", "3e-3",
         "--optim.lr_warmup_iters", "0", "--checkpoint.save", str(save),
         # a wide init gives confident, varied next-token predictions, so greedy decoding is a
         # demanding comparison rather than a repeated token
         "--model.init_method_std", "0.25", *extra])
    return save


def check_json(ckpt: Path, hf: Path, *extra: str) -> dict:
    proc = run([PYTHON, "-m", "codetron", "convert", "check", str(ckpt), str(hf), "--json", *extra], check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not line:
        raise AssertionError(f"check produced no result ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(line[-1])


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def token_data(tmp_path_factory, tokenizer_json) -> str:
    return write_token_data(str(tmp_path_factory.mktemp("data") / "code"), tokenizer_json)


TP2PP2 = ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]


@pytest.fixture(scope="session")
def run_tp2pp2(tmp_path_factory, token_data, tokenizer_json) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "tp2pp2", token_data, tokenizer_json, TP2PP2)


@pytest.fixture(scope="session")
def run_vpp(tmp_path_factory, token_data, tokenizer_json) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "vpp", token_data, tokenizer_json,
                 [*TP2PP2, "--parallel.virtual_pipeline_model_parallel_size", "2", "--model.tie_embeddings", "false"])


@pytest.fixture(scope="session")
def hf_tp2pp2(tmp_path_factory, run_tp2pp2) -> Path:
    from codetron.convert.to_hf import ToHFOptions, to_hf

    out = tmp_path_factory.mktemp("hf") / "tp2pp2"
    to_hf(run_tp2pp2, out, ToHFOptions(progress=False))
    return out


@pytest.fixture(scope="session")
def hf_vpp(tmp_path_factory, run_vpp) -> Path:
    from codetron.convert.to_hf import ToHFOptions, to_hf

    out = tmp_path_factory.mktemp("hf") / "vpp"
    to_hf(run_vpp, out, ToHFOptions(progress=False))
    return out


def tiny_hf_model(out: Path, vocab: int = 321, multi_query: bool = True, tie: bool = True, seed: int = 0,
                  layers: int = 4, **cfg) -> Path:
    """A random GPTBigCode saved by transformers itself (what a hub download looks like)."""
    from tests.helpers.models import tiny_gpt_bigcode

    model = tiny_gpt_bigcode(vocab, hidden=64, layers=layers, heads=4, positions=64, multi_query=multi_query,
                             seed=seed, tie_word_embeddings=tie, initializer_range=0.2, **cfg)
    return save_perturbed(model, out, norm_marker="ln")


def save_perturbed(model, out: Path, norm_marker: str) -> Path:
    """Shift the layer norms (names containing ``norm_marker``) and biases off their init values, so every
    mapping matters, then save as transformers does."""
    from tests.helpers.models import perturb, save

    return save(perturb(model, norm_marker), out)


def read_tensors(folder: Path) -> dict:
    """Every tensor of the ``*.safetensors`` files in ``folder``, by name."""
    from safetensors import safe_open

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


__all__ = ["run", "train", "check_json", "tiny_hf_model", "PYTHON", "ROOT", "sys"]
