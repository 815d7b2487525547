"""Distributed checkpoints with megatron.core.dist_checkpointing.

Layout of ``checkpoint.save``::

    iter_0000010/                         dist_checkpointing files (any TP/PP/DP reads them)
    iter_0000010/codetron_config.yaml     the resolved TrainConfig of the run that wrote it
    iter_0000010/codetron_manifest.json   every file's size and CRC-32 (``manifest``), after the data
    latest_checkpointed_iteration.txt     written last, atomically: only complete checkpoints count
    run_state.json                        running | preempted | finished | failed, for launchers

A kill during a save leaves at most a partial ``iter_*`` directory that no tracker points to; the
next save removes it, and old ones are pruned only after a newer one is complete. A damaged
checkpoint (a truncated or corrupt file, a garbage tracker) is found before it is loaded: file sizes
before any process group starts, then the CRC-32s of the one to be resumed, read by all ranks in
shares; the resume falls back to the newest intact one (``resume_point``). A full disk is one line
(``DiskFullError``) and leaves the previous checkpoint as it was. The processes megatron-core forks
to write a checkpoint die with the trainer (``_die_with_parent``), so a kill -9 leaves no writer
behind, and start with the exit signals blocked (``helper_signals``), so a signal to the whole step
reaches the trainer only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from codetron.errors import CodetronError, ConfigError
from codetron.fileio import atomic_open
from codetron.megatron_ext import families, manifest
from codetron.megatron_ext.families import layouts
from codetron.megatron_ext.helper_signals import held_signals, start_resource_tracker

TRACKER = "latest_checkpointed_iteration.txt"
CONFIG_NAME = "codetron_config.yaml"
RUN_STATE = "run_state.json"
_ITER_RE = re.compile(r"^iter_(\d{7})$")


def iter_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def read_tracker(root: str | Path) -> tuple[int | None, str | None]:
    """(iteration the tracker names, None) or (None, why it cannot be used); (None, None) without one."""
    tracker = Path(root) / TRACKER
    if not tracker.is_file():
        return None, None
    text = tracker.read_text(errors="replace").strip()
    if not text.isdigit():
        return None, f"{tracker} holds {text[:40]!r}, not an iteration number"
    it = int(text)
    if not iter_dir(root, it).is_dir():
        return None, f"{tracker} points to iteration {it} but {iter_dir(root, it)} is missing"
    return it, None


def latest_iteration(root: str | Path | None) -> int | None:
    """The newest complete checkpoint's iteration under ``root``; None if there is none. A tracker
    that names no checkpoint is a CodetronError (``resume_point`` falls back past it instead)."""
    if not root:
        return None
    it, problem = read_tracker(root)
    if problem:
        raise CodetronError(problem)
    return it


def tracked_iteration(root: str | Path | None) -> int | None:
    """The iteration the tracker names, None if it is missing or damaged."""
    return read_tracker(root)[0] if root else None


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept either a run directory (uses its latest checkpoint) or an ``iter_*`` directory."""
    p = Path(path)
    if _ITER_RE.match(p.name) and (p / "metadata.json").is_file():
        return p
    it = latest_iteration(p)
    if it is None:
        raise CodetronError(f"{p}: no complete checkpoint (no {TRACKER} and not an iter_* directory)")
    return iter_dir(p, it)


def checkpoint_damage(ckpt_dir: str | Path, hashes: bool = False) -> str | None:
    """Why ``ckpt_dir`` cannot be loaded, in one line naming the file; None when it is intact.

    With a manifest: every file it lists at its size and, with ``hashes``, its CRC-32 (under a
    process group each rank reads a share of the files and all ranks get the same answer). Without
    one (a checkpoint from before manifests): the files megatron's index lists at full length."""
    ckpt_dir = Path(ckpt_dir)
    try:
        files = manifest.read(ckpt_dir)
    except ValueError as exc:
        return str(exc)
    if files is None:
        return _legacy_damage(ckpt_dir)
    for name in (".metadata", "metadata.json", "common.pt"):
        if name not in files:
            return f"{ckpt_dir / name} is missing (not in {manifest.MANIFEST})"
    problem = manifest.size_problem(ckpt_dir, files)
    if problem or not hashes:
        return problem
    names = sorted(files)
    if not dist.is_initialized():
        return manifest.hash_problem(ckpt_dir, files, names)
    rank, world = dist.get_rank(), dist.get_world_size()
    found: list = [None] * world
    dist.all_gather_object(found, manifest.hash_problem(ckpt_dir, files, names[rank::world]))
    return next((f for f in found if f), None)


