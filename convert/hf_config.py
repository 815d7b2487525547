"""``ModelConfig`` (codetron) <-> ``config.json`` of a Hugging Face ``GPTBigCodeForCausalLM`` or
``Starcoder2ForCausalLM``.

The family is never named twice: ``to-hf`` takes it from the checkpoint's ``model.family``,
``from-hf`` from config.json's ``model_type``. Both directions are plain dicts so the streaming path
never imports transformers; :func:`save_hf_config` checks the result with transformers' own config
class at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

from codetron.errors import CodetronError
from codetron.records import read_json
from codetron.convert.mapping import check_qkv_supported
from codetron.megatron_ext.config import ModelConfig

# Activations that are megatron's gelu_tanh (``gelu_new`` is the same tanh formula).
TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new")

MODEL_TYPES = {"gpt_bigcode": "GPTBigCodeForCausalLM", "starcoder2": "Starcoder2ForCausalLM"}
"""HF ``model_type`` (= codetron ``model.family``) -> the architecture written."""


def to_hf_config(model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None, pad: int | None,
                 dtype: str) -> dict:
    if model.hidden_size % model.num_attention_heads:
        raise CodetronError(f"model.hidden_size {model.hidden_size} is not divisible by num_attention_heads "
                            f"{model.num_attention_heads}")
    if model.family == "starcoder2":
        return _starcoder2_to_hf(model, vocab_size, bos, eos, pad, dtype)
    if model.family != "gpt_bigcode":
        raise CodetronError(f"model.family {model.family!r}: codetron converts {' and '.join(MODEL_TYPES)}")
    check_qkv_supported(model.num_attention_heads, model.num_query_groups, "model.num_query_groups")
    return {
        "architectures": ["GPTBigCodeForCausalLM"],
        "model_type": "gpt_bigcode",
        "vocab_size": vocab_size,
        "n_positions": model.positions,
        "n_embd": model.hidden_size,
        "n_layer": model.num_layers,
        "n_head": model.num_attention_heads,
        "n_inner": model.ffn,
        "multi_query": model.num_query_groups == 1,
        "activation_function": "gelu_pytorch_tanh",
        "resid_pdrop": model.hidden_dropout,
        "embd_pdrop": model.hidden_dropout,  # megatron-core's embedding dropout is hidden_dropout
        "attn_pdrop": model.attention_dropout,
        "layer_norm_epsilon": model.layernorm_epsilon,
        "initializer_range": model.init_method_std,
        "scale_attn_weights": True,  # megatron scales by 1/sqrt(head_dim) (no query-key layer scaling)
        "attention_softmax_in_fp32": True,
        "scale_attention_softmax_in_fp32": True,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": model.tie_embeddings,
        "dtype": dtype,
    }


def _starcoder2_to_hf(model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str) -> dict:
    return {
        "architectures": ["Starcoder2ForCausalLM"],
        "model_type": "starcoder2",
        "vocab_size": vocab_size,
        "hidden_size": model.hidden_size,
        "intermediate_size": model.ffn,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_query_groups,
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": model.positions,
        "rope_parameters": {"rope_type": "default", "rope_theta": model.rotary_base},
        "sliding_window": model.sliding_window,
        "norm_epsilon": model.layernorm_epsilon,
        "initializer_range": model.init_method_std,
        "residual_dropout": model.hidden_dropout,
        "embedding_dropout": model.hidden_dropout,  # megatron-core's embedding dropout is hidden_dropout
        "attention_dropout": model.attention_dropout,
        "use_bias": True,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": model.tie_embeddings,
        "dtype": dtype,
    }


def save_hf_config(model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str, folder: Path) -> None:
    """config.json through transformers' own class (it validates the values). transformers 5 writes
    RoPE's base only inside ``rope_parameters``; 4.x (which evaluation harnesses pin) reads the
    top-level ``rope_theta`` and would silently fall back to 10000, so both are written."""
    from transformers import AutoConfig

    values = to_hf_config(model, vocab_size, bos, eos, pad, dtype)
    AutoConfig.for_model(values.pop("model_type"), **values).save_pretrained(str(folder))
    if model.family == "starcoder2":
        path = Path(folder) / "config.json"
        cfg = json.loads(path.read_text())
        cfg["rope_theta"] = model.rotary_base
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def read_hf_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CodetronError(f"{folder}: no config.json; not a Hugging Face model folder")
    cfg = read_json(path, what="config.json")
    if not isinstance(cfg, dict):
        raise CodetronError(f"{path}: expected a JSON object")
    if cfg.get("model_type") not in MODEL_TYPES:
        archs = ",".join(cfg.get("architectures") or []) or "?"
        raise CodetronError(f"{path}: model_type {cfg.get('model_type')!r} ({archs}) is not a GPTBigCode or StarCoder2 "
                            f"model; only model_type {' or '.join(MODEL_TYPES)} converts")
    return cfg


_DROPOUT_KEYS = {"gpt_bigcode": ("resid_pdrop", "embd_pdrop"), "starcoder2": ("residual_dropout", "embedding_dropout")}


def dropout_note(cfg: dict, where: str) -> str | None:
    """Both families have their own embedding dropout (``embd_pdrop`` / ``embedding_dropout``);
    megatron-core's GPTModel applies ``hidden_dropout`` (``resid_pdrop`` / ``residual_dropout``)
    there instead. Dropout never changes the weights, so the conversion stays exact; a differing
    embedding rate only means fine-tuning drops embeddings at the residual rate, which the caller
    reports in one line."""
    resid_key, embd_key = _DROPOUT_KEYS.get(cfg.get("model_type"), _DROPOUT_KEYS["gpt_bigcode"])
    resid, embd = float(cfg.get(resid_key, 0.0)), cfg.get(embd_key)
    if embd is None or float(embd) == resid:
        return None
    return (f"{where}: {embd_key} {float(embd):g} differs from {resid_key} {resid:g}; megatron-core applies "
            f"model.hidden_dropout ({resid:g}) to the embeddings too")


def _check_activation(act: str, key: str, where: str) -> None:
    if act not in TANH_GELUS:
        raise CodetronError(f"{where}: {key} {act!r} is unsupported (codetron models use tanh GELU: "
                            f"{' or '.join(TANH_GELUS)})")


def from_hf_config(cfg: dict, where: str) -> ModelConfig:
    """The codetron architecture of a GPTBigCode or StarCoder2 config, or a one-line error for what
    megatron's layer spec cannot express."""
    if cfg.get("model_type") == "starcoder2":
        return _starcoder2_from_hf(cfg, where)

    def get(key, default=None):
        return cfg.get(key, default)

    _check_activation(get("activation_function", "gelu_pytorch_tanh"), "activation_function", where)
    if get("add_cross_attention", False):
        raise CodetronError(f"{where}: add_cross_attention=true (encoder-decoder) is unsupported")
    if not get("scale_attn_weights", True):
        raise CodetronError(f"{where}: scale_attn_weights=false is unsupported (megatron scales by 1/sqrt(head_dim))")
    hidden, heads = int(get("n_embd", 768)), int(get("n_head", 12))
    if hidden % heads:
        raise CodetronError(f"{where}: n_embd {hidden} is not divisible by n_head {heads}")
    multi_query = bool(get("multi_query", True))
    pos = int(get("n_positions", 1024))
    return ModelConfig(
        num_layers=int(get("n_layer", 12)),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_query_groups=1 if multi_query else heads,
        ffn_hidden_size=int(get("n_inner") or 4 * hidden),
        seq_length=pos,
        max_position_embeddings=pos,
        vocab_size=int(get("vocab_size", 50257)),
        layernorm_epsilon=float(get("layer_norm_epsilon", 1e-5)),
        hidden_dropout=float(get("resid_pdrop", 0.0)),
        attention_dropout=float(get("attn_pdrop", 0.0)),
        init_method_std=float(get("initializer_range", 0.02)),
        tie_embeddings=bool(get("tie_word_embeddings", True)),
    )


