"""What a model family is: the :class:`Family` every module in this package defines as ``FAMILY``.

A family holds everything that differs between architectures -- the megatron-core layer spec and
``TransformerConfig`` settings, the Hugging Face config mapping both ways, and the tensor table
(:class:`TensorTable`: every megatron tensor with its HF name(s), shapes, TP axis and layout
transform) from which ``codetron convert`` plans both directions, checks both sides and counts
parameters. Code outside this package asks the registry (``families.get(model.family)``) and never
branches on a family's name.

No torch or megatron import at module level: ``codetron presets`` and ``codetron slurm plan`` use
families (parameter counts, FLOPs) on login nodes. Methods that build megatron objects import there.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from codetron.errors import CodetronError, ConfigError
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families.layouts import (EXTRA_STATE_MODULES, FINAL_NORM, LAYERS, OUTPUT_LAYER,
                                                    POSITION_TABLE, WORD_EMBEDDINGS, qkv_rows)


@dataclass(frozen=True, kw_only=True)
class TensorMap:
    """One megatron tensor and the Hugging Face tensor(s) it is."""

    megatron: str
    """Global key (``decoder.final_layernorm.weight``) or, with ``per_layer``, the suffix after
    ``decoder.layers.`` (``self_attention.linear_qkv.weight``)."""
    hf: tuple[str, ...]
    """HF name(s); per-layer names hold ``{i}`` for the layer number. Several names: the megatron
    tensor is those HF tensors fused (``to_hf`` splits, ``to_megatron`` fuses)."""
    shape: tuple[int, ...]
    """Megatron shape, without the layer axis for per-layer tensors; vocab tensors have the padded rows."""
    hf_shapes: tuple[tuple[int, ...], ...]
    """Shape of each HF tensor (vocab tensors: ``vocab_size`` rows)."""
    per_layer: bool = False
    """Stacked over layers on axis 0 in the checkpoint (``decoder.layers.*``)."""
    tp_axis: int | None = None
    """Axis tensor-parallel ranks split (of the per-layer tensor); None = replicated."""
    vocab: bool = False
    """Rows are the vocabulary: megatron pads them, HF has exactly ``vocab_size`` (streamed in row blocks)."""
    to_hf: Callable[[Any], tuple] | None = None
    """Megatron tensor (one layer) -> the HF tensors, in ``hf`` order; None = the same tensor."""
    to_megatron: Callable[..., Any] | None = None
    """The HF tensors (positional, in ``hf`` order) -> the megatron tensor; None = the same tensor."""

    @property
    def key(self) -> str:
        """The global megatron key (per-layer tensors: all layers stacked)."""
        return LAYERS + self.megatron if self.per_layer else self.megatron

    def hf_names(self, layer: int | None = None) -> tuple[str, ...]:
        return tuple(n.format(i=layer) for n in self.hf) if self.per_layer else self.hf


@dataclass(frozen=True, kw_only=True)
class TensorTable:
    """A model's tensors in write order: ``before`` the layers, each layer's, ``after`` the layers."""

    before: tuple[TensorMap, ...]
    """Whole-model tensors written before the layers (embeddings, position table)."""
    layer: tuple[TensorMap, ...]
    """Per-layer tensors, in the order each layer's HF tensors are written."""
    after: tuple[TensorMap, ...]
    """Whole-model tensors after the layers (final norm, untied output)."""
    num_layers: int
    """Layers (the stacked axis of every per-layer tensor)."""
    extra_state_modules: tuple[str, ...] = EXTRA_STATE_MODULES
    """Per-layer modules whose (empty) ``_extra_state`` objects a checkpoint holds."""

    @property
    def entries(self) -> tuple[TensorMap, ...]:
        return self.before + self.layer + self.after

    def get(self, megatron: str) -> TensorMap:
        """The entry of a megatron key or per-layer suffix."""
        for e in self.entries:
            if megatron in (e.megatron, e.key):
                return e
        raise KeyError(megatron)

    def megatron_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every global megatron key -> its stored shape (per-layer tensors with the layer axis)."""
        return {e.key: ((self.num_layers, *e.shape) if e.per_layer else e.shape) for e in self.entries}

    def hf_tensors(self) -> dict[str, tuple[int, ...]]:
        """Every HF tensor name -> shape, in write order."""
        out: dict[str, tuple[int, ...]] = {}
        for e in self.before:
            out.update(zip(e.hf_names(), e.hf_shapes))
        for i in range(self.num_layers):
            for e in self.layer:
                out.update(zip(e.hf_names(i), e.hf_shapes))
        for e in self.after:
            out.update(zip(e.hf_names(), e.hf_shapes))
        return out

    def extra_state_keys(self) -> list[str]:
        L = self.num_layers
        return [f"{LAYERS}{mod}._extra_state/shard_{i}_{L}" for i in range(L) for mod in self.extra_state_modules]


def megatron_layer_shapes(model: ModelConfig, *, linear_bias: bool = True, qkv_bias: bool = True,
                          norm_bias: bool = True, gated_mlp: bool = False) -> dict[str, tuple[int, ...]]:
    """Per-layer megatron tensor suffix -> shape (no layer axis), in checkpoint order, for megatron-core's
    GPT layer (fused QKV with the input norm, fc1 with the pre-MLP norm). The one place these shapes are
    written: every family's table and parameter count come from here."""
    h, f, hd = model.hidden_size, model.ffn, model.head_dim
    q = model.num_attention_heads * hd
    qkv = qkv_rows(model.num_attention_heads, model.num_query_groups, hd)
    fc1 = 2 * f if gated_mlp else f  # SwiGLU: [gate; up] in one matrix
    out: dict[str, tuple[int, ...] | None] = {
        "self_attention.linear_qkv.layer_norm_weight": (h,),
        "self_attention.linear_qkv.layer_norm_bias": (h,) if norm_bias else None,
        "self_attention.linear_qkv.weight": (qkv, h),
        "self_attention.linear_qkv.bias": (qkv,) if qkv_bias else None,
        "self_attention.linear_proj.weight": (h, q),
        "self_attention.linear_proj.bias": (h,) if linear_bias else None,
        "mlp.linear_fc1.layer_norm_weight": (h,),
        "mlp.linear_fc1.layer_norm_bias": (h,) if norm_bias else None,
        "mlp.linear_fc1.weight": (fc1, h),
        "mlp.linear_fc1.bias": (fc1,) if linear_bias else None,
        "mlp.linear_fc2.weight": (h, f),
        "mlp.linear_fc2.bias": (h,) if linear_bias else None,
    }
    return {k: v for k, v in out.items() if v is not None}