def _legacy_damage(ckpt_dir: Path) -> str | None:
    from torch.distributed.checkpoint import FileSystemReader

    for name in (".metadata", "metadata.json", "common.pt"):
        if not (ckpt_dir / name).is_file():
            return f"{ckpt_dir / name} is missing"
    try:
        storage = FileSystemReader(str(ckpt_dir)).read_metadata().storage_data or {}
    except Exception as exc:  # a truncated pickle raises EOFError, UnpicklingError, ...
        return f"{ckpt_dir / '.metadata'} is unreadable ({type(exc).__name__})"
    need: dict[str, int] = {}
    for info in storage.values():
        need[info.relative_path] = max(need.get(info.relative_path, 0), info.offset + info.length)
    for rel, end in sorted(need.items()):
        f = ckpt_dir / rel
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size < end:
            return f"{f} is truncated ({f.stat().st_size} of {end} bytes)"
    return None


def _iterations(root: str | Path) -> list[int]:
    return sorted(int(m.group(1)) for p in Path(root).iterdir() if (m := _ITER_RE.match(p.name)) and p.is_dir())


def _finished(ckpt_dir: Path) -> bool:
    """A save got past its data: the manifest (or, before manifests, the config) is written after it."""
    return (ckpt_dir / manifest.MANIFEST).is_file() or (ckpt_dir / CONFIG_NAME).is_file()


def resume_point(root: str | Path, report: Callable[[str], None] | None = None, hashes: bool = False) -> Path | None:
    """The newest intact checkpoint under ``root``; None if ``root`` has no tracker.

    Candidates: the tracker's checkpoint, then the finished older ones (keep_last keeps them); a
    tracker that is garbage, empty or names a missing directory is skipped and every finished
    checkpoint is a candidate. What was skipped is said in one line to ``report``; if nothing is
    intact, a one-line CodetronError naming the first damaged file."""
    if not (Path(root) / TRACKER).is_file():
        return None
    latest, tracker_problem = read_tracker(root)
    older = [i for i in reversed(_iterations(root)) if (latest is None or i < latest) and _finished(iter_dir(root, i))]
    skipped = [f"checkpoint tracker is damaged: {tracker_problem}"] if tracker_problem else []
    first_problem = tracker_problem
    for it in ([latest] if latest is not None else []) + older:
        problem = checkpoint_damage(iter_dir(root, it), hashes)
        if problem is None:
            if skipped and report:
                report(f"{'; '.join(skipped)}; resuming from {iter_dir(root, it)}, the newest intact checkpoint")
            return iter_dir(root, it)
        skipped.append(f"checkpoint {iter_dir(root, it).name} is damaged: {problem}")
        first_problem = first_problem or problem
    raise CodetronError(f"{first_problem}; no intact checkpoint to fall back to under {root}")


