"""The Llama architecture: ``LlamaForCausalLM`` (CodeLlama, DeepSeek-Coder) and ``Qwen2ForCausalLM``
(Qwen2.5-Coder), which is the same layer with biases on q, k and v (``model.qkv_bias``; a Qwen2 config is
read with it on, and a model with it on is written as Qwen2).

megatron-core's GPT layer with its own knobs, no forked model file: RMSNorm is ``normalization=
"RMSNorm"`` (the local spec's ``WrappedTorchNorm`` builds ``torch.nn.RMSNorm``; TransformerEngine reads
the same field), SwiGLU is ``gated_linear_unit`` with ``F.silu``, no linear biases (``add_bias_linear=
False``; Qwen2: ``add_qkv_bias``), GQA is ``num_query_groups``, RoPE's HF scaling types are GPTModel's
``seq_len_interpolation_factor`` (``linear``: positions divided by the factor, the same angles as HF
dividing the inverse frequencies) and ``rope_scaling`` (``llama3``). What differs from the HF state dict
is named here and tested in tests/convert/test_llama.py:

* fused QKV: megatron keeps, per KV group, its query heads then one key and one value head; HF keeps
  ``q_proj``/``k_proj``/``v_proj`` (``layouts.qkv_split`` / ``qkv_merge``, as StarCoder2);
* fused gate/up: megatron's ``linear_fc1`` is ``[gate; up]`` (its MLP computes ``silu(first half) *
  second half``, and the dist checkpoint stores that global order in every TP layout: megatron's
  swiglu sharded factory); HF keeps ``gate_proj`` and ``up_proj`` (:func:`glu_split` / :func:`glu_merge`);
* RMSNorm has a weight only; vocab padding and tied output as in every family.

RoPE that megatron-core's ``RotaryEmbedding`` cannot compute -- ``dynamic``, ``yarn``, ``longrope``,
``llama3`` with other constants than the 1 / 4 / 8192 it hard-codes, partial rotary -- is refused in
one line, never converted into a model that silently computes something else. So are Llama's
``attention_bias``/``mlp_bias`` (megatron-core has biases on every linear layer or on q/k/v only) and
Qwen2's sliding window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from codetron.errors import CodetronError, ConfigError
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families import layouts
from codetron.megatron_ext.families.base import (Family, TensorTable, attention_shape, check_activation,
                                                 embedding_entry, final_norm_entries, layer_entries,
                                                 megatron_layer_shapes, output_entry)

HF_LAYER = "model.layers.{i}."
"""Prefix of layer ``i`` in a LlamaForCausalLM / Qwen2ForCausalLM state dict."""

QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
GLU = ("mlp.gate_proj", "mlp.up_proj")

LAYER_NAMES: dict[str, str | tuple[str, ...]] = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_qkv.weight": tuple(f"{m}.weight" for m in QKV),  # special case: qkv_split
    "self_attention.linear_qkv.bias": tuple(f"{m}.bias" for m in QKV),  # Qwen2 only; qkv_split
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
    "mlp.linear_fc1.weight": tuple(f"{m}.weight" for m in GLU),  # special case: glu_split
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
"""Per-layer megatron key suffix -> per-layer HF suffix (a tuple: one megatron tensor is several HF ones)."""

QWEN2 = "qwen2"
"""The HF model_type of the Llama layer with QKV biases."""

ARCHITECTURES = {"llama": "LlamaForCausalLM", QWEN2: "Qwen2ForCausalLM"}

HF_DEFAULTS = {
    "llama": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "max_position_embeddings": 2048, "vocab_size": 32000, "tie_word_embeddings": False},
    QWEN2: {"hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "max_position_embeddings": 32768, "vocab_size": 151936,
            "tie_word_embeddings": False},
}
"""transformers' LlamaConfig / Qwen2Config defaults, for keys a config.json leaves out."""

