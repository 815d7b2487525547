"""The training loop megatron-core's wheel does not ship.

It wires megatron-core pieces together through their own hooks: model chunks per virtual stage,
``DistributedDataParallel``, ``get_megatron_optimizer``, ``OptimizerParamScheduler``, the pipeline
schedule from ``get_forward_backward_func`` with the objective's ``forward_step``, and
``finalize_model_grads`` (without it DP gradient reduction and the tied-embedding reduction across
pipeline stages silently never run).
"""
from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codetron.errors import CodetronError
from codetron.megatron_ext import checkpointing, initialization
from codetron.megatron_ext.config import CheckpointConfig, TrainConfig
from codetron.megatron_ext.helper_signals import held_signals
from codetron.megatron_ext.metrics import StepLogger, StepReport, reduce_reports, with_real_tokens
from codetron.megatron_ext.model import build_model, padded_vocab_size, transformer_config
from codetron.megatron_ext.objectives import get_objective, resolve_train_epochs
from codetron.megatron_ext.parallel import data_parallel_size, drop_unsupported_sequence_parallel


@dataclass
class TrainResult:
    iteration: int
    """Last completed step."""
    losses: list[float]
    """Loss of each step run in this process."""
    grad_norms: list[float | None]
    """Grad norm of each step run in this process."""
    state: str
    """"finished" or "preempted"."""


class MicroBatches:
    """Deterministic micro-batches for one DP rank, resumable from any iteration.

    Global batch ``it`` holds samples ``[it*G, (it+1)*G)``; micro-batch ``m`` of DP rank ``r`` holds
    ``it*G + m*M*D + r*M + [0, M)`` -- the same assignment as Megatron-LM's pretraining sampler, so
    every layout sees the same global batch. Samples are read and collated by a torch ``DataLoader``:
    with ``num_workers`` > 0 in background processes, ahead of the step that needs them. Every dataset
    here derives a sample from its index alone (FIM and packing seed per index), so the batches are
    the same with any number of workers.
    """

    def __init__(self, dataset, collate, global_batch: int, micro_batch: int, dp_rank: int, dp_size: int,
                 num_workers: int = 0):
        self.dataset, self.collate = dataset, collate
        self.G, self.M, self.dp_rank, self.dp_size = global_batch, micro_batch, dp_rank, dp_size
        self.num_micro = global_batch // (micro_batch * dp_size)
        self.num_workers = num_workers

    def indices(self, it: int) -> list[list[int]]:
        """Sample indices of this rank's micro-batches of global batch ``it``."""
        base, n = it * self.G, len(self.dataset)
        return [[(base + m * self.M * self.dp_size + self.dp_rank * self.M + j) % n for j in range(self.M)]
                for m in range(self.num_micro)]

    def steps(self, start: int, stop: int):
        """For each iteration in ``[start, stop)``, the list of this rank's collated micro-batches."""
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.dataset, batch_sampler=(idx for it in range(start, stop) for idx in self.indices(it)),
            collate_fn=self.collate, num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
            # Its own generator: a DataLoader draws its workers' base seed from the one it is given,
            # and drawing from torch's default generator would shift the dropout stream.
            generator=torch.Generator())
        with held_signals():  # the workers start here; exit signals are the trainer's alone
            micro = iter(loader)
        for _ in range(start, stop):
            yield [next(micro) for _ in range(self.num_micro)]

    def iteration(self, it: int) -> list[dict]:
        """The collated micro-batches of iteration ``it`` alone."""
        return next(self.steps(it, it + 1))


class ExitRequest:
    """Signals or an exit file ask for checkpoint-and-exit; all ranks agree through an all-reduce."""

    def __init__(self, signals: list[str], exit_file: str | None):
        self.flag = False
        self.exit_file = Path(exit_file) if exit_file else None
        for name in signals:
            sig = getattr(signal, name, None)
            if sig is None:
                raise CodetronError(f"checkpoint.exit_signals: unknown signal {name!r}")
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self.flag = True

    def local(self) -> bool:
        return self.flag or bool(self.exit_file and self.exit_file.exists())


