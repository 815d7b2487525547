"""Model FLOPs of a training step, counted the way Megatron-LM's ``num_floating_point_operations``
counts them (``megatron/training/training.py``), for every family's shape (its MLP
matrices from the family).

Per position of a sequence of length ``s`` (B x s positions make a step), with hidden ``h``,
``L`` layers, query projection ``q = heads x head_dim``, key and value projections
``kv = num_query_groups x head_dim`` each (MQA: one group), MLP width ``f`` and the *padded*
vocabulary ``V`` (the logit GEMM runs over the padded rows)::

    per layer   qkv projection       h * (q + 2 kv)
                scores + context     q * s / 2 * 2       QK^T and (QK^T)V, causal: half the square
                output projection    q * h
                MLP                  m * h * f           GELU: m = 2 (h -> f, f -> h); gated
                                                         (SwiGLU): m = 3 (gate, up, down)
    logits                           h * V
    total       3 * 2 * (L * per layer + logits)         2 FLOPs per multiply-add; forward,
                                                         backward data-grad, backward weight-grad

What is deliberately not counted, as in Megatron-LM: embeddings (table lookups), layer norms,
softmax, GELU, dropout and biases (all O(s h), negligible next to the GEMMs), and activation
recompute. Recompute re-runs forward GEMMs, but MFU is *model* FLOPs by definition (PaLM,
arXiv:2204.02311 App. B): the work the model needs, not the work the hardware did, so a recipe
that recomputes shows a lower MFU rather than a higher FLOP count.

Every position of every row counts, padded or not, and a packed row counts as one causal sequence
of ``s`` (not as its documents' shorter triangles): that is what the GEMMs compute in megatron's
unfused attention, and it is Megatron-LM's convention, so MFU here is comparable with its logs.

No torch import: ``codetron slurm plan`` uses this on a login node.
"""
from __future__ import annotations

from codetron.megatron_ext import families
from codetron.megatron_ext.config import ModelConfig

# 2 FLOPs per multiply-add x 3 GEMMs per weight (forward, backward w.r.t. input, w.r.t. weight).
_TRAIN_FACTOR = 3 * 2


def padded_vocab(vocab: int, multiple: int) -> int:
    """Rows of the embedding/logit table: ``vocab`` rounded up to ``multiple``."""
    return -(-vocab // multiple) * multiple


def flops_per_token(model: ModelConfig, padded_vocab: int, seq_length: int | None = None) -> float:
    """Training FLOPs per position (forward + backward) of a ``seq_length`` row (default the model's).

    ``padded_vocab``: logit rows after padding to ``make_vocab_size_divisible_by`` (49152 for the
    StarCoder tokenizer). See the module docstring for the terms.
    """
    s = seq_length or model.seq_length
    h, L, f, d = model.hidden_size, model.num_layers, model.ffn, model.head_dim
    q = model.num_attention_heads * d
    kv = model.num_query_groups * d
    per_layer = h * (q + 2 * kv) + q * s + q * h + families.get(model.family).mlp_matrices() * h * f
    return float(_TRAIN_FACTOR * (L * per_layer + h * padded_vocab))


def flops_per_step(model: ModelConfig, padded_vocab: int, global_batch: int, seq_length: int | None = None) -> float:
    """Model FLOPs of one optimizer step: ``global_batch`` rows of ``seq_length`` positions
    (default the model's), forward and backward, as Megatron-LM's ``num_floating_point_operations``.

    MFU = flops_per_step / (step seconds x devices x peak FLOP/s per device).
    """
    s = seq_length or model.seq_length
    return global_batch * s * flops_per_token(model, padded_vocab, s)
