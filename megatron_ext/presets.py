"""Named presets: model shapes and published training recipes, as data.

Model presets give the architecture of a released checkpoint (numbers from its Hugging Face
``config.json``); recipes give the optimizer/data/parallel settings of a paper. A run is
``preset`` + optional ``recipe`` + YAML file + ``--key value`` flags, applied in that order.
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, fields
from typing import Any

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import (DEFAULT_FAMILY, SECTIONS, ModelConfig, TrainConfig, apply_overrides,
                                          load_yaml)


@dataclass(frozen=True)
class ModelPreset:
    model: ModelConfig
    """The architecture."""
    source: str
    """Where the numbers come from."""
    description: str = ""
    """One line for `codetron presets`."""
    fim_tokens: tuple[str, ...] | None = None
    """The checkpoint's fill-in-the-middle special tokens as its tokenizer spells them: prefix, middle,
    suffix, then its FIM pad token if it has one (``data.fim_tokens``); None = StarCoder's ``<fim_*>``."""


@dataclass(frozen=True, kw_only=True)
class RecipeSettings:
    """The training settings a published recipe fixes. Each field has the name and type of the one
    ``TrainConfig`` section field it sets (``section_of`` finds it; tests/train/test_config.py checks
    every field against megatron_ext/config.py). None = the recipe leaves it to the preset/defaults."""

    # optim
    global_batch_size: int | None = None
    """optim.global_batch_size: sequences per optimizer step."""
    micro_batch_size: int | None = None
    """optim.micro_batch_size: sequences per forward pass per rank."""
    train_iters: int | None = None
    """optim.train_iters: published optimizer steps."""
    train_epochs: float | None = None
    """optim.train_epochs: published passes over the data (wins over train_iters)."""
    lr: float | None = None
    """optim.lr: peak learning rate."""
    min_lr: float | None = None
    """optim.min_lr: final learning rate."""
    lr_warmup_iters: int | None = None
    """optim.lr_warmup_iters: linear warmup steps."""
    lr_warmup_fraction: float | None = None
    """optim.lr_warmup_fraction: linear warmup as a fraction of the (epoch-derived) step count."""
    lr_decay_style: str | None = None
    """optim.lr_decay_style: "cosine", "linear" or "constant"."""
    weight_decay: float | None = None
    """optim.weight_decay: decoupled weight decay."""
    adam_beta1: float | None = None
    """optim.adam_beta1."""
    adam_beta2: float | None = None
    """optim.adam_beta2."""
    adam_eps: float | None = None
    """optim.adam_eps."""
    clip_grad: float | None = None
    """optim.clip_grad: global gradient-norm clip."""
    precision: str | None = None
    """optim.precision: "fp32", "bf16" or "fp16"."""
    # model
    seq_length: int | None = None
    """model.seq_length: training sequence length (fine-tuning recipes train shorter than the preset)."""
    hidden_dropout: float | None = None
    """model.hidden_dropout."""
    attention_dropout: float | None = None
    """model.attention_dropout."""
    # data
    mode: str | None = None
    """data.mode: "pretrain", "sft" or "rrtf"."""
    fim_rate: float | None = None
    """data.fim_rate: fraction of documents turned into FIM samples."""
    fim_spm_rate: float | None = None
    """data.fim_spm_rate: fraction of FIM samples in SPM order."""
    pack: bool | None = None
    """data.pack: SFT sample packing."""
    norm_target_loss: bool | None = None
    """data.norm_target_loss: OctoPack's per-sample loss averaging."""
    rrtf_loss: str | None = None
    """data.rrtf_loss: "paper" or "weighted"."""
    # parallel
    tensor_model_parallel_size: int | None = None
    """parallel.tensor_model_parallel_size: the published TP."""
    pipeline_model_parallel_size: int | None = None
    """parallel.pipeline_model_parallel_size: the published PP."""
    sequence_parallel: bool | None = None
    """parallel.sequence_parallel."""
    use_distributed_optimizer: bool | None = None
    """parallel.use_distributed_optimizer."""
    # checkpoint
    save_interval: int | None = None
    """checkpoint.save_interval: steps between checkpoints."""
    finetune: bool | None = None
    """checkpoint.finetune: start from a checkpoint's weights with a fresh optimizer and schedule."""

    def overrides(self) -> dict[str, Any]:
        """``{"section.field": value}`` for every field the recipe sets, in declaration order."""
        return {f"{section_of(f.name)}.{f.name}": getattr(self, f.name)
                for f in fields(self) if getattr(self, f.name) is not None}


