"""``ModelConfig`` (codetron) <-> ``config.json`` of a Hugging Face model, through the model's family.

The family is never named twice: ``to-hf`` takes it from the checkpoint's ``model.family``,
``from-hf`` from config.json's ``model_type`` (``families.for_model_type``). Each family module
holds its own mapping (``Family.to_hf_config`` / ``from_hf_config``); this module adds what every
family shares. Both directions are plain dicts so the streaming path never imports transformers;
:func:`save_hf_config` checks the result with transformers' own config class at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

from codetron.errors import CodetronError
from codetron.records import read_json
from codetron.megatron_ext import families
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families import Family


def family_of(model: ModelConfig) -> Family:
    """The model's family, or a one-line error naming the families that convert."""
    if model.family not in families.names():
        raise CodetronError(f"model.family {model.family!r}: codetron converts {' and '.join(families.names())}")
    return families.get(model.family)


def to_hf_config(model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None, pad: int | None,
                 dtype: str) -> dict:
    if model.hidden_size % model.num_attention_heads:
        raise CodetronError(f"model.hidden_size {model.hidden_size} is not divisible by num_attention_heads "
                            f"{model.num_attention_heads}")
    return family_of(model).to_hf_config(model, vocab_size, bos, eos, pad, dtype)


def save_hf_config(model: ModelConfig, vocab_size: int, bos, eos, pad, dtype: str, folder: Path) -> None:
    """config.json through transformers' own class (it validates the values), plus the family's
    extra top-level keys for older readers (``Family.hf_config_extras``)."""
    from transformers import AutoConfig

    values = to_hf_config(model, vocab_size, bos, eos, pad, dtype)
    AutoConfig.for_model(values.pop("model_type"), **values).save_pretrained(str(folder))
    extras = family_of(model).hf_config_extras(model)
    if extras:
        path = Path(folder) / "config.json"
        cfg = json.loads(path.read_text())
        cfg.update(extras)
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def read_hf_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CodetronError(f"{folder}: no config.json; not a Hugging Face model folder")
    cfg = read_json(path, what="config.json")
    if not isinstance(cfg, dict):
        raise CodetronError(f"{path}: expected a JSON object")
    if families.for_model_type(cfg.get("model_type")) is None:
        archs = ",".join(cfg.get("architectures") or []) or "?"
        known = families.all_families()
        types = [t for f in known for t in f.model_types]
        raise CodetronError(f"{path}: model_type {cfg.get('model_type')!r} ({archs}) is not a "
                            f"{' or '.join(f.title for f in known)} model; only model_type {' or '.join(types)} converts")
    return cfg


def family_for(cfg: dict) -> Family:
    """The family of a config.json :func:`read_hf_config` accepted."""
    family = families.for_model_type(cfg.get("model_type"))
    if family is None:
        raise CodetronError(f"model_type {cfg.get('model_type')!r}: no codetron family reads it")
    return family


def dropout_note(cfg: dict, where: str) -> str | None:
    """Every family has its own embedding dropout (``embd_pdrop`` / ``embedding_dropout``);
    megatron-core's GPTModel applies ``hidden_dropout`` (``resid_pdrop`` / ``residual_dropout``)
    there instead. Dropout never changes the weights, so the conversion stays exact; a differing
    embedding rate only means fine-tuning drops embeddings at the residual rate, which the caller
    reports in one line."""
    family = families.for_model_type(cfg.get("model_type")) or families.get(families.DEFAULT_FAMILY)
    resid_key, embd_key = family.hf_dropout_keys
    resid, embd = float(cfg.get(resid_key, 0.0)), cfg.get(embd_key)
    if embd is None or float(embd) == resid:
        return None
    return (f"{where}: {embd_key} {float(embd):g} differs from {resid_key} {resid:g}; megatron-core applies "
            f"model.hidden_dropout ({resid:g}) to the embeddings too")


def from_hf_config(cfg: dict, where: str) -> ModelConfig:
    """The codetron architecture of an HF config (its family from ``model_type``; a config without
    one is read as the default family), or a one-line error for what megatron's layer spec cannot
    express."""
    family = families.for_model_type(cfg.get("model_type")) or families.get(families.DEFAULT_FAMILY)
    return family.from_hf_config(cfg, where)
