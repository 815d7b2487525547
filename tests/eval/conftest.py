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
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    from tests.conftest import byte_level_bpe

    out = tmp_path_factory.mktemp("tiny_model")
    tok = byte_level_bpe([p["prompt"] + p["canonical_solution"] for p in humaneval], 400, ["<|endoftext|>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = GPTBigCodeConfig(vocab_size=tok.get_vocab_size(), n_positions=1024, n_embd=32, n_layer=2, n_head=4,
                              multi_query=True, bos_token_id=0, eos_token_id=0)
    GPTBigCodeForCausalLM(config).save_pretrained(out)
    return str(out)