def section_of(name: str) -> str:
    """The one TrainConfig section that has a field ``name``."""
    owners = [sec for sec in SECTIONS if name in {f.name for f in fields(getattr(TrainConfig(), sec))}]
    if len(owners) != 1:
        raise ConfigError(f"recipe setting {name!r} must name a field of exactly one config section, "
                          f"found {owners or 'none'}")
    return owners[0]


@dataclass(frozen=True, kw_only=True)
class Recipe:
    model_preset: str
    """The model the recipe was published for."""
    settings: RecipeSettings
    """The training settings the paper publishes, applied on top of the model preset."""
    source: str
    """Paper / model card the numbers come from."""
    description: str = ""
    """One line for `codetron presets`."""
    published_gpus: int | None = None
    """GPUs of the published run: `codetron slurm plan`'s default device count, and with the two
    fields below the base of its comparison with the paper."""
    published_tokens: float | None = None
    """Training tokens of the published run: the plan's default token budget."""
    published_days: float | None = None
    """Wall-clock days the paper reports for published_tokens on published_gpus."""

    def overrides(self) -> dict[str, Any]:
        """The recipe's settings as flat ``section.field`` overrides."""
        return self.settings.overrides()


def _bigcode(**kw) -> ModelConfig:
    """StarCoder-family defaults: MQA, 4h MLP, eps 1e-5, 49152 vocab, tied embeddings."""
    base = dict(num_query_groups=1, layernorm_epsilon=1e-5, vocab_size=49152, init_method_std=0.02)
    base.update(kw)
    return ModelConfig(**base)


def _starcoder2(**kw) -> ModelConfig:
    """StarCoder2-family defaults shared by the three released config.json files: RoPE, sliding window
    4096, 16384-token context, LayerNorm eps 1e-5, 4h MLP, biases, tanh GELU, 49152 vocab."""
    base = dict(family="starcoder2", sliding_window=4096, seq_length=16384, max_position_embeddings=16384,
                layernorm_epsilon=1e-5, vocab_size=49152)
    base.update(kw)
    return ModelConfig(**base)


def _llama(**kw) -> ModelConfig:
    """Llama-architecture defaults shared by the four released config.json files below: the whole
    context as the training length, initializer_range 0.02, no dropout (none of them has any)."""
    base = dict(init_method_std=0.02, hidden_dropout=0.0, attention_dropout=0.0)
    base.update(kw)
    base.setdefault("seq_length", base["max_position_embeddings"])
    return ModelConfig(**base)


LLAMA_SOURCE = "config.json ({}); FIM tokens from its tokenizer ({})"

STARCODER2_SOURCE = ("config.json ({}) and StarCoder2 paper (arXiv:2402.19173) Sec. 6: GQA, RoPE, sliding window "
                     "4096, trained at 4K then 16K context; its dropouts ({}) are pretraining settings, not architecture")