def _to_device(batch: dict) -> dict:
    if not torch.cuda.is_available():
        return batch
    return {k: (v.cuda(non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def build_model_chunks(cfg: TrainConfig, vocab_size: int):
    """Model chunks for this rank (one per virtual stage): GPTModel, in ``Float16Module`` for bf16/fp16
    (as Megatron-LM's ``get_model``), in megatron-core DDP. Initial weights depend only on
    ``optim.seed``, not on the layout (``codetron.megatron_ext.initialization``)."""
    from megatron.core import parallel_state
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.transformer.module import Float16Module

    tconfig = transformer_config(cfg.model, cfg.parallel, cfg.optim, cfg.data, announce=True)
    tconfig.calculate_per_token_loss = True
    initialization.install(tconfig, cfg.optim.seed)
    vpp = cfg.parallel.virtual_pipeline_model_parallel_size
    chunks = []
    for stage in range(vpp or 1):
        vp_stage = stage if vpp else None
        chunk = build_model(
            cfg.model, cfg.parallel, vocab_size, cfg.optim,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            vp_stage=vp_stage, config=tconfig)
        if torch.cuda.is_available():
            chunk.cuda(torch.cuda.current_device())
        if tconfig.bf16 or tconfig.fp16:
            # Casts every parameter (the position table is built fp32) and the first stage's inputs
            # to the model dtype, and the last stage's output back to fp32; the optimizer keeps the
            # fp32 main weights. Checkpoint keys do not see it (checkpointing.unwrap).
            chunk = Float16Module(tconfig, chunk)
        chunks.append(chunk)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=cfg.parallel.overlap_grad_reduce,
        use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
        check_for_nan_in_grad=False,
    )
    wrapped = [DistributedDataParallel(config=tconfig, ddp_config=ddp_config, module=c,
                                       disable_bucketing=(i > 0)) for i, c in enumerate(chunks)]
    return wrapped, tconfig


def build_optimizer(cfg: TrainConfig, chunks):
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    o = cfg.optim
    oc = OptimizerConfig(
        optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps,
        clip_grad=o.clip_grad, bf16=o.precision == "bf16", fp16=o.precision == "fp16",
        params_dtype={"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[o.precision],
        # fp16: loss_scale None means megatron's dynamic scaler, which starts here.
        initial_loss_scale=o.initial_loss_scale,
        use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
    )
    optimizer = get_megatron_optimizer(oc, chunks)
    decay = o.lr_decay_iters or o.train_iters
    warmup = o.lr_warmup_iters if o.lr_warmup_fraction is None else int(o.lr_warmup_fraction * decay)
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0 if warmup else o.lr, max_lr=o.lr, min_lr=o.min_lr,
        lr_warmup_steps=warmup, lr_decay_steps=max(decay, warmup + 1),
        lr_decay_style=o.lr_decay_style, start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=decay, wd_incr_style="constant")
    return optimizer, scheduler


def _reduce_step(loss_dicts, exit_local: bool) -> StepReport:
    """Every loss-report key summed over the world (from the last PP stage, TP rank 0 of each DP
    replica), and whether any rank asked to exit."""
    from megatron.core import parallel_state

    reporting = parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0
    return reduce_reports(loss_dicts, exit_local, reporting)


def _loss_scale_term(optimizer, optim) -> dict[str, float]:
    """fp16's dynamic loss scale, for the step line (bf16 and fp32 need none)."""
    return {"loss scale": float(optimizer.get_loss_scale())} if optim.precision == "fp16" else {}


def _forward_step(objective):
    """megatron-core's forward_step hook: the objective's, with the real-token count added to its report."""
    def forward_step(data_iterator, model):
        batch = _to_device(next(data_iterator))
        output, loss_fn = objective.forward_step(batch, model)
        return output, with_real_tokens(loss_fn, batch.get("loss_mask"))
    return forward_step


def prepare_config(cfg: TrainConfig, tokenizer, rank0: bool) -> int:
    """Settle what the run derives at start-up (identically on every rank); returns the vocabulary."""
    note = drop_unsupported_sequence_parallel(cfg.parallel, cfg.model)
    if note and rank0:
        print(note, flush=True)
    if not (cfg.logging.eval_interval and cfg.logging.eval_iters):
        # No validation: every document trains. Besides, megatron-core 0.16 loops forever sizing an
        # empty split (0 documents, 0 samples), which small data with a 2% valid share produces.
        cfg.data.split = "1,0,0"
    # Before build_optimizer: the LR schedule, like the datasets, is sized from train_iters.
    resolve_train_epochs(cfg, tokenizer, rank0)
    cfg.model.vocab_size = cfg.model.vocab_size or tokenizer.vocab_size
    return cfg.model.vocab_size


@dataclass
class Trainable:
    """This rank's model chunks with their optimizer and LR schedule."""

    chunks: list
    """DDP-wrapped GPTModel chunks, one per virtual pipeline stage."""
    optimizer: Any
    """megatron-core optimizer over all chunks."""
    scheduler: Any
    """megatron-core ``OptimizerParamScheduler``."""


def build_trainable(cfg: TrainConfig, vocab_size: int) -> Trainable:
    """Chunks, optimizer and schedule, with the schedule hooks megatron-core reads from the config."""
    from megatron.core.distributed import finalize_model_grads

    chunks, tconfig = build_model_chunks(cfg, vocab_size)
    optimizer, scheduler = build_optimizer(cfg, chunks)
    tconfig.finalize_model_grads_func = finalize_model_grads
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.no_sync_func = [c.no_sync for c in chunks] if len(chunks) > 1 else chunks[0].no_sync
    return Trainable(chunks, optimizer, scheduler)


def restore(ck: CheckpointConfig, model: Trainable, use_distributed_optimizer: bool, rank0: bool) -> int:
    """Resume from ``ck.save``/``ck.load`` or load fine-tuning weights; returns the step to start at.

    Which checkpoint: ``checkpointing.resume_source``. The start-up check before the process groups
    compared file sizes (and said which damaged ones it skipped); here the ranks read the chosen
    checkpoint's files once, in shares, against the manifest's CRC-32s, and fall back further if
    one is corrupt -- said in one more line only when that changes the choice."""
    sized, _ = checkpointing.resume_source(ck)
    notes: list[str] = []
    path, weights_only = checkpointing.resume_source(ck, notes.append, hashes=True)
    if path != sized and rank0 and notes:
        print(f"warning: {notes[-1]}", flush=True)
    if path is None:
        return 0
    if weights_only:
        # With the optimizer, so its fp32 main weights come from the checkpoint too: a bf16/fp16
        # optimizer built them from the random init, and its first step would write them back.
        checkpointing.load(path, model.chunks, model.optimizer, weights_only=True)
        if rank0:
            print(f"finetune: loaded weights from {path}; fresh optimizer, schedule and step counter", flush=True)
        return 0
    start = checkpointing.load(path, model.chunks, model.optimizer, model.scheduler,
                               use_distributed_optimizer)["iteration"]
    if rank0:
        print(f"resumed from {path} at step {start}{' (fine-tune in progress)' if ck.finetune else ''}", flush=True)
    return start


@dataclass
class RunData:
    """The objective and this DP rank's view of the training and validation samples."""

    objective: Any
    """The ``data.mode`` objective: datasets, collate and forward_step."""
    train: MicroBatches
    """Training micro-batches of this DP rank."""
    valid: MicroBatches | None
    """Validation micro-batches (None without validation data)."""


def build_data(cfg: TrainConfig, tokenizer, world_size: int) -> RunData:
    """Datasets sized for the run (and its validation), served per DP rank in ``data.num_workers``."""
    from megatron.core import parallel_state

    o = cfg.optim
    objective = get_objective(cfg.data.mode)
    eval_batches = ((o.train_iters // cfg.logging.eval_interval + 1) * cfg.logging.eval_iters
                    if cfg.logging.eval_interval else 0)
    train_ds, valid_ds = objective.build_datasets(cfg, tokenizer, o.train_iters * o.global_batch_size,
                                                  eval_batches * o.global_batch_size)
    if train_ds is None or len(train_ds) == 0:
        raise CodetronError(f"data.data_path {cfg.data.data_path}: no training samples (documents too short or split is 0?)")
    dp_rank, dp = parallel_state.get_data_parallel_rank(), data_parallel_size(cfg.parallel, world_size)

    def batches(ds):
        return MicroBatches(ds, objective.collate, o.global_batch_size, o.micro_batch_size, dp_rank, dp,
                            cfg.data.num_workers)

    return RunData(objective, batches(train_ds), batches(valid_ds) if valid_ds is not None else None)


class Saver:
    """Checkpoints at a step (when ``checkpoint.save`` is set) and the run state a launcher reads."""

    def __init__(self, cfg: TrainConfig, model: Trainable, rank0: bool):
        self.ck, self.model, self.rank0 = cfg.checkpoint, model, rank0
        self.train_iters = cfg.optim.train_iters
        self.use_distributed_optimizer = cfg.parallel.use_distributed_optimizer
        self.config_yaml = cfg.to_yaml()
        self.iteration = 0
        self.checkpoint: int | None = None

    def _state(self, state: str) -> None:
        if self.ck.save:
            checkpointing.write_run_state(self.ck.save, state, self.iteration, self.train_iters, self.checkpoint)

    def start(self, it: int) -> None:
        self.iteration = it
        if self.ck.save:
            checkpointing.ensure_dir(self.ck.save)
            self.checkpoint = checkpointing.tracked_iteration(self.ck.save)
        self._state("running")

    def step(self, it: int) -> None:
        """After each step: the run state names it, so a trainer killed by scancel leaves a true one."""
        self.iteration = it
        self._state("running")

    def save(self, it: int) -> None:
        if not self.ck.save:
            return
        t0 = time.time()
        m = self.model
        path = checkpointing.save(self.ck.save, it, m.chunks, m.optimizer, m.scheduler, self.config_yaml,
                                  self.use_distributed_optimizer, self.ck.keep_last)
        self.checkpoint = it
        self._state("running")
        if self.rank0:
            print(f"saved checkpoint {path} in {time.time() - t0:.1f}s", flush=True)

    def final(self, it: int, start_iter: int) -> None:
        """The end-of-run checkpoint, unless this very step is already the latest one."""
        if it > start_iter or not self.ck.save or checkpointing.tracked_iteration(self.ck.save) != it:
            self.save(it)

    def finish(self, it: int, state: str) -> None:
        self.iteration = it
        self._state(state)

    def failed(self) -> None:
        """The run ended on an error (a full disk, a NaN, a bug): not "running" any more."""
        with contextlib.suppress(OSError):  # a full disk must not hide the error being raised
            self._state("failed")


def _run_schedule(cfg: TrainConfig, chunks, micro_batches: list[dict], forward_step, fwd_bwd, forward_only: bool):
    """One global batch through megatron-core's pipeline schedule; returns its loss dicts."""
    # Each virtual stage reads the step's micro-batches through its own iterator.
    iters = [iter(micro_batches) for _ in chunks]
    return fwd_bwd(
        forward_step_func=forward_step,
        data_iterator=iters if len(chunks) > 1 else iters[0],
        model=chunks if len(chunks) > 1 else chunks[0],
        num_microbatches=len(micro_batches),
        seq_length=cfg.model.seq_length,
        micro_batch_size=cfg.optim.micro_batch_size,
        forward_only=forward_only,
    )


def _optimizer_step(optimizer, loss: float, step: int, on_nan: str, clip_grad: float) -> tuple[float | None, bool]:
    """Apply the update unless the loss or grad norm is not finite; returns (grad norm, skipped).

    megatron-core measures the grad norm only to clip it and reports 0.0 with ``clip_grad`` 0, so then
    the norm is measured here, after the update (the step leaves the gradients in place): the log keeps
    a real norm and a non-finite one still stops the run (with ``on_nan=skip`` that update is applied)."""
    if not math.isfinite(loss):
        if on_nan == "stop":
            raise CodetronError(f"step {step}: loss is {loss}; stopping (logging.on_nan=skip skips such steps; "
                                f"lower optim.lr or check the data)")
        return None, True
    ok, grad_norm, _ = optimizer.step()
    if ok and clip_grad <= 0.0:
        grad_norm = float(optimizer.get_grad_norm())
    if grad_norm is not None and not math.isfinite(grad_norm):
        if on_nan == "stop":
            raise CodetronError(f"step {step}: grad norm is {grad_norm}; stopping (logging.on_nan=skip to continue)")
        return grad_norm, True
    return grad_norm, not ok


def train(cfg: TrainConfig, launch, tokenizer) -> TrainResult:
    """Build, restore, then run steps until ``optim.train_iters`` or an exit request."""
    rank0 = launch.rank == 0
    vocab = prepare_config(cfg, tokenizer, rank0)
    model = build_trainable(cfg, vocab)
    start_iter = restore(cfg.checkpoint, model, cfg.parallel.use_distributed_optimizer, rank0)
    data = build_data(cfg, tokenizer, launch.world_size)
    ck = cfg.checkpoint
    logger = StepLogger(cfg.logging, cfg.model, vocab, launch.world_size, rank0,
                        cfg.logging.tensorboard_dir or (str(Path(ck.save) / "tensorboard") if ck.save else None))
    saver = Saver(cfg, model, rank0)
    saver.start(start_iter)
    try:
        result = run_steps(cfg, model, data, saver, logger, start_iter, ExitRequest(ck.exit_signals, ck.exit_file),
                           rank0)
    except BaseException:
        saver.failed()
        raise
    saver.finish(result.iteration, result.state)
    logger.close()
    return result


def run_steps(cfg: TrainConfig, model: Trainable, data: RunData, saver: Saver, logger: StepLogger,
              start_iter: int, exit_req: ExitRequest, rank0: bool) -> TrainResult:
    """The step loop: forward/backward, update, log, validate, checkpoint on schedule or request."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    o, ck, log = cfg.optim, cfg.checkpoint, cfg.logging
    fwd_bwd = get_forward_backward_func()
    forward_step = _forward_step(data.objective)
    # Positions, padded or not: all are computed, so MFU counts them; real tokens come from the report.
    tokens_per_step = o.global_batch_size * cfg.model.seq_length
    losses, norms = [], []
    it, state = start_iter, "finished"
    t0 = time.time()  # a step's time includes reading its batches (in-process loading)
    for micro_batches in data.train.steps(start_iter, o.train_iters):
        for c in model.chunks:
            c.zero_grad_buffer()
        model.optimizer.zero_grad()
        loss_dicts = _run_schedule(cfg, model.chunks, micro_batches, forward_step, fwd_bwd, forward_only=False)
        stop_here = bool(ck.exit_at_iter) and it + 1 == ck.exit_at_iter
        report = _reduce_step(loss_dicts, exit_req.local() or stop_here)
        grad_norm, skipped = _optimizer_step(model.optimizer, report.loss, it + 1, log.on_nan, o.clip_grad)
        it += 1
        model.scheduler.step(increment=1)
        losses.append(report.loss)
        norms.append(grad_norm)
        saver.step(it)
        logger.log_step(it, o.train_iters, report.loss, grad_norm, model.optimizer.param_groups[0]["lr"],
                        tokens_per_step, time.time() - t0, skipped, real_tokens=report.real_tokens,
                        extras={**report.extras(), **_loss_scale_term(model.optimizer, o)})
        if log.eval_interval and data.valid is not None and it % log.eval_interval == 0:
            valid = evaluate(cfg, model.chunks, data.objective, data.valid, fwd_bwd)
            logger.log_eval(it, valid.loss, valid.extras())
        if report.want_exit:
            saver.save(it)
            state = "preempted" if it < o.train_iters else "finished"
            if rank0:
                print(f"exit requested: checkpointed step {it} and stopping", flush=True)
            break
        if ck.save_interval and it % ck.save_interval == 0 and it < o.train_iters:
            saver.save(it)
        t0 = time.time()
    else:
        saver.final(it, start_iter)
    return TrainResult(iteration=it, losses=losses, grad_norms=norms, state=state)


def evaluate(cfg: TrainConfig, chunks, objective, batches: MicroBatches, fwd_bwd) -> StepReport:
    """Validation loss (and the objective's other terms) over ``eval_iters`` global batches."""
    for c in chunks:
        c.eval()
    loss_dicts = []
    with torch.no_grad():
        for micro_batches in batches.steps(0, cfg.logging.eval_iters):
            loss_dicts += _run_schedule(cfg, chunks, micro_batches, _forward_step(objective), fwd_bwd,
                                        forward_only=True)
    for c in chunks:
        c.train()
    return _reduce_step(loss_dicts, False)
