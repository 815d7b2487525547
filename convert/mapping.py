"""megatron-core GPTModel <-> Hugging Face GPTBigCode and StarCoder2: the name tables and their special cases.

Keys on the megatron side are the *global* dist-checkpoint keys ``codetron train`` writes with the
local layer spec (its ``sharded_state_dict_keys_map`` stores the layer norms under the
TransformerEngine names ``linear_qkv.layer_norm_*`` / ``linear_fc1.layer_norm_*``, so TE and local
runs share one checkpoint format). Per-layer keys hold all layers stacked on axis 0.

Special cases, each a named function below and each covered by tests/convert:

* ``qkv_megatron_to_hf`` -- fused QKV. megatron stores, for each of ``num_query_groups`` groups,
  its query heads then one key head then one value head. With one group (multi-query attention)
  that is ``[q_1..q_n; k; v]`` -- exactly GPTBigCode's MQA ``c_attn`` rows ``(n_embd + 2*head_dim)``.
  With one group per head (multi-head) it is ``[q_1; k_1; v_1; q_2; ...]`` -- exactly GPTBigCode's
  MHA ``c_attn.view(n_head, 3*head_dim)``. Other group counts (GQA) have no GPTBigCode form.
* ``strip_vocab_padding`` / ``pad_vocab`` -- megatron pads the embedding rows to a multiple of
  ``make_vocab_size_divisible_by``; HF has exactly ``vocab_size`` rows (the tokenizer's vocab,
  including added tokens such as WizardCoder's ``[PAD]``).
* tied embeddings -- with ``tie_embeddings`` megatron has no ``output_layer`` (the last stage reuses
  the word embeddings) and HF stores no ``lm_head.weight``; untied models map one to the other.
* ``_extra_state`` -- megatron stores an (empty, for the local spec) extra-state object per linear
  layer; HF has nothing to map, and a checkpoint written from HF gets the objects megatron expects.
"""
from __future__ import annotations

import torch

from codetron.errors import CodetronError

LAYERS = "decoder.layers."
"""Prefix of the per-layer (layer-stacked) megatron keys."""

HF_LAYER = "transformer.h.{i}."
"""Prefix of layer ``i`` on the Hugging Face side."""

