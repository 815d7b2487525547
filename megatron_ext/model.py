"""Every model family (``codetron.megatron_ext.families``) as a megatron-core ``GPTModel``.

The architecture is expressed through megatron-core's own knobs, not a forked model file:
multi-query attention is ``num_query_groups=1`` (grouped-query attention: more groups), the
sliding window is ``window_size``; what differs between families (norm, biases, activation,
positions: ``position_embedding_type`` and ``rotary_base``) comes from the family's
``transformer_config_kwargs``, ``layer_spec`` and ``gpt_model_kwargs``. The layer implementation is a ``ModuleSpec``
(local torch modules on CPU; on GPU TransformerEngine modules, or the local spec with SDPA attention
where TE is absent). Fused kernels are used only where they import (``codetron.megatron_ext.fusions``). The model knows
nothing about ranks: TP/PP sizes arrive through the ``TransformerConfig`` built here.
"""
from __future__ import annotations

import torch

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import TRANSFORMER_IMPLS, DataConfig, ModelConfig, OptimConfig, ParallelConfig
from codetron.megatron_ext.layer_specs import gelu_tanh, with_core_attention  # noqa: F401  (public here)


def padded_vocab_size(vocab_size: int, model: ModelConfig, parallel: ParallelConfig) -> int:
    """Pad to a multiple of ``make_vocab_size_divisible_by`` -- deliberately *not* times TP, so the
    embedding has the same global shape in every layout and checkpoints reshard across TP sizes."""
    multiple = model.make_vocab_size_divisible_by
    padded = -(-vocab_size // multiple) * multiple
    if padded % parallel.tensor_model_parallel_size:
        raise ConfigError(
            f"padded vocab {padded} is not divisible by tensor_model_parallel_size "
            f"{parallel.tensor_model_parallel_size}; raise model.make_vocab_size_divisible_by")
    return padded


def have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # TE import can fail in many ways on CPU-only machines
        return False
    return torch.cuda.is_available()


def resolve_impl(model: ModelConfig) -> str:
    """The layer implementation a run uses: "auto" is TransformerEngine when it imports on a GPU, else
    SDPA attention on a GPU, else the local (pure torch) spec."""
    impl = model.transformer_impl
    if impl not in TRANSFORMER_IMPLS:
        raise ConfigError(f"model.transformer_impl must be one of {', '.join(TRANSFORMER_IMPLS)}, not {impl!r}")
    if impl == "auto":
        if have_transformer_engine():
            return "transformer_engine"
        return "sdpa" if torch.cuda.is_available() else "local"
    if impl == "transformer_engine" and not have_transformer_engine():
        raise ConfigError("model.transformer_impl=transformer_engine but TransformerEngine/CUDA is not available")
    return impl


def layer_spec(model: ModelConfig):
    """The ModuleSpec of one transformer layer: the family's, for the chosen implementation."""
    return families.get(model.family).layer_spec(model, resolve_impl(model))


def check_architecture(model: ModelConfig, tensor_parallel: int = 1) -> None:
    """One-line errors for what megatron-core would reject deep inside a model build (or, for the
    sliding window, silently ignore)."""
    family = families.get(model.family)  # one line listing the registry's names when unknown
    groups = model.num_query_groups
    if groups < 1 or model.num_attention_heads % groups:
        raise ConfigError(f"model.num_query_groups {groups} must divide num_attention_heads {model.num_attention_heads}")
    # megatron-core splits KV groups over TP ranks, or (TP > groups) replicates each group on
    # TP/groups ranks; anything else cannot be laid out.
    if groups % tensor_parallel and tensor_parallel % groups:
        raise ConfigError(f"model.num_query_groups {groups} (KV heads) cannot be split over tensor_model_parallel_size "
                          f"{tensor_parallel}: one must be a multiple of the other")
    if model.sliding_window is not None and model.sliding_window < 1:
        raise ConfigError(f"model.sliding_window must be >= 1 or None, not {model.sliding_window}")
    if model.sliding_window is not None and not family.sliding_window:
        windowed = " or ".join(f.name for f in families.all_families() if f.sliding_window)
        raise ConfigError(f"model.sliding_window needs model.family {windowed} ({family.title} has no sliding window)")
    family.check_architecture(model)


def transformer_config(model: ModelConfig, parallel: ParallelConfig, optim: OptimConfig | None = None,
                       data: DataConfig | None = None, announce: bool = False):
    """megatron-core TransformerConfig for the model's family (its settings over the generic ones).

    ``data`` tells whether batches carry their own attention masks (packed SFT), which rules out
    megatron's causal fused softmax; without it masks are assumed. ``announce``: print, from rank 0,
    why each fused kernel is off (see :mod:`codetron.megatron_ext.fusions`).
    """
    from megatron.core.transformer.transformer_config import TransformerConfig

    from codetron.megatron_ext import fusions
    from codetron.megatron_ext.window import window_size

    check_architecture(model, parallel.tensor_model_parallel_size)
    precision = optim.precision if optim else "fp32"
    # A window is a mask megatron's causal softmax kernel would ignore, like packed SFT's.
    explicit_masks = data is None or (data.mode == "sft" and data.pack) or model.sliding_window is not None
    fused = fusions.choose(resolve_impl(model), precision, explicit_masks)
    if announce:
        fusions.announce(fused)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    on_gpu = torch.cuda.is_available()
    recompute = {}
    if model.recompute == "full":
        recompute = dict(recompute_granularity="full", recompute_method="uniform",
                         recompute_num_layers=model.recompute_num_layers)
    elif model.recompute == "selective":
        recompute = dict(recompute_granularity="selective")
    kwargs = dict(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        ffn_hidden_size=model.ffn,
        kv_channels=model.head_dim,
        hidden_dropout=model.hidden_dropout,
        attention_dropout=model.attention_dropout,
        layernorm_epsilon=model.layernorm_epsilon,
        init_method_std=model.init_method_std,
        attention_softmax_in_fp32=True,
        apply_query_key_layer_scaling=False,
        window_size=window_size(model.sliding_window),
        **fused.transformer_config_kwargs(),
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        sequence_parallel=parallel.sequence_parallel,
        # Batched isend/irecv pairs deadlock-free on NCCL but corrupt interleaved PP on gloo
        # (grad norm blew up 10 -> 3000 in our measurements), so only batch on GPU.
        batch_p2p_comm=on_gpu and parallel.virtual_pipeline_model_parallel_size is None,
        use_cpu_initialization=not on_gpu,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **recompute,
    )
    kwargs.update(families.get(model.family).transformer_config_kwargs(model, fused))
    return TransformerConfig(**kwargs)


def build_model(model: ModelConfig, parallel: ParallelConfig, vocab_size: int, optim: OptimConfig | None = None,
                pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None,
                config=None):
    """One GPTModel chunk (the caller decides pre/post process and the VPP stage)."""
    from megatron.core.models.gpt import GPTModel

    from codetron.megatron_ext.initialization import layer_owned_spec

    config = config or transformer_config(model, parallel, optim)
    return GPTModel(
        config=config,
        transformer_layer_spec=layer_owned_spec(layer_spec(model)),
        vocab_size=padded_vocab_size(vocab_size, model, parallel),
        max_sequence_length=model.positions,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=model.tie_embeddings,
        vp_stage=vp_stage,
        **families.get(model.family).gpt_model_kwargs(model),
    )
