"""Named presets: model shapes and published training recipes, as data.

Model presets give the architecture of a released checkpoint (numbers from its Hugging Face
``config.json``); recipes give the optimizer/data/parallel settings of a paper (one module each in
``megatron_ext/recipes/``, collected in ``RECIPES``). A run is
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
from codetron.megatron_ext.recipes import RECIPES, Recipe, RecipeSettings, section_of


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
