"""Qwen2 (``Qwen2ForCausalLM``): Qwen2.5-Coder. The Llama layer (``llama.py``) with biases on q, k and v
(megatron-core's ``add_qkv_bias``) and none elsewhere; tied embeddings in the small models.

Qwen2's sliding window (``use_sliding_window``, from ``max_window_layers`` on) is off in every
Qwen2.5-Coder checkpoint; a config with it on is refused in one line.
"""
from __future__ import annotations

from codetron.megatron_ext.families.llama import Llama

FAMILY = Llama(
    name="qwen2",
    title="Qwen2",
    hf_architecture="Qwen2ForCausalLM",
    position_embedding_type="rope",
    normalization="RMSNorm",
    gated_mlp=True,
    qkv_bias=True,
    hf_dropout_keys=("attention_dropout", "attention_dropout"),
    # transformers' Qwen2Config defaults
    hf_defaults=(("hidden_size", 4096), ("intermediate_size", 22016), ("num_hidden_layers", 32),
                 ("num_attention_heads", 32), ("num_key_value_heads", 32), ("max_position_embeddings", 32768),
                 ("vocab_size", 151936)),
)
