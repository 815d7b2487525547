"""Configuration checks that must fail in one line *before* any process group can hang.

Used by `codetron train` on every rank before `init_process_group`, and by `codetron slurm` before
submitting, so a bad layout never costs a queue wait.
"""
from __future__ import annotations

from pathlib import Path

from codetron.errors import ConfigError
from codetron.megatron_ext.config import TRANSFORMER_IMPLS, TrainConfig
from codetron.megatron_ext.datapath import data_prefixes
from codetron.megatron_ext.presets import MODEL_PRESETS, RECIPES


def validate(cfg: TrainConfig, world_size: int, check_data: bool = True) -> None:
    m, p, o = cfg.model, cfg.parallel, cfg.optim
    if cfg.preset is not None and cfg.preset not in MODEL_PRESETS:
        raise ConfigError(f"unknown preset {cfg.preset!r}; known presets: {', '.join(MODEL_PRESETS)}")
    if cfg.recipe is not None and cfg.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {cfg.recipe!r}; known recipes: {', '.join(RECIPES)}")
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    if tp < 1 or pp < 1:
        raise ConfigError(f"parallel sizes must be >= 1 (tensor {tp}, pipeline {pp})")
    if world_size % (tp * pp):
        raise ConfigError(f"world size {world_size} is not divisible by tensor x pipeline parallel = {tp}x{pp} = {tp * pp}")
    dp = world_size // (tp * pp)
    if m.num_attention_heads % tp:
        raise ConfigError(f"model.num_attention_heads {m.num_attention_heads} is not divisible by tensor_model_parallel_size {tp}")
    if m.num_attention_heads % m.num_query_groups:
        raise ConfigError(f"model.num_attention_heads {m.num_attention_heads} is not divisible by num_query_groups {m.num_query_groups}")
    if m.hidden_size % m.num_attention_heads:
        raise ConfigError(f"model.hidden_size {m.hidden_size} is not divisible by num_attention_heads {m.num_attention_heads}")
    if m.ffn % tp:
        raise ConfigError(f"MLP size {m.ffn} is not divisible by tensor_model_parallel_size {tp}")
    vpp = p.virtual_pipeline_model_parallel_size
    chunks = pp * (vpp or 1)
    if m.num_layers % chunks:
        raise ConfigError(f"model.num_layers {m.num_layers} is not divisible by pipeline stages x virtual stages = {chunks}")
    if vpp is not None and pp < 2:
        raise ConfigError("virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size >= 2")
    if o.global_batch_size % (o.micro_batch_size * dp):
        raise ConfigError(f"optim.global_batch_size {o.global_batch_size} is not divisible by micro_batch_size x data-parallel "
                          f"size = {o.micro_batch_size}x{dp} = {o.micro_batch_size * dp}")
    if vpp is not None and (o.global_batch_size // (o.micro_batch_size * dp)) % pp:
        raise ConfigError(f"interleaved pipeline needs the number of microbatches ({o.global_batch_size // (o.micro_batch_size * dp)}) "
                          f"to be a multiple of pipeline_model_parallel_size {pp}")
    from codetron.megatron_ext.model import check_architecture
    from codetron.megatron_ext.presets import check_family

    check_architecture(m, tp)
    check_family(cfg, with_checkpoint=check_data)
    d = cfg.data
    if not (0.0 <= d.fim_rate <= 1.0 and 0.0 <= d.fim_spm_rate <= 1.0):
        raise ConfigError(f"data.fim_rate {d.fim_rate} and data.fim_spm_rate {d.fim_spm_rate} must lie in [0, 1]")
    if d.fim_rate > 0 and d.mode != "pretrain":
        raise ConfigError(f"data.fim_rate applies to pretraining data; set it to 0 with data.mode {d.mode}")
    if d.fim_rate > 0 and d.tokenizer and d.tokenizer.startswith("null:"):
        raise ConfigError("data.fim_rate needs a real tokenizer with <fim_*> tokens, not data.tokenizer null:V")
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers {d.num_workers} must be >= 0 (0 = load batches in the training process)")
    if cfg.data.mode == "rrtf" and o.micro_batch_size % 2:
        raise ConfigError(f"data.mode rrtf needs an even optim.micro_batch_size (chosen and rejected rows of a pair "
                          f"share a micro-batch), got {o.micro_batch_size}")
    if cfg.data.mode == "rrtf":
        from codetron.megatron_ext.objectives.rrtf import LOSSES

        if d.rrtf_loss not in LOSSES:
            raise ConfigError(f"data.rrtf_loss {d.rrtf_loss!r}: choose from {', '.join(LOSSES)}")
    from codetron.megatron_ext.objectives import check_train_epochs

    check_train_epochs(cfg)
    if m.seq_length > m.positions:
        raise ConfigError(f"model.seq_length {m.seq_length} exceeds max_position_embeddings {m.positions}")
    if p.sequence_parallel and tp == 1:
        raise ConfigError("parallel.sequence_parallel needs tensor_model_parallel_size > 1")
    if o.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"optim.precision must be fp32, bf16 or fp16, not {o.precision!r}")
    if m.transformer_impl not in TRANSFORMER_IMPLS:
        raise ConfigError(f"model.transformer_impl must be one of {', '.join(TRANSFORMER_IMPLS)}, not {m.transformer_impl!r}")
    if o.lr_warmup_fraction is not None and not 0.0 <= o.lr_warmup_fraction < 1.0:
        raise ConfigError(f"optim.lr_warmup_fraction {o.lr_warmup_fraction} must lie in [0, 1) (or none)")
    if o.lr_decay_style not in ("cosine", "linear", "constant"):
        raise ConfigError(f"optim.lr_decay_style must be cosine, linear or constant, not {o.lr_decay_style!r}")
    if cfg.logging.on_nan not in ("stop", "skip"):
        raise ConfigError(f"logging.on_nan must be stop or skip, not {cfg.logging.on_nan!r}")
    if cfg.checkpoint.finetune and not (cfg.checkpoint.load or cfg.checkpoint.save):
        raise ConfigError("checkpoint.finetune needs checkpoint.load (the checkpoint to start from)")
    if check_data and cfg.checkpoint.finetune and cfg.checkpoint.load:
        from codetron.megatron_ext.checkpointing import check_position_table

        check_position_table(cfg.checkpoint.load, m)
    if check_data:
        if not cfg.data.data_path:
            raise ConfigError("data.data_path is empty: give the .bin/.idx prefix written by `codetron preprocess`")
        for prefix in data_prefixes(cfg.data.data_path):
            for ext in (".bin", ".idx"):
                if not Path(prefix + ext).is_file():
                    raise ConfigError(f"data.data_path: {prefix}{ext} does not exist")
            from codetron.errors import CodetronError
            from codetron.preprocess.publish import check_dataset

            try:
                check_dataset(prefix)  # .bin and .idx of one complete preprocess run
            except CodetronError as exc:
                raise ConfigError(f"data.data_path: {exc}") from None
        if cfg.data.tokenizer and not cfg.data.tokenizer.startswith("null:") and not Path(cfg.data.tokenizer).exists():
            raise ConfigError(f"data.tokenizer: {cfg.data.tokenizer} does not exist")
