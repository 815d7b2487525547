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
from codetron.megatron_ext.config import SECTIONS, ModelConfig, TrainConfig, apply_overrides, load_yaml


@dataclass(frozen=True)
class ModelPreset:
    model: ModelConfig
    """The architecture."""
    source: str
    """Where the numbers come from."""
    description: str = ""
    """One line for `codetron presets`."""


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


MODEL_PRESETS: dict[str, ModelPreset] = {
    "debug-tiny": ModelPreset(
        ModelConfig(num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=1,
                    seq_length=128, max_position_embeddings=256, vocab_size=None),
        source="Codetron test model: 4 layers so TP2xPP2xVPP2 is possible; vocab from the tokenizer; a "
               "256-row position table, twice its training length, as real checkpoints have spare positions",
        description="tiny MQA model for CPU tests and the demo",
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
            global_batch_size=32, micro_batch_size=1, seq_length=2048, train_iters=35, lr_warmup_iters=0,
            lr=5e-4, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.0, precision="bf16",
            mode="sft", pack=True, norm_target_loss=False,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=1,
            finetune=True,
        ),
        source="OctoPack paper (arXiv:2308.07124) App.: OctoCoder = StarCoder-16B fine-tuned on "
               "CommitPackFT+OASST, sequence length 2048, batch size 32, lr 5e-4 cosine, ~35 steps (~2M tokens), "
               "loss on answers only",
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
}


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
    file_vals = load_yaml(yaml_path) if yaml_path else {}
    flags = dict(overrides or {})
    recipe = flags.pop("recipe", None) or file_vals.pop("recipe", None) or recipe
    preset = flags.pop("preset", None) or file_vals.pop("preset", None) or preset
    rec = get_recipe(recipe) if recipe else None
    if preset is None and rec is not None:
        preset = rec.model_preset
    cfg = TrainConfig(preset=preset, recipe=recipe)
    if preset is not None:
        cfg.model = copy.deepcopy(get_model_preset(preset).model)
    if rec is not None:
        apply_overrides(cfg, rec.overrides(), f"recipe {recipe}")
    apply_overrides(cfg, file_vals, yaml_path or "config")
    apply_overrides(cfg, flags, "command line")
    return cfg


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
        params = m.num_parameters(m.vocab_size or 8192) / 1e9
        print(f"  {name:18s} {m.num_layers:>3}L h{m.hidden_size:<5} {m.num_attention_heads:>2} heads  "
              f"seq {m.seq_length:<5} ~{params:5.2f}B  {p.description}")
    print("recipes:")
    for name, r in RECIPES.items():
        print(f"  {name:18s} on {r.model_preset:16s} {r.description}")
    return 0
