"""LlamaForCausalLM / Qwen2ForCausalLM <-> megatron-core: the Llama-architecture family.

* round trips are bit-identical in TP1/2/4 x PP1/2 (4 heads, 2 KV groups: TP2 splits the groups,
  TP4 replicates each on two ranks), tied (Qwen2.5-Coder-1.5B style) and untied;
* the megatron-core model built from the converted checkpoint gives transformers' logits (fp32,
  atol 1e-4) and greedy tokens: Llama with linear RoPE scaling (DeepSeek-Coder), Llama 3 RoPE
  scaling, Qwen2 with QKV biases and tied embeddings;
* known-wrong inputs fail the same comparison: gate and up projections swapped, the RoPE scaling
  dropped from the HF side;
* what megatron-core cannot express is a one-line error (yarn/dynamic/longrope RoPE, Llama 3
  scaling with other constants, attention/MLP biases on Llama, Qwen2's sliding window).
"""
from __future__ import annotations

import json

import pytest
import torch

from codetron.convert.from_hf import FromHFOptions, from_hf
from codetron.convert.to_hf import ToHFOptions, to_hf
from codetron.errors import CodetronError
from tests.convert.conftest import check_json, read_tensors, save_perturbed
from tests.helpers import models

LINEAR = {"rope_type": "linear", "factor": 4.0}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}


def tiny_llama(out, arch: str = "llama", vocab: int = 321, tie: bool = False, heads: int = 4, groups: int = 2,
               hidden: int = 64, layers: int = 4, rope: dict | None = None, theta: float = 1e5, seed: int = 0,
               max_position_embeddings: int = 128, **cfg):
    """A random LlamaForCausalLM (``arch="llama"``) or Qwen2ForCausalLM (``"qwen2"``: QKV biases) saved by
    transformers itself, its RMSNorm weights and biases moved off their init values."""
    model = models.tiny_llama(vocab, arch=arch, hidden=hidden, ffn=3 * hidden - 16, layers=layers, heads=heads,
                              kv_heads=groups, positions=max_position_embeddings, rope=rope, theta=theta, tie=tie,
                              seed=seed, rms_norm_eps=1e-6, initializer_range=0.2, **cfg)
    return save_perturbed(model, out, norm_marker="norm")


LAYOUTS = [dict(tp=tp, pp=pp) for tp in (1, 2, 4) for pp in (1, 2)]


def _saved_model(ckpt) -> dict:
    import yaml

    return yaml.safe_load((ckpt / "iter_0000000" / "codetron_config.yaml").read_text())["model"]


def _round_trip(tmp_path, src, layout) -> None:
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False, **layout))
    to_hf(tmp_path / "meg", tmp_path / "back", ToHFOptions(progress=False))  # the family from the checkpoint
    original, back = read_tensors(src), read_tensors(tmp_path / "back")
    if "lm_head.weight" not in back:  # tied: transformers may store the alias, we never do
        original.pop("lm_head.weight", None)
    assert original.keys() == back.keys()
    for k in original:
        assert original[k].dtype == back[k].dtype, k
        assert torch.equal(original[k].view(torch.uint8), back[k].view(torch.uint8)), k


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: f"tp{d['tp']}pp{d['pp']}")
def test_llama_round_trip_is_bit_identical(tmp_path, layout):
    src = tiny_llama(tmp_path / "hf", rope=LINEAR)
    _round_trip(tmp_path, src, layout)
    saved = _saved_model(tmp_path / "meg")
    assert saved["family"] == "llama" and saved["rope_scaling"] == LINEAR and saved["qkv_bias"] is None
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_key_value_heads"] == 2
    assert cfg["rope_theta"] == 1e5 and cfg["rms_norm_eps"] == 1e-6 and cfg["tie_word_embeddings"] is False
    assert cfg["rope_parameters"]["rope_type"] == "linear" and cfg["rope_parameters"]["factor"] == 4.0
    # transformers 4.x (what evaluation harnesses pin) reads the top-level legacy key
    assert cfg["rope_scaling"] == {"rope_type": "linear", "type": "linear", "factor": 4.0}
    assert not cfg["attention_bias"] and not cfg["mlp_bias"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: f"tp{d['tp']}pp{d['pp']}")