def resume_source(ck, report: Callable[[str], None] | None = None, hashes: bool = False) -> tuple[Path | None, bool]:
    """The checkpoint a run with CheckpointConfig ``ck`` starts from, and whether it takes weights only.

    The run's own checkpoints in ``save`` come first (a requeued or preempted run continues itself,
    fine-tune or not); then ``load``, a run or ``iter_*`` directory: weights only for a fine-tune, a
    full resume otherwise. (None, False) = from scratch. A ``load`` holding no checkpoint is an error,
    not a silent fresh start. ``hashes``: check CRC-32s too (see ``checkpoint_damage``)."""
    if ck.save and (Path(ck.save) / TRACKER).is_file():
        return resume_point(ck.save, report, hashes), False
    if not ck.load:
        return None, False
    p = Path(ck.load)
    if _ITER_RE.match(p.name) and (p / "metadata.json").is_file():
        problem = checkpoint_damage(p, hashes)
        if problem:
            raise CodetronError(f"checkpoint.load {p} is damaged: {problem}")
        return p, bool(ck.finetune)
    found = resume_point(p, report, hashes)
    if found is None:
        raise ConfigError(f"checkpoint.load: {p} holds no checkpoint (no {TRACKER}, not an iter_* directory)")
    return found, bool(ck.finetune)


# Model settings whose change changes a parameter's shape (others: dropout, recompute, seq_length
# within the position table... may differ between runs of the same weights).
_SHAPE_FIELDS = ("family", "num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "ffn",
                 "tie_embeddings", "qkv_bias")


