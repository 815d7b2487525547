"""Which of megatron-core's fused kernels a run may turn on, decided from what actually imports.

megatron-core's fusion flags assume their kernels are there; when they are not, a run either dies
(``masked_softmax_fusion`` imports ``scaled_masked_softmax_cuda``, which the megatron-core wheel does
not ship; ``gradient_accumulation_fusion`` raises without apex's ``fused_weight_gradient_mlp_cuda``;
``persist_layer_norm`` asserts under torch's LayerNorm) or, worse, silently computes something else.
So each flag is on only when its kernel imports here, and every flag left off says why in one line.

=====================  =====================================================  ======================
flag                   kernel                                                 used by
=====================  =====================================================  ======================
masked softmax         ``scaled_upper_triang_masked_softmax_cuda`` and         local attention only
                       ``scaled_masked_softmax_cuda`` (Megatron-LM source
                       build or apex ``--cuda_ext``)
bias-dropout-add       megatron's ``jit_fuser`` (``torch.compile``; on CUDA     every layer spec
                       inductor emits triton kernels)
bias-GELU              the same ``jit_fuser``                                  every layer spec
gradient accumulation  apex ``fused_weight_gradient_mlp_cuda``                 megatron's own linears;
                                                                              GPTModel's output layer
                                                                              is one even under TE
persistent layer norm  apex ``FastLayerNormFN`` (``apex.contrib.layer_norm``)  local/sdpa on apex
=====================  =====================================================  ======================

Tests fake "kernel present" by patching :func:`importable` and :func:`cuda_available`.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field

import torch

_SOFTMAX_KERNELS = ("scaled_upper_triang_masked_softmax_cuda", "scaled_masked_softmax_cuda")
_GRAD_ACCUM_KERNEL = "fused_weight_gradient_mlp_cuda"
_PERSIST_LN_KERNEL = "apex.contrib.layer_norm.layer_norm"
_JIT_BACKEND = "triton"

NAMES = {
    "masked_softmax": "masked softmax",
    "bias_dropout": "bias-dropout-add",
    "bias_gelu": "bias-GELU",
    "gradient_accumulation": "gradient-accumulation",
    "persist_layer_norm": "persistent layer norm",
}
"""Human names of the five fusions, in the order lines are printed."""


@functools.lru_cache(maxsize=None)
def _import_ok(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # a CUDA extension built for another torch fails with OSError/RuntimeError too
        return False
    return True


def importable(module: str) -> bool:
    """Whether ``module`` imports in this process (the probe tests replace)."""
    return _import_ok(module)


def cuda_available() -> bool:
    """Whether a CUDA device is usable (the probe tests replace)."""
    return torch.cuda.is_available()


@dataclass(frozen=True)
class Fusions:
    """The decision: one flag per fusion, and why each that is off is off."""

    masked_softmax: bool = False
    """megatron's fused scale-mask-softmax in the local DotProductAttention."""
    bias_dropout: bool = False
    """bias + dropout + residual add in one jit-fused function."""
    bias_gelu: bool = False
    """bias + tanh-GELU in one jit-fused function (megatron's ``bias_gelu_impl``)."""
    gradient_accumulation: bool = False
    """Weight-gradient GEMM accumulating straight into the fp32 ``main_grad`` buffer."""
    persist_layer_norm: bool = False
    """apex's persistent LayerNorm kernel."""
    lines: tuple[str, ...] = field(default=())
    """One line per fusion left off (all of them in one line when there is no CUDA)."""

    def transformer_config_kwargs(self) -> dict:
        """The TransformerConfig fields these decisions set."""
        return dict(masked_softmax_fusion=self.masked_softmax, bias_dropout_fusion=self.bias_dropout,
                    bias_activation_fusion=self.bias_gelu, gradient_accumulation_fusion=self.gradient_accumulation,
                    persist_layer_norm=self.persist_layer_norm)


def choose(impl: str, precision: str, explicit_masks: bool) -> Fusions:
    """Decide every fusion for a run.

    ``impl``: the resolved layer implementation ("local", "sdpa", "transformer_engine");
    ``precision``: "fp32", "bf16" or "fp16"; ``explicit_masks``: the data passes attention masks
    of its own (packed SFT's block-diagonal mask).
    """
    if not cuda_available():
        return Fusions(lines=("fusions off (no CUDA; their kernels are CUDA-only): "
                              + ", ".join(NAMES.values()),))
    on: dict[str, bool] = {}
    why: dict[str, str] = {}

    if impl != "local":
        why["masked_softmax"] = f"{impl} attention does its own softmax"
    elif precision == "fp32":
        why["masked_softmax"] = "megatron's fused softmax only runs on bf16/fp16 scores"
    elif not all(importable(k) for k in _SOFTMAX_KERNELS):
        why["masked_softmax"] = (" / ".join(_SOFTMAX_KERNELS) + " do not import (the megatron-core wheel does not "
                                 "ship them; a Megatron-LM source build or apex --cuda_ext does)")
    elif explicit_masks:
        # The causal kernel takes no mask: it would silently attend across packed documents.
        why["masked_softmax"] = "packed SFT passes a block mask, which megatron's causal softmax kernel ignores"
    else:
        on["masked_softmax"] = True

    # megatron's jit_fuser is torch.compile; on CUDA its code generator is triton.
    jit_ok = importable(_JIT_BACKEND)
    for name in ("bias_dropout", "bias_gelu"):
        if jit_ok:
            on[name] = True
        else:
            why[name] = f"{_JIT_BACKEND} does not import, so torch.compile (megatron's jit_fuser) cannot fuse on CUDA"

    if importable(_GRAD_ACCUM_KERNEL):
        on["gradient_accumulation"] = True
    else:
        why["gradient_accumulation"] = (f"apex's {_GRAD_ACCUM_KERNEL} does not import (megatron's own linear layers "
                                        f"need it, GPTModel's output layer included even under TransformerEngine)")

    if impl == "transformer_engine":
        why["persist_layer_norm"] = "TransformerEngine brings its own LayerNorm"
    elif not importable("apex"):
        why["persist_layer_norm"] = "apex is not installed (megatron uses torch's LayerNorm, which has no such kernel)"
    elif not importable(_PERSIST_LN_KERNEL):
        why["persist_layer_norm"] = f"{_PERSIST_LN_KERNEL} does not import (apex built without --fast_layer_norm)"
    else:
        # megatron itself falls back to the non-persistent kernel for hidden sizes it does not list.
        on["persist_layer_norm"] = True

    lines = tuple(f"fusion {NAMES[k]} off: {why[k]}" for k in NAMES if k in why)
    return Fusions(**{k: on.get(k, False) for k in NAMES}, lines=lines)


_ANNOUNCED: set[str] = set()


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def announce(fusions: Fusions) -> list[str]:
    """Print each line once per process, from global rank 0 only; returns what was printed."""
    if _rank() != 0:
        return []
    out = []
    for line in fusions.lines:
        if line not in _ANNOUNCED:
            _ANNOUNCED.add(line)
            print(line, flush=True)
            out.append(line)
    return out
