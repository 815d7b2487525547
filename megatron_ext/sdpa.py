"""``model.transformer_impl: sdpa`` -- megatron-core's local layer spec with its core attention
computed by ``torch.nn.functional.scaled_dot_product_attention``.

A GPU without TransformerEngine otherwise runs megatron's unfused ``DotProductAttention``, which
materialises ``[b, heads, s, s]`` scores (4 GiB per layer for 16 heads at s=8192 in bf16) and needs
fused-softmax kernels the megatron-core wheel does not ship. SDPA picks a flash or memory-efficient
kernel on CUDA and the exact math kernel on CPU, so this spec is both fast on a GPU and checkable
against the local spec on CPU.

It is a drop-in for ``DotProductAttention`` (same constructor, same ``[s, b, heads, d]`` inputs per
TP rank, same ``[s, b, heads*d]`` output, no parameters, so checkpoints are interchangeable with the
local spec) and keeps its semantics:

* no mask -> causal (``is_causal``: flash attention stays usable);
* a mask ``[b|1, 1, s|1, s]`` (True = masked, megatron's convention) *replaces* the causal mask, as
  in the local spec -- packed SFT's block-diagonal causal mask and padding masks arrive this way;
  a query row with every key masked gets the mean of the values, which is what megatron's
  ``masked_fill(-10000)`` softmax yields (SDPA alone returns zeros or NaN there, by torch version
  and kernel);
* a sliding window (``config.window_size``, StarCoder2) is a mask too, applied on top of the batch's
  mask or of the causal one (:mod:`codetron.megatron_ext.window`);
* MQA/GQA: key/value heads are shared by consecutive query heads, as in megatron's attention. They
  are expanded to one per query head before the call: flash and memory-efficient kernels take
  that on every torch version, while ``enable_gqa`` would push a masked call to the math kernel.
  The copy is small next to the scores it avoids (k and v at s=8192, 16 heads of 128: 64 MiB bf16);
* attention dropout inside megatron's model-parallel RNG tracker, scale ``1/sqrt(head_dim)``
  (or ``config.softmax_scale``).

``selective`` recompute wraps this module like the local one (megatron checkpoints core attention).
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from codetron.errors import ConfigError
from codetron.megatron_ext.window import with_window


class SDPADotProductAttention(DotProductAttention):
    """megatron-core core attention through ``F.scaled_dot_product_attention`` (see module docstring)."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type, attention_dropout=None,
                 softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config, layer_number=layer_number, attn_mask_type=attn_mask_type,
                         attention_type=attention_type, attention_dropout=attention_dropout,
                         softmax_scale=softmax_scale, cp_comm_type=cp_comm_type, pg_collection=pg_collection)
        if config.softmax_type != "vanilla":
            raise ConfigError("model.transformer_impl=sdpa supports plain softmax attention only (no softmax offsets)")
        # None unless this layer has a window (megatron decides per layer from the config)
        self.window = self.scale_mask_softmax.window_size
        # With query-key layer scaling megatron divides the scale by the layer number and its softmax
        # multiplies it back in fp32: the net scale is the unscaled one.
        self.sdpa_scale = self.softmax_scale * (self.layer_number if config.apply_query_key_layer_scaling else 1)

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is not None:
            raise ConfigError("model.transformer_impl=sdpa takes packed rows as a block mask, not PackedSeqParams "
                              "(the thd layout is TransformerEngine's)")
        if attention_bias is not None:
            raise ConfigError("model.transformer_impl=sdpa does not take an attention bias")
        # [s, b, heads, d] -> [b, heads, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        groups = q.size(1) // k.size(1)
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        dropout_p = self.attention_dropout.p if self.training else 0.0
        dead = None
        if self.window is not None:
            attention_mask = with_window(attention_mask, self.window, q.size(2), k.size(2), q.device)
        if attention_mask is None:
            mask = None
            # As megatron's softmax: a single query row (KV-cache decoding) sees every key.
            causal = self.attn_mask_type == AttnMaskType.causal and q.size(2) > 1
        else:
            causal = False
            dead = attention_mask.all(dim=-1, keepdim=True)  # [b|1, 1, s|1, 1]
            mask = ~attention_mask | dead  # SDPA: True = attend; fully masked rows attend everywhere
        # TP ranks hold different heads: each draws its own dropout pattern from megatron's
        # model-parallel RNG, as the local spec does (with sequence parallel, from the default one).
        rng = (tensor_parallel.get_cuda_rng_tracker().fork() if dropout_p > 0 and not self.config.sequence_parallel
               else contextlib.nullcontext())
        with rng:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                                 scale=self.sdpa_scale)
        if dead is not None:
            out = torch.where(dead, v.mean(dim=2, keepdim=True).to(out.dtype), out)
        # [b, heads, s, d] -> [s, b, heads * d]
        b, n, s, d = out.shape
        return out.permute(2, 0, 1, 3).reshape(s, b, n * d)


def sdpa_layer_spec(normalization: str = "LayerNorm"):
    """megatron-core's local GPT layer spec (torch LayerNorm/RMSNorm, or apex's when installed) with
    :class:`SDPADotProductAttention` as core attention; nothing else changes."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    spec = get_gpt_layer_local_spec(normalization=normalization)
    attention = spec.submodules.self_attention
    attention = dataclasses.replace(
        attention, submodules=dataclasses.replace(attention.submodules, core_attention=SDPADotProductAttention))
    return dataclasses.replace(spec, submodules=dataclasses.replace(spec.submodules, self_attention=attention))
