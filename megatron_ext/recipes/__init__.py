"""Training recipes (``codetron train --recipe NAME``): one module per recipe in this folder, each
registering a ``Recipe`` under its name; ``docs/recipes.md`` has one table per recipe comparing every
value with its source, and ``docs/extending.md`` walks through adding one."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import RECIPES, Recipe, RecipeSettings, module_of, register, section_of
from codetron.plugins import import_submodules


def discover() -> dict[str, Recipe]:
    """Import every module of this folder (each registers its recipe); returns ``RECIPES``."""
    import_submodules(__name__)
    return RECIPES


discover()

__all__ = ["RECIPES", "Recipe", "RecipeSettings", "discover", "module_of", "register", "section_of"]