TP_AXES: dict[str, int] = {
    "self_attention.linear_qkv.weight": 0, "self_attention.linear_qkv.bias": 0,
    "mlp.linear_fc1.weight": 0, "mlp.linear_fc1.bias": 0,
    "self_attention.linear_proj.weight": 1, "mlp.linear_fc2.weight": 1,
}
"""Per-layer suffix -> the axis TP ranks split (column-parallel rows, row-parallel columns); absent = replicated."""


def layer_entries(shapes: dict[str, tuple[int, ...]], hf_names: dict[str, str | tuple[str, ...]],
                  transforms: dict[str, tuple[Callable, Callable, tuple[tuple[int, ...], ...]]] | None = None
                  ) -> tuple[TensorMap, ...]:
    """Per-layer entries from megatron shapes (:func:`megatron_layer_shapes`) and the family's HF names
    (``{i}`` = layer). ``transforms``: suffix -> (to_hf, to_megatron, HF shapes) for the special cases."""
    out = []
    for suffix, shape in shapes.items():
        names = hf_names[suffix]
        names = (names,) if isinstance(names, str) else tuple(names)
        to_hf, to_meg, hf_shapes = (transforms or {}).get(suffix, (None, None, (shape,)))
        out.append(TensorMap(megatron=suffix, hf=names, shape=shape, hf_shapes=hf_shapes, per_layer=True,
                             tp_axis=TP_AXES.get(suffix), to_hf=to_hf, to_megatron=to_meg))
    return tuple(out)


def embedding_entry(hf: str, model: ModelConfig, padded_vocab: int) -> TensorMap:
    h = model.hidden_size
    return TensorMap(megatron=WORD_EMBEDDINGS, hf=(hf,), shape=(padded_vocab, h), hf_shapes=((model.vocab_size, h),),
                     tp_axis=0, vocab=True)


def output_entry(hf: str, model: ModelConfig, padded_vocab: int) -> TensorMap:
    """The untied output matrix (only in tables of untied models)."""
    h = model.hidden_size
    return TensorMap(megatron=OUTPUT_LAYER, hf=(hf,), shape=(padded_vocab, h), hf_shapes=((model.vocab_size, h),),
                     tp_axis=0, vocab=True)


