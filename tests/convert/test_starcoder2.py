"""Starcoder2ForCausalLM <-> megatron-core: bit-identical round trips in any layout (TP up to and
beyond the KV groups, PP, VPP, tied and untied), transformers parity on a sequence longer than the
sliding window, tokenizer files and chat_template carried through, one-line errors for bad input."""
from __future__ import annotations

import json

import pytest
import torch

from codetron.convert.from_hf import FromHFOptions, from_hf
from codetron.convert.to_hf import ToHFOptions, to_hf
from codetron.errors import CodetronError
from tests.convert.conftest import check_json, make_tokenizer, read_tensors, save_perturbed

WINDOW = 16


def tiny_starcoder2(out, vocab: int = 321, tie: bool = False, heads: int = 4, groups: int = 2, hidden: int = 64,
                    seed: int = 0, **cfg):
    """A random StarCoder2 saved by transformers itself (what a hub download looks like)."""
    from tests.helpers.models import tiny_starcoder2 as build

    model = build(vocab, hidden=hidden, ffn=4 * hidden, layers=4, heads=heads, kv_heads=groups, positions=128,
                  seed=seed, sliding_window=WINDOW, rope_parameters={"rope_type": "default", "rope_theta": 1e5},
                  tie_word_embeddings=tie, initializer_range=0.2, **cfg)
    return save_perturbed(model, out, norm_marker="norm")


@pytest.mark.parametrize("tie,layout", [
    (False, dict(tp=2, pp=2)),           # TP splits the 2 KV groups
    (False, dict(tp=4, pp=2, vpp=2)),    # TP beyond the groups: each replicated on 2 ranks
    (True, dict(tp=1, pp=4)),
])
def test_round_trip_is_bit_identical(tmp_path, tie, layout):
    src = tiny_starcoder2(tmp_path / "hf", tie=tie)
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False, **layout))
    saved = (tmp_path / "meg" / "iter_0000000" / "codetron_config.yaml").read_text()
    assert "family: starcoder2" in saved and "sliding_window: 16" in saved and "rotary_base: 100000.0" in saved
    to_hf(tmp_path / "meg", tmp_path / "back", ToHFOptions(progress=False))  # family from the checkpoint
    original, back = read_tensors(src), read_tensors(tmp_path / "back")
    if tie:
        original.pop("lm_head.weight", None)  # tied: transformers may store the alias, we never do
    assert original.keys() == back.keys()
    for k in original:
        assert original[k].dtype == back[k].dtype and torch.equal(original[k].view(torch.uint8), back[k].view(torch.uint8)), k
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["architectures"] == ["Starcoder2ForCausalLM"] and cfg["num_key_value_heads"] == 2
    assert cfg["sliding_window"] == WINDOW and cfg["rope_theta"] == cfg["rope_parameters"]["rope_theta"] == 1e5
    assert cfg["tie_word_embeddings"] is tie


def test_qkv_rows_follow_the_groups(tmp_path):
    """The fused QKV megatron stores holds, per KV group, its query heads then its k and v heads."""
    from codetron.convert.dcp_io import CheckpointReader

    src = tiny_starcoder2(tmp_path / "hf")
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    qkv = CheckpointReader(tmp_path / "meg" / "iter_0000000").read("decoder.layers.self_attention.linear_qkv.weight", 1)
    hf = read_tensors(src)
    q, k, v = (hf[f"model.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    hd = 16
    # group 1 = query heads 2 and 3, key head 1, value head 1
    group1 = qkv[4 * hd: 8 * hd]
    assert torch.equal(group1[: 2 * hd], q[2 * hd: 4 * hd])
    assert torch.equal(group1[2 * hd: 3 * hd], k[hd: 2 * hd]) and torch.equal(group1[3 * hd:], v[hd: 2 * hd])


@pytest.mark.slow
def test_logits_match_transformers_beyond_the_window(tmp_path):
    src = tiny_starcoder2(tmp_path / "hf")
    from_hf(src, tmp_path / "meg", FromHFOptions(tp=2, pp=2, progress=False))
    # 64 tokens, four windows; 8 prompt + 12 greedy tokens cross the window while decoding
    res = check_json(tmp_path / "meg", src, "--seq-len", "64", "--new-tokens", "12")
    assert res["max_abs_diff"] <= 1e-4 and res["greedy_equal"], res
    assert res["logit_scale"] > 1.0  # a wide init: the bound is not met by tiny logits


def test_tokenizer_and_chat_template_are_carried_through(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    src = tiny_starcoder2(tmp_path / "hf")
    tok_json = make_tokenizer(tmp_path / "tok.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_json), eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tok.chat_template = "{% for m in messages %}### Instruction\n{{ m['content'] }}\n\n### Response\n{% endfor %}"
    tok.save_pretrained(str(src))
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    to_hf(tmp_path / "meg", tmp_path / "back", ToHFOptions(progress=False))
    back = AutoTokenizer.from_pretrained(str(tmp_path / "back"))
    msgs = [{"role": "user", "content": "Write add."}]
    assert back.apply_chat_template(msgs, tokenize=False) == tok.apply_chat_template(msgs, tokenize=False)
    assert back("def f(): pass")["input_ids"] == tok("def f(): pass")["input_ids"]
    assert json.loads((tmp_path / "back" / "config.json").read_text())["eos_token_id"] == tok.eos_token_id


def _edit(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_unknown_model_type_is_one_line(tmp_path):
    src = tiny_starcoder2(tmp_path / "hf")
    _edit(src, model_type="mixtral", architectures=["MixtralForCausalLM"])
    with pytest.raises(CodetronError, match=r"model_type 'mixtral' \(MixtralForCausalLM\) is not a GPTBigCode or Llama "
                                            r"or StarCoder2 model; only model_type gpt_bigcode or llama or qwen2 or "
                                            r"starcoder2 converts"):
        from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))


def test_kv_groups_tp_cannot_split_is_one_line(tmp_path):
    # 6 heads and 2 KV groups over TP3: heads split, the groups can be neither split nor replicated evenly
    src = tiny_starcoder2(tmp_path / "hf", vocab=300, heads=6, groups=2, hidden=96)
    with pytest.raises(CodetronError, match=r"2 KV heads cannot be split over --tp 3"):
        from_hf(src, tmp_path / "meg", FromHFOptions(tp=3, progress=False))
    assert not (tmp_path / "meg").exists()


def test_scaled_rope_is_one_line(tmp_path):
    src = tiny_starcoder2(tmp_path / "hf")
    _edit(src, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5})
    with pytest.raises(CodetronError, match="rope_type 'linear'"):
        from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