MODEL_PRESETS: dict[str, ModelPreset] = {
    "debug-tiny": ModelPreset(
        ModelConfig(num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=1,
                    seq_length=128, max_position_embeddings=256, vocab_size=None),
        source="Codetron test model: 4 layers so TP2xPP2xVPP2 is possible; vocab from the tokenizer; a "
               "256-row position table, twice its training length, as real checkpoints have spare positions",
        description="tiny MQA model for CPU tests and the demo",
    ),
    "debug-starcoder2": ModelPreset(
        ModelConfig(family="starcoder2", num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                    seq_length=128, max_position_embeddings=256, sliding_window=32, rotary_base=100000.0,
                    tie_embeddings=False, vocab_size=None),
        source="Codetron test model shaped like StarCoder2-15B: GQA (4 heads, 2 KV groups: TP2 splits the groups, "
               "TP4 replicates them), RoPE base 1e5, untied output; a 32-token window, a quarter of the training "
               "length, so every test crosses it; 4 layers so TP2xPP2xVPP2 is possible",
        description="tiny StarCoder2-shaped model for CPU tests",
    ),
    "debug-llama": ModelPreset(
        ModelConfig(family="llama", num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                    ffn_hidden_size=176, seq_length=128, max_position_embeddings=256, rotary_base=100000.0,
                    rope_scaling={"rope_type": "linear", "factor": 2.0}, layernorm_epsilon=1e-6,
                    tie_embeddings=False, vocab_size=None),
        source="Codetron test model shaped like DeepSeek-Coder-6.7B: RMSNorm, SwiGLU (ffn 176 = 8/3 x 64 rounded "
               "up to 16, divisible by TP4), GQA 4 heads / 2 KV groups (TP2 splits, TP4 replicates them), linear "
               "RoPE scaling (factor 2, base 1e5), untied output; 4 layers so TP2xPP2xVPP2 is possible",
        description="tiny Llama-architecture model for CPU tests",
    ),
    "debug-qwen2": ModelPreset(
        ModelConfig(family="llama", qkv_bias=True, num_layers=4, hidden_size=64, num_attention_heads=4,
                    num_query_groups=2, ffn_hidden_size=176, seq_length=128, max_position_embeddings=256,
                    rotary_base=1e6, layernorm_epsilon=1e-6, tie_embeddings=True, vocab_size=None),
        source="Codetron test model shaped like Qwen2.5-Coder-1.5B: the debug-llama layer with biases on q/k/v "
               "(Qwen2ForCausalLM), RoPE base 1e6 unscaled, tied embeddings",
        description="tiny Qwen2-architecture model for CPU tests",
    ),
    "santacoder-1b": ModelPreset(
        _bigcode(num_layers=24, hidden_size=2048, num_attention_heads=16, seq_length=2048,
                 max_position_embeddings=2048, vocab_size=49280),
        source="bigcode/gpt_bigcode-santacoder config.json (n_layer 24, n_embd 2048, n_head 16, n_positions 2048, vocab 49280)",
        description="SantaCoder 1.1B (Python/Java/JS, 2K context)",
    ),
    "starcoderbase-1b": ModelPreset(
        _bigcode(num_layers=24, hidden_size=2048, num_attention_heads=16, seq_length=8192, max_position_embeddings=8192),
        source="bigcode/starcoderbase-1b config.json (n_layer 24, n_embd 2048, n_head 16, n_positions 8192)",
        description="StarCoderBase 1B",
    ),
    "starcoderbase-3b": ModelPreset(
        _bigcode(num_layers=36, hidden_size=2816, num_attention_heads=22, seq_length=8192, max_position_embeddings=8192),
        source="bigcode/starcoderbase-3b config.json (n_layer 36, n_embd 2816, n_head 22, n_positions 8192)",
        description="StarCoderBase 3B",
    ),
    "starcoderbase-7b": ModelPreset(
        _bigcode(num_layers=42, hidden_size=4096, num_attention_heads=32, seq_length=8192, max_position_embeddings=8192),
        source="bigcode/starcoderbase-7b config.json (n_layer 42, n_embd 4096, n_head 32, n_positions 8192)",
        description="StarCoderBase 7B",
    ),
    "starcoder-15b": ModelPreset(
        _bigcode(num_layers=40, hidden_size=6144, num_attention_heads=48, seq_length=8192,
                 max_position_embeddings=8192, ffn_hidden_size=24576),
        source="bigcode/starcoder config.json and StarCoder paper (arXiv:2305.06161) Sec. 5: 40 layers, "
               "hidden 6144, 48 heads, MQA, 8192 context, vocab 49152",
        description="StarCoder / StarCoderBase 15.5B",
    ),
    "starcoder2-3b": ModelPreset(
        _starcoder2(num_layers=30, hidden_size=3072, num_attention_heads=24, num_query_groups=2,
                    ffn_hidden_size=12288, rotary_base=999999.4420358813, init_method_std=0.018042,
                    tie_embeddings=True),
        source="bigcode/starcoder2-3b " + STARCODER2_SOURCE.format(
            "num_hidden_layers 30, hidden_size 3072, num_attention_heads 24, num_key_value_heads 2, intermediate_size "
            "12288, rope_theta 999999.4420358813, sliding_window 4096, max_position_embeddings 16384, norm_epsilon "
            "1e-5, initializer_range 0.018042, use_bias, gelu_pytorch_tanh, tied embeddings (no "
            "tie_word_embeddings key: transformers' default true)", "attention/residual/embedding 0.1"),
        description="StarCoder2 3B (GQA 2 KV heads, 16K context)",
    ),
    "starcoder2-7b": ModelPreset(
        _starcoder2(num_layers=32, hidden_size=4608, num_attention_heads=36, num_query_groups=4,
                    ffn_hidden_size=18432, rotary_base=1e6, init_method_std=0.018042, tie_embeddings=True),
        source="bigcode/starcoder2-7b " + STARCODER2_SOURCE.format(
            "num_hidden_layers 32, hidden_size 4608, num_attention_heads 36, num_key_value_heads 4, intermediate_size "
            "18432, rope_theta 1e6, sliding_window 4096, max_position_embeddings 16384, norm_epsilon 1e-5, "
            "initializer_range 0.018042, use_bias, gelu_pytorch_tanh, tied embeddings (no tie_word_embeddings key)",
            "0.1 in later revisions"),
        description="StarCoder2 7B (GQA 4 KV heads, 16K context)",
    ),
    "starcoder2-15b": ModelPreset(
        _starcoder2(num_layers=40, hidden_size=6144, num_attention_heads=48, num_query_groups=4,
                    ffn_hidden_size=24576, rotary_base=1e5, init_method_std=0.01275, tie_embeddings=False),
        source="bigcode/starcoder2-15b " + STARCODER2_SOURCE.format(
            "num_hidden_layers 40, hidden_size 6144, num_attention_heads 48, num_key_value_heads 4, intermediate_size "
            "24576, rope_theta 100000, sliding_window 4096, max_position_embeddings 16384, norm_epsilon 1e-5, "
            "initializer_range 0.01275, use_bias, gelu_pytorch_tanh, tie_word_embeddings false", "0.1 in later "
            "revisions"),
        description="StarCoder2 15B (GQA 4 KV heads, untied output, 16K context)",
    ),
    "codellama-7b": ModelPreset(
        _llama(family="llama", num_layers=32, hidden_size=4096, num_attention_heads=32, num_query_groups=32,
               ffn_hidden_size=11008, max_position_embeddings=16384, rotary_base=1e6, layernorm_epsilon=1e-5,
               tie_embeddings=False, vocab_size=32016),
        source="codellama/CodeLlama-7b-hf " + LLAMA_SOURCE.format(
            "LlamaForCausalLM, hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads "
            "32, intermediate_size 11008, vocab_size 32016, rope_theta 1000000, rope_scaling null, "
            "max_position_embeddings 16384, rms_norm_eps 1e-05, tie_word_embeddings false",
            "sentencepiece pieces ▁<PRE> 32007, ▁<SUF> 32008, ▁<MID> 32009, ▁<EOT> 32010 ends the infill; no FIM "
            "pad") + "; Code Llama paper (arXiv:2308.12950) Sec. 2.4: long-context fine-tuning on 16,384-token "
            "sequences with the RoPE base raised from 10,000 to 1,000,000",
        description="CodeLlama 7B (MHA, RoPE base 1e6, 16K context)",
        fim_tokens=("▁<PRE>", "▁<MID>", "▁<SUF>"),
    ),
    "deepseek-coder-6.7b-base": ModelPreset(
        _llama(family="llama", num_layers=32, hidden_size=4096, num_attention_heads=32, num_query_groups=32,
               ffn_hidden_size=11008, max_position_embeddings=16384, rotary_base=100000.0,
               rope_scaling={"rope_type": "linear", "factor": 4.0}, layernorm_epsilon=1e-6, tie_embeddings=False,
               vocab_size=32256),
        source="deepseek-ai/deepseek-coder-6.7b-base " + LLAMA_SOURCE.format(
            "LlamaForCausalLM, hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads "
            "32, intermediate_size 11008, vocab_size 32256, rope_theta 100000, rope_scaling {type linear, factor "
            "4.0}, max_position_embeddings 16384, rms_norm_eps 1e-06, tie_word_embeddings false",
            "<｜fim▁begin｜> prefix, <｜fim▁hole｜> suffix, <｜fim▁end｜> middle; no FIM pad") +
            "; DeepSeek-Coder paper (arXiv:2401.14196), long-context adaptation: RoPE base 100,000 and linear "
            "scaling factor 4 for a 16K context",
        description="DeepSeek-Coder 6.7B base (MHA, linear RoPE x4, 16K context)",
        fim_tokens=("<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜fim▁hole｜>"),
    ),
    "qwen2.5-coder-1.5b": ModelPreset(
        _llama(family="llama", qkv_bias=True, num_layers=28, hidden_size=1536, num_attention_heads=12,
               num_query_groups=2,
               ffn_hidden_size=8960, max_position_embeddings=32768, rotary_base=1e6, layernorm_epsilon=1e-6,
               tie_embeddings=True, vocab_size=151936),
        source="Qwen/Qwen2.5-Coder-1.5B " + LLAMA_SOURCE.format(
            "Qwen2ForCausalLM, hidden_size 1536, num_hidden_layers 28, num_attention_heads 12, num_key_value_heads 2, "
            "intermediate_size 8960, vocab_size 151936, rope_theta 1000000.0, no rope_scaling, "
            "max_position_embeddings 32768, rms_norm_eps 1e-06, use_sliding_window false, tie_word_embeddings true",
            "<|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>, <|fim_pad|>") +
            "; model card: 1.54B parameters (1.31B non-embedding), RoPE, SwiGLU, RMSNorm, attention QKV bias, tied "
            "word embeddings",
        description="Qwen2.5-Coder 1.5B (GQA 2 KV heads, QKV bias, tied, 32K context)",
        fim_tokens=("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"),
    ),
    "qwen2.5-coder-7b": ModelPreset(
        _llama(family="llama", qkv_bias=True, num_layers=28, hidden_size=3584, num_attention_heads=28,
               num_query_groups=4,
               ffn_hidden_size=18944, max_position_embeddings=32768, rotary_base=1e6, layernorm_epsilon=1e-6,
               tie_embeddings=False, vocab_size=152064),
        source="Qwen/Qwen2.5-Coder-7B " + LLAMA_SOURCE.format(
            "Qwen2ForCausalLM, hidden_size 3584, num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, "
            "intermediate_size 18944, vocab_size 152064, rope_theta 1000000.0, no rope_scaling, "
            "max_position_embeddings 32768, rms_norm_eps 1e-06, use_sliding_window false, tie_word_embeddings false",
            "<|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>, <|fim_pad|>") +
            "; model card: 7.61B parameters (6.53B non-embedding), RoPE, SwiGLU, RMSNorm, attention QKV bias",
        description="Qwen2.5-Coder 7B (GQA 4 KV heads, QKV bias, 32K context)",
        fim_tokens=("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"),
    ),
}

