"""Smoke path: `codetron selfalign run` against `codetron serve` with a tiny random StarCoder2-shaped model.

A random model writes no passing tests, so what is checked is the plumbing: real HTTP, the few-shot
prompts fit and reach the model, every request is counted, each seed ends with a known drop reason,
and the (empty) training file is still written and readable.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import serving

from codetron.preprocess.generate.selfalign.cli import main
from codetron.preprocess.generate.selfalign.pipeline import ITEM_RULES, RESPONSE_RULES
from codetron.preprocess.generate.selfalign.prompts import DEFAULT_FEWSHOT


@pytest.fixture(scope="module")
def tiny_starcoder2(tmp_path_factory):
    """2 layers, hidden 32, GQA (2 heads, 1 KV group), RoPE; a 384-token BPE trained on the few-shot file."""
    from tests.helpers.models import byte_level_bpe, hf_tokenizer, save, tiny_starcoder2
    from tests.selfalign.conftest import GOOD

    tok = byte_level_bpe([DEFAULT_FEWSHOT.read_text(), GOOD] * 4, 384, ["<|endoftext|>"])
    hf_tok = hf_tokenizer(tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    model = tiny_starcoder2(len(hf_tok), hidden=32, ffn=64, layers=2, heads=2, kv_heads=1, positions=4096,
                            eos=hf_tok.eos_token_id)
    return save(model, tmp_path_factory.mktemp("tiny-starcoder2"), hf_tok)


@pytest.fixture(scope="module")
def served(tiny_starcoder2):
    from codetron.eval.serve import Engine
    from tests.helpers.openai_server import engine_server

    with serving(engine_server(Engine(str(tiny_starcoder2), device="cpu"), tiny_starcoder2, "tiny-sc2")) as server:
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
