"""Capacity planner: memory per GPU and step time of a training config on N devices.

Memory follows the accounting of megatron-core's mixed-precision training:

* **weights / grads / optimizer** per parameter (bytes): bf16/fp16 training keeps 2-byte weights,
  fp32 gradient buffers (``grad_reduce_in_fp32``, as ``codetron.megatron_ext.training`` builds DDP) and an
  fp32 master copy plus Adam's two moments (12 bytes) -- 18 bytes, or ``6 + 12/DP`` with the
  distributed optimizer (ZeRO-1). fp32 training: 4 + 4 + 8 = 16, or ``8 + 8/DP``.
  (Megatron-LM ``docs/distrib_optimizer.md`` gives the same table.)
* **activations** per layer and micro-batch follow Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models" (arXiv:2205.05198), Sec. 4: ``sbh(34 + 5as/h)`` bytes
  for 16-bit activations, ``sbh(10 + 24/t + 5as/(ht))`` with tensor parallelism and
  ``sbh/t (34 + 5as/h)`` with sequence parallelism; selective recompute (or flash attention) drops
  the ``5as/h`` term, full recompute keeps only each layer's input ``2sbh``. The formula here is
  the itemised version of the same count, generalised to the element size, the MLP width, dropout
  being on or off (no masks are stored at p=0) and multi-query attention (K/V take ``g/a`` of Q's
  memory with flash attention; megatron's unfused attention expands them to all heads first).
  The first pipeline stage holds ``min(PP, microbatches)`` micro-batches of its ``L/PP`` layers in
  flight (1F1B), i.e. about ``L`` layers' worth, times ``1 + (PP-1)/(PP*VPP)`` when interleaved.

Step time is ``FLOPs per step / (devices x peak x MFU)`` with the model FLOPs of
``codetron.megatron_ext.flops`` (Megatron-LM's count: causal attention, padded vocabulary, no recompute).

This module imports no torch, so ``codetron slurm plan`` answers instantly on a login node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import TrainConfig

GiB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    """An accelerator model for planning."""

    name: str
    """Short name used in profiles and ``--gpu``."""
    memory_gib: float
    """Device memory in GiB as the driver reports it."""
    peak_tflops: float
    """Dense bf16/fp16 tensor-core peak, TFLOP/s (fp32 runs are planned against it too)."""
    overhead_gib: float = 2.5
    """CUDA context, NCCL buffers and allocator slack that no formula counts."""


GPUS: dict[str, GpuSpec] = {
    "a100-80gb": GpuSpec("a100-80gb", 80.0, 312.0),
    "a100-40gb": GpuSpec("a100-40gb", 40.0, 312.0),
    "h100-80gb": GpuSpec("h100-80gb", 79.6, 989.0),
    "h200-141gb": GpuSpec("h200-141gb", 139.8, 989.0),
    "l40s-48gb": GpuSpec("l40s-48gb", 44.4, 362.0),
    # The planner also describes CPU runs (tests compare it with a measured peak RSS).
    "cpu": GpuSpec("cpu", 0.0, 0.0, overhead_gib=0.0),
}


def get_gpu(name: str) -> GpuSpec:
    if name not in GPUS:
        raise ConfigError(f"unknown gpu {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


@dataclass
class MemoryEstimate:
    """Bytes per device on the most loaded pipeline stage."""

    params: int
    """Parameters held by this device (its TP shard of its PP stage)."""
    weights: float
    """Model weights in the training dtype."""
    grads: float
    """Gradient buffers (fp32 main grads)."""
    optimizer: float
    """Adam moments (+ fp32 master weights in mixed precision), sharded over DP if distributed."""
    activations: float
    """Activations kept for backward by the transformer layers, all micro-batches in flight."""
    logits: float
    """Output layer and cross-entropy buffers on the last stage (plus the embedding on the first)."""
    overhead: float
    """Framework overhead (GPU context, communication buffers)."""
    stage: str
    """Which stage these numbers are for ("first", "last" or "only")."""
    detail: dict = field(default_factory=dict)
    """Per-layer numbers and the assumptions used."""

    @property
    def model_states(self) -> float:
        return self.weights + self.grads + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations + self.logits + self.overhead


def _layer_params(cfg: TrainConfig, tp: int) -> float:
    """Parameters of one transformer layer on one TP rank (megatron's column/row split)."""
    m = cfg.model
    h, f, hd, a, g = m.hidden_size, m.ffn, m.head_dim, m.num_attention_heads, m.num_query_groups
    kv_per_rank = max(1.0, g / tp)  # megatron replicates KV heads when there are fewer than TP ranks
    qkv_out = a * hd / tp + 2 * kv_per_rank * hd
    qkv = h * qkv_out + qkv_out
    proj = (a * hd / tp) * h + h          # row-parallel weight; its bias is replicated
    mlp = h * f / tp + f / tp + (f / tp) * h + h
    norms = 4 * h                          # two LayerNorms, replicated over TP
    return qkv + proj + mlp + norms


def padded_vocab(cfg: TrainConfig, vocab: int | None = None) -> int:
    v = vocab or cfg.model.vocab_size
    if not v:
        raise ConfigError("model.vocab_size is unset (the preset reads it from the tokenizer): pass --vocab")
    mult = cfg.model.make_vocab_size_divisible_by
    return -(-v // mult) * mult


def _bytes_per_param(precision: str) -> tuple[int, int, int]:
    """(weight, grad, optimizer-state) bytes per parameter; see the module docstring."""
    if precision == "fp32":
        return 4, 4, 8
    return 2, 4, 12


def layer_activation_bytes(cfg: TrainConfig, tp: int, micro_batch: int, flash: bool, recompute: str | None) -> float:
    """Bytes one transformer layer keeps for backward for one micro-batch on one TP rank."""
    m, p = cfg.model, cfg.parallel
    e = 4 if cfg.optim.precision == "fp32" else 2
    s, b, h, a, f = m.seq_length, micro_batch, m.hidden_size, m.num_attention_heads, m.ffn
    sbh = s * b * h
    sp = p.sequence_parallel and tp > 1
    # ``rep`` = terms outside the TP region: replicated on every TP rank unless sequence-parallel.
    rep = tp if sp else 1
    if recompute == "full":
        return e * sbh / rep  # only the layer input; the layer is re-run in backward
    # K and V as stored: flash attention keeps the g KV heads, megatron's unfused attention expands
    # them to a heads (repeat_interleave) before the batched matmuls.
    kv_frac = (max(1.0, m.num_query_groups / tp) * tp / a) if flash else 1.0
    attn_hidden = e * sbh * (1 + 2 * kv_frac) / tp + e * sbh / tp   # Q,K,V for QK^T / AV, proj input
    ln_and_inputs = e * sbh * 4 / rep                               # 2 LN inputs, QKV input, fc1 input
    mlp = 2 * e * s * b * f / tp                                    # GeLU input, fc2 input
    masks = (2 * sbh / rep) if m.hidden_dropout > 0 else 0.0        # 1-byte dropout masks (attn out, MLP out)
    scores = 0.0
    if not flash and recompute != "selective":
        as2b = a * s * s * b / tp
        scores = e * as2b                                           # softmax output
        if m.attention_dropout > 0:
            scores += as2b * (1 + e)                                # dropout mask + dropout output
    return attn_hidden + ln_and_inputs + mlp + masks + scores


def estimate_memory(cfg: TrainConfig, world_size: int, gpu: GpuSpec | None = None, vocab: int | None = None,
                    flash: bool | None = None, distributed_optimizer: bool | None = None,
                    recompute: str | None | type(...) = ...) -> MemoryEstimate:
    """Peak bytes per device for ``cfg`` on ``world_size`` devices (see the module docstring).

    ``flash`` defaults to True on a GPU (TransformerEngine spec) and False on CPU; the other keyword
    arguments override the config to compare variants.
    """
    m, p, o = cfg.model, cfg.parallel, cfg.optim
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    vpp = p.virtual_pipeline_model_parallel_size or 1
    if world_size % (tp * pp):
        raise ConfigError(f"{world_size} devices are not divisible by TP x PP = {tp * pp}")
    dp = world_size // (tp * pp)
    gpu = gpu or GPUS["cpu"]
    flash = (gpu.name != "cpu") if flash is None else flash
    dist_opt = p.use_distributed_optimizer if distributed_optimizer is None else distributed_optimizer
    recompute = m.recompute if recompute is ... else recompute
    v = padded_vocab(cfg, vocab)
    h, s, b = m.hidden_size, m.seq_length, o.micro_batch_size

    layers_per_stage = m.num_layers / pp
    layer = _layer_params(cfg, tp)
    embed = v * h / tp                        # vocab-parallel word embedding
    pos = m.positions * h                     # learned positions are not TP-split
    final_ln = 2 * h
    first = layers_per_stage * layer + embed + pos + (final_ln if pp == 1 else 0)
    # With PP>1 and tied embeddings the last stage holds its own copy of the word embedding.
    last = layers_per_stage * layer + final_ln + (embed if (pp > 1 and m.tie_embeddings) else 0)
    stage_params = {"only": first} if pp == 1 else {"first": first, "last": last}

    wb, gb, ob = _bytes_per_param(o.precision)
    opt_bytes = ob / dp if dist_opt else ob

    num_micro = o.global_batch_size // (b * dp)
    in_flight = min(pp, num_micro) if pp > 1 else 1
    interleave = 1 + (pp - 1) / (pp * vpp) if vpp > 1 else 1.0
    per_layer = layer_activation_bytes(cfg, tp, b, flash, recompute)
    e = 4 if o.precision == "fp32" else 2
    sbh = s * b * h
    rep = tp if (p.sequence_parallel and tp > 1) else 1
    acts_stage = per_layer * layers_per_stage * in_flight * interleave
    if recompute == "full":
        # Backward re-materialises one layer at a time: add one layer's full activations.
        acts_stage += layer_activation_bytes(cfg, tp, b, flash, None)
    # Output: final-LN input and output-layer input, then fp32 logits, their softmax (saved for
    # backward) and the logits in the training dtype, all vocab-parallel.
    logits_last = 2 * e * sbh / rep + (e + 8) * s * b * v / tp
    embed_first = (sbh / rep if m.hidden_dropout > 0 else 0.0) + e * sbh / rep

    best = None
    for name, params in stage_params.items():
        extra = (logits_last if name in ("only", "last") else 0.0) + (embed_first if name in ("only", "first") else 0.0)
        est = MemoryEstimate(
            params=int(params), weights=params * wb, grads=params * gb, optimizer=params * opt_bytes,
            activations=acts_stage if name in ("only", "first") else per_layer * layers_per_stage * interleave,
            logits=extra, overhead=gpu.overhead_gib * GiB, stage=name,
            detail={"dp": dp, "microbatches": num_micro, "in_flight": in_flight, "per_layer_activation": per_layer,
                    "flash": flash, "recompute": recompute, "distributed_optimizer": dist_opt, "vocab": v})
        if best is None or est.total > best.total:
            best = est
    return best


def flops_per_token(cfg: TrainConfig, vocab: int | None = None) -> float:
    """Training FLOPs per token: the step line's accounting (``codetron.megatron_ext.flops``)."""
    from codetron.megatron_ext.flops import flops_per_token as model_flops

    return model_flops(cfg.model, vocab or cfg.model.vocab_size or 0)


@dataclass
class StepEstimate:
    """Throughput at an assumed model-FLOPs utilisation."""

    flops_per_step: float
    """Model FLOPs of one optimizer step (recompute excluded: it is hardware FLOPs, not model FLOPs)."""
    seconds_per_step: float
    """Wall time per step at the given MFU."""
    tokens_per_step: int
    """global batch x sequence length."""
    tokens_per_second: float
    """Over the whole job."""

    def days_for(self, tokens: float) -> float:
        return tokens / self.tokens_per_second / 86400.0


def estimate_step(cfg: TrainConfig, world_size: int, gpu: GpuSpec, mfu: float, vocab: int | None = None) -> StepEstimate:
    """Step time = model FLOPs / (devices x peak x MFU); MFU counts model FLOPs only, so recompute
    shows up as a lower achievable MFU rather than as extra FLOPs here."""
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu must be in (0, 1], got {mfu}")
    if gpu.peak_tflops <= 0:
        raise ConfigError(f"gpu {gpu.name!r} has no peak FLOP/s to plan step time with")
    tokens = cfg.optim.global_batch_size * cfg.model.seq_length
    flops = flops_per_token(cfg, padded_vocab(cfg, vocab)) * tokens
    secs = flops / (world_size * gpu.peak_tflops * 1e12 * mfu)
    return StepEstimate(flops, secs, tokens, tokens / secs)


def implied_mfu(cfg: TrainConfig, world_size: int, gpu: GpuSpec, tokens: float, days: float,
                vocab: int | None = None) -> float:
    """The MFU a published (devices, days, tokens) figure implies under this FLOP accounting."""
    flops = flops_per_token(cfg, padded_vocab(cfg, vocab)) * tokens
    return flops / (world_size * gpu.peak_tflops * 1e12 * days * 86400.0)


def _g(x: float) -> str:
    return f"{x / GiB:8.2f}"


def report(cfg: TrainConfig, world_size: int, gpu: GpuSpec, mfu: float, tokens: float | None = None,
           vocab: int | None = None) -> str:
    """The table printed by ``codetron slurm plan``."""
    m, p, o = cfg.model, cfg.parallel, cfg.optim
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    dp = world_size // (tp * pp)
    v = padded_vocab(cfg, vocab)
    n = families.num_parameters(m, v)
    lines = [
        f"model   {cfg.preset or 'custom'}: {n / 1e9:.2f}B parameters, {m.num_layers} layers, hidden {m.hidden_size}, "
        f"{m.num_attention_heads} heads / {m.num_query_groups} KV, seq {m.seq_length}, vocab {v}",
        f"layout  {world_size} x {gpu.name}: TP{tp} PP{pp}{' VPP' + str(p.virtual_pipeline_model_parallel_size) if p.virtual_pipeline_model_parallel_size else ''} "
        f"DP{dp}{' +SP' if p.sequence_parallel else ''}; global batch {o.global_batch_size}, micro {o.micro_batch_size}, "
        f"{o.global_batch_size // (o.micro_batch_size * dp)} micro-batches/step, {o.precision}",
        "",
        "memory per GPU (GiB, most loaded stage)   weights    grads  optim  activ.  logits  overhd    TOTAL   fits",
    ]
    flash_default = gpu.name != "cpu"
    for dist in (False, True):
        for rec in (None, "selective", "full"):
            est = estimate_memory(cfg, world_size, gpu, vocab, flash=flash_default, distributed_optimizer=dist, recompute=rec)
            label = f"{'dist-opt' if dist else 'plain-opt'} recompute={rec or 'none'}"
            mark = "  <- config" if (dist == p.use_distributed_optimizer and rec == m.recompute) else ""
            fits = "-" if gpu.memory_gib <= 0 else ("yes" if est.total <= gpu.memory_gib * GiB else "NO")
            lines.append(f"  {label:38s}{_g(est.weights)}{_g(est.grads)}{_g(est.optimizer)}{_g(est.activations)}"
                         f"{_g(est.logits)}{_g(est.overhead)}{_g(est.total)}  {fits:>4}{mark}")
    lines.append(f"  ({'flash attention: no s^2 scores kept' if flash_default else 'unfused attention: s^2 scores kept'}; "
                 f"stage with the most memory; capacity {gpu.memory_gib:g} GiB)")
    if gpu.peak_tflops > 0:
        st = estimate_step(cfg, world_size, gpu, mfu, vocab)
        lines += [
            "",
            f"step    {flops_per_token(cfg, v) / 1e9:.1f} GFLOP/token x {st.tokens_per_step:,} tokens = {st.flops_per_step:.3e} FLOP/step",
            f"        at MFU {mfu:.0%} of {gpu.peak_tflops:g} TFLOP/s: {st.seconds_per_step:.2f} s/step, "
            f"{st.tokens_per_second / 1e6:.2f}M tokens/s, {st.tokens_per_second / world_size:,.0f} tokens/s/GPU",
        ]
        if tokens:
            lines.append(f"        {tokens:.3g} tokens: {tokens / st.tokens_per_step:,.0f} steps, {st.days_for(tokens):.1f} days")
    return "\n".join(lines)


def gib(x: float) -> float:
    return x / GiB


def round_up(x: float, to: int) -> int:
    return int(math.ceil(x / to) * to)
