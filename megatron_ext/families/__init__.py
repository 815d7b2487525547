"""The model-family registry: one module per family in this package, found by discovery.

A family module (``<name>.py``) defines ``FAMILY``, an instance of a :class:`~.base.Family`
subclass whose ``name`` is the module's name; nothing else registers it. Modules named in
:data:`NOT_FAMILIES` hold what the families share. Everything outside this package reaches a family
through :func:`get` (by ``model.family``) or :func:`for_model_type` (by an HF config's
``model_type``), never by comparing names (``tests/test_layout.py`` checks that).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

from codetron.errors import ConfigError
from codetron.megatron_ext.config import DEFAULT_FAMILY, ModelConfig
from codetron.megatron_ext.families.base import Family, TensorMap, TensorTable

__all__ = ["DEFAULT_FAMILY", "Family", "TensorMap", "TensorTable", "all_families", "for_model_type", "get", "names",
           "num_parameters"]

NOT_FAMILIES = ("base", "layouts")
"""Modules of this package that are not families."""


@functools.lru_cache(maxsize=None)
def _registry() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in NOT_FAMILIES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, Family):
            raise TypeError(f"{module.__name__} defines no FAMILY (a codetron.megatron_ext.families.base.Family)")
        if family.name != info.name:
            raise TypeError(f"{module.__name__}: FAMILY.name {family.name!r} must be the module's name")
        found[family.name] = family
    return found


def names() -> tuple[str, ...]:
    """Values ``model.family`` may take (the choices of ``--model.family``), sorted."""
    return tuple(_registry())


def all_families() -> tuple[Family, ...]:
    return tuple(_registry().values())


def get(name: str) -> Family:
    """The family ``model.family`` names, or a one-line ConfigError listing the known ones."""
    family = _registry().get(name)
    if family is None:
        raise ConfigError(f"model.family must be one of {', '.join(names())}, not {name!r}")
    return family


def for_model_type(model_type: str | None) -> Family | None:
    """The family that reads a Hugging Face ``model_type`` (None if no family does)."""
    for family in _registry().values():
        if model_type in family.model_types:
            return family
    return None


def num_parameters(model: ModelConfig, vocab: int | None = None) -> int:
    """Parameter count of ``model`` with ``vocab`` embedding rows (default ``model.vocab_size``):
    position table only with learned positions, output matrix only if untied."""
    return get(model.family).num_parameters(model, vocab)