ROPE_SCALINGS = ("linear", "llama3")
"""``model.rope_scaling["rope_type"]`` values megatron-core computes besides plain RoPE (None)."""

LLAMA3_CONSTANTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
"""The llama3 scaling constants megatron-core 0.16 hard-codes (``RotaryEmbedding._apply_scaling``)."""


def glu_split(t) -> tuple:
    """megatron's fc1 ``[gate; up]`` -> HF ``(gate_proj, up_proj)``."""
    gate, up = t.chunk(2, dim=0)
    return gate, up


def glu_merge(gate, up):
    """Inverse of :func:`glu_split`."""
    out = gate.new_empty((2 * gate.shape[0], *gate.shape[1:]))
    out[: gate.shape[0]] = gate
    out[gate.shape[0]:] = up
    return out


def _prefixed(names: str | tuple[str, ...]) -> str | tuple[str, ...]:
    return HF_LAYER + names if isinstance(names, str) else tuple(HF_LAYER + n for n in names)


def rope_scaling(rope: dict[str, Any], where: str, cfg: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """HF's RoPE scaling dict (``rope_parameters`` / ``rope_scaling``) as ``model.rope_scaling``: None for
    plain RoPE, else ``{"rope_type", "factor"}`` (+ llama3's constants), or a one-line error naming
    ``where`` for what megatron-core cannot compute. ``cfg``: the config.json, for llama3's default
    original_max_position_embeddings (its max_position_embeddings, as transformers reads it)."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
        raise CodetronError(f"{where}: partial_rotary_factor != 1 is unsupported (codetron rotates whole heads)")
    if kind == "default":
        return None
    if kind not in ROPE_SCALINGS:
        raise CodetronError(f"{where}: rope_type {kind!r} is unsupported; megatron-core's rotary embedding computes "
                            f"default, {' and '.join(ROPE_SCALINGS)} RoPE")
    factor = float(rope.get("factor", 1.0))
    if factor < 1.0:
        raise CodetronError(f"{where}: RoPE scaling factor {factor} must be >= 1")
    out: dict[str, Any] = {"rope_type": kind, "factor": factor}
    if kind == "llama3":
        for key, want in LLAMA3_CONSTANTS.items():
            got = rope.get(key, (cfg or {}).get("max_position_embeddings") if key.startswith("original") else None)
            if got is None or float(got) != want:
                raise CodetronError(f"{where}: llama3 RoPE with {key} {got} is unsupported; megatron-core 0.16 "
                                    f"hard-codes {key} {want:g}")
        out.update(LLAMA3_CONSTANTS)
    return out


def read_rope(cfg: dict, where: str) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, model.rope_scaling)`` of a config.json: transformers 5's ``rope_parameters``, or
    released checkpoints' top-level ``rope_theta`` and ``rope_scaling``."""
    rope = dict(cfg.get("rope_scaling") or {})
    rope.update(cfg.get("rope_parameters") or {})
    if "partial_rotary_factor" in cfg:
        rope.setdefault("partial_rotary_factor", cfg["partial_rotary_factor"])
    theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    return theta, rope_scaling(rope, where, cfg)


def rope_parameters(model: ModelConfig) -> dict[str, Any]:
    """transformers 5's ``rope_parameters`` of the model."""
    return {"rope_type": "default", "rope_theta": model.rotary_base, **(model.rope_scaling or {})}


@dataclass(frozen=True, kw_only=True)
class Llama(Family):
    """RMSNorm, SwiGLU, RoPE (linear / llama3 scaling), GQA, untied output by default, no biases but
    Qwen2's on q/k/v."""

    hf_defaults: ClassVar[dict[str, Any]] = HF_DEFAULTS["llama"]
    """transformers' config defaults of ``hf_architecture`` (Qwen2's: ``HF_DEFAULTS``), for keys a config.json
    leaves out; a subclass for another architecture of the same layer (docs/extending.md) gives its own."""

    def check_architecture(self, model: ModelConfig) -> None:
        if model.rope_scaling is not None:
            if not isinstance(model.rope_scaling, dict):
                raise ConfigError(f"model.rope_scaling must be a mapping such as {{rope_type: linear, factor: 4.0}}, "
                                  f"not {model.rope_scaling!r}")
            try:
                rope_scaling(model.rope_scaling, "model.rope_scaling")
            except CodetronError as err:
                raise ConfigError(str(err)) from None

    def qkv_bias(self, model: ModelConfig) -> bool:
        """Llama: none; Qwen2 (``model.qkv_bias`` true): on q, k and v."""
        return bool(model.qkv_bias)

    def transformer_config_kwargs(self, model: ModelConfig, fused) -> dict[str, Any]:
        import torch.nn.functional as F

        # megatron's bias_activation_fusion fuses SiLU-gated units (bias_swiglu_impl) as it fuses GELU:
        # the fusion decision made for bias-GELU applies unchanged.
        return dict(normalization="RMSNorm", add_bias_linear=False, add_qkv_bias=self.qkv_bias(model),
                    gated_linear_unit=True, activation_func=F.silu)

    def gpt_model_kwargs(self, model: ModelConfig) -> dict[str, Any]:
        rope = model.rope_scaling or {}
        kind, factor = rope.get("rope_type"), float(rope.get("factor", 1.0))
        return dict(
            position_embedding_type="rope",
            rotary_base=model.rotary_base,
            rope_scaling=kind == "llama3",
            rope_scaling_factor=factor if kind == "llama3" else 8.0,  # 8.0: GPTModel's default, unused
            seq_len_interpolation_factor=factor if kind == "linear" else None,
        )

    def tensors(self, model: ModelConfig, padded_vocab: int) -> TensorTable:
        heads, groups, hd, h, f = (model.num_attention_heads, model.num_query_groups, model.head_dim,
                                   model.hidden_size, model.ffn)
        q, kv = heads * hd, groups * hd

        def qkv_to_hf(t):
            return layouts.qkv_split(t, heads, groups, hd)

        def qkv_to_megatron(q_, k_, v_):
            return layouts.qkv_merge(q_, k_, v_, heads, groups, hd)

        special = {"self_attention.linear_qkv.weight": (qkv_to_hf, qkv_to_megatron, ((q, h), (kv, h), (kv, h))),
                   "self_attention.linear_qkv.bias": (qkv_to_hf, qkv_to_megatron, ((q,), (kv,), (kv,))),
                   "mlp.linear_fc1.weight": (glu_split, glu_merge, ((f, h), (f, h)))}
        shapes = megatron_layer_shapes(model, linear_bias=False, qkv_bias=self.qkv_bias(model), norm_bias=False,
                                       gated_mlp=True)
        layer = layer_entries(shapes, {s: _prefixed(n) for s, n in LAYER_NAMES.items()}, special)
        after = final_norm_entries("model.norm", model, bias=False)
        if not model.tie_embeddings:
            after += (output_entry(self.untied_output_hf, model, padded_vocab),)
        return TensorTable(before=(embedding_entry("model.embed_tokens.weight", model, padded_vocab),), layer=layer,
                           after=after, num_layers=model.num_layers)

    def check_convertible(self, model: ModelConfig, where: str) -> None:
        layouts.check_kv_groups(model.num_attention_heads, model.num_query_groups, 1, where)

    def to_hf_config(self, model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str) -> dict[str, Any]:
        qwen2 = self.qkv_bias(model)
        out = {
            "architectures": [ARCHITECTURES[QWEN2] if qwen2 else self.hf_architecture],
            "model_type": QWEN2 if qwen2 else self.name,
            "vocab_size": vocab_size,
            "hidden_size": model.hidden_size,
            "intermediate_size": model.ffn,
            "num_hidden_layers": model.num_layers,
            "num_attention_heads": model.num_attention_heads,
            "num_key_value_heads": model.num_query_groups,
            "hidden_act": "silu",
            "max_position_embeddings": model.positions,
            "rms_norm_eps": model.layernorm_epsilon,
            "initializer_range": model.init_method_std,
            "rope_parameters": rope_parameters(model),
            "attention_dropout": model.attention_dropout,
            "use_cache": True,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": pad,
            "tie_word_embeddings": model.tie_embeddings,
            "dtype": dtype,
        }
        if qwen2:  # biases on q/k/v are implied; its window stays off
            out.update(use_sliding_window=False, max_window_layers=model.num_layers)
        else:
            out.update(attention_bias=False, mlp_bias=False, head_dim=model.head_dim)
        return out

    def hf_config_extras(self, model: ModelConfig) -> dict[str, Any]:
        # transformers 5 writes RoPE only inside ``rope_parameters``; 4.x (which evaluation harnesses pin)
        # reads the top-level ``rope_theta`` and ``rope_scaling`` and would silently run unscaled RoPE at
        # base 10000 without them.
        scaling = None
        if model.rope_scaling:
            scaling = {**model.rope_scaling, "type": model.rope_scaling["rope_type"]}
        return {"rope_theta": model.rotary_base, "rope_scaling": scaling}

    def from_hf_config(self, cfg: dict[str, Any], where: str) -> ModelConfig:
        qwen2 = cfg.get("model_type") == QWEN2
        defaults = HF_DEFAULTS[QWEN2] if qwen2 else self.hf_defaults

        def get(key, default=None):
            value = cfg.get(key)
            return defaults.get(key, default) if value is None else value

        check_activation(get("hidden_act", "silu"), "hidden_act", where, allowed=("silu",), what="SwiGLU")
        if not qwen2:
            for key in ("attention_bias", "mlp_bias"):
                if get(key, False):
                    raise CodetronError(f"{where}: {key}=true is unsupported (megatron-core has biases on every "
                                        f"linear layer or on q/k/v only; Llama checkpoints have none)")
        if get("use_sliding_window", False):
            raise CodetronError(f"{where}: use_sliding_window=true is unsupported (Qwen2's window covers the layers "
                                f"from max_window_layers on; Qwen2.5-Coder checkpoints have it off)")
        hidden, heads, groups = attention_shape(get, where)
        theta, scaling = read_rope(cfg, where)
        pos = int(get("max_position_embeddings"))
        return ModelConfig(
            family=self.name,
            num_layers=int(get("num_hidden_layers")),
            hidden_size=hidden,
            num_attention_heads=heads,
            num_query_groups=groups,
            ffn_hidden_size=int(get("intermediate_size")),
            seq_length=pos,
            max_position_embeddings=pos,
            rotary_base=theta,
            rope_scaling=scaling,
            qkv_bias=True if qwen2 else None,  # None: the family's own (Llama: no biases), as presets say it
            vocab_size=int(get("vocab_size")),
            layernorm_epsilon=float(get("rms_norm_eps", 1e-6)),
            hidden_dropout=0.0,  # Llama and Qwen2 have no residual or embedding dropout
            attention_dropout=float(get("attention_dropout", 0.0)),
            init_method_std=float(get("initializer_range", 0.02)),
            tie_embeddings=bool(get("tie_word_embeddings", False)),
        )


FAMILY = Llama(
    name="llama",
    title="Llama",
    hf_architecture="LlamaForCausalLM",
    hf_model_types=("llama", QWEN2),
    position_embedding_type="rope",
    normalization="RMSNorm",
    gated_mlp=True,
    # no residual or embedding dropout in either architecture: the same key twice never differs
    hf_dropout_keys=("attention_dropout", "attention_dropout"),
    # transformers < 4.40 stored each layer's RoPE frequencies as a buffer in some checkpoints
    ignored_hf=("rotary_emb.inv_freq",),
)
