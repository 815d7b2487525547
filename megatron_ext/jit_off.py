"""Without CUDA, megatron-core imports with its ``jit_fuser`` off.

megatron-core wraps about 25 functions in ``jit_fuser`` (``torch.compile`` on torch >= 2.2) while its
modules import. Building those wrappers loads torch's inductor: 1.3 s of the 2.2 s that
``import megatron.core`` takes on this 2-core machine, paid again by every rank, converter and check
a run starts. Without CUDA, ``fusions.choose()`` turns every fusion off, so no wrapped function is
ever called; megatron's own switch (``megatron.core.jit.disable_jit_fuser``) thrown right after
``megatron.core.jit`` loads makes the later decorators plain functions, the same math uncompiled.
With CUDA nothing changes. ``install()`` must run before the first ``import megatron.core``; the
package's ``__init__`` calls it, and it costs nothing until megatron-core is imported.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_TARGET = "megatron.core.jit"


def _cuda_available() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available()


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then megatron's switch."""

    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        if not _cuda_available():
            module.disable_jit_fuser()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once; a no-op after megatron-core has loaded)."""
    if _TARGET in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


def jit_fuser_off() -> bool:
    """Whether this process's megatron-core decorators are plain functions."""
    jit = sys.modules.get(_TARGET)
    return jit is not None and jit.jit_fuser is jit.noop_decorator
