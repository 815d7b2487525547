"""No cyclic garbage collection while a module is being imported, in ``codetron`` processes.

Importing torch, megatron-core and transformers builds about a million objects that all stay alive;
the collector's passes over them, triggered by nothing but the allocation count, cost 0.3-0.5 s of
the ~3.3 s each training rank, converter or evaluator spends on its imports on this 2-core machine
(measured: torch + megatron-core + torch._dynamo in 3.3 s with the collector on, 2.9 s off). The
``codetron`` entry point (``cli.main``) installs this wrapper around ``builtins.__import__``: while
an import runs, the collector waits; when an import has loaded new modules, what exists then is
frozen (``gc.freeze``: moved out of the collector's reach, as CPython's docs advise for start-up,
so the next collection does not walk it all), and collection goes on as before. The price: cyclic
garbage the program made before such an import is never collected; imports happen at start-up and
in the first step of a loop, so that is bounded and small. Imports of modules already loaded pay
one extra function call.
"""
from __future__ import annotations

import builtins
import gc
import sys

_original = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if not gc.isenabled():  # an enclosing import (or the program) has it off: leave that alone
        return _original(name, globals, locals, fromlist, level)
    gc.disable()
    loaded = len(sys.modules)
    try:
        return _original(name, globals, locals, fromlist, level)
    finally:
        if len(sys.modules) != loaded:
            # What the import built stays alive: out of the collector's reach (an O(1) list splice),
            # else the next allocation would start a full pass over all of it.
            gc.freeze()
        gc.enable()


def install() -> None:
    """Wrap ``builtins.__import__`` (once per process)."""
    if builtins.__import__ is not _import:
        builtins.__import__ = _import


def installed() -> bool:
    return builtins.__import__ is _import
