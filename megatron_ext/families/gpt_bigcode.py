"""GPTBigCode (SantaCoder, StarCoder, StarCoderBase, WizardCoder, OctoCoder): ``GPTBigCodeForCausalLM``.

megatron-core's GPT layer with LayerNorm, biases everywhere, tanh GELU and a learned absolute
position table. Multi-query attention is ``num_query_groups=1`` (``multi_query``); one group per
head is multi-head attention. Both have GPTBigCode's fused ``c_attn`` in exactly megatron's row
order (``layouts.qkv_megatron_to_hf``); grouped-query attention has no GPTBigCode form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codetron.errors import CodetronError
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families import layouts
from codetron.megatron_ext.families.base import (Family, TensorMap, TensorTable, check_activation, embedding_entry,
                                                 final_norm_entries, layer_entries, megatron_layer_shapes, output_entry)

HF_LAYER = "transformer.h.{i}."
"""Prefix of layer ``i`` on the Hugging Face side."""

LAYER_NAMES: dict[str, str] = {
    "self_attention.linear_qkv.layer_norm_weight": "ln_1.weight",
    "self_attention.linear_qkv.layer_norm_bias": "ln_1.bias",
    "self_attention.linear_qkv.weight": "attn.c_attn.weight",  # special case: fused QKV
    "self_attention.linear_qkv.bias": "attn.c_attn.bias",  # special case: fused QKV
    "self_attention.linear_proj.weight": "attn.c_proj.weight",
    "self_attention.linear_proj.bias": "attn.c_proj.bias",
    "mlp.linear_fc1.layer_norm_weight": "ln_2.weight",
    "mlp.linear_fc1.layer_norm_bias": "ln_2.bias",
    "mlp.linear_fc1.weight": "mlp.c_fc.weight",
    "mlp.linear_fc1.bias": "mlp.c_fc.bias",
    "mlp.linear_fc2.weight": "mlp.c_proj.weight",
    "mlp.linear_fc2.bias": "mlp.c_proj.bias",
}
"""Per-layer megatron key suffix -> per-layer HF suffix."""


@dataclass(frozen=True, kw_only=True)
class GPTBigCode(Family):
    """The StarCoder line: learned positions, MQA or MHA, tied embeddings by default."""

    def tensors(self, model: ModelConfig, padded_vocab: int) -> TensorTable:
        heads, groups, hd, h = model.num_attention_heads, model.num_query_groups, model.head_dim, model.hidden_size
        shapes = megatron_layer_shapes(model)

        def to_hf(t):
            return (layouts.qkv_megatron_to_hf(t, heads, groups, hd),)

        def to_megatron(t):
            return layouts.qkv_hf_to_megatron(t, heads, groups, hd)

        qkv = {s: (to_hf, to_megatron, (shapes[s],))
               for s in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias")}
        before = (embedding_entry("transformer.wte.weight", model, padded_vocab),
                  TensorMap(megatron=layouts.POSITION_TABLE, hf=("transformer.wpe.weight",),
                            shape=(model.positions, h), hf_shapes=((model.positions, h),)))
        after = final_norm_entries("transformer.ln_f", model)
        if not model.tie_embeddings:
            after += (output_entry(self.untied_output_hf, model, padded_vocab),)
        return TensorTable(before=before, layer=layer_entries(shapes, {s: HF_LAYER + n for s, n in LAYER_NAMES.items()},
                                                              qkv),
                           after=after, num_layers=model.num_layers)

    def check_convertible(self, model: ModelConfig, where: str) -> None:
        layouts.check_qkv_supported(model.num_attention_heads, model.num_query_groups, where)

    def to_hf_config(self, model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str) -> dict[str, Any]:
        layouts.check_qkv_supported(model.num_attention_heads, model.num_query_groups, "model.num_query_groups")
        return {
            "architectures": [self.hf_architecture],
            "model_type": self.name,
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

    def from_hf_config(self, cfg: dict[str, Any], where: str) -> ModelConfig:
        def get(key, default=None):
            return cfg.get(key, default)

        check_activation(get("activation_function", "gelu_pytorch_tanh"), "activation_function", where)
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
            family=self.name,
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


FAMILY = GPTBigCode(
    name="gpt_bigcode",
    title="GPTBigCode",
    hf_architecture="GPTBigCodeForCausalLM",
    position_embedding_type="learned_absolute",
    hf_dropout_keys=("resid_pdrop", "embd_pdrop"),
    # Non-parameter buffers some GPTBigCode checkpoints carry (old transformers versions saved them).
    ignored_hf=("attn.bias", "attn.masked_bias"),
)