def _rope_theta(cfg: dict, where: str) -> float:
    """transformers 5 nests RoPE under ``rope_parameters``; released checkpoints have ``rope_theta``."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise CodetronError(f"{where}: rope_type {kind!r} (scaled RoPE) is unsupported; megatron's rotary "
                            f"embedding here is the default one")
    return float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def _starcoder2_from_hf(cfg: dict, where: str) -> ModelConfig:
    # Defaults are transformers' Starcoder2Config defaults, for keys a config.json leaves out.
    def get(key, default=None):
        value = cfg.get(key)
        return default if value is None else value

    _check_activation(get("hidden_act", "gelu_pytorch_tanh"), "hidden_act", where)
    if not get("use_bias", True):
        raise CodetronError(f"{where}: use_bias=false is unsupported (the layer spec has biases on every linear layer)")
    if get("norm_type", "layer_norm") != "layer_norm" or get("mlp_type", "default") != "default":
        raise CodetronError(f"{where}: norm_type {get('norm_type')!r} / mlp_type {get('mlp_type')!r} is unsupported "
                            f"(StarCoder2 is layer_norm with the default MLP)")
    hidden, heads = int(get("hidden_size", 3072)), int(get("num_attention_heads", 24))
    groups = int(get("num_key_value_heads", heads))
    if hidden % heads:
        raise CodetronError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if get("head_dim") is not None and int(get("head_dim")) != hidden // heads:
        raise CodetronError(f"{where}: head_dim {get('head_dim')} != hidden_size / num_attention_heads "
                            f"({hidden // heads}) is unsupported")
    if heads % groups:
        raise CodetronError(f"{where}: num_key_value_heads {groups} does not divide num_attention_heads {heads}")
    pos = int(get("max_position_embeddings", 4096))
    window = cfg.get("sliding_window")
    return ModelConfig(
        family="starcoder2",
        num_layers=int(get("num_hidden_layers", 30)),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_query_groups=groups,
        ffn_hidden_size=int(get("intermediate_size", 4 * hidden)),
        seq_length=pos,
        max_position_embeddings=pos,
        rotary_base=_rope_theta(cfg, where),
        sliding_window=int(window) if window is not None else None,
        vocab_size=int(get("vocab_size", 49152)),
        layernorm_epsilon=float(get("norm_epsilon", 1e-5)),
        hidden_dropout=float(get("residual_dropout", 0.0)),
        attention_dropout=float(get("attention_dropout", 0.0)),
        init_method_std=float(get("initializer_range", 0.02)),
        tie_embeddings=bool(get("tie_word_embeddings", True)),
    )
