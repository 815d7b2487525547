"""What a training recipe is, and the registry of them.

A recipe is the training settings a paper (or an official training script) publishes for a model:
optimizer, schedule, batch, data mode, parallel layout. It is applied on top of its model preset and
under the YAML file and command-line flags (``presets.resolve_config``). Each recipe is one module in
this folder calling ``register``; ``docs/extending.md`` walks through adding one.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any

from codetron.errors import ConfigError
from codetron.megatron_ext.config import SECTIONS, TrainConfig


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
    """A published recipe: its model, the settings it fixes, and where they are published."""

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


RECIPES: dict[str, Recipe] = {}
"""Every registered recipe by name, in the order discovery imported their modules (module name order)."""
_MODULES: dict[str, str] = {}
"""Recipe name -> the module that registered it (for the duplicate-name error)."""


def register(name: str, recipe: Recipe) -> Recipe:
    """Make ``recipe`` the one ``codetron train --recipe NAME`` uses; called once at the top level of
    its module. A name another module already registered is an error (one line naming both)."""
    caller = inspect.currentframe().f_back
    module = caller.f_globals.get("__name__", "?") if caller is not None else "?"
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"recipe {name!r} ({module}): register() takes a Recipe, got {type(recipe).__name__}")
    if name in RECIPES and _MODULES.get(name) != module:
        raise ConfigError(f"recipe {name!r} is registered twice: by {_MODULES.get(name, '?')} and by {module}")
    RECIPES[name] = recipe
    _MODULES[name] = module
    return recipe


def module_of(name: str) -> str:
    """The module that registered recipe ``name`` (``codetron.megatron_ext.recipes.<module>``)."""
    return _MODULES[name]