RECIPES: dict[str, Recipe] = {
    "starcoder-pretrain": Recipe(
        model_preset="starcoder-15b",
        settings=RecipeSettings(
            global_batch_size=512, micro_batch_size=1, lr=3e-4, min_lr=3e-5, lr_decay_style="cosine",
            lr_warmup_iters=2000, train_iters=250_000, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
            adam_eps=1e-8, clip_grad=1.0, precision="bf16",
            hidden_dropout=0.1, attention_dropout=0.1,
            fim_rate=0.5, fim_spm_rate=0.5,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=4, sequence_parallel=True,
            use_distributed_optimizer=True,
            save_interval=2500,
        ),
        source="StarCoder paper (arXiv:2305.06161) Sec. 5.1: Adam b1 0.9 b2 0.95 eps 1e-8, wd 0.1, lr 3e-4 "
               "cosine to 3e-5 after 2,000 warmup iterations, 250k iterations of 4M tokens (512 x 8192), "
               "FIM rate 0.5 (half SPM), dropout 0.1; 512 A100 80GB, TP4 PP4, 24 days for 1T tokens",
        description="StarCoderBase pretraining on 512 GPUs",
        published_gpus=512, published_tokens=1e12, published_days=24,
    ),
    "wizardcoder-sft": Recipe(
        model_preset="starcoder-15b",
        settings=RecipeSettings(
            global_batch_size=512, micro_batch_size=1, seq_length=2048, train_iters=200, lr_warmup_iters=30,
            lr=2e-5, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.0, precision="bf16",
            mode="sft", pack=True,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=2,
            finetune=True,
        ),
        source="WizardCoder paper (arXiv:2306.08568) Sec. 4.2: batch 512, sequence length 2048, 200 steps, "
               "30 warmup steps, lr 2e-5, cosine schedule (fp16 in the paper)",
        description="WizardCoder Evol-Instruct fine-tuning of StarCoder-15B",
    ),
    "octocoder-sft": Recipe(
        model_preset="starcoder-15b",
        settings=RecipeSettings(
            # warmup and weight decay as octopack's finetuning/starcoder/finetune.sh passes them
            global_batch_size=32, micro_batch_size=1, seq_length=2048, train_iters=35, lr_warmup_iters=5,
            lr=5e-4, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.05, precision="bf16",
            mode="sft", pack=True, norm_target_loss=False,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=1,
            finetune=True,
        ),
        source="OctoPack paper (arXiv:2308.07124) App.: OctoCoder = StarCoder-16B fine-tuned on "
               "CommitPackFT+OASST, sequence length 2048, batch size 32, lr 5e-4 cosine, ~35 steps (~2M tokens), "
               "loss on answers only; warmup 5 and weight decay 0.05 from octopack finetuning/starcoder/finetune.sh",
        description="OctoCoder instruction tuning (CommitPackFT + OASST)",
    ),
    "rrtf": Recipe(
        model_preset="starcoder-15b",
        settings=RecipeSettings(
            # A training row is one response; chosen/rejected rows of a pair share a micro-batch, so
            # micro is even and the paper's batch of 512 pairs is 1024 rows.
            global_batch_size=1024, micro_batch_size=2, seq_length=2048,
            lr=2e-5, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.0,
            lr_warmup_iters=10, precision="bf16", train_epochs=6,
            mode="rrtf", rrtf_loss="paper", finetune=True,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=2,
        ),
        source="PanGu-Coder2 paper (arXiv:2307.14936) Sec. 4: StarCoder-15B base, global batch 512, 6 epochs "
               "of the ranked data",
        description="PanGu-Coder2 RRTF ranking fine-tuning",
    ),
    "starcoder2-instruct": Recipe(
        model_preset="starcoder2-15b",
        settings=RecipeSettings(
            # one sample per row, 64 rows per step, each sample's mean token loss averaged: the upstream
            # Trainer's batch 1 x 64 accumulation steps (transformers 4.39 means the loss per micro-batch)
            global_batch_size=64, micro_batch_size=1, seq_length=1280, train_epochs=4,
            lr=1e-5, min_lr=0.0, lr_decay_style="linear", lr_warmup_fraction=0.05,
            # Adam in place of Adafactor, HF Trainer's AdamW defaults: see source.
            adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, weight_decay=0.0, clip_grad=0.0,
            precision="bf16", hidden_dropout=0.0, attention_dropout=0.0,
            mode="sft", pack=False, norm_target_loss=True, finetune=True,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=2, use_distributed_optimizer=True,
        ),
        source="bigcode-project/starcoder2-self-align@0b19dbcd README.md:230-263 (the training script) and "
               "src/star_align/train.py: StarCoder2-15B fine-tuned on the 50k self-aligned pairs, lr 1e-5 (:234), "
               "4 epochs (:235), sequence 1280 (:236, samples cut there, train.py:70-72), warmup ratio 0.05 "
               "(:237), linear schedule (:260), batch 1 x 64 accumulation (:250-251, no packing: "
               "pad_to_max_length False, :249), no gradient clipping (--max_grad_norm -1, :257), bf16 (:246), "
               "dropout 0 (:261-263), Adafactor (:256); the prompt starts with BOS (train.py:51, add_bos; "
               "codetron.templates.BOS_TEMPLATES). megatron-core has no Adafactor (Adam and SGD only), so this "
               "uses Adam with the Hugging Face Trainer's AdamW defaults (b1 0.9, b2 0.999, eps 1e-8, no weight "
               "decay): at lr 1e-5 for ~3k steps it is the standard fine-tuning optimizer, and Adafactor's reason, "
               "factored second moments to save memory, is served here by the distributed optimizer sharding "
               "Adam's state over data-parallel ranks. Every value and deviation: docs/recipes.md",
        description="StarCoder2-Instruct self-aligned instruction tuning of StarCoder2-15B",
    ),
    "deepseek-coder-sft": Recipe(
        model_preset="deepseek-coder-6.7b-base",
        settings=RecipeSettings(
            # the README's 16 per device x 4 accumulation steps, one device's worth (it names no GPU count)
            global_batch_size=64, micro_batch_size=1, seq_length=1024, train_epochs=3,
            lr=2e-5, min_lr=0.0, lr_decay_style="cosine", lr_warmup_iters=10,
            # HF Trainer's adamw_torch defaults (the script sets none of these)
            adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, weight_decay=0.0, clip_grad=1.0,
            precision="bf16", hidden_dropout=0.0, attention_dropout=0.0,
            mode="sft", pack=False, norm_target_loss=False, finetune=True,
            tensor_model_parallel_size=2, pipeline_model_parallel_size=1, use_distributed_optimizer=True,
        ),
        source="deepseek-ai/DeepSeek-Coder@d40caed finetune/README.md (the training command) and "
               "finetune/finetune_deepseekcoder.py@3fd8db8: 3 epochs, model_max_length 1024, 16 per device x 4 "
               "gradient accumulation, lr 2e-5, 10 warmup steps, cosine schedule (to 0), bf16, ZeRO-3; loss on the "
               "response only (prompt labels -100), samples padded to the longest in the micro-batch (no packing); "
               "Trainer defaults for what the command leaves out (AdamW b1 0.9, b2 0.999, eps 1e-8, no weight "
               "decay, max_grad_norm 1.0). Every value and deviation: docs/recipes.md",
        description="DeepSeek-Coder instruction tuning of DeepSeek-Coder-6.7B-base (the official fine-tune script)",
    ),
}


