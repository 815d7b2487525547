"""Data sources for ``codetron preprocess``: one module per input file type in this folder, each
registering a ``rows(path)`` reader with ``register``; ``docs/extending.md`` walks through adding one."""
from __future__ import annotations

from codetron.preprocess.sources.base import BUILTIN_SUFFIXES, SOURCES, Source, register
from codetron.plugins import import_submodules


def discover() -> dict[str, Source]:
    """Import every module of this folder (they register themselves); returns ``SOURCES``."""
    import_submodules(__name__)
    return SOURCES


def suffixes() -> tuple[str, ...]:
    """Every readable file ending: the built-in ones, then the registered sources'."""
    return BUILTIN_SUFFIXES + tuple(s for src in SOURCES.values() for s in src.suffixes)


def source_for(path: str) -> Source | None:
    """The registered source that reads ``path``, if any (built-in types: None)."""
    return next((src for src in SOURCES.values() if path.endswith(src.suffixes)), None)


discover()

__all__ = ["BUILTIN_SUFFIXES", "SOURCES", "Source", "discover", "register", "source_for", "suffixes"]
