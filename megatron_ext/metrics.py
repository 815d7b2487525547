"""Step logging: one fixed-format line per step from rank 0, TensorBoard, a jsonl loss log, MFU.

Throughput is reported two ways. ``tok/s`` counts *positions* (global batch x seq_length): every
position is computed, padded or not, so MFU is derived from it. ``real`` counts the positions that
hold a real input token: padding is always the tail of a row here (GPTDataset/FIM fill, SFT rows and
packs, RRTF rows), and a position after the row's last loss-carrying position is padding. This may
miss one real token per row -- the last one, when its target is padding or a masked EOD -- and never
counts a pad. Prompt tokens of SFT/RRTF rows are real (the model reads them) though they carry no
loss.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil
import torch

from codetron.megatron_ext.config import LoggingConfig, ModelConfig
from codetron.megatron_ext.flops import flops_per_step, flops_per_token, padded_vocab  # noqa: F401  (public here)

# Dense (no 2:4 sparsity) bf16 tensor-core peak per device, TFLOP/s, keyed by the exact
# ``torch.cuda.get_device_name()`` string: a substring match gave an H100 PCIe (114 SMs, lower clocks)
# the SXM peak. NVIDIA's datasheets print these with sparsity; halved: H100 SXM 1,979 / PCIe 1,513 /
# NVL 1,671; H200 1,979, H200 NVL 1,671; A100 (every variant) 624; L40S 733, L40 362.1; HGX B200 4,500.
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,  # SXM5
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.0,  # SXM
    "NVIDIA H200 NVL": 835.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA L40S": 362.0,
    "NVIDIA L40": 181.0,
    "NVIDIA B200": 2250.0,
}

LM_LOSS = "lm loss"
"""The report key every objective returns; the loop optimises and logs it as ``loss``."""
REAL_TOKENS = "real tokens"
"""Report key the loop adds: ``[non-pad positions, 1]`` of a micro-batch (a count, not a loss)."""


def real_token_count(loss_mask: torch.Tensor) -> torch.Tensor:
    """Non-pad positions of a ``[b, s]`` batch: per row, up to its last position with loss weight."""
    rows = loss_mask.reshape(loss_mask.shape[0], -1) != 0
    pos = torch.arange(1, rows.shape[1] + 1, device=rows.device)
    return (rows * pos).amax(dim=1).sum()


def _count_real_tokens(loss_fn, loss_mask, output_tensor):
    loss, count, report = loss_fn(output_tensor)
    n = real_token_count(loss_mask).to(report[LM_LOSS])
    return loss, count, {**report, REAL_TOKENS: torch.stack([n, torch.ones_like(n)])}


def with_real_tokens(loss_fn, loss_mask: torch.Tensor | None):
    """Wrap an objective's loss function so its report also carries the micro-batch's real-token
    count. The count rides in the report because megatron's schedule calls the loss function
    exactly once per micro-batch, on the last pipeline stage, whatever the layout (VPP included).
    A batch without a loss mask reports no count (the step line then shows positions only)."""
    return loss_fn if loss_mask is None else partial(_count_real_tokens, loss_fn, loss_mask)


@dataclass
class StepReport:
    """Loss report of one step (or one evaluation), summed over micro-batches and the world."""

    sums: dict[str, float] = field(default_factory=dict)
    """Per report key, the summed numerator (loss sum, or the counted quantity)."""
    counts: dict[str, float] = field(default_factory=dict)
    """Per report key, the summed denominator (tokens, samples or pairs)."""
    want_exit: bool = False
    """Some rank asked to checkpoint and stop."""

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.counts.get(key, 0.0), 1.0)

    @property
    def loss(self) -> float:
        return self.mean(LM_LOSS)

    @property
    def real_tokens(self) -> float | None:
        return self.sums.get(REAL_TOKENS)

    def extras(self) -> dict[str, float]:
        """Every other loss term the objective reported (e.g. RRTF's ``rank loss``, ``ft loss``)."""
        return {k: self.mean(k) for k in self.sums if k not in (LM_LOSS, REAL_TOKENS)}


def reduce_reports(loss_dicts, exit_local: bool = False, reporting: bool = True) -> StepReport:
    """Sum every key of the loss reports (each a ``[sum, count]`` tensor) over micro-batches and over
    the world, plus whether any rank asked to exit. ``reporting``: whether this rank's reports count
    (TP ranks of a stage hold identical copies; only one of them may contribute).

    Ranks off the last pipeline stage hold no reports, so the keys are first agreed on with one
    object all-gather; their order is that of the lowest rank holding reports, the same everywhere.
    Then a single float64 all-reduce carries all sums and counts.
    """
    import torch.distributed as dist

    local: dict[str, torch.Tensor] = {}
    if reporting:
        for d in loss_dicts:
            for k, v in d.items():
                v = v.detach().reshape(-1)[:2].to(torch.float64)
                local[k] = local[k] + v if k in local else v
    keys = list(local)
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    if distributed:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, keys)
        keys = list(dict.fromkeys(k for ks in gathered for k in ks))
    vals = torch.zeros(2 * len(keys) + 1, dtype=torch.float64)
    for i, k in enumerate(keys):
        if k in local:
            vals[2 * i:2 * i + 2] = local[k].cpu()
    vals[-1] = 1.0 if exit_local else 0.0
    if distributed:
        if torch.cuda.is_available():
            vals = vals.cuda()
        dist.all_reduce(vals)
        vals = vals.cpu()
    return StepReport(sums={k: float(vals[2 * i]) for i, k in enumerate(keys)},
                      counts={k: float(vals[2 * i + 1]) for i, k in enumerate(keys)},
                      want_exit=bool(vals[-1] > 0))