def check_family(cfg: TrainConfig, with_checkpoint: bool = True) -> None:
    """The model family must be the preset's, and the checkpoint to fine-tune from must be of it: a
    GPTBigCode config or checkpoint given to a StarCoder2 preset (or the reverse) is one line here,
    not a shape error from deep inside megatron-core (or a position table silently dropped)."""
    family = cfg.model.family
    preset = MODEL_PRESETS.get(cfg.preset) if cfg.preset else None
    if preset is not None and preset.model.family != family:
        raise ConfigError(f"model.family {family} contradicts preset {cfg.preset} (a {preset.model.family} model); "
                          f"drop the preset or the model settings that came with the other family")
    load = cfg.checkpoint.load
    if not (with_checkpoint and cfg.checkpoint.finetune and load):
        return
    from codetron.megatron_ext.checkpointing import CONFIG_NAME, resolve_checkpoint_dir, saved_config

    ckpt_dir = resolve_checkpoint_dir(load)
    saved = (saved_config(ckpt_dir).get("model") or {}).get("family", DEFAULT_FAMILY)
    if saved != family:
        raise ConfigError(f"{ckpt_dir / CONFIG_NAME}: checkpoint.load is a {saved} model but model.family is "
                          f"{family}{f' (preset {cfg.preset})' if cfg.preset else ''}; fine-tune it with a {saved} "
                          f"preset, or convert a {family} model")