def final_norm_entries(hf_prefix: str, model: ModelConfig, bias: bool = True) -> tuple[TensorMap, ...]:
    """``decoder.final_layernorm.{weight,bias}`` -> ``{hf_prefix}.{weight,bias}``."""
    h = model.hidden_size
    parts = ("weight", "bias") if bias else ("weight",)
    return tuple(TensorMap(megatron=f"{FINAL_NORM}.{p}", hf=(f"{hf_prefix}.{p}",), shape=(h,), hf_shapes=((h,),))
                 for p in parts)


@dataclass(frozen=True, kw_only=True)
class Family:
    """One model family: subclass it, override what differs, and set ``FAMILY = YourFamily(...)`` in a
    module of this package named like ``name``. The defaults are megatron-core's GPT layer with
    LayerNorm, biases on every linear layer and tanh GELU (what GPTBigCode and StarCoder2 share)."""

    name: str
    """``model.family`` value and the HF ``model_type`` written by to-hf (the module's name)."""
    title: str
    """Human name in messages ("GPTBigCode")."""
    hf_architecture: str
    """``architectures[0]`` of the config.json to-hf writes (``GPTBigCodeForCausalLM``)."""
    hf_model_types: tuple[str, ...] = ()
    """HF ``model_type`` values from-hf reads as this family; empty = just ``name``."""
    position_embedding_type: str = "learned_absolute"
    """megatron-core GPTModel's ``position_embedding_type``: learned_absolute (a position table) or rope."""
    normalization: str = "LayerNorm"
    """megatron-core ``normalization`` (LayerNorm or RMSNorm)."""
    gated_mlp: bool = False
    """fc1 holds [gate; up] (SwiGLU): three MLP matrices instead of two (FLOPs, shapes)."""
    sliding_window: bool = False
    """Whether ``model.sliding_window`` is allowed (the HF config has a sliding window)."""
    hf_dropout_keys: tuple[str, str] = ("resid_pdrop", "embd_pdrop")
    """HF config keys of the residual and the embedding dropout (for from-hf's dropout note)."""
    ignored_hf: tuple[str, ...] = ()
    """Suffixes of HF tensors from-hf ignores (non-parameter buffers old checkpoints carry)."""
    untied_output_hf: str = "lm_head.weight"
    """The HF output matrix (absent, or an alias of the embeddings, when tied)."""

    # ---- identity -------------------------------------------------------------------------------

    @property
    def model_types(self) -> tuple[str, ...]:
        return self.hf_model_types or (self.name,)

    @property
    def has_position_table(self) -> bool:
        return self.position_embedding_type == "learned_absolute"

    # ---- megatron-core --------------------------------------------------------------------------

    def check_architecture(self, model: ModelConfig) -> None:
        """One-line ConfigErrors for settings this family cannot express (after the generic checks).
        The default: unscaled RoPE (or a position table) and biases on every linear layer."""
        if model.rope_scaling is not None:
            raise ConfigError(f"model.rope_scaling {model.rope_scaling!r}: family {self.name} has no scaled RoPE")
        if model.qkv_bias is False:
            raise ConfigError(f"model.qkv_bias false: family {self.name} has biases on every linear layer")

    def transformer_config_kwargs(self, model: ModelConfig, fused) -> dict[str, Any]:
        """``TransformerConfig`` settings of the family; ``fused`` is :func:`fusions.choose`'s decision
        (the caller merges these over the generic and fusion settings, so a family may override them)."""
        import torch.nn.functional as F

        from codetron.megatron_ext.layer_specs import gelu_tanh

        return dict(
            normalization=self.normalization,
            add_bias_linear=True,
            add_qkv_bias=True,
            gated_linear_unit=False,
            # megatron's fused bias-GELU is keyed on F.gelu but computes the tanh form (bias_gelu_impl;
            # tests/train/test_fusions.py checks it), so it is tanh GELU either way.
            activation_func=F.gelu if fused.bias_gelu else gelu_tanh,
        )

    def layer_spec(self, model: ModelConfig, impl: str):
        """The ModuleSpec of one transformer layer for implementation ``impl`` (already resolved)."""
        from codetron.megatron_ext.layer_specs import gpt_layer_spec

        return gpt_layer_spec(impl, self.normalization, model.sliding_window)

    def gpt_model_kwargs(self, model: ModelConfig) -> dict[str, Any]:
        """Family settings of megatron-core's ``GPTModel`` (positions)."""
        return dict(position_embedding_type=self.position_embedding_type, rotary_base=model.rotary_base)

    # ---- tensors --------------------------------------------------------------------------------

    def tensors(self, model: ModelConfig, padded_vocab: int) -> TensorTable:
        """Every tensor of ``model`` (vocab ``model.vocab_size``, padded to ``padded_vocab``)."""
        raise NotImplementedError

    def num_parameters(self, model: ModelConfig, vocab: int | None = None) -> int:
        """Parameters of the HF model (``vocab`` rows, default ``model.vocab_size``): the tensor table's sum."""
        v = vocab or model.vocab_size or 0
        sized = dataclasses.replace(model, vocab_size=v)
        return sum(math.prod(s) for s in self.tensors(sized, v).hf_tensors().values())

    def mlp_matrices(self) -> int:
        """Weight matrices of one MLP (GEMMs per token), for FLOPs."""
        return 3 if self.gated_mlp else 2

    # ---- conversion -----------------------------------------------------------------------------

    def check_convertible(self, model: ModelConfig, where: str) -> None:
        """to-hf, before reading weights: what the HF architecture cannot express."""

    def check_checkpoint(self, keys, model: ModelConfig, where: str) -> None:
        """to-hf, after the expected keys were found: ``keys`` holds every key of the checkpoint;
        reject what marks another family's checkpoint (by default: a position table in a RoPE model)."""
        if not self.has_position_table and POSITION_TABLE in keys:
            raise CodetronError(f"{where}: checkpoint has a learned position table ({POSITION_TABLE}) but "
                                f"model.family is {self.name} ({self.position_embedding_type}, no table); it is a "
                                f"checkpoint of a family with learned positions")

    def to_hf_config(self, model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None,
                     pad: int | None, dtype: str) -> dict[str, Any]:
        """config.json values (``model_type`` included) for transformers' config class."""
        raise NotImplementedError

    def hf_config_extras(self, model: ModelConfig) -> dict[str, Any]:
        """Top-level keys added to config.json after transformers wrote it (for older readers)."""
        return {}

    def from_hf_config(self, cfg: dict[str, Any], where: str) -> ModelConfig:
        """The architecture of an HF config.json, or a one-line CodetronError naming ``where`` and the key."""
        raise NotImplementedError


