"""Tensor layouts that several families share: the named special cases of every conversion.

Keys on the megatron side are the *global* dist-checkpoint keys ``codetron train`` writes with the
local layer spec (its ``sharded_state_dict_keys_map`` stores the layer norms under the
TransformerEngine names ``linear_qkv.layer_norm_*`` / ``linear_fc1.layer_norm_*``, so TE and local
runs share one checkpoint format). Per-layer keys hold all layers stacked on axis 0.

* fused QKV -- megatron stores, for each of ``num_query_groups`` groups, its query heads then one key
  head then one value head. :func:`qkv_megatron_to_hf` / :func:`qkv_hf_to_megatron`: with one group
  (multi-query attention) that is ``[q_1..q_n; k; v]`` -- exactly GPTBigCode's MQA ``c_attn`` rows;
  with one group per head (multi-head) it is ``[q_1; k_1; v_1; q_2; ...]`` -- exactly GPTBigCode's
  MHA ``c_attn.view(n_head, 3*head_dim)``; other group counts (GQA) have no fused HF form.
  :func:`qkv_split` / :func:`qkv_merge`: the three HF tensors ``q_proj``/``k_proj``/``v_proj``
  (StarCoder2, Llama), any group count.
* vocab padding -- megatron pads the embedding rows to a multiple of ``make_vocab_size_divisible_by``;
  HF has exactly ``vocab_size`` rows (:func:`strip_vocab_padding`, :func:`pad_vocab`).
* tied embeddings -- with ``tie_embeddings`` megatron has no ``output_layer`` (the last stage reuses
  the word embeddings) and HF stores no ``lm_head.weight``; untied models map one to the other.
* ``_extra_state`` -- megatron stores an (empty, for the local spec) extra-state object per linear
  layer (:data:`EXTRA_STATE_MODULES`); HF has nothing to map, and a checkpoint written from HF gets the
  objects megatron expects.

No torch import: families (and with them ``codetron slurm plan`` and ``codetron presets``) import
this module on machines that only render configs. The functions take and return tensors.
"""
from __future__ import annotations

from codetron.errors import CodetronError

LAYERS = "decoder.layers."
"""Prefix of the per-layer (layer-stacked) megatron keys."""

WORD_EMBEDDINGS = "embedding.word_embeddings.weight"
"""The megatron word-embedding key (rows padded to the padded vocabulary)."""

POSITION_TABLE = "embedding.position_embeddings.weight"
"""The learned position table (families with ``position_embedding_type`` learned_absolute)."""

FINAL_NORM = "decoder.final_layernorm"
"""The final norm's module (``.weight``, and ``.bias`` for LayerNorm)."""

OUTPUT_LAYER = "output_layer.weight"
"""The untied output matrix (absent with tied embeddings)."""

EXTRA_STATE_MODULES = ("self_attention.linear_proj", "self_attention.linear_qkv", "mlp.linear_fc1", "mlp.linear_fc2")
"""Per-layer modules whose ``_extra_state`` ShardedObject the local layer spec saves."""


def qkv_rows(num_heads: int, num_groups: int, head_dim: int) -> int:
    return (num_heads + 2 * num_groups) * head_dim


def check_qkv_supported(num_heads: int, num_groups: int, where: str) -> None:
    """A fused ``c_attn`` (GPTBigCode) exists for MQA and MHA only."""
    if num_groups not in (1, num_heads):
        raise CodetronError(f"{where}: num_query_groups={num_groups} (grouped-query attention) has no GPTBigCode "
                            f"form; GPTBigCode supports 1 (multi-query) or num_attention_heads={num_heads} (multi-head)")


def check_kv_groups(num_heads: int, num_groups: int, tp: int, where: str) -> None:
    """megatron-core splits KV groups over TP ranks, or replicates each on TP/groups ranks; nothing else."""
    if num_groups < 1 or num_heads % num_groups:
        raise CodetronError(f"{where}: {num_groups} KV heads do not divide {num_heads} attention heads")
    if num_groups % tp and tp % num_groups:
        raise CodetronError(f"{where}: {num_groups} KV heads cannot be split over --tp {tp} (megatron-core needs one "
                            f"to be a multiple of the other)")


def _check_qkv_rows(t, num_heads: int, num_groups: int, head_dim: int) -> None:
    if t.shape[0] != qkv_rows(num_heads, num_groups, head_dim):
        raise CodetronError(f"fused QKV has {t.shape[0]} rows, expected (heads {num_heads} + 2 * groups "
                            f"{num_groups}) * head_dim {head_dim}")


def qkv_megatron_to_hf(t, num_heads: int, num_groups: int, head_dim: int):
    """Fused QKV weight ``(rows, hidden)`` or bias ``(rows,)`` from megatron's grouped layout to
    GPTBigCode's ``c_attn`` layout. For MQA (one group: ``[q_1..q_n; k; v]``) and MHA (per head
    ``[q_h; k_h; v_h]``) the two layouts coincide row for row: this checks, and moves nothing."""
    check_qkv_supported(num_heads, num_groups, "qkv")
    _check_qkv_rows(t, num_heads, num_groups, head_dim)
    return t


def qkv_hf_to_megatron(t, num_heads: int, num_groups: int, head_dim: int):
    """Inverse of :func:`qkv_megatron_to_hf` (the identity on rows, after the same checks)."""
    check_qkv_supported(num_heads, num_groups, "qkv")
    _check_qkv_rows(t, num_heads, num_groups, head_dim)
    return t


def qkv_split(t, num_heads: int, num_groups: int, head_dim: int) -> tuple:
    """Megatron's fused QKV weight ``(rows, hidden)`` or bias ``(rows,)`` -> HF ``(q, k, v)``.

    megatron stores each group's query heads, then its key head, then its value head; HF stores all
    query heads, then all key heads, then all value heads. Query head h belongs to group
    ``h // (num_heads / num_groups)`` on both sides (HF's ``repeat_kv``), so only rows move."""
    _check_qkv_rows(t, num_heads, num_groups, head_dim)
    per, rest = num_heads // num_groups, t.shape[1:]
    g = t.reshape(num_groups, per + 2, head_dim, *rest)
    return (g[:, :per].reshape(num_heads * head_dim, *rest), g[:, per].reshape(num_groups * head_dim, *rest),
            g[:, per + 1].reshape(num_groups * head_dim, *rest))


def qkv_merge(q, k, v, num_heads: int, num_groups: int, head_dim: int):
    """Inverse of :func:`qkv_split`."""
    per, rest = num_heads // num_groups, q.shape[1:]
    out = q.new_empty((num_groups, per + 2, head_dim, *rest))
    out[:, :per] = q.reshape(num_groups, per, head_dim, *rest)
    out[:, per] = k.reshape(num_groups, head_dim, *rest)
    out[:, per + 1] = v.reshape(num_groups, head_dim, *rest)
    return out.reshape(-1, *rest)


def strip_vocab_padding(t, vocab_size: int):
    """Rows ``[0, vocab_size)`` of a padded embedding/output matrix (a view, no copy)."""
    if t.shape[0] < vocab_size:
        raise CodetronError(f"embedding has {t.shape[0]} rows but the vocabulary has {vocab_size} tokens")
    return t[:vocab_size]


def pad_vocab(rows: int, padded: int) -> int:
    """Zero rows appended to reach megatron's padded vocab (they are never produced as targets)."""
    if padded < rows:
        raise CodetronError(f"padded vocab {padded} is smaller than the vocabulary {rows}")
    return padded - rows
