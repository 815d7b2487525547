"""Smoke path: `codetron selfalign run` against `codetron serve` with a tiny random StarCoder2-shaped model.

A random model writes no passing tests, so what is checked is the plumbing: real HTTP, the few-shot
prompts fit and reach the model, every request is counted, each seed ends with a known drop reason,
and the (empty) training file is still written and readable.
"""
from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import serving

from codetron.preprocess.generate.selfalign.cli import main
from codetron.preprocess.generate.selfalign.pipeline import ITEM_RULES, RESPONSE_RULES
from codetron.preprocess.generate.selfalign.prompts import DEFAULT_FEWSHOT


@pytest.fixture(scope="module")
def tiny_starcoder2(tmp_path_factory):
    """2 layers, hidden 32, GQA (2 heads, 1 KV group), RoPE; a 384-token BPE trained on the few-shot file."""
    import torch
    from transformers import PreTrainedTokenizerFast, Starcoder2Config, Starcoder2ForCausalLM

    from tests.conftest import byte_level_bpe
    from tests.selfalign.conftest import GOOD

    out = tmp_path_factory.mktemp("tiny-starcoder2")
    tok = byte_level_bpe([DEFAULT_FEWSHOT.read_text(), GOOD] * 4, 384, ["<|endoftext|>"])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    hf_tok.save_pretrained(out)
    eos = hf_tok.eos_token_id
    cfg = Starcoder2Config(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                           bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    Starcoder2ForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def served(tiny_starcoder2):
    from codetron.eval.serve import Engine, OpenAIHandler, OpenAIServer, ServeConfig

    class Counting(OpenAIHandler):
        def do_POST(self):
            with self.server.count_lock:
                self.server.posts += 1
            super().do_POST()

    cfg = ServeConfig(model=str(tiny_starcoder2), model_name="tiny-sc2", host="127.0.0.1", port=0)
    server = OpenAIServer(Engine(str(tiny_starcoder2), device="cpu"), cfg, handler=Counting)
    server.posts, server.count_lock = 0, threading.Lock()
    with serving(server):
        yield server


@pytest.mark.slow
def test_selfalign_against_codetron_serve(served, module_corpus, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    assert main(["seeds", str(module_corpus / "good.py"), "-o", str(seeds), "--typecheck", "off", "--quiet"]) == 0
    out = tmp_path / "sa.jsonl"
    assert main(["run", str(seeds), "-o", str(out), "--base-url", served.url, "--limit", "2", "--responses", "2",
                 "--fewshots", "1", "--max-tokens", "16", "--temperature", "1.0", "--concurrency", "1",
                 "--exec-timeout", "2", "--quiet"]) == 0
    stats = json.loads((tmp_path / "sa.stats.json").read_text())
    lines = (tmp_path / "sa.records.jsonl").read_text().splitlines()[1:]
    recs = list({r["key"]: r for r in map(json.loads, lines)}.values())  # the later line of a key wins
    assert stats["backend"]["model"] == "tiny-sc2" and stats["stages"]["seeds"] == len(recs) == 2
    # every POST the server saw was counted by the client (+1: GET /v1/models), one per step reached
    assert stats["requests"] == served.posts + 1
    assert served.posts == sum(1 + bool(r["concepts"]) + bool(r["responses"]) for r in recs)
    assert stats["stages"]["responses"] == 2 * stats["stages"]["instructions"]
    for r in recs:
        assert r["status"] == "dropped" and r["rule"] in ITEM_RULES
        assert all(e["rule"] in RESPONSE_RULES for e in r["responses"])
    assert sum(stats["dropped_items"].values()) == 2
    assert out.exists() and stats["output"]["written"] == len(out.read_text().splitlines()) == 0