def get_model_preset(name: str) -> ModelPreset:
    if name not in MODEL_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def resolve_config(preset: str | None = None, recipe: str | None = None, yaml_path: str | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """preset -> recipe -> YAML -> flags. A recipe alone implies its model preset."""
    return resolve_with_origins(preset, recipe, yaml_path, overrides)[0]


def resolve_with_origins(preset: str | None = None, recipe: str | None = None, yaml_path: str | None = None,
                         overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, str]]:
    """``resolve_config`` plus, per ``section.field`` (and ``preset``/``recipe``), the layer that set
    it: "preset NAME", "recipe NAME", the YAML path or "command line" (absent = the default)."""
    file_vals = load_yaml(yaml_path) if yaml_path else {}
    flags = dict(overrides or {})
    origins: dict[str, str] = {}
    # later sources win (flags over the --recipe/--preset arguments over YAML); pop from both so a
    # YAML's `recipe:` cannot be re-applied over the chosen one as an ordinary field below
    chosen = {}
    for key, given in (("recipe", recipe), ("preset", preset)):
        from_flags, from_file = flags.pop(key, None), file_vals.pop(key, None)
        chosen[key] = from_flags or given or from_file
        if chosen[key] is not None:
            origins[key] = ("command line" if from_flags or given else yaml_path or "config")
    recipe, preset = chosen["recipe"], chosen["preset"]
    rec = get_recipe(recipe) if recipe else None
    if preset is None and rec is not None:
        preset = rec.model_preset
        origins["preset"] = f"recipe {recipe}"
    cfg = TrainConfig(preset=preset, recipe=recipe)
    if preset is not None:
        cfg.model = copy.deepcopy(get_model_preset(preset).model)
        origins.update({f"model.{f.name}": f"preset {preset}" for f in fields(cfg.model)})
        if get_model_preset(preset).fim_tokens is not None:  # the checkpoint's tokenizer spells them its way
            cfg.data.fim_tokens = list(get_model_preset(preset).fim_tokens)
            origins["data.fim_tokens"] = f"preset {preset}"
    if rec is not None:
        apply_overrides(cfg, rec.overrides(), f"recipe {recipe}", origins)
    apply_overrides(cfg, file_vals, yaml_path or "config", origins)
    apply_overrides(cfg, flags, "command line", origins)
    return cfg, origins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codetron presets",
                                     description="List the named model presets and training recipes.")
    parser.add_argument("name", nargs="?", help="show one preset or recipe in full (YAML)")
    args = parser.parse_args(argv)
    if args.name:
        if args.name in RECIPES:
            cfg = resolve_config(recipe=args.name)
            print(f"# recipe {args.name}: {RECIPES[args.name].source}")
        else:
            cfg = resolve_config(preset=args.name)
            print(f"# preset {args.name}: {MODEL_PRESETS[args.name].source}")
        print(cfg.to_yaml(), end="")
        return 0
    print("model presets:")
    for name, p in MODEL_PRESETS.items():
        m = p.model
        params = families.num_parameters(m, m.vocab_size or 8192) / 1e9
        print(f"  {name:20s} {m.num_layers:>3}L h{m.hidden_size:<5} {m.num_attention_heads:>2} heads  "
              f"seq {m.seq_length:<5} ~{params:5.2f}B  {p.description}")
    print("recipes:")
    for name, r in RECIPES.items():
        print(f"  {name:20s} on {r.model_preset:16s} {r.description}")
    return 0