LAYER_MAP: dict[str, str] = {
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

GLOBAL_MAP: dict[str, str] = {
    "embedding.word_embeddings.weight": "transformer.wte.weight",  # special case: vocab padding
    "embedding.position_embeddings.weight": "transformer.wpe.weight",
    "decoder.final_layernorm.weight": "transformer.ln_f.weight",
    "decoder.final_layernorm.bias": "transformer.ln_f.bias",
}
"""Whole-model megatron key -> HF name."""

UNTIED_OUTPUT = ("output_layer.weight", "lm_head.weight")
"""Only with untied embeddings (special case: vocab padding); tied models have neither."""

WORD_EMBEDDINGS = "embedding.word_embeddings.weight"

EXTRA_STATE_MODULES = ("self_attention.linear_proj", "self_attention.linear_qkv", "mlp.linear_fc1", "mlp.linear_fc2")
"""Per-layer modules whose ``_extra_state`` ShardedObject the local layer spec saves."""

TP_SPLIT_AXIS: dict[str, int] = {
    "self_attention.linear_qkv.weight": 0, "self_attention.linear_qkv.bias": 0,
    "mlp.linear_fc1.weight": 0, "mlp.linear_fc1.bias": 0,
    "self_attention.linear_proj.weight": 1, "mlp.linear_fc2.weight": 1,
    WORD_EMBEDDINGS: 0, UNTIED_OUTPUT[0]: 0,
}
"""Axis each tensor-parallel rank splits (of the per-layer tensor); absent = replicated."""


def hf_layer_name(layer: int, meg_suffix: str) -> str:
    return HF_LAYER.format(i=layer) + LAYER_MAP[meg_suffix]


def qkv_rows(num_heads: int, num_groups: int, head_dim: int) -> int:
    return (num_heads + 2 * num_groups) * head_dim


def check_qkv_supported(num_heads: int, num_groups: int, where: str) -> None:
    if num_groups not in (1, num_heads):
        raise CodetronError(f"{where}: num_query_groups={num_groups} (grouped-query attention) has no GPTBigCode "
                            f"form; GPTBigCode supports 1 (multi-query) or num_attention_heads={num_heads} (multi-head)")


def qkv_megatron_to_hf(t: torch.Tensor, num_heads: int, num_groups: int, head_dim: int) -> torch.Tensor:
    """Fused QKV weight ``(rows, hidden)`` or bias ``(rows,)`` from megatron's grouped layout to
    GPTBigCode's ``c_attn`` layout (see the module docstring: the two coincide for MQA and MHA)."""
    check_qkv_supported(num_heads, num_groups, "qkv")
    if t.shape[0] != qkv_rows(num_heads, num_groups, head_dim):
        raise CodetronError(f"fused QKV has {t.shape[0]} rows, expected (heads {num_heads} + 2 * groups "
                            f"{num_groups}) * head_dim {head_dim}")
    groups = t.reshape(num_groups, num_heads // num_groups + 2, head_dim, *t.shape[1:])
    if num_groups == 1:  # MQA: [all query heads; k; v]
        q, k, v = groups[0, :num_heads], groups[0, num_heads], groups[0, num_heads + 1]
        return torch.cat([q.reshape(num_heads * head_dim, *t.shape[1:]), k, v])
    return groups.reshape(t.shape)  # MHA: per head [q_h; k_h; v_h] on both sides


def qkv_hf_to_megatron(t: torch.Tensor, num_heads: int, num_groups: int, head_dim: int) -> torch.Tensor:
    """Inverse of :func:`qkv_megatron_to_hf`."""
    check_qkv_supported(num_heads, num_groups, "qkv")
    if num_groups == 1:
        q, k, v = t.split([num_heads * head_dim, head_dim, head_dim])
        return torch.cat([q, k, v])
    return t.reshape(t.shape)


def strip_vocab_padding(t: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Rows ``[0, vocab_size)`` of a padded embedding/output matrix (a view, no copy)."""
    if t.shape[0] < vocab_size:
        raise CodetronError(f"embedding has {t.shape[0]} rows but the vocabulary has {vocab_size} tokens")
    return t[:vocab_size]


def pad_vocab(rows: int, padded: int) -> int:
    """Zero rows appended to reach megatron's padded vocab (they are never produced as targets)."""
    if padded < rows:
        raise CodetronError(f"padded vocab {padded} is smaller than the vocabulary {rows}")
    return padded - rows


# ---- StarCoder2 (``Starcoder2ForCausalLM``) ---------------------------------------------------------
# The same megatron keys (the layer spec is the same up to RoPE, which has no weights, and the
# window, which is a mask). Special cases: fused QKV is three HF tensors (``qkv_split`` /
# ``qkv_merge``), no position table, vocab padding and untied output as above.

STARCODER2_HF_LAYER = "model.layers.{i}."
"""Prefix of layer ``i`` in a Starcoder2ForCausalLM state dict."""

STARCODER2_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")

STARCODER2_LAYER_MAP: dict[str, str | tuple[str, ...]] = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
    "self_attention.linear_qkv.weight": tuple(f"{m}.weight" for m in STARCODER2_QKV),  # special case: qkv_split
    "self_attention.linear_qkv.bias": tuple(f"{m}.bias" for m in STARCODER2_QKV),  # special case: qkv_split
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

STARCODER2_GLOBAL_MAP: dict[str, str] = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",  # special case: vocab padding
    "decoder.final_layernorm.weight": "model.norm.weight",
    "decoder.final_layernorm.bias": "model.norm.bias",
}
"""Whole-model megatron key -> HF name (RoPE: no position table)."""

STARCODER2_UNTIED_OUTPUT = ("output_layer.weight", "lm_head.weight")

HF_WORD_EMBEDDINGS = {"gpt_bigcode": GLOBAL_MAP[WORD_EMBEDDINGS], "starcoder2": STARCODER2_GLOBAL_MAP[WORD_EMBEDDINGS]}
"""The HF word-embedding tensor of each family (its dtype is the model's)."""


def starcoder2_layer_names(layer: int, meg_suffix: str) -> tuple[str, ...]:
    """The HF name(s) of one layer's megatron tensor."""
    hf = STARCODER2_LAYER_MAP[meg_suffix]
    return tuple(STARCODER2_HF_LAYER.format(i=layer) + s for s in ((hf,) if isinstance(hf, str) else hf))


def check_kv_groups(num_heads: int, num_groups: int, tp: int, where: str) -> None:
    """megatron-core splits KV groups over TP ranks, or replicates each on TP/groups ranks; nothing else."""
    if num_groups < 1 or num_heads % num_groups:
        raise CodetronError(f"{where}: {num_groups} KV heads do not divide {num_heads} attention heads")
    if num_groups % tp and tp % num_groups:
        raise CodetronError(f"{where}: {num_groups} KV heads cannot be split over --tp {tp} (megatron-core needs one "
                            f"to be a multiple of the other)")


def qkv_split(t: torch.Tensor, num_heads: int, num_groups: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """Megatron's fused QKV weight ``(rows, hidden)`` or bias ``(rows,)`` -> HF ``(q, k, v)``.

    megatron stores each group's query heads, then its key head, then its value head; HF stores all
    query heads, then all key heads, then all value heads. Query head h belongs to group
    ``h // (num_heads / num_groups)`` on both sides (HF's ``repeat_kv``), so only rows move."""
    if t.shape[0] != qkv_rows(num_heads, num_groups, head_dim):
        raise CodetronError(f"fused QKV has {t.shape[0]} rows, expected (heads {num_heads} + 2 * groups "
                            f"{num_groups}) * head_dim {head_dim}")
    per, rest = num_heads // num_groups, t.shape[1:]
    g = t.reshape(num_groups, per + 2, head_dim, *rest)
    return (g[:, :per].reshape(num_heads * head_dim, *rest), g[:, per].reshape(num_groups * head_dim, *rest),
            g[:, per + 1].reshape(num_groups * head_dim, *rest))


def qkv_merge(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, num_groups: int,
              head_dim: int) -> torch.Tensor:
    """Inverse of :func:`qkv_split`."""
    per, rest = num_heads // num_groups, q.shape[1:]
    parts = [q.reshape(num_groups, per, head_dim, *rest), k.reshape(num_groups, 1, head_dim, *rest),
             v.reshape(num_groups, 1, head_dim, *rest)]
    return torch.cat(parts, dim=1).reshape(-1, *rest)
