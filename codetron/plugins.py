"""Discovery of the modules that register named things (eval tasks, prompt formats, data sources).

A registry package (``codetron.eval.tasks``, ``codetron.eval.formats``, ``codetron.preprocess.sources``)
calls ``import_submodules`` on itself: every module in its folder is imported, in name order, and
registers what it defines as it is imported. Adding a task, a format or a source is therefore one
new module in that folder and nothing else to edit; ``docs/extending.md`` walks through each.
"""
from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str) -> list[str]:
    """Import every module of ``package`` (every folder on its ``__path__``), in name order; names
    starting with ``_`` are left out. Returns the imported module names."""
    pkg = importlib.import_module(package)
    names = sorted({m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")})
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return [f"{package}.{name}" for name in names]