# Activations that are megatron's gelu_tanh (``gelu_new`` is the same tanh formula).
TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new")


def check_activation(act: str, key: str, where: str, allowed: tuple[str, ...] = TANH_GELUS,
                     what: str = "tanh GELU") -> None:
    if act not in allowed:
        raise CodetronError(f"{where}: {key} {act!r} is unsupported (codetron models use {what}: "
                            f"{' or '.join(allowed)})")


def attention_shape(get: Callable[..., Any], where: str, hidden_default: Any = None,
                    heads_default: Any = None) -> tuple[int, int, int]:
    """(hidden_size, num_attention_heads, num_key_value_heads) of a GQA config.json, read with ``get``
    (``cfg.get`` with the family's defaults); one line for a shape megatron-core cannot hold."""
    hidden, heads = int(get("hidden_size", hidden_default)), int(get("num_attention_heads", heads_default))
    groups = int(get("num_key_value_heads", heads))
    if hidden % heads:
        raise CodetronError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if get("head_dim") is not None and int(get("head_dim")) != hidden // heads:
        raise CodetronError(f"{where}: head_dim {get('head_dim')} != hidden_size / num_attention_heads "
                            f"({hidden // heads}) is unsupported")
    if heads % groups:
        raise CodetronError(f"{where}: num_key_value_heads {groups} does not divide num_attention_heads {heads}")
    return hidden, heads, groups


def rope_theta(cfg: dict, where: str) -> float:
    """transformers 5 nests RoPE under ``rope_parameters``; released checkpoints have ``rope_theta``.
    Only the default (unscaled) RoPE; a family with scaled RoPE reads ``rope_type`` itself."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise CodetronError(f"{where}: rope_type {kind!r} (scaled RoPE) is unsupported; megatron's rotary "
                            f"embedding here is the default one")
    return float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
