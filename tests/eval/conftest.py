"""Shared fixtures for the eval tests: HumanEval problems and a tiny converted-style model folder."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_fetched_data(tmp_path_factory, monkeypatch):
    """An empty eval data cache: a cache this machine's user fetched must not change what tests read."""
    from codetron.eval.data import DATA_ENV

    monkeypatch.setenv(DATA_ENV, str(tmp_path_factory.getbasetemp() / "no-eval-data"))


@pytest.fixture(scope="session")
def humaneval():
    from codetron.eval.problems import read_problems

    return read_problems()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, humaneval):
    """A random 2-layer MQA GPTBigCode and a 400-token byte-level BPE trained on HumanEval prompts."""
    from tests.helpers.models import byte_level_bpe, hf_tokenizer, save, tiny_gpt_bigcode

    tok = byte_level_bpe([p["prompt"] + p["canonical_solution"] for p in humaneval], 400, ["<|endoftext|>"])
    model = tiny_gpt_bigcode(tok.get_vocab_size(), hidden=32, layers=2, heads=4, positions=1024)
    fast = hf_tokenizer(tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return str(save(model, tmp_path_factory.mktemp("tiny_model"), fast))
