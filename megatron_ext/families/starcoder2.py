"""StarCoder2 (``Starcoder2ForCausalLM``): StarCoder2-3B/7B/15B and StarCoder2-Instruct.

The same megatron-core layer as GPTBigCode (LayerNorm with bias, biases everywhere, tanh GELU) with
RoPE instead of a position table (``rope_theta`` -> ``model.rotary_base``), grouped-query attention
(``num_key_value_heads`` -> ``model.num_query_groups``) and a sliding window (``sliding_window`` ->
``model.sliding_window``; megatron's ``window_size = (W - 1, 0)``). HF keeps q/k/v as three tensors
(``layouts.qkv_split`` / ``qkv_merge``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codetron.errors import CodetronError
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families import layouts
from codetron.megatron_ext.families.base import (Family, TensorTable, attention_shape, check_activation,
                                                 embedding_entry, final_norm_entries, layer_entries,
                                                 megatron_layer_shapes, output_entry, rope_theta)

HF_LAYER = "model.layers.{i}."
"""Prefix of layer ``i`` in a Starcoder2ForCausalLM state dict."""

QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")

LAYER_NAMES: dict[str, str | tuple[str, ...]] = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
    "self_attention.linear_qkv.weight": tuple(f"{m}.weight" for m in QKV),  # special case: qkv_split
    "self_attention.linear_qkv.bias": tuple(f"{m}.bias" for m in QKV),  # special case: qkv_split
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "self_attention.linear_proj.bias": "self_attn.o_proj.bias",
    "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
    "mlp.linear_fc1.layer_norm_bias": "post_attention_layernorm.bias",
    "mlp.linear_fc1.weight": "mlp.c_fc.weight",
    "mlp.linear_fc1.bias": "mlp.c_fc.bias",
    "mlp.linear_fc2.weight": "mlp.c_proj.weight",
    "mlp.linear_fc2.bias": "mlp.c_proj.bias",
}
"""Per-layer megatron key suffix -> per-layer HF suffix (a tuple: one megatron tensor is several HF ones)."""


def _prefixed(names: str | tuple[str, ...]) -> str | tuple[str, ...]:
    return HF_LAYER + names if isinstance(names, str) else tuple(HF_LAYER + n for n in names)


@dataclass(frozen=True, kw_only=True)
class StarCoder2(Family):
    """RoPE, GQA, sliding window; otherwise GPTBigCode's layer."""

    def tensors(self, model: ModelConfig, padded_vocab: int) -> TensorTable:
        heads, groups, hd, h = model.num_attention_heads, model.num_query_groups, model.head_dim, model.hidden_size
        q, kv = heads * hd, groups * hd

        def to_hf(t):
            return layouts.qkv_split(t, heads, groups, hd)

        def to_megatron(q_, k_, v_):
            return layouts.qkv_merge(q_, k_, v_, heads, groups, hd)

        qkv = {"self_attention.linear_qkv.weight": (to_hf, to_megatron, ((q, h), (kv, h), (kv, h))),
               "self_attention.linear_qkv.bias": (to_hf, to_megatron, ((q,), (kv,), (kv,)))}
        layer = layer_entries(megatron_layer_shapes(model), {s: _prefixed(n) for s, n in LAYER_NAMES.items()}, qkv)
        after = final_norm_entries("model.norm", model)
        if not model.tie_embeddings:
            after += (output_entry(self.untied_output_hf, model, padded_vocab),)
        return TensorTable(before=(embedding_entry("model.embed_tokens.weight", model, padded_vocab),), layer=layer,
                           after=after, num_layers=model.num_layers)

    def check_convertible(self, model: ModelConfig, where: str) -> None:
        layouts.check_kv_groups(model.num_attention_heads, model.num_query_groups, 1, where)

    def to_hf_config(self, model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str) -> dict[str, Any]:
        return {
            "architectures": [self.hf_architecture],
            "model_type": self.name,
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

    def hf_config_extras(self, model: ModelConfig) -> dict[str, Any]:
        # transformers 5 writes RoPE's base only inside ``rope_parameters``; 4.x (which evaluation
        # harnesses pin) reads the top-level ``rope_theta`` and would silently fall back to 10000.
        return {"rope_theta": model.rotary_base}

    def from_hf_config(self, cfg: dict[str, Any], where: str) -> ModelConfig:
        # Defaults are transformers' Starcoder2Config defaults, for keys a config.json leaves out.
        def get(key, default=None):
            value = cfg.get(key)
            return default if value is None else value

        check_activation(get("hidden_act", "gelu_pytorch_tanh"), "hidden_act", where)
        if not get("use_bias", True):
            raise CodetronError(f"{where}: use_bias=false is unsupported (the layer spec has biases on every linear layer)")
        if get("norm_type", "layer_norm") != "layer_norm" or get("mlp_type", "default") != "default":
            raise CodetronError(f"{where}: norm_type {get('norm_type')!r} / mlp_type {get('mlp_type')!r} is unsupported "
                                f"(StarCoder2 is layer_norm with the default MLP)")
        hidden, heads, groups = attention_shape(get, where, 3072, 24)
        pos = int(get("max_position_embeddings", 4096))
        window = cfg.get("sliding_window")
        return ModelConfig(
            family=self.name,
            num_layers=int(get("num_hidden_layers", 30)),
            hidden_size=hidden,
            num_attention_heads=heads,
            num_query_groups=groups,
            ffn_hidden_size=int(get("intermediate_size", 4 * hidden)),
            seq_length=pos,
            max_position_embeddings=pos,
            rotary_base=rope_theta(cfg, where),
            sliding_window=int(window) if window is not None else None,
            vocab_size=int(get("vocab_size", 49152)),
            layernorm_epsilon=float(get("norm_epsilon", 1e-5)),
            hidden_dropout=float(get("residual_dropout", 0.0)),
            attention_dropout=float(get("attention_dropout", 0.0)),
            init_method_std=float(get("initializer_range", 0.02)),
            tie_embeddings=bool(get("tie_word_embeddings", True)),
        )


FAMILY = StarCoder2(
    name="starcoder2",
    title="StarCoder2",
    hf_architecture="Starcoder2ForCausalLM",
    position_embedding_type="rope",
    sliding_window=True,
    hf_dropout_keys=("residual_dropout", "embedding_dropout"),
)
