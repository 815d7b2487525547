"""Run megatron-core 0.16.1 on a CPU-only torch build over gloo.

megatron-core assumes CUDA at a few dozen call sites (measured in
``shared/notes/megatron-core-cpu.md``): ``device="cuda"`` literals in the pipeline schedules,
clip_grads and the optimizer; ``torch.cuda.current_device()`` in TP mappings, p2p and grad buffers;
``Tensor.cuda()``; string type checks such as ``grad.type() == 'torch.cuda.FloatTensor'``;
``torch.cuda.synchronize()``; and a CUDA RNG tracker. Rather than fork megatron-core, this module
redirects exactly those entry points to the CPU, once per process, and only when CUDA is absent.

``check_patch_targets()`` fails loudly when a megatron-core upgrade moves what is patched here; a
test calls it, so an upgrade cannot silently run on half-patched code. The package accepts a range
of megatron-core releases on GPU (setup.py); on CPU only the one version measured here runs, and
any other is refused in one line before a process group starts.
"""
from __future__ import annotations

import contextlib
import functools

import torch

from codetron.errors import CodetronError

PINNED_MEGATRON_CORE = "0.16.1"

_APPLIED = False

# Factory functions that megatron-core calls with device="cuda" or device=current_device().
_FACTORIES = ("empty", "zeros", "ones", "full", "tensor", "arange", "rand", "randn", "randint",
              "empty_like", "zeros_like", "ones_like", "full_like", "as_tensor", "eye", "linspace")


def _is_cuda(device) -> bool:
    if device is None:
        return False
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, int):
        return True
    return isinstance(device, str) and device.startswith("cuda")


def _cpu_device(kwargs: dict) -> dict:
    if _is_cuda(kwargs.get("device")):
        kwargs["device"] = "cpu"
        kwargs.pop("pin_memory", None)
    return kwargs


def _wrap_factory(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **_cpu_device(kwargs))

    wrapper.__codetron_cpu__ = True
    return wrapper


def _cuda_type_name(t: torch.Tensor) -> str:
    # CPU "torch.FloatTensor" reported as "torch.cuda.FloatTensor" so megatron's optimizer and
    # clip_grads type checks accept CPU params; the tensor itself stays on the CPU.
    return _ORIG["Tensor.type"](t).replace("torch.", "torch.cuda.", 1)


_ORIG: dict[str, object] = {}


def _tensor_type(self, dtype=None, non_blocking=False, **kwargs):
    if dtype is None:
        return _cuda_type_name(self)
    if isinstance(dtype, str):
        dtype = dtype.replace("torch.cuda.", "torch.")
    return _ORIG["Tensor.type"](self, dtype, non_blocking, **kwargs)


def _tensor_to(self, *args, **kwargs):
    args = tuple("cpu" if _is_cuda(a) and not isinstance(a, int) else a for a in args)
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        args = ("cpu",) + args[1:]
    return _ORIG["Tensor.to"](self, *args, **_cpu_device(kwargs))


def _tensor_cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
    return self


class _CPURNGStatesTracker:
    """Mixin for megatron's CudaRNGStatesTracker keeping named CPU generator states.

    ``fork`` swaps the default CPU generator to the named state and back, which is what dropout
    in tensor-parallel regions needs; megatron's own fork would warn on every call because here
    "CUDA" and CPU generators are the same one.
    """

    def add(self, name, seed):
        self._is_initialized = True
        if seed in self.seeds_:
            raise Exception(f"seed {seed} already exists")
        self.seeds_.add(seed)
        if name in self.states_:
            raise Exception(f"rng state {name} already exists")
        orig = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(orig)

    @contextlib.contextmanager
    def fork(self, name="model-parallel-rng"):
        if name not in self.states_:
            raise Exception(f"rng state {name} is not added")
        orig = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)


class IncompatibleMegatronCore(CodetronError, RuntimeError):
    """The installed megatron-core is not the one this layer was measured on (a user-facing, one-line
    error: the CLI prints it without a traceback)."""


def check_patch_targets() -> None:
    """Raise if megatron-core no longer has the call sites this module patches."""
    import megatron.core
    from megatron.core.optimizer import clip_grads
    from megatron.core.pipeline_parallel import schedules
    from megatron.core.tensor_parallel import mappings, random

    problems = []
    version = getattr(megatron.core, "__version__", None) or megatron.core.package_info.__version__
    if version != PINNED_MEGATRON_CORE:
        problems.append(f"megatron-core {version} installed, cpu_compat written for {PINNED_MEGATRON_CORE} "
                        f"(CPU runs need pip install megatron-core=={PINNED_MEGATRON_CORE}; GPU runs accept "
                        f"the range in setup.py)")
    for mod, names in ((random, ("CudaRNGStatesTracker", "_get_cuda_rng_state", "_set_cuda_rng_state",
                                 "initialize_rng_tracker", "model_parallel_cuda_manual_seed")),):
        for n in names:
            if not hasattr(mod, n):
                problems.append(f"{mod.__name__}.{n} is gone")
    import inspect

    for mod, needle in ((schedules, 'device="cuda"'), (clip_grads, "torch.cuda.FloatTensor"),
                        (mappings, "torch.cuda.current_device()")):
        if needle not in inspect.getsource(mod):
            problems.append(f"{mod.__name__} no longer contains {needle!r}: re-measure cpu_compat")
    if problems:
        raise IncompatibleMegatronCore("megatron_ext/cpu_compat.py does not match the installed megatron-core: "
                                       + "; ".join(problems))


def apply() -> bool:
    """Patch megatron-core's CUDA assumptions for this process. No-op when CUDA is available."""
    global _APPLIED
    if _APPLIED or torch.cuda.is_available():
        return _APPLIED
    check_patch_targets()
    # ``with torch.device(...)`` finds factories by identity in a set torch caches on first use;
    # filled after the swap below it would hold our wrappers and miss the real functions, and
    # transformers' model init in this process then left RoPE buffers uninitialised (measured).
    from torch.utils._device import _device_constructors

    _device_constructors()
    for name in _FACTORIES:
        fn = getattr(torch, name)
        if not getattr(fn, "__codetron_cpu__", False):
            setattr(torch, name, _wrap_factory(fn))
    _ORIG["Tensor.type"] = torch.Tensor.type
    _ORIG["Tensor.to"] = torch.Tensor.to
    torch.Tensor.type = _tensor_type
    torch.Tensor.to = _tensor_to
    torch.Tensor.cuda = _tensor_cuda
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    torch.cuda.manual_seed = lambda seed: None  # the default CPU generator is seeded by torch.manual_seed

    from megatron.core.tensor_parallel import random

    random._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    random._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    base = random.CudaRNGStatesTracker
    if not issubclass(base, _CPURNGStatesTracker):
        random.CudaRNGStatesTracker = type("CPURNGStatesTracker", (_CPURNGStatesTracker, base), {})
    random.initialize_rng_tracker(force_reset=True)
    _APPLIED = True
    return True


def is_applied() -> bool:
    return _APPLIED