def check_same_model(ckpt_dir: str | Path, model, vocab_size: int) -> None:
    """Before any process group: ConfigError in one line when the checkpoint's saved config describes
    a model of other shapes than ``model`` (a ModelConfig) with vocabulary ``vocab_size``."""
    from codetron.megatron_ext.config import ModelConfig

    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / CONFIG_NAME).is_file():
        return  # not written by codetron train; the loader's shape check still applies
    doc = saved_config(ckpt_dir).get("model") or {}
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    saved = ModelConfig(**{k: v for k, v in doc.items() if k in names})

    def shape_of(m: ModelConfig, vocab: int | None) -> dict:
        out = {k: getattr(m, k) for k in _SHAPE_FIELDS if hasattr(m, k)}
        if families.get(m.family).has_position_table:
            out["max_position_embeddings"] = m.positions  # the learned position table's rows
        if vocab:
            multiple = m.make_vocab_size_divisible_by
            out["padded vocab"] = -(-vocab // multiple) * multiple
        return out

    have, want = shape_of(saved, saved.vocab_size), shape_of(model, vocab_size)
    diff = [f"{k} {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]
    if diff:
        raise ConfigError(f"{ckpt_dir}: another model shape than this run's (checkpoint vs run: {', '.join(diff)}); "
                          f"use the preset/model settings of {ckpt_dir / CONFIG_NAME}, or another checkpoint.save")


def unwrap(chunk):
    """The GPTModel inside its wrappers (DDP, Float16Module): checkpoint keys must not depend on the
    wrapping, so one checkpoint serves fp32, bf16 and fp16 runs."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


def model_sharded_state(model_chunks) -> dict:
    if len(model_chunks) == 1:
        return {"model": unwrap(model_chunks[0]).sharded_state_dict()}
    return {f"model{i}": unwrap(chunk).sharded_state_dict() for i, chunk in enumerate(model_chunks)}


def _optim_metadata(use_distributed_optimizer: bool) -> dict:
    # fully_reshardable: the distributed optimizer state is stored in the canonical per-parameter
    # form, so a checkpoint moves between DP/TP/PP layouts (dp_reshardable would pin TP/PP).
    return {"distrib_optim_sharding_type": "fully_reshardable" if use_distributed_optimizer else None,
            "chained_optim_avoid_prefix": True, "singleton_local_shards": False}


def _rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def write_run_state(root: str | Path, state: str, iteration: int, train_iters: int,
                    checkpoint: int | None = None) -> None:
    """``run_state.json`` (rank 0): how the run stands, the last step it finished and its newest
    checkpoint, for launchers and operators."""
    if _rank0() and root:
        with atomic_open(Path(root) / RUN_STATE) as fh:
            json.dump({"state": state, "iteration": iteration, "checkpoint": checkpoint,
                       "train_iters": train_iters, "time": time.time()}, fh)


class DiskFullError(CodetronError):
    """The checkpoint did not fit (or would not fit) on its file system."""


def save(root: str | Path, iteration: int, model_chunks, optimizer, scheduler, config_yaml: str,
         use_distributed_optimizer: bool, keep_last: int, extra: dict | None = None) -> Path:
    """Write ``iter_<iteration>``: data, config, manifest, then the tracker; prune old ones.

    Before writing, the free space is checked against the size of the checkpoint the tracker names;
    a save that fails on a full disk anyway removes what it wrote. Both raise DiskFullError in one
    line, and the previous checkpoint stays as it was."""
    from megatron.core import dist_checkpointing

    target = iter_dir(root, iteration)
    _check_free_space(root, iteration)
    state = model_sharded_state(model_chunks)
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(state, metadata=_optim_metadata(use_distributed_optimizer))
    state["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    state["iteration"] = iteration
    state["extra"] = extra or {}
    try:
        if _rank0():
            if target.exists():
                shutil.rmtree(target)  # a partial save of this iteration from a killed run
            target.mkdir(parents=True)
        _barrier()
        with held_signals(), _writers_die_with_parent():
            dist_checkpointing.save(state, str(target))
        _barrier()
        if _rank0():
            (target / CONFIG_NAME).write_text(config_yaml)
        _barrier()
        _write_manifest(target)
        if _rank0():
            with atomic_open(Path(root) / TRACKER) as fh:
                fh.write(str(iteration))
    except BaseException as exc:  # torch's CheckpointException derives from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not _disk_full(target, exc):
            raise
        written = _tree_bytes(target)
        if _rank0():
            shutil.rmtree(target, ignore_errors=True)
        raise DiskFullError(
            f"{target}: no space left on device while saving checkpoint {iteration}; it needs more than the "
            f"{written} bytes written{_last_size_note(root)}, {shutil.disk_usage(root).free} bytes are free after "
            f"removing the partial save; {_previous_note(root)}") from None
    if _rank0():
        _prune(root, keep_last, iteration)
    _barrier()
    return target


def _write_manifest(target: Path) -> None:
    """Every rank hashes a share of the files; rank 0 writes the manifest."""
    names = manifest.listing(target)
    if not dist.is_initialized():
        manifest.write(target, manifest.describe(target, names))
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    parts: list = [None] * world
    dist.all_gather_object(parts, manifest.describe(target, names[rank::world]))
    if rank == 0:
        manifest.write(target, {k: v for part in parts for k, v in part.items()})
    _barrier()


def checkpoint_bytes(ckpt_dir: str | Path) -> int | None:
    """A checkpoint's size from its manifest; None without one."""
    try:
        files = manifest.read(ckpt_dir)
    except ValueError:
        return None
    return sum(f["size"] for f in files.values()) if files else None


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _last_size_note(root: str | Path) -> str:
    last = tracked_iteration(root)
    size = checkpoint_bytes(iter_dir(root, last)) if last is not None else None
    return f" (the last checkpoint took {size})" if size else ""


def _previous_note(root: str | Path) -> str:
    last = tracked_iteration(root)
    return f"the previous checkpoint {iter_dir(root, last)} is intact" if last is not None else "no earlier checkpoint"


def _check_free_space(root: str | Path, iteration: int) -> None:
    """DiskFullError on every rank when rank 0 sees less free space than the last checkpoint took."""
    problem = None
    if _rank0():
        last = tracked_iteration(root)
        need = checkpoint_bytes(iter_dir(root, last)) if last is not None and last != iteration else None
        free = shutil.disk_usage(root).free
        if need and free < need:
            problem = (f"{root}: {free} bytes free, checkpoint {iteration} needs about {need} (the size of "
                       f"{iter_dir(root, last).name}); not saving; {_previous_note(root)}; free space or move "
                       f"checkpoint.save, then resume")
    if dist.is_initialized():
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem:
        raise DiskFullError(problem)


def _disk_full(target: Path, exc: BaseException) -> bool:
    """Whether a failed save ran out of space. megatron's writer processes report ENOSPC as e.g.
    ``Worker failure: [enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598`` (torch's
    zip writer on a short write): if the error does not say so itself, a probe write tells."""
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in str(e):
            return True
        e = e.__cause__ or e.__context__
    probe = target / f".space-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * (1 << 20))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        return err.errno == errno.ENOSPC
    finally:
        probe.unlink(missing_ok=True)
    return False


# ---- no writer outlives the trainer ------------------------------------------------------------
# dist_checkpointing.save forks one writer per file bucket. Killed with -9 mid-save, the trainer left
# them running (reparented to PID 1, measured alive minutes later and still writing into the
# checkpoint directory). Linux's PR_SET_PDEATHSIG has the kernel kill them when the trainer dies;
# elsewhere nothing changes.
_PR_SET_PDEATHSIG = 1
_saving_in: int | None = None  # pid of the process inside save(): only its forks are writers


def _die_with_parent(parent: int) -> None:
    """In a child of ``parent``: get SIGKILL when the parent dies (or exit now if it already has)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no such call
        return
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def _after_fork_in_child() -> None:
    if _saving_in is not None:
        _die_with_parent(_saving_in)


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _writers_die_with_parent():
    global _saving_in
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    # The writers' results come back through a queue megatron-core creates on first use as a spawned
    # Manager's: its design serves asynchronous saves, whose writing runs in another process. Saves
    # here are synchronous: megatron's write_preloaded_data_multiproc runs in this process, collects
    # the forked writers' results over its own fork-context queue, and puts one dict into this queue,
    # which retrieve_write_results takes out again in this process. A plain queue.Queue carries that;
    # the Manager was one more process to keep alive under signals and a fresh interpreter importing
    # torch and megatron-core (1.5 s of CPU per saving rank, measured). Set before megatron looks.
    if getattr(filesystem_async, "_results_queue", False) is None:
        import queue

        start_resource_tracker()  # the writers' fork-context queues start it; with the signals held
        filesystem_async._results_queue = queue.Queue()
    _saving_in = os.getpid()
    try:
        yield
    finally:
        _saving_in = None


def _prune(root: str | Path, keep_last: int, newest: int) -> None:
    """After ``newest`` is complete: remove every ``iter_*`` past it (partial saves, and checkpoints a
    fallback skipped: the run has moved on from them), then keep the ``keep_last`` newest intact
    checkpoints up to it, so a damaged one never takes the place of an intact one."""
    iters = _iterations(root)
    for it in iters:
        if it > newest:
            shutil.rmtree(iter_dir(root, it), ignore_errors=True)
    if keep_last <= 0:
        return
    kept = 0
    for it in reversed([i for i in iters if i <= newest]):
        if kept < keep_last and (it == newest or checkpoint_damage(iter_dir(root, it)) is None):
            kept += 1
        else:
            shutil.rmtree(iter_dir(root, it), ignore_errors=True)


def load(ckpt_dir: str | Path, model_chunks, optimizer=None, scheduler=None,
         use_distributed_optimizer: bool = False, weights_only: bool = False) -> dict:
    """Load into the current layout and precision.

    ``optimizer=None``: exactly the stored model weights (what ``convert`` sees). ``weights_only``
    with an optimizer (finetune): the weights, and the optimizer's fp32 main weights from the most
    precise copy in the checkpoint. Otherwise a full resume, of optimizer state written in any
    precision (see the formats below).
    """
    from megatron.core import dist_checkpointing

    ckpt_dir = Path(ckpt_dir)
    keys = _checkpoint_keys(ckpt_dir)
    resume = optimizer is not None and not weights_only
    saved = _saved_format(keys)
    if resume and saved is None:
        raise CodetronError(f"{ckpt_dir} holds weights only (e.g. written by `codetron convert from-hf`); "
                            f"start from it with --checkpoint.load {ckpt_dir.parent} --checkpoint.finetune true")
    fmt = _current_format(optimizer) if optimizer is not None else "fp32"
    if resume and (saved == "distributed") != (fmt == "distributed"):
        raise CodetronError(f"{ckpt_dir} was written with parallel.use_distributed_optimizer={saved == 'distributed'}; "
                            f"resume with the same setting, or start from its weights with --checkpoint.finetune true")
    state = model_sharded_state(model_chunks)
    _check_model_shapes(ckpt_dir, state)
    if resume:
        with _adam_state_for_template(optimizer) if fmt == "distributed" else contextlib.nullcontext():
            template = optimizer.sharded_state_dict(state, is_loading=True,
                                                    metadata=_optim_metadata(use_distributed_optimizer))
        state["optimizer"] = _as_saved_format(template, fmt, saved)
    common = dist_checkpointing.load_common_state_dict(str(ckpt_dir))
    loaded = dist_checkpointing.load(state, str(ckpt_dir))
    for i, chunk in enumerate(model_chunks):
        key = "model" if len(model_chunks) == 1 else f"model{i}"
        unwrap(chunk).load_state_dict(loaded[key])
    if resume:
        opt_state = _as_current_format(loaded["optimizer"], optimizer, fmt, saved)
        if fmt == "distributed":
            _load_distributed_optimizer(_single(optimizer), opt_state)
        else:
            optimizer.load_state_dict(opt_state)
        if scheduler is not None and common.get("scheduler") is not None:
            scheduler.load_state_dict(common["scheduler"])
    if optimizer is not None and (weights_only or fmt != saved):
        _restore_main_weights(ckpt_dir, keys, model_chunks, optimizer, fmt)
    return {"iteration": int(common.get("iteration", 0)), "extra": common.get("extra", {})}


POSITION_TABLE = layouts.POSITION_TABLE


def _stored_shapes(ckpt_dir: Path) -> dict[str, tuple[int, ...]]:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    md = FileSystemReader(str(ckpt_dir)).read_metadata().state_dict_metadata
    return {k: tuple(v.size) for k, v in md.items() if isinstance(v, TensorStorageMetadata)}


def _shape_hint(key: str) -> str:
    if key == POSITION_TABLE:
        return ("model.max_position_embeddings must equal the checkpoint's table (the model's n_positions, "
                "independent of model.seq_length)")
    return "the model settings differ from the checkpoint's codetron_config.yaml"


def _check_model_shapes(ckpt_dir: Path, model_state: dict) -> None:
    """One line naming the tensor, instead of megatron's multi-rank 'Global shape mismatch'."""
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.dist_checkpointing.dict_utils import nested_values

    stored = _stored_shapes(ckpt_dir)
    for value in nested_values(model_state):
        if isinstance(value, ShardedTensor) and value.key in stored and stored[value.key] != tuple(value.global_shape):
            raise CodetronError(f"{ckpt_dir}: {value.key} has shape {stored[value.key]} in the checkpoint but "
                                f"{tuple(value.global_shape)} in this model; {_shape_hint(value.key)}")


def check_position_table(root: str | Path, model) -> None:
    """Before any process group: the checkpoint to fine-tune from has this model's position table."""
    ckpt_dir = resolve_checkpoint_dir(root)
    shape = _stored_shapes(ckpt_dir).get(POSITION_TABLE)
    want = (model.positions, model.hidden_size)
    if shape is not None and shape != want:
        raise CodetronError(f"{ckpt_dir}: {POSITION_TABLE} has shape {shape} in the checkpoint but {want} in this "
                            f"model; {_shape_hint(POSITION_TABLE)}")


# ---- precision-independent resume ---------------------------------------------------------------
# megatron-core stores the optimizer in one of three shapes (measured on 0.16.1):
#   "fp32"        FP32Optimizer: {state: {exp_avg, exp_avg_sq}, param_groups}; the model weights are
#                 the fp32 main weights.
#   "mixed"       Float16OptimizerWithFloat16Params (bf16/fp16): {optimizer: {state, param_groups},
#                 fp32_from_fp16_params}; main weights under optimizer.state.fp32_param.<key>, the
#                 model weights are their bf16/fp16 rounding.
#   "distributed" DistributedOptimizer, the same shape in every precision (fp32 main weights under
#                 optimizer.state.param.<key>), so it resumes across precisions as it is.
# Adam's moments have the same keys in all three. Resuming fp32 <-> mixed re-nests the template to
# the saved shape, and the fp32 main weights move between "model weights" and "fp32_param".
_MAIN_PREFIX = {"mixed": "optimizer.state.fp32_param.", "distributed": "optimizer.state.param."}


def _checkpoint_keys(ckpt_dir: Path) -> set[str]:
    from torch.distributed.checkpoint import FileSystemReader

    return set(FileSystemReader(str(ckpt_dir)).read_metadata().state_dict_metadata)


def _saved_format(keys: set[str]) -> str | None:
    for fmt, prefix in _MAIN_PREFIX.items():
        if any(k.startswith(prefix) for k in keys):
            return fmt
    return "fp32" if any(k.startswith("optimizer.") for k in keys) else None


def _single(optimizer):
    chained = getattr(optimizer, "chained_optimizers", None)
    if chained is None:
        return optimizer
    if len(chained) != 1:
        raise CodetronError(f"expected one optimizer, megatron built {len(chained)} (expert or decoupled-lr groups)")
    return chained[0]


def _current_format(optimizer) -> str:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
    from megatron.core.optimizer.optimizer import Float16OptimizerWithFloat16Params

    inner = _single(optimizer)
    if isinstance(inner, DistributedOptimizer):
        return "distributed"
    return "mixed" if isinstance(inner, Float16OptimizerWithFloat16Params) else "fp32"


def _as_saved_format(template: dict, fmt: str, saved: str) -> dict:
    if fmt == saved:
        return template
    if fmt == "fp32":  # saved "mixed": the same state and groups, one level down
        return {"optimizer": template}
    # fmt "mixed", saved "fp32": no fp32_param in the checkpoint (its model weights are the main
    # weights, restored by _restore_main_weights)
    return template["optimizer"]


def _as_current_format(loaded: dict, optimizer, fmt: str, saved: str) -> dict:
    if fmt == saved:
        return loaded
    if fmt == "fp32":
        return loaded["optimizer"]
    # Float16Optimizer copies these into its main weights; they are its own, then overwritten.
    return {"optimizer": loaded, "fp32_from_fp16_params": _single(optimizer).fp32_from_float16_groups}


def _main_weight_pairs(model_chunks, optimizer, fmt: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(model parameter, the fp32 tensor holding its main weight) for this rank."""
    if fmt == "mixed":
        inner = _single(optimizer)
        return [(p, m) for g16, g32 in zip(inner.float16_groups, inner.fp32_from_float16_groups)
                for p, m in zip(g16, g32)]
    return [(p, p) for chunk in model_chunks for p in unwrap(chunk).parameters() if p.dtype == torch.float32]


def _restore_main_weights(ckpt_dir: Path, keys: set[str], model_chunks, optimizer, fmt: str) -> None:
    """Set the fp32 main weights from the most precise copy the checkpoint holds: its fp32 main
    weights if it has them, else its model weights (exact for an fp32 checkpoint)."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.dist_checkpointing.dict_utils import nested_values

    prefix = _MAIN_PREFIX.get(_saved_format(keys), "")
    if prefix or fmt == "mixed":  # else the model weights just loaded are all there is
        targets = {id(p): m for p, m in _main_weight_pairs(model_chunks, optimizer, fmt)}
        request, dest = {}, {}
        for value in nested_values(model_sharded_state(model_chunks)):
            if isinstance(value, ShardedTensor) and id(value.data) in targets and prefix + value.key in keys:
                main = targets[id(value.data)]
                request[len(request)] = dataclasses.replace(value, key=prefix + value.key,
                                                            data=torch.empty_like(main), dtype=main.dtype)
                dest[len(dest)] = main
        if request:
            got = dist_checkpointing.load(request, str(ckpt_dir))
            with torch.no_grad():
                for i, main in dest.items():
                    main.copy_(got[i])
    if fmt == "mixed":  # bf16/fp16 model weights are the rounding of the main weights
        _single(optimizer)._copy_main_params_to_model_params()
    elif fmt == "distributed":  # its main-weight shards are refilled from the (now restored) model
        optimizer.reload_model_params()


# megatron-core 0.16's DistributedOptimizer with torch's Adam (no apex/TE, e.g. CPU) cannot resume
# as shipped: building the load template reads Adam's per-parameter ``step``, which torch creates
# only at the first step (AssertionError on a fresh optimizer); and ``load_state_dict`` gives every
# state a ``step`` and then copies the loaded parameter state over *all* state keys, ``step``
# included, which the loaded state never has (KeyError 'step'). The two helpers below step around
# both with megatron's own methods (and give each parameter its own ``step`` tensor, see below);
# with apex/TE FusedAdam they change nothing.

@contextlib.contextmanager
def _adam_state_for_template(optimizer):
    """The zero state a first Adam step starts from, only while the load template is built."""
    primed = []
    for opt in getattr(optimizer, "chained_optimizers", None) or [optimizer]:
        inner = getattr(opt, "optimizer", None)
        for group in (inner.param_groups if inner is not None else []):
            for p in group["params"]:
                if not inner.state[p]:
                    inner.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                                          exp_avg_sq=torch.zeros_like(p))
                    primed.append((inner, p))
    try:
        yield
    finally:
        for inner, p in primed:
            del inner.state[p]


def _load_distributed_optimizer(inner, state_dict: dict) -> None:
    """``DistributedOptimizer.load_state_dict`` in its two halves, with ``step`` set aside while the
    parameter state is copied in."""
    param_state = state_dict.pop("param_state", None)
    sharding = state_dict.pop("param_state_sharding_type", None)
    inner.load_state_dict(state_dict)  # param groups, loss scaler; allocates the Adam state
    if param_state is None:
        return
    loaders = {"fully_reshardable": inner.load_parameter_state_from_fully_reshardable,
               "fully_sharded_model_space": inner.load_parameter_state_from_fs_model_space}
    if sharding not in loaders:
        raise CodetronError(f"distributed optimizer state of type {sharding!r} cannot be read here")
    adam_state = inner.optimizer.state
    steps = {p: st.pop("step") for p, st in adam_state.items() if "step" in st}
    try:
        loaders[sharding](param_state)
    finally:
        for p, step in steps.items():
            # megatron hands every parameter the *same* step tensor; torch's foreach Adam then
            # increments it once per parameter per step and the bias correction runs away.
            adam_state[p]["step"] = step.clone()


def has_optimizer_state(ckpt_dir: str | Path) -> bool:
    return _saved_format(_checkpoint_keys(Path(ckpt_dir))) is not None


def saved_config(ckpt_dir: str | Path) -> dict:
    import yaml

    path = Path(ckpt_dir) / CONFIG_NAME
    if not path.is_file():
        raise CodetronError(f"{path} is missing: not a checkpoint written by codetron train")
    return yaml.safe_load(path.read_text())


def barrier_all() -> None:
    _barrier()


def is_rank0() -> bool:
    return _rank0()


def ensure_dir(path: str | Path) -> None:
    if _rank0():
        Path(path).mkdir(parents=True, exist_ok=True)
    _barrier()


__all__ = ["save", "load", "latest_iteration", "tracked_iteration", "read_tracker", "checkpoint_bytes",
           "DiskFullError", "resolve_checkpoint_dir", "iter_dir", "saved_config",
           "checkpoint_damage", "resume_point", "resume_source", "check_same_model",
           "write_run_state", "TRACKER", "CONFIG_NAME", "RUN_STATE", "torch"]
