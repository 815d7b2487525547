"""The measurements behind ``benchmarks/gpu_check.sh`` (run that script, not this file, on a GPU).

(a) debug-tiny, 20 steps, bf16 on the device, against the CPU fp32 curve stored in
    ``benchmarks/results/debug_tiny_cpu_fp32.jsonl``: max |loss difference|, PASS/FAIL.
(b) a starcoderbase-1b-shaped model (24 layers, hidden 2048, 16 heads, MQA, vocab 49152) with SDPA
    attention in bf16, micro-batch 1, at seq 8192 and 2048: tokens/s (positions and real tokens),
    TFLOP/s and MFU over 10 timed steps after warm-up, FLOPs from ``codetron.megatron_ext.metrics``.

``--cpu-dry-run`` runs the same steps on CPU at toy sizes so a test keeps this file working;
``--write-reference PATH`` writes the CPU fp32 curve that (a) compares against.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE = ROOT / "benchmarks" / "results" / "debug_tiny_cpu_fp32.jsonl"

CURVE_STEPS = 20
# The run the reference curve comes from; (a) repeats it with only precision and device changed.
CURVE_ARGS = {"preset": "debug-tiny", "data.tokenizer": "null:256", "optim.train_iters": CURVE_STEPS,
              "optim.global_batch_size": 8, "optim.micro_batch_size": 2, "optim.lr": 1e-3,
              "optim.lr_warmup_iters": 1}
# Measured on CPU over these 20 steps: bf16 (sdpa spec) differs from fp32 by at most 6.5e-4 while
# the loss falls by 0.62. A GPU adds other summation orders (cuBLAS, flash
# attention) of the same bf16 rounding size (unit roundoff 2^-8 on values, fp32 accumulation).
# 0.02 leaves ~30x that margin, and is still far below what a real bug moves: attending to future
# tokens, a dropped mask or wrong init shift the curve by 0.1 or more within 20 steps.
CURVE_TOLERANCE = 0.02

BIG_STEPS, BIG_WARMUP = 10, 3
BIG_SEQS = (8192, 2048)
BIG_ARGS = {"preset": "starcoderbase-1b", "model.transformer_impl": "sdpa", "optim.precision": "bf16",
            "model.max_position_embeddings": 8192, "optim.micro_batch_size": 1, "optim.global_batch_size": 1,
            "data.tokenizer": "null:49152", "optim.lr_warmup_iters": 1}

# --cpu-dry-run: the same code paths at sizes a 2-core CPU runs in seconds.
DRY_BIG_ARGS = {**BIG_ARGS, "model.num_layers": 2, "model.hidden_size": 64, "model.num_attention_heads": 4,
                "model.max_position_embeddings": 256, "data.tokenizer": "null:256"}
DRY_SEQS = (256, 64)
DRY_STEPS, DRY_WARMUP = 2, 1
DRY_PEAK = 0.01  # TFLOP/s, assumed: a CPU has no listed peak, but the MFU arithmetic should run


def cli_args(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += [f"--{k}", str(v)]
    return out


def train(overrides: dict, data: str, log: Path, env: dict) -> str:
    """One ``codetron train`` run; returns its stdout (raises with the tail of stderr on failure)."""
    cmd = [sys.executable, "-m", "codetron", "train", *cli_args(overrides), "--data.data_path", data,
           "--logging.loss_log", str(log)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def child_env() -> dict:
    # codetron comes from the install (or gpu_check.sh's linked copy); the checkout itself must not go
    # on the path: its codetron/ folder alone would shadow the codetron.<stage> namespace.
    return dict(os.environ)


def header(dry: bool) -> list[str]:
    import megatron.core
    import torch

    try:
        import transformer_engine

        te = transformer_engine.__version__
    except Exception:
        te = "absent"
    if torch.cuda.is_available():
        dev = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} visible)"
    else:
        dev = "CPU only" + (" (dry run: toy sizes, not a measurement)" if dry else "")
    return [f"codetron GPU check  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
            f"host {platform.node()} | python {platform.python_version()} | torch {torch.__version__} | "
            f"megatron-core {megatron.core.__version__} | transformer-engine {te}",
            f"device: {dev}"]


def sdpa_kernel_line() -> str:
    """Which SDPA kernel the big runs can get: flash for causal bf16 attention at head size 128."""
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        return "sdpa kernel: math (CPU)"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(1, 16, 2048, 128, device="cuda", dtype=torch.bfloat16)
    found = []
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            continue
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, q, q, is_causal=True)
            found.append(name.lower())
        except RuntimeError:
            pass
    return f"sdpa kernels usable for causal bf16 attention (16 heads x 128): {', '.join(found) or 'none (math only)'}"


def curve_verdict(ref: list[dict], got: list[dict], tolerance: float = CURVE_TOLERANCE) -> tuple[list[str], bool]:
    """Table of both curves, max |diff| and PASS/FAIL: every step present and within ``tolerance``."""
    lines = [f"{'step':>4}  {'cpu fp32':>9}  {'this run':>9}  {'diff':>9}"]
    diffs = []
    for r, g in zip(ref, got):
        diffs.append(abs(g["loss"] - r["loss"]))
        lines.append(f"{r['step']:>4}  {r['loss']:9.5f}  {g['loss']:9.5f}  {g['loss'] - r['loss']:+9.5f}")
    ok = bool(diffs) and len(ref) == len(got) == CURVE_STEPS and max(diffs) < tolerance
    worst = max(diffs) if diffs else float("nan")
    lines.append(f"max |diff| {worst:.5f} over {len(diffs)} of {CURVE_STEPS} steps (tolerance {tolerance}): "
                 f"{'PASS' if ok else 'FAIL'}")
    return lines, ok


def compare_curve(dry: bool, data: str, work: Path, env: dict) -> tuple[list[str], bool]:
    from codetron.megatron_ext.config import ModelConfig
    from codetron.megatron_ext.model import resolve_impl

    # On the GPU: what users get ("auto": TE if installed, else sdpa). The dry run forces sdpa, which
    # is what auto picks on a GPU without TE, so CPU tests cover that path.
    requested = "sdpa" if dry else "auto"
    log = work / "curve_bf16.jsonl"
    out = train({**CURVE_ARGS, "optim.precision": "bf16", "model.transformer_impl": requested}, data, log, env)
    impl = resolve_impl(ModelConfig(transformer_impl=requested))
    lines = [f"(a) debug-tiny {CURVE_STEPS} steps, bf16 on {'CPU (dry run)' if dry else 'the GPU'} "
             f"(transformer_impl {requested} -> {impl}) vs stored CPU fp32 curve {REFERENCE.relative_to(ROOT)}"]
    lines += [ln for ln in out.splitlines() if ln.startswith("fusion")]
    table, ok = curve_verdict(read_log(REFERENCE), read_log(log))
    return lines + table, ok


def throughput(dry: bool, work: Path, env: dict, peak_override: float | None) -> list[str]:
    from codetron.megatron_ext.config import LoggingConfig
    from codetron.megatron_ext.metrics import flops_per_step, padded_vocab, peak_tflops
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    base, seqs = (DRY_BIG_ARGS, DRY_SEQS) if dry else (BIG_ARGS, BIG_SEQS)
    steps, warmup = (DRY_STEPS, DRY_WARMUP) if dry else (BIG_STEPS, BIG_WARMUP)
    vocab = int(base["data.tokenizer"].split(":")[1])
    data = write_synthetic_dataset(str(work / f"syn{vocab}"), vocab, num_docs=200, min_len=max(seqs) // 4,
                                   max_len=2 * max(seqs))
    peak = peak_override or (DRY_PEAK if dry else peak_tflops(LoggingConfig()))
    m0 = resolve_config(base["preset"], overrides={k: v for k, v in base.items() if k.startswith("model.")}).model
    lines = [f"(b) {base['preset']} shape ({m0.num_layers} layers, hidden {m0.hidden_size}, {m0.num_attention_heads} "
             f"heads, {m0.num_query_groups} kv head, vocab {vocab}), transformer_impl sdpa, bf16, micro-batch 1, "
             f"{steps} timed steps after {warmup} warm-up",
             f"peak {peak if peak else 'unknown'} TFLOP/s per device"
             + (" (assumed for the dry run)" if dry and not peak_override else "")
             + ("" if peak else " -- pass --peak-tflops for MFU"),
             f"{'seq':>5}  {'tokens/s':>10}  {'real tok/s':>10}  {'TFLOP/s':>8}  {'MFU':>6}  {'step s':>7}  mem"]
    for seq in seqs:
        overrides = {**base, "model.seq_length": seq, "optim.train_iters": warmup + steps}
        log = work / f"big_{seq}.jsonl"
        out = train(overrides, data, log, env)
        timed = read_log(log)[warmup:]
        cfg = resolve_config(base["preset"], overrides={k: v for k, v in overrides.items() if k.startswith("model.")})
        tokens = overrides["optim.global_batch_size"] * seq
        seconds = sum(tokens / r["tokens_per_s"] for r in timed)
        real = sum(r["real_tokens_per_s"] * tokens / r["tokens_per_s"] for r in timed if r.get("real_tokens_per_s"))
        flops = flops_per_step(cfg.model, padded_vocab(vocab, cfg.model.make_vocab_size_divisible_by),
                               overrides["optim.global_batch_size"], seq)
        tflops = flops * len(timed) / seconds / 1e12
        mfu = f"{100 * tflops / peak:5.1f}%" if peak else "  n/a"
        mems = re.findall(r"mem ([0-9.]+GiB)", out)
        lines.append(f"{seq:>5}  {tokens * len(timed) / seconds:10.1f}  {real / seconds:10.1f}  {tflops:8.4g}  {mfu:>6}  "
                     f"{seconds / len(timed):7.3f}  {mems[-1] if mems else '?'}")
    return lines


def write_reference(path: Path) -> int:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="codetron-gpucheck-") as tmp:
        data = write_synthetic_dataset(str(Path(tmp) / "syn"), 256)
        log = Path(tmp) / "ref.jsonl"
        train({**CURVE_ARGS, "optim.precision": "fp32", "model.transformer_impl": "local"}, data, log,
              {**child_env(), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
        recs = [{"step": r["step"], "loss": r["loss"], "grad_norm": r["grad_norm"]} for r in read_log(log)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    print(f"wrote {len(recs)} steps to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on CPU (what tests run)")
    ap.add_argument("--out", help="report file (default benchmarks/results/gpu_check_<date>.txt)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: from the GPU name)")
    ap.add_argument("--write-reference", metavar="PATH", nargs="?", const=str(REFERENCE),
                    help=f"write the CPU fp32 reference curve (default {REFERENCE.relative_to(ROOT)}) and exit")
    args = ap.parse_args(argv)
    if args.write_reference:
        return write_reference(Path(args.write_reference))

    import torch

    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run on the GPU machine, or pass --cpu-dry-run")
    out_path = Path(args.out or ROOT / "benchmarks" / "results" / f"gpu_check_{datetime.date.today():%Y-%m-%d}.txt")
    env = child_env()
    if dry:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    report: list[str] = []

    def emit(lines: list[str]) -> None:
        for line in lines:
            print(line, flush=True)
        report.extend(lines)

    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="codetron-gpucheck-") as tmp:
        work = Path(tmp)
        emit(header(dry) + [sdpa_kernel_line(), ""])
        lines, ok = compare_curve(dry, write_synthetic_dataset(str(work / "syn"), 256), work, env)
        emit(lines + [""])
        emit(throughput(dry, work, env, args.peak_tflops))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(report) + "\n")
    print(f"report written to {out_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
