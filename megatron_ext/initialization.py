"""Seeding and random initialisation that give one model per seed, whatever the parallel layout.

Megatron-LM seeds every pipeline rank with ``seed + 100 * pp_rank`` (``seed_everything`` below):
without the offset all stages draw from the same stream and a PP4 model starts as four copies of
one stage. But with the offset alone, layer k's weights depend on which stage it lands on, so the
same seed gives different models at PP1 and PP4. We keep Megatron-LM's seeding for everything that
draws at run time (dropout, through megatron's model-parallel RNG tracker) and make the *initial
weights* a pure function of the seed and the parameter's place in the global model:

* every draw is made from a CPU generator keyed by (seed, owner, draw index), where the owner is
  the global (1-based) layer number, ``embedding`` (word then position table, first stage) or
  ``output`` (the untied output layer, last stage); draw index counts draws inside the owner, in
  megatron's construction order (qkv, proj, fc1, fc2), which no layout changes;
* the owner of a transformer layer is set by a ``ModuleSpec`` subclass of the layer module
  (``layer_owned_spec``), the rest by which of the TransformerConfig's init hooks is called;
* draws are made in fp32 on the CPU and cast, so fp32, bf16 and CUDA runs start from the same numbers.

With ``use_cpu_initialization`` (our CPU path) megatron hands the init hook the whole master weight
and keeps its own TP slice, so TP shards are slices of one tensor and every layout is identical.
On GPU megatron initialises each TP shard in place (``tensor_model_parallel`` is set on it); the key
then also holds the TP rank, as Megatron-LM's tracker does: shards differ, layouts with TP>1 differ
from TP1, stages and DP replicas still behave as above.
"""
from __future__ import annotations

import contextvars
import dataclasses
import hashlib

import torch

_OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar("codetron_init_owner", default=None)

PP_SEED_STRIDE = 100
"""Megatron-LM's per-pipeline-rank seed offset (``_set_random_seed``)."""


def seed_everything(seed: int) -> int:
    """Megatron-LM's run-time seeding: ``seed + 100 * pp_rank`` for the default generator and for
    megatron's model-parallel RNG tracker (TP ranks get their own dropout stream from it, DP
    replicas share one). Returns the seed used on this rank."""
    from megatron.core import parallel_state, tensor_parallel

    rank_seed = seed + PP_SEED_STRIDE * parallel_state.get_pipeline_model_parallel_rank()
    torch.manual_seed(rank_seed)
    tensor_parallel.model_parallel_cuda_manual_seed(rank_seed)
    return rank_seed


def _key(*parts) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class _DrawCounter:
    """Draws made so far per owner, shared by the three init hooks of one model build."""

    def __init__(self, seed: int):
        self.seed = seed
        self.counts: dict[str, int] = {}

    def next_key(self, owner: str, shard: int | None) -> int:
        idx = self.counts.get(owner, 0)
        self.counts[owner] = idx + 1
        return _key(self.seed, owner, idx) if shard is None else _key(self.seed, owner, idx, "tp", shard)


class KeyedInit:
    """A TransformerConfig init hook that draws from a generator keyed by the parameter's owner.

    A class rather than a closure so configs stay picklable.
    """

    def __init__(self, inner, counter: _DrawCounter, default_owner: str):
        self.inner, self.counter, self.default_owner = inner, counter, default_owner

    def __call__(self, tensor: torch.Tensor):
        from megatron.core import parallel_state

        shard = None
        # Only megatron's GPU path hands over a TP shard (tagged before the call); the CPU path
        # passes the untagged full master weight.
        if getattr(tensor, "tensor_model_parallel", False) and parallel_state.get_tensor_model_parallel_world_size() > 1:
            shard = parallel_state.get_tensor_model_parallel_rank()
        key = self.counter.next_key(_OWNER.get() or self.default_owner, shard)
        # Draw straight into fp32 CPU tensors: a scratch copy per tensor would leave a model's worth
        # of freed-but-retained heap behind (+360 MiB peak RSS measured on an 86M-parameter run).
        direct = tensor.dtype == torch.float32 and tensor.device.type == "cpu"
        values = tensor if direct else torch.empty(tensor.shape, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key)
            self.inner(values)
        if not direct:
            with torch.no_grad():
                tensor.copy_(values)
        return tensor


def install(config, seed: int) -> None:
    """Route the config's init hooks through ``KeyedInit`` (before any model chunk is built)."""
    counter = _DrawCounter(seed)
    config.embedding_init_method = KeyedInit(config.embedding_init_method, counter, "embedding")
    config.init_method = KeyedInit(config.init_method, counter, "output")
    config.output_layer_init_method = KeyedInit(config.output_layer_init_method, counter, "output")


_OWNED_CLASSES: dict[type, type] = {}


def _layer_owned(cls: type) -> type:
    if cls not in _OWNED_CLASSES:
        def __init__(self, config, submodules, layer_number: int = 1, *args, **kwargs):
            from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

            # megatron adds the stage offset inside the layer; the owner must be known before the
            # sublayers draw, so compute the same global number here.
            global_number = layer_number + get_transformer_layer_offset(config, kwargs.get("vp_stage"))
            token = _OWNER.set(f"layer{global_number}")
            try:
                cls.__init__(self, config, submodules, layer_number, *args, **kwargs)
            finally:
                _OWNER.reset(token)

        _OWNED_CLASSES[cls] = type(cls.__name__, (cls,), {"__init__": __init__})
    return _OWNED_CLASSES[cls]


def layer_owned_spec(spec):
    """The layer spec with its module marked as the owner of the draws made while it is built.

    Harmless without ``install``: only the init hooks read the owner.
    """
    module = spec.module
    if not isinstance(module, type):
        return spec
    return dataclasses.replace(spec, module=_layer_owned(module))
