"""megatron-core GPT layer specs by implementation, and the activation functions families name.

Families choose the norm (:attr:`Family.normalization`) and whether a sliding window applies; this
module turns that and the resolved implementation (local, sdpa, transformer_engine) into a
``ModuleSpec``, changing only megatron-core's core-attention submodule where needed.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPTBigCode's and StarCoder2's ``gelu_pytorch_tanh``.

    A named function (not a partial) so configs pickle into checkpoints. Used whenever megatron's
    bias-GELU fusion is off: then megatron calls the activation as given, and ``F.gelu`` would be the
    exact (erf) GELU.
    """
    return F.gelu(x, approximate="tanh")


def with_core_attention(spec, core_attention):
    """A GPT layer spec with another core-attention module; nothing else changes."""
    attention = spec.submodules.self_attention
    attention = dataclasses.replace(
        attention, submodules=dataclasses.replace(attention.submodules, core_attention=core_attention))
    return dataclasses.replace(spec, submodules=dataclasses.replace(spec.submodules, self_attention=attention))


def gpt_layer_spec(impl: str, normalization: str = "LayerNorm", sliding_window: int | None = None):
    """The ModuleSpec of one transformer layer: TransformerEngine's (its norm follows the
    TransformerConfig's ``normalization``), the local spec with SDPA attention, or the local spec
    (with :class:`WindowedDotProductAttention` when there is a sliding window)."""
    from megatron.core.models.gpt import gpt_layer_specs

    if impl == "transformer_engine":
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    if impl == "sdpa":
        from codetron.megatron_ext.sdpa import sdpa_layer_spec

        return sdpa_layer_spec(normalization)
    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization=normalization)
    if sliding_window is not None:
        from codetron.megatron_ext.window import WindowedDotProductAttention

        spec = with_core_attention(spec, WindowedDotProductAttention)
    return spec
