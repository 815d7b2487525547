"""``ModelConfig`` (codetron) <-> ``config.json`` of a Hugging Face ``GPTBigCodeForCausalLM``.

Both directions are plain dicts so the streaming path never imports transformers; the caller checks
the result with ``transformers.GPTBigCodeConfig`` at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

from codetron.errors import CodetronError
from codetron.convert.mapping import check_qkv_supported
from codetron.megatron_ext.config import ModelConfig

# GPTBigCode activations that are megatron's gelu_tanh (``gelu_new`` is the same tanh formula).
TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new")


def to_hf_config(model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None, pad: int | None,
                 dtype: str) -> dict:
    check_qkv_supported(model.num_attention_heads, model.num_query_groups, "model.num_query_groups")
    if model.hidden_size % model.num_attention_heads:
        raise CodetronError(f"model.hidden_size {model.hidden_size} is not divisible by num_attention_heads "
                            f"{model.num_attention_heads}")
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


def read_hf_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CodetronError(f"{folder}: no config.json; not a Hugging Face model folder")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CodetronError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if cfg.get("model_type") != "gpt_bigcode":
        archs = ",".join(cfg.get("architectures") or []) or "?"
        raise CodetronError(f"{path}: model_type {cfg.get('model_type')!r} ({archs}) is not a GPTBigCode model "
                            f"(StarCoder/SantaCoder); only model_type gpt_bigcode converts")
    return cfg


def dropout_note(cfg: dict, where: str) -> str | None:
    """GPTBigCode has its own embedding dropout (``embd_pdrop``); megatron-core's GPTModel applies
    ``hidden_dropout`` (``resid_pdrop``) there instead. Dropout never changes the weights, so the
    conversion stays exact; a differing ``embd_pdrop`` only means fine-tuning drops embeddings at
    ``resid_pdrop``, which the caller reports in one line."""
    resid, embd = float(cfg.get("resid_pdrop", 0.0)), cfg.get("embd_pdrop")
    if embd is None or float(embd) == resid:
        return None
    return (f"{where}: embd_pdrop {float(embd):g} differs from resid_pdrop {resid:g}; megatron-core applies "
            f"model.hidden_dropout ({resid:g}) to the embeddings too")


def from_hf_config(cfg: dict, where: str) -> ModelConfig:
    """The codetron architecture of a GPTBigCode config, or a one-line error for what megatron's
    GPTBigCode spec cannot express."""
    def get(key, default=None):
        return cfg.get(key, default)

    act = get("activation_function", "gelu_pytorch_tanh")
    if act not in TANH_GELUS:
        raise CodetronError(f"{where}: activation_function {act!r} is unsupported (codetron models use tanh GELU: "
                            f"{' or '.join(TANH_GELUS)})")
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