def test_qwen2_round_trip_is_bit_identical(tmp_path, layout):
    src = tiny_llama(tmp_path / "hf", arch="qwen2", tie=True, theta=1e6)
    _round_trip(tmp_path, src, layout)
    assert any(k.endswith("self_attn.q_proj.bias") for k in read_tensors(tmp_path / "back"))
    saved = _saved_model(tmp_path / "meg")  # one family: the Llama layer with QKV biases
    assert saved["family"] == "llama" and saved["qkv_bias"] is True and saved["rope_scaling"] is None
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["tie_word_embeddings"] is True
    assert cfg["rope_theta"] == 1e6 and cfg["use_sliding_window"] is False


def test_llama3_scaling_and_untied_qwen2_round_trip(tmp_path):
    _round_trip(tmp_path / "a", tiny_llama(tmp_path / "a" / "hf", rope=LLAMA3), dict(tp=2, pp=2))
    cfg = json.loads((tmp_path / "a" / "back" / "config.json").read_text())
    assert {k: cfg["rope_parameters"][k] for k in LLAMA3} == LLAMA3
    _round_trip(tmp_path / "b", tiny_llama(tmp_path / "b" / "hf", arch="qwen2", tie=False), dict(tp=4, pp=1))


def test_gate_and_up_are_stacked_as_megatron_splits_them(tmp_path):
    """megatron's SwiGLU fc1 is ``[gate; up]`` (``silu(first half) * second half``), and the dist checkpoint
    stores that global order whatever the TP (megatron's swiglu sharded factory); down_proj is fc2."""
    from codetron.convert.dcp_io import CheckpointReader

    src = tiny_llama(tmp_path / "hf")
    from_hf(src, tmp_path / "meg", FromHFOptions(tp=2, progress=False))
    reader = CheckpointReader(tmp_path / "meg" / "iter_0000000")
    fc1 = reader.read("decoder.layers.mlp.linear_fc1.weight", 2)
    hf = read_tensors(src)
    gate, up = hf["model.layers.2.mlp.gate_proj.weight"], hf["model.layers.2.mlp.up_proj.weight"]
    assert fc1.shape == (2 * gate.shape[0], 64)
    assert torch.equal(fc1[: gate.shape[0]], gate) and torch.equal(fc1[gate.shape[0]:], up)
    assert not reader.has("decoder.layers.mlp.linear_fc1.bias")  # Llama has no MLP bias
    assert not reader.has("decoder.layers.self_attention.linear_qkv.layer_norm_bias")  # RMSNorm: no bias


@pytest.mark.parametrize("arch,tie", [("llama", False), ("qwen2", True), ("qwen2", False)])
def test_family_table_is_what_transformers_builds(tmp_path, arch, tie):
    """The family's one tensor table names exactly the parameters of transformers' own LlamaForCausalLM /
    Qwen2ForCausalLM with their shapes, and its parameter count is theirs."""
    from transformers import AutoModelForCausalLM

    from codetron.convert.hf_config import from_hf_config, read_hf_config
    from codetron.megatron_ext import families

    src = tiny_llama(tmp_path / "hf", arch=arch, tie=tie, rope=LINEAR if arch == "llama" else None)
    model = from_hf_config(read_hf_config(src), "config.json")
    fam = families.get(model.family)
    assert model.family == "llama" and bool(model.qkv_bias) is (arch == "qwen2")
    hf = AutoModelForCausalLM.from_pretrained(str(src))
    state = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    if tie:
        state.pop("lm_head.weight", None)  # an alias of the embeddings
    assert fam.tensors(model, 384).hf_tensors() == state
    assert families.num_parameters(model) == sum(p.numel() for p in hf.parameters())


def _parity(tmp_path, src, layout=dict(tp=2, pp=2)) -> dict:
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False, **layout))
    return check_json(tmp_path / "meg", src, "--seq-len", "96", "--new-tokens", "12")


def _assert_parity(res: dict) -> None:
    assert res["max_abs_diff"] <= 1e-4 and res["greedy_equal"], res
    assert res["argmax_agreement"] == 1.0, res
    assert res["logit_scale"] > 1.0  # a wide init: the bound is not met by tiny logits
    assert len(set(res["greedy_hf"])) > 1, res  # not one repeated token


@pytest.mark.slow
@pytest.mark.parametrize("case", ["llama-linear", "llama3", "qwen2-tied"])
def test_logits_match_transformers(tmp_path, case):
    src = {
        "llama-linear": lambda: tiny_llama(tmp_path / "hf", rope=LINEAR),
        "llama3": lambda: tiny_llama(tmp_path / "hf", rope=LLAMA3, theta=5e5),
        "qwen2-tied": lambda: tiny_llama(tmp_path / "hf", arch="qwen2", tie=True),
    }[case]()
    _assert_parity(_parity(tmp_path, src))


