"""The training loop megatron-core's wheel does not ship.

It wires megatron-core pieces together through their own hooks: model chunks per virtual stage,
``DistributedDataParallel``, ``get_megatron_optimizer``, ``OptimizerParamScheduler``, the pipeline
schedule from ``get_forward_backward_func`` with the objective's ``forward_step``, and
``finalize_model_grads`` (without it DP gradient reduction and the tied-embedding reduction across
pipeline stages silently never run).
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from codetron.errors import CodetronError
from megatron_ext import checkpointing, initialization
from megatron_ext.config import TrainConfig
from megatron_ext.metrics import StepLogger, StepReport, reduce_reports, with_real_tokens
from megatron_ext.model import build_model, padded_vocab_size, transformer_config
from megatron_ext.objectives import get_objective, resolve_train_epochs
from megatron_ext.parallel import data_parallel_size, drop_unsupported_sequence_parallel


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
    every layout sees the same global batch.
    """

    def __init__(self, dataset, collate, global_batch: int, micro_batch: int, dp_rank: int, dp_size: int):
        self.dataset, self.collate = dataset, collate
        self.G, self.M, self.dp_rank, self.dp_size = global_batch, micro_batch, dp_rank, dp_size
        self.num_micro = global_batch // (micro_batch * dp_size)

    def iteration(self, it: int):
        base = it * self.G
        n = len(self.dataset)
        for m in range(self.num_micro):
            start = base + m * self.M * self.dp_size + self.dp_rank * self.M
            yield self.collate([self.dataset[(start + j) % n] for j in range(self.M)])


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
    ``optim.seed``, not on the layout (``megatron_ext.initialization``)."""
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
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0 if o.lr_warmup_iters else o.lr, max_lr=o.lr, min_lr=o.min_lr,
        lr_warmup_steps=o.lr_warmup_iters, lr_decay_steps=max(decay, o.lr_warmup_iters + 1),
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


def train(cfg: TrainConfig, launch, tokenizer) -> TrainResult:
    from megatron.core import parallel_state
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func

    rank0 = launch.rank == 0
    o, ck = cfg.optim, cfg.checkpoint
    note = drop_unsupported_sequence_parallel(cfg.parallel, cfg.model)
    if note and rank0:
        print(note, flush=True)
    if not (cfg.logging.eval_interval and cfg.logging.eval_iters):
        # No validation: every document trains. Besides, megatron-core 0.16 loops forever sizing an
        # empty split (0 documents, 0 samples), which small data with a 2% valid share produces.
        cfg.data.split = "1,0,0"
    # Before build_optimizer: the LR schedule, like the datasets, is sized from train_iters.
    resolve_train_epochs(cfg, tokenizer, rank0)
    vocab = cfg.model.vocab_size or tokenizer.vocab_size
    cfg.model.vocab_size = vocab
    chunks, tconfig = build_model_chunks(cfg, vocab)
    optimizer, scheduler = build_optimizer(cfg, chunks)

    tconfig.finalize_model_grads_func = finalize_model_grads
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.no_sync_func = [c.no_sync for c in chunks] if len(chunks) > 1 else chunks[0].no_sync

    # ---- resume / finetune -------------------------------------------------------------------
    start_iter = 0
    load_root = ck.load or ck.save
    if ck.finetune:
        if ck.save and checkpointing.latest_iteration(ck.save) is not None:
            # A fine-tune that was preempted resumes its own checkpoints, not the base model.
            path = checkpointing.resolve_checkpoint_dir(ck.save)
            start_iter = checkpointing.load(path, chunks, optimizer, scheduler,
                                            cfg.parallel.use_distributed_optimizer)["iteration"]
            if rank0:
                print(f"resumed from {path} at step {start_iter} (fine-tune in progress)", flush=True)
        else:
            # With the optimizer, so its fp32 main weights come from the checkpoint too: a bf16/fp16
            # optimizer built them from the random init, and its first step would write them back.
            checkpointing.load(checkpointing.resolve_checkpoint_dir(ck.load), chunks, optimizer, weights_only=True)
            if rank0:
                print(f"finetune: loaded weights from {ck.load}; fresh optimizer, schedule and step counter", flush=True)
    elif checkpointing.latest_iteration(load_root) is not None:
        path = checkpointing.resolve_checkpoint_dir(load_root)
        start_iter = checkpointing.load(path, chunks, optimizer, scheduler,
                                        cfg.parallel.use_distributed_optimizer)["iteration"]
        if rank0:
            print(f"resumed from {path} at step {start_iter}", flush=True)

    # ---- data ---------------------------------------------------------------------------------
    objective = get_objective(cfg.data.mode)
    dp = data_parallel_size(cfg.parallel, launch.world_size)
    eval_batches = (o.train_iters // cfg.logging.eval_interval + 1) * cfg.logging.eval_iters if cfg.logging.eval_interval else 0
    train_ds, valid_ds = objective.build_datasets(cfg, tokenizer, o.train_iters * o.global_batch_size,
                                                  eval_batches * o.global_batch_size)
    if train_ds is None or len(train_ds) == 0:
        raise CodetronError(f"data.data_path {cfg.data.data_path}: no training samples (documents too short or split is 0?)")
    dp_rank = parallel_state.get_data_parallel_rank()
    batches = MicroBatches(train_ds, objective.collate, o.global_batch_size, o.micro_batch_size, dp_rank, dp)
    num_micro = batches.num_micro

    forward_step = _forward_step(objective)

    fwd_bwd = get_forward_backward_func()
    logger = StepLogger(cfg.logging, cfg.model, vocab, launch.world_size, rank0,
                        cfg.logging.tensorboard_dir or (str(Path(ck.save) / "tensorboard") if ck.save else None))
    if ck.save:
        checkpointing.ensure_dir(ck.save)
        checkpointing.write_run_state(ck.save, "running", start_iter, o.train_iters)
    exit_req = ExitRequest(ck.exit_signals, ck.exit_file)
    config_yaml = cfg.to_yaml()

    def save(it: int):
        if ck.save:
            t0 = time.time()
            path = checkpointing.save(ck.save, it, chunks, optimizer, scheduler, config_yaml,
                                      cfg.parallel.use_distributed_optimizer, ck.keep_last)
            if rank0:
                print(f"saved checkpoint {path} in {time.time() - t0:.1f}s", flush=True)

    losses, norms = [], []
    it = start_iter
    state = "finished"
    # Positions, padded or not: all are computed, so MFU counts them; real tokens come from the report.
    tokens_per_step = o.global_batch_size * cfg.model.seq_length
    while it < o.train_iters:
        t0 = time.time()
        for c in chunks:
            c.zero_grad_buffer()
        optimizer.zero_grad()
        iters = [batches.iteration(it) for _ in chunks]
        loss_dicts = fwd_bwd(
            forward_step_func=forward_step,
            data_iterator=iters if len(chunks) > 1 else iters[0],
            model=chunks if len(chunks) > 1 else chunks[0],
            num_microbatches=num_micro,
            seq_length=cfg.model.seq_length,
            micro_batch_size=o.micro_batch_size,
            forward_only=False,
        )
        stop_here = bool(ck.exit_at_iter) and it + 1 == ck.exit_at_iter
        report = _reduce_step(loss_dicts, exit_req.local() or stop_here)
        loss, want_exit = report.loss, report.want_exit
        skipped = False
        grad_norm = None
        if not math.isfinite(loss):
            if cfg.logging.on_nan == "stop":
                raise CodetronError(f"step {it + 1}: loss is {loss}; stopping (logging.on_nan=skip skips such steps; "
                                    f"lower optim.lr or check the data)")
            skipped = True
        else:
            ok, grad_norm, _ = optimizer.step()
            if grad_norm is not None and not math.isfinite(grad_norm):
                if cfg.logging.on_nan == "stop":
                    raise CodetronError(f"step {it + 1}: grad norm is {grad_norm}; stopping (logging.on_nan=skip to continue)")
                skipped = True
            skipped = skipped or not ok
        it += 1
        scheduler.step(increment=1)
        lr = optimizer.param_groups[0]["lr"]
        losses.append(loss)
        norms.append(grad_norm)
        logger.log_step(it, o.train_iters, loss, grad_norm, lr, tokens_per_step, time.time() - t0, skipped,
                        real_tokens=report.real_tokens, extras={**report.extras(), **_loss_scale_term(optimizer, o)})
        if cfg.logging.eval_interval and valid_ds is not None and it % cfg.logging.eval_interval == 0:
            valid = evaluate(cfg, chunks, objective, valid_ds, dp_rank, dp, fwd_bwd, it)
            logger.log_eval(it, valid.loss, valid.extras())
        if want_exit:
            save(it)
            state = "preempted" if it < o.train_iters else "finished"
            if rank0:
                print(f"exit requested: checkpointed step {it} and stopping", flush=True)
            break
        if ck.save_interval and it % ck.save_interval == 0 and it < o.train_iters:
            save(it)
    else:
        if it > start_iter or not ck.save or checkpointing.latest_iteration(ck.save) != it:
            save(it)
    if ck.save:
        checkpointing.write_run_state(ck.save, state, it, o.train_iters)
    logger.close()
    return TrainResult(iteration=it, losses=losses, grad_norms=norms, state=state)


def evaluate(cfg, chunks, objective, valid_ds, dp_rank, dp, fwd_bwd, it) -> StepReport:
    """Validation loss (and the objective's other terms) over ``eval_iters`` global batches."""
    o = cfg.optim
    batches = MicroBatches(valid_ds, objective.collate, o.global_batch_size, o.micro_batch_size, dp_rank, dp)
    for c in chunks:
        c.eval()
    loss_dicts = []
    with torch.no_grad():
        for k in range(cfg.logging.eval_iters):
            iters = [batches.iteration(k) for _ in chunks]
            loss_dicts += fwd_bwd(
                forward_step_func=_forward_step(objective),
                data_iterator=iters if len(chunks) > 1 else iters[0],
                model=chunks if len(chunks) > 1 else chunks[0],
                num_microbatches=batches.num_micro, seq_length=cfg.model.seq_length,
                micro_batch_size=o.micro_batch_size, forward_only=True)
    for c in chunks:
        c.train()
    return _reduce_step(loss_dicts, False)
