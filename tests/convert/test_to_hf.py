"""megatron-core (TP2xPP2, TP2xPP2xVPP2) -> HF: logit parity, greedy parity, plain-transformers loading."""
from __future__ import annotations

import json

import pytest
import torch

from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.to_hf import ToHFOptions, to_hf
from codetron.megatron_ext.checkpointing import resolve_checkpoint_dir
from tests.convert.conftest import check_json, read_tensors

pytestmark = pytest.mark.slow  # the session fixtures train two 4-rank runs


@pytest.mark.parametrize("which", ["tp2pp2", "vpp"])
def test_logits_and_greedy_match_megatron(which, request):
    run = request.getfixturevalue(f"run_{which}")
    hf = request.getfixturevalue(f"hf_{which}")
    res = check_json(run, hf, "--new-tokens", "12")
    assert res["max_abs_diff"] <= 1e-4, res
    assert res["logit_scale"] > 1.0  # a real comparison, not of near-zero logits
    assert res["argmax_agreement"] == 1.0
    assert res["greedy_equal"] and len(res["greedy_hf"]) == 12, res
    assert len(set(res["greedy_hf"])) > 1  # the model does not just repeat one token


def test_output_files_and_config(hf_tp2pp2, run_tp2pp2, tokenizer_json):
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(str(hf_tp2pp2))
    assert cfg.model_type == "gpt_bigcode" and cfg.multi_query
    assert cfg.activation_function == "gelu_pytorch_tanh"
    # n_positions is debug-tiny's position table (256), not its training length (128)
    assert (cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_inner) == (256, 64, 4, 4, 256)
    assert cfg.layer_norm_epsilon == 1e-5 and cfg.tie_word_embeddings
    tok = Tokenizer.from_file(str(tokenizer_json))
    assert cfg.vocab_size == 321  # tokenizer vocab incl. the added [PAD], not megatron's padded 384
    assert cfg.bos_token_id == cfg.eos_token_id == tok.token_to_id("<|endoftext|>")
    assert cfg.pad_token_id == tok.token_to_id("[PAD]")
    gen = json.loads((hf_tp2pp2 / "generation_config.json").read_text())
    assert gen["eos_token_id"] == cfg.eos_token_id

    hf_tok = AutoTokenizer.from_pretrained(str(hf_tp2pp2))
    text = "def add(a, b):\n    return a + b\n"
    assert hf_tok(text).input_ids == tok.encode(text).ids
    assert len(hf_tok) == 321 and hf_tok.pad_token == "[PAD]" and hf_tok.eos_token == "<|endoftext|>"

    # padding rows stripped; tied embeddings -> no lm_head stored
    weights = read_tensors(hf_tp2pp2)
    reader = CheckpointReader(resolve_checkpoint_dir(run_tp2pp2))
    padded = reader.read("embedding.word_embeddings.weight")
    assert padded.shape == (384, 64)
    assert torch.equal(weights["transformer.wte.weight"], padded[:321])
    assert "lm_head.weight" not in weights
    assert len(weights) == 4 + 12 * 4


def test_untied_vpp_has_lm_head(hf_vpp, run_vpp):
    weights = read_tensors(hf_vpp)
    reader = CheckpointReader(resolve_checkpoint_dir(run_vpp))
    assert torch.equal(weights["lm_head.weight"], reader.read("output_layer.weight")[:321])
    assert not torch.equal(weights["lm_head.weight"], weights["transformer.wte.weight"])
    assert json.loads((hf_vpp / "config.json").read_text())["tie_word_embeddings"] is False


def test_pipeline_text_generation(hf_tp2pp2):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(str(hf_tp2pp2))
    tok = AutoTokenizer.from_pretrained(str(hf_tp2pp2))
    gen = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
    prompt = "def fib(n):"
    text = gen(prompt, max_new_tokens=8, do_sample=False)[0]["generated_text"]
    ids = tok(prompt, return_tensors="pt").input_ids
    greedy = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert text == tok.decode(greedy[0], skip_special_tokens=True)
    assert text.startswith(prompt) and len(text) > len(prompt)


def test_sharded_and_bf16_outputs(run_tp2pp2, hf_tp2pp2, tmp_path):
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    report = to_hf(run_tp2pp2, sharded, ToHFOptions(max_shard_size="300KB", progress=False))
    assert len(report["files"]) > 1
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(report["files"])
    single = read_tensors(hf_tp2pp2)
    assert set(index["weight_map"]) == set(single)
    ids = torch.randint(0, 321, (1, 20), generator=torch.Generator().manual_seed(1))
    a = AutoModelForCausalLM.from_pretrained(str(sharded)).eval()
    b = AutoModelForCausalLM.from_pretrained(str(hf_tp2pp2)).eval()
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)

    half = tmp_path / "bf16"
    to_hf(run_tp2pp2, half, ToHFOptions(dtype="bf16", progress=False, no_tokenizer=True))
    assert not (half / "tokenizer.json").exists()
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"
    halves = read_tensors(half)
    assert all(t.dtype == torch.bfloat16 for t in halves.values())
    assert all(torch.equal(halves[k], single[k].to(torch.bfloat16)) for k in single)