def _rewrite(src, out, tensors=None, **config_changes):
    """A copy of the HF folder ``src`` with its tensors replaced and config.json edited."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(src, out)
    if tensors is not None:
        for f in out.glob("*.safetensors"):
            f.unlink()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
    if config_changes:
        cfg = json.loads((out / "config.json").read_text())
        for k, v in config_changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.slow
def test_known_wrong_models_fail_the_same_comparison(tmp_path):
    """The comparison can fail: transformers' model with gate and up swapped, or without the RoPE scaling,
    is not the converted model."""
    src = tiny_llama(tmp_path / "hf", rope=LINEAR)
    right = _parity(tmp_path, src)
    _assert_parity(right)
    weights = read_tensors(src)
    swapped = dict(weights)
    for i in range(4):
        g, u = f"model.layers.{i}.mlp.gate_proj.weight", f"model.layers.{i}.mlp.up_proj.weight"
        swapped[g], swapped[u] = weights[u], weights[g]
    wrong = check_json(tmp_path / "meg", _rewrite(src, tmp_path / "swapped", swapped), "--seq-len", "96")
    assert wrong["max_abs_diff"] > 100 * right["max_abs_diff"] + 1e-3 and not wrong["ok"], wrong
    cfg = json.loads((src / "config.json").read_text())
    unscaled = {"rope_type": "default", "rope_theta": cfg["rope_parameters"]["rope_theta"]}
    wrong = check_json(tmp_path / "meg", _rewrite(src, tmp_path / "unscaled", rope_parameters=unscaled,
                                                   rope_scaling=None), "--seq-len", "96")
    assert wrong["max_abs_diff"] > 100 * right["max_abs_diff"] + 1e-3 and not wrong["ok"], wrong


def _edit(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("rope,match", [
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, r"rope_type 'yarn'"),
    ({"rope_type": "dynamic", "factor": 2.0}, r"rope_type 'dynamic'"),
    ({"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8}, r"rope_type 'longrope'"),
    ({**LLAMA3, "high_freq_factor": 2.0}, r"llama3 RoPE with high_freq_factor 2.0"),
    ({**LLAMA3, "original_max_position_embeddings": 4096}, r"original_max_position_embeddings 4096"),
])
def test_unsupported_rope_scaling_is_one_line(tmp_path, rope, match):
    src = tiny_llama(tmp_path / "hf")
    _edit(src, rope_parameters={"rope_theta": 1e5, **rope})
    with pytest.raises(CodetronError, match=match) as err:
        from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    assert "\n" not in str(err.value) and "config.json" in str(err.value)
    assert not (tmp_path / "meg").exists()


@pytest.mark.parametrize("arch,changes,match", [
    ("llama", dict(attention_bias=True), r"attention_bias=true"),
    ("llama", dict(mlp_bias=True), r"mlp_bias=true"),
    ("llama", dict(hidden_act="gelu"), r"hidden_act 'gelu'"),
    ("llama", dict(head_dim=32), r"head_dim 32"),
    ("qwen2", dict(use_sliding_window=True, sliding_window=16), r"use_sliding_window=true"),
])
def test_unsupported_variants_are_one_line(tmp_path, arch, changes, match):
    src = tiny_llama(tmp_path / "hf", arch=arch)
    _edit(src, **changes)
    with pytest.raises(CodetronError, match=match) as err:
        from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    assert "\n" not in str(err.value)


def test_legacy_rope_scaling_key_is_read(tmp_path):
    """Released checkpoints (DeepSeek-Coder's config.json) carry ``rope_theta`` and ``rope_scaling:
    {"type": "linear", "factor": 4.0}`` at the top level, not transformers 5's ``rope_parameters``."""
    src = tiny_llama(tmp_path / "hf", rope=LINEAR)
    cfg = json.loads((src / "config.json").read_text())
    cfg.pop("rope_parameters")
    cfg.update(rope_theta=1e5, rope_scaling={"type": "linear", "factor": 4.0})
    (src / "config.json").write_text(json.dumps(cfg))
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    saved = _saved_model(tmp_path / "meg")
    assert saved["rope_scaling"] == LINEAR and saved["rotary_base"] == 1e5