def device_peak(name: str) -> tuple[float | None, str]:
    """Dense bf16 peak of the device called ``name`` and, when none is listed, the one line that says so."""
    peak = PEAK_BF16_TFLOPS.get(name.strip())
    if peak:
        return peak, ""
    return None, f"no dense bf16 peak listed for device {name.strip()!r} (megatron_ext/metrics.py PEAK_BF16_TFLOPS)"


def peak_tflops(cfg: LoggingConfig) -> tuple[float | None, str]:
    """Per-device peak for MFU: ``logging.peak_tflops``, else the visible GPU's listed peak; with the
    reason when there is none (empty on CPU, where MFU is not expected)."""
    if cfg.peak_tflops:
        return cfg.peak_tflops, ""
    if torch.cuda.is_available():
        return device_peak(torch.cuda.get_device_name())
    return None, ""


def memory_string() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f}GiB"
    return f"{psutil.Process(os.getpid()).memory_info().rss / 2**30:.2f}GiB"


def _key(name: str) -> str:
    return name.replace(" ", "_")


class StepLogger:
    """Rank-0 reporter. ``log_step`` prints
    ``step | loss [| <extra loss terms>] | grad_norm | lr | tok/s (real) | mfu | mem``."""

    def __init__(self, cfg: LoggingConfig, model: ModelConfig, vocab: int, world_size: int, enabled: bool,
                 tensorboard_dir: str | None):
        self.cfg, self.enabled, self.world_size = cfg, enabled, world_size
        # Per position: MFU counts every computed position, padding included (module docstring).
        self.flops_tok = flops_per_token(model, padded_vocab(vocab, model.make_vocab_size_divisible_by))
        self.peak, why = peak_tflops(cfg)
        if enabled and why:
            print(f"mfu n/a: {why}; pass --logging.peak_tflops", flush=True)
        self.tb = None
        if enabled and tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(tensorboard_dir)
            except ImportError:
                print("tensorboard is not installed: no event files will be written", flush=True)
        self.loss_log = None
        if enabled and cfg.loss_log:
            Path(cfg.loss_log).parent.mkdir(parents=True, exist_ok=True)
            self.loss_log = open(cfg.loss_log, "a", buffering=1)

    def log_step(self, step: int, train_iters: int, loss: float, grad_norm: float | None, lr: float,
                 tokens: int, seconds: float, skipped: bool = False, real_tokens: float | None = None,
                 extras: dict[str, float] | None = None) -> None:
        """``tokens``: positions of the step (global batch x seq_length); ``real_tokens``: the
        non-pad ones; ``extras``: further loss terms (name -> mean), printed after the loss."""
        if not self.enabled:
            return
        secs = max(seconds, 1e-9)
        tok_s = tokens / secs
        real_s = real_tokens / secs if real_tokens is not None else None
        if self.peak:
            mfu = f"{100.0 * tok_s * self.flops_tok / (self.peak * 1e12 * self.world_size):5.1f}%"
        else:
            mfu = "  n/a"
        gn = f"{grad_norm:.4f}" if grad_norm is not None else "n/a"
        extras = extras or {}
        if step % self.cfg.log_interval == 0 or step == train_iters:
            terms = "".join(f" | {k} {v:.6f}" for k, v in extras.items())
            real = f" (real {real_s:9.1f})" if real_s is not None else ""
            print(f"step {step:>6}/{train_iters} | loss {loss:.6f}{terms} | grad_norm {gn} | lr {lr:.3e} | "
                  f"tok/s {tok_s:9.1f}{real} | mfu {mfu} | mem {memory_string()}" + (" | SKIPPED" if skipped else ""),
                  flush=True)
        if self.tb:
            self.tb.add_scalar("train/loss", loss, step)
            for k, v in extras.items():
                self.tb.add_scalar(f"train/{_key(k)}", v, step)
            if grad_norm is not None:
                self.tb.add_scalar("train/grad_norm", grad_norm, step)
            self.tb.add_scalar("train/lr", lr, step)
            self.tb.add_scalar("train/tokens_per_s", tok_s, step)
            if real_s is not None:
                self.tb.add_scalar("train/real_tokens_per_s", real_s, step)
        if self.loss_log:
            rec = {"step": step, "loss": loss, **{_key(k): v for k, v in extras.items()}, "grad_norm": grad_norm,
                   "lr": lr, "tokens_per_s": tok_s, "real_tokens_per_s": real_s, "skipped": skipped}
            self.loss_log.write(json.dumps(rec) + "\n")

    def log_eval(self, step: int, loss: float, extras: dict[str, float] | None = None) -> None:
        if self.enabled:
            terms = "".join(f" | valid {k} {v:.6f}" for k, v in (extras or {}).items())
            print(f"eval  {step:>6} | valid loss {loss:.6f}{terms} | "
                  f"ppl {min(float('inf'), torch.exp(torch.tensor(loss)).item()):.3f}", flush=True)
            if self.tb:
                self.tb.add_scalar("valid/loss", loss, step)
                for k, v in (extras or {}).items():
                    self.tb.add_scalar(f"valid/{_key(k)}", v, step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
        if self.loss_log:
            self.loss_log.close()
