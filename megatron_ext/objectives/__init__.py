"""Training objectives, plugged into the loop through megatron-core's forward_step hook.

An objective builds its datasets, turns a list of samples into a batch, and provides the
``forward_step(batch, model) -> (output, loss_fn)`` that megatron-core's pipeline schedules call.
Loss functions return ``(loss_sum, num_tokens, {"lm loss": (loss_sum, num_tokens)})`` so the loop
runs with ``calculate_per_token_loss=True``: the loss is the mean over every target token of the
global batch, which does not depend on how samples are split into micro-batches or DP ranks.

Objectives whose data has a natural epoch (SFT documents, RRTF pairs) also provide
``epoch_samples(cfg, tokenizer)``; ``optim.train_epochs`` turns into ``train_iters`` through it.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Protocol


class Objective(Protocol):
    name: str

    def build_datasets(self, cfg, tokenizer, num_train_samples: int, num_valid_samples: int):
        """Return (train, valid) map-style datasets of per-sample dicts (valid may be None)."""

    def collate(self, samples: list[dict]) -> dict:
        """Stack samples into a batch of tensors."""

    def forward_step(self, batch: dict, model) -> tuple:
        """Run the model chunk; return (output_tensor, loss_fn)."""

    # Optional: def epoch_samples(self, cfg, tokenizer) -> int
    #   training rows (samples of the train dataset) one pass over the data produces, for
    #   optim.train_epochs. Called on every rank after the process groups exist (dataset builders
    #   may hold barriers), with the data.split the loop will use.


_REGISTRY: dict[str, Callable[[], Objective]] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def get_objective(name: str) -> Objective:
    from codetron.errors import ConfigError

    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"data.mode {name!r} is not a known objective; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def _load_builtin() -> None:
    import importlib

    for mod in ("lm", "sft", "rrtf"):
        try:
            importlib.import_module(f"codetron.megatron_ext.objectives.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"codetron.megatron_ext.objectives.{mod}":
                raise


def check_train_epochs(cfg) -> None:
    """``optim.train_epochs`` checks that need no data: run before any process group starts."""
    from codetron.errors import ConfigError

    epochs = cfg.optim.train_epochs
    if epochs is None:
        return
    if not (math.isfinite(epochs) and epochs > 0):
        raise ConfigError(f"optim.train_epochs {epochs}: must be a number > 0 (or none to use optim.train_iters)")
    if not hasattr(get_objective(cfg.data.mode), "epoch_samples"):
        raise ConfigError(f"optim.train_epochs: data.mode {cfg.data.mode} has no epoch to count (pretraining "
                          f"samples are drawn for train_iters); set optim.train_iters and optim.train_epochs none")


def resolve_train_epochs(cfg, tokenizer, rank0: bool) -> None:
    """Set ``optim.train_iters`` = ceil(train_epochs x rows per epoch / global_batch_size).

    Must run before the LR schedule and the datasets are sized from train_iters. Every rank
    computes the same number from the same data, so no broadcast is needed."""
    from codetron.errors import CodetronError

    epochs = cfg.optim.train_epochs
    if epochs is None:
        return
    check_train_epochs(cfg)
    rows = int(get_objective(cfg.data.mode).epoch_samples(cfg, tokenizer))
    if rows <= 0:
        raise CodetronError(f"data.data_path {cfg.data.data_path}: no training rows, so optim.train_epochs "
                            f"{epochs:g} means no steps")
    gbs = cfg.optim.global_batch_size
    # Fraction of the written decimal: 0.1 epochs of 30 rows at batch 3 is 1 step, not ceil(1.0000000000000002).
    iters = max(1, math.ceil(Fraction(repr(float(epochs))) * rows / gbs))
    if rank0:
        was = "" if iters == cfg.optim.train_iters else f" (replaces optim.train_iters {cfg.optim.train_iters})"
        print(f"train_epochs {epochs:g} over {rows} rows at global batch {gbs} -> train_iters {iters}{was}", flush=True)
    cfg.optim.train_iters = iters
