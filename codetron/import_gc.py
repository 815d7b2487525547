"""No cyclic garbage collection while the big libraries load, in ``codetron`` processes.

Importing torch, megatron-core and transformers builds about a million objects that all stay alive;
the collector's passes over them, triggered by nothing but the allocation count, cost 0.3-1.5 s of
the 3-5 s each training rank, converter or evaluator spends on its imports on this 2-core machine
(measured: torch + megatron-core + a transformers model class in 5.4 s of CPU with the collector on,
3.9 s with this). The ``codetron`` entry point (``cli.main``) installs a finder first on
``sys.meta_path``; when one of ``HEAVY``'s modules is about to load and no such load is under way,
it pauses the collector until that module (and all it imports) has loaded, then freezes what exists
(``gc.freeze``: out of the collector's reach, as CPython's docs advise after start-up, so the next
collection does not walk it all) and resumes collection. The price: cyclic garbage the program made
before such a load is never collected; the loads happen at start-up and in a loop's first step, so
that is bounded and small.

Why a finder and not a wrapper around ``builtins.__import__``: the import system consults finders
only for modules not loaded yet, so nothing changes where C code imports a loaded module (pickle
does, for every class it pickles). A Python-level ``__import__`` put a frame there, in which a
signal handler's exception (preprocess turns SIGTERM into one) became pickle's "import of module
failed".
"""
from __future__ import annotations

import gc
import importlib.abc
import sys

HEAVY = frozenset({"torch", "megatron", "transformers", "scipy", "sympy", "numpy", "pandas", "pyarrow",
                   "datasets", "safetensors", "tokenizers", "matplotlib", "sklearn"})
"""Top-level packages whose loads run with the collector paused."""

_loading = False  # a paused load is under way in this process (nested loads run inside it)


class _Paused(importlib.abc.Loader):
    """The real loader, run with the collector paused; everything else is the real loader's."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):  # get_source, is_package, get_resource_reader, ... as before
        return getattr(self._inner, name)

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        global _loading
        if _loading or not gc.isenabled():
            self._inner.exec_module(module)
            return
        _loading = True
        gc.disable()
        try:
            self._inner.exec_module(module)
        finally:
            gc.freeze()
            gc.enable()
            _loading = False


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if _loading or name.partition(".")[0] not in HEAVY:
            return None
        # What the other finders would find (megatron_ext/jit_off.py's included), run paused.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Paused(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not installed():
        sys.meta_path.insert(0, _Finder())


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)
