"""Checks before anything is queued: a bad layout must fail in one line, not after a day's queue wait.

The layout rules are the trainer's own (``codetron.megatron_ext.validate``), applied to the world size the
profile gives (nodes x ranks per node); on top come the things only a launcher knows: that the base
checkpoint of a fine-tune exists, and that the estimated memory per GPU fits the profile's GPU.
"""
from __future__ import annotations

import copy
from pathlib import Path

from codetron.errors import ConfigError
from codetron.megatron_ext.config import TrainConfig
from codetron.megatron_ext.datapath import data_prefixes
from codetron.megatron_ext.validate import validate
from codetron.slurm.plan import GiB, MemoryEstimate, estimate_memory, get_gpu
from codetron.slurm.profile import ClusterProfile


def tokenizer_vocab(spec: str | None) -> int | None:
    """Vocabulary size of ``data.tokenizer`` without loading torch: ``null:V``, a tokenizer.json, or
    the bundled default. None when it cannot be read (the memory check then uses the preset's)."""
    if spec and spec.startswith("null:"):
        try:
            return int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"data.tokenizer {spec!r}: expected null:<vocab size>") from None
    try:
        from tokenizers import Tokenizer

        if spec is None:
            from codetron.preprocess.tokenizer import default_tokenizer_path

            path = default_tokenizer_path()
        else:
            path = Path(spec)
            if path.is_dir():
                path = path / "tokenizer.json"
        return Tokenizer.from_file(str(path)).get_vocab_size() if path.suffix == ".json" and path.is_file() else None
    except Exception:  # an unreadable tokenizer is reported by the trainer itself, with its path
        return None


def check_train(profile: ClusterProfile, cfg: TrainConfig, check_data: bool = True,
                at_submit: bool = False) -> MemoryEstimate | None:
    """Raise ConfigError naming the field at fault; return the memory estimate when one was made.

    ``at_submit``: rendering a script for later; a data path or base checkpoint not given here is
    the script's DATA_PATH / LOAD_DIR, which sbatch demands. Paths that are given are checked."""
    world = profile.world_size
    where = f"profile {profile.name}: {profile.nodes} node(s) x {profile.ranks_per_node} ranks = {world}"
    ck = cfg.checkpoint
    later = at_submit and (not cfg.data.data_path or (ck.finetune and not ck.load))
    if (not check_data or later) and ck.finetune and not (ck.load or ck.save):
        # The base checkpoint of a fine-tune arrives as $LOAD_DIR when the job is submitted.
        cfg = copy.deepcopy(cfg)
        cfg.checkpoint.load = "$LOAD_DIR"
    try:
        validate(cfg, world, check_data=check_data and not later)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if check_data and later:
        for prefix in data_prefixes(cfg.data.data_path):
            for ext in (".bin", ".idx"):
                if not Path(prefix + ext).is_file():
                    raise ConfigError(f"data.data_path: {prefix}{ext} does not exist")
        tok = cfg.data.tokenizer
        if tok and not tok.startswith("null:") and not Path(tok).exists():
            raise ConfigError(f"data.tokenizer: {tok} does not exist")
    elif check_data and ck.finetune and not ck.load:
        raise ConfigError("checkpoint.load: a fine-tuning recipe needs the base checkpoint (--load DIR)")
    if check_data and ck.load and ck.load != "$LOAD_DIR" and not Path(ck.load).exists():
        raise ConfigError(f"checkpoint.load: {ck.load} does not exist")
    gpu = get_gpu(profile.gpu)
    vocab = cfg.model.vocab_size or tokenizer_vocab(cfg.data.tokenizer)
    if gpu.memory_gib <= 0 or not vocab:
        return None
    est = estimate_memory(cfg, world, gpu, vocab=vocab)
    if est.total > gpu.memory_gib * GiB:
        raise ConfigError(
            f"{where}: estimated {est.total / GiB:.1f} GiB per GPU (weights {est.weights / GiB:.1f}, grads "
            f"{est.grads / GiB:.1f}, optimizer {est.optimizer / GiB:.1f}, activations {est.activations / GiB:.1f}) "
            f"exceeds {gpu.name}'s {gpu.memory_gib:g} GiB; try parallel.use_distributed_optimizer, model.recompute "
            f"selective/full, a larger pipeline/tensor size or more nodes (codetron slurm plan shows the options)")
    return est
