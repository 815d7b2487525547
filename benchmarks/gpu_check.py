"""The measurements behind ``benchmarks/gpu_check.sh`` (run that script, not this file, on a GPU: it
first installs what a bare torch lacks and links codetron, see ``benchmarks/gpu_site.py``).

(a) debug-tiny, 20 steps, bf16 on the device, against the CPU fp32 curve stored in
    ``benchmarks/results/debug_tiny_cpu_fp32.jsonl``: max |loss difference|, PASS/FAIL.
(b) a starcoderbase-1b-shaped model (24 layers, hidden 2048, 16 heads, MQA, vocab 49152) with SDPA
    attention in bf16, micro-batch 1, at seq 2048 and 8192: tokens/s (positions and real tokens),
    TFLOP/s, MFU against the device's dense bf16 peak and peak memory over 10 timed steps after
    warm-up, FLOPs from ``codetron.megatron_ext.flops``.

Everything lands in one folder (default ``benchmarks/results/gpu_check_<date>_<device>/``):
``report.txt`` (what was printed), ``results.json`` (the same numbers for programs), the loss log of
(a), one ``<run>.log`` per training run, and two PNG charts when matplotlib is importable (a bare
GPU machine has none: ``--charts DIR`` draws them later on any machine that has it). The report
files are rewritten after every stage, and a failed stage is recorded in one line before the next
one runs, so a crash or the 8-minute budget running out keeps what was measured so far.

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
import time
from pathlib import Path

# No sys.path entry for the checkout: codetron comes from gpu_check.sh's linked copy (or an install);
# the checkout's own codetron/ folder holds no stages and would hide codetron.megatron_ext.
ROOT = Path(__file__).resolve().parents[1]

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
BIG_SEQS = (2048, 8192)  # the cheaper one first: it is measured even if the longer one fails
BIG_ARGS = {"preset": "starcoderbase-1b", "model.transformer_impl": "sdpa", "optim.precision": "bf16",
            "model.max_position_embeddings": 8192, "optim.micro_batch_size": 1, "optim.global_batch_size": 1,
            "data.tokenizer": "null:49152", "optim.lr_warmup_iters": 1}

# --cpu-dry-run: the same code paths at sizes a 2-core CPU runs in seconds.
DRY_BIG_ARGS = {**BIG_ARGS, "model.num_layers": 2, "model.hidden_size": 64, "model.num_attention_heads": 4,
                "model.max_position_embeddings": 256, "data.tokenizer": "null:256"}
DRY_SEQS = (64, 256)
DRY_STEPS, DRY_WARMUP = 2, 1
DRY_PEAK = 0.01  # TFLOP/s, assumed: a CPU has no listed peak, but the MFU arithmetic should run

# The whole check, installs included, stays within this many seconds (gpu_check.sh sets the start).
BUDGET_S = 480
RESERVE_S = 15  # kept back for the report and charts after the last run
RUN_CAP_S = 240  # one training run: start-up, model build, warm-up and timed steps


class StageFailed(Exception):
    """One stage could not finish; the message is the report's one line about it."""


START = time.time()
"""When this check started: reset by each main() call (a test suite imports the module long before)."""


def elapsed() -> float:
    """Seconds since gpu_check.sh started (its installs count), else since main() was called."""
    return time.time() - float(os.environ.get("CODETRON_GPU_CHECK_START") or START)


def cli_args(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += [f"--{k}", str(v)]
    return out


def train(name: str, overrides: dict, data: str, loss_log: Path, env: dict, logs: Path | None,
          timeout: float | None = None) -> str:
    """One ``codetron train`` run in a child process; returns its stdout. Its output is kept in
    ``logs/<name>.log``. The child runs in the data's folder, never in the checkout: ``python -m``
    puts the working directory first on sys.path, where the checkout's codetron/ would hide the stages."""
    cmd = [sys.executable, "-m", "codetron", "train", *cli_args(overrides), "--data.data_path", data,
           "--logging.loss_log", str(loss_log)]
    try:
        proc = subprocess.run(cmd, cwd=Path(data).parent, env=env, capture_output=True, text=True, timeout=timeout)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        out, err, rc = text(exc.stdout), text(exc.stderr), None
    where = ""
    if logs is not None:
        log = logs / f"{name}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{out}\n--- stderr\n{err}")
        where = f", output in {log.name}"
    if rc is None:
        raise StageFailed(f"{name}: stopped after {timeout:.0f} s (the 8-minute budget){where}")
    if rc != 0:
        last = next((ln for ln in reversed(err.strip().splitlines()) if ln.strip()), "(no stderr)")
        raise StageFailed(f"{name}: exit status {rc}{where}: {last.strip()[:300]}")
    return out


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def driver_version() -> str:
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:  # the kernel module says it too when nvidia-smi is absent
        m = re.search(r"Kernel Module\s+([0-9.]+)", Path("/proc/driver/nvidia/version").read_text())
        return m.group(1) if m else "unknown"
    except OSError:
        return "none"


def environment(dry: bool) -> dict:
    import megatron.core
    import torch

    try:
        import transformer_engine

        te = transformer_engine.__version__
    except Exception:
        te = "absent"
    cuda = torch.cuda.is_available()
    return {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "megatron_core": megatron.core.__version__, "transformer_engine": te,
            "device": torch.cuda.get_device_name() if cuda else "CPU",
            "device_count": torch.cuda.device_count() if cuda else 0,
            "driver": driver_version() if cuda else "none", "cuda": torch.version.cuda or "none",
            "cudnn": str(torch.backends.cudnn.version()) if cuda else "none", "dry_run": dry}


def header(env: dict) -> list[str]:
    dev = (f"{env['device']} ({env['device_count']} visible)" if env["device_count"]
           else "CPU only" + (" (dry run: toy sizes, not a measurement)" if env["dry_run"] else ""))
    return [f"codetron GPU check  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
            f"host {env['host']} | python {env['python']} | torch {env['torch']} | megatron-core "
            f"{env['megatron_core']} | transformer-engine {env['transformer_engine']}",
            f"device: {dev} | driver {env['driver']} | CUDA {env['cuda']} | cuDNN {env['cudnn']}"]


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


class Report:
    """What has been measured so far: printed, and rewritten to ``out_dir`` after every stage."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.lines: list[str] = []
        self.data: dict = {"failures": []}
        out_dir.mkdir(parents=True, exist_ok=True)

    def emit(self, lines: list[str]) -> None:
        for line in lines:
            print(line, flush=True)
        self.lines.extend(lines)
        self.save()

    def fail(self, exc: StageFailed) -> None:
        self.data["failures"].append(str(exc))
        self.emit([f"FAILED {exc}", ""])

    def save(self) -> None:
        from codetron.fileio import atomic_open

        with atomic_open(self.out_dir / "report.txt") as f:
            f.write("\n".join(self.lines) + "\n")
        with atomic_open(self.out_dir / "results.json") as f:
            json.dump(self.data, f, indent=1)
            f.write("\n")


def compare_curve(dry: bool, work: Path, env: dict, report: Report) -> bool:
    from codetron.megatron_ext.config import ModelConfig
    from codetron.megatron_ext.model import resolve_impl
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    # On the GPU: what users get ("auto": TE if installed, else sdpa). The dry run forces sdpa, which
    # is what auto picks on a GPU without TE, so CPU tests cover that path.
    requested = "sdpa" if dry else "auto"
    impl = resolve_impl(ModelConfig(transformer_impl=requested))
    report.emit([f"(a) debug-tiny {CURVE_STEPS} steps, bf16 on {'CPU (dry run)' if dry else 'the GPU'} "
                 f"(transformer_impl {requested} -> {impl}) vs stored CPU fp32 curve {REFERENCE.relative_to(ROOT)}"])
    log = report.out_dir / "loss_bf16.jsonl"
    log.unlink(missing_ok=True)  # the trainer appends
    data = write_synthetic_dataset(str(work / "syn256"), 256)
    out, failure = "", None
    try:
        out = train("curve_bf16", {**CURVE_ARGS, "optim.precision": "bf16", "model.transformer_impl": requested},
                    data, log, env, report.out_dir, timeout=run_timeout())
    except StageFailed as exc:
        failure = exc  # a run that stopped early still shows how far its curve went
    ref, got = read_log(REFERENCE), read_log(log)
    table, ok = curve_verdict(ref, got)
    report.data["curve"] = {
        "transformer_impl": impl, "reference": str(REFERENCE.relative_to(ROOT)), "loss_log": log.name,
        "steps": [{"step": r["step"], "cpu_fp32": r["loss"], "this_run": g["loss"]} for r, g in zip(ref, got)],
        "max_abs_diff": max((abs(g["loss"] - r["loss"]) for r, g in zip(ref, got)), default=None),
        "tolerance": CURVE_TOLERANCE, "pass": ok}
    report.emit([ln for ln in out.splitlines() if ln.startswith("fusion")] + table + [""])
    if failure:
        raise failure
    return ok


def run_timeout() -> float:
    left = BUDGET_S - RESERVE_S - elapsed()
    if left < 20:
        raise StageFailed(f"not started: {elapsed():.0f} s of the {BUDGET_S} s budget are spent")
    return min(RUN_CAP_S, left)


def peak_for(dry: bool, device: str, peak_override: float | None) -> tuple[float | None, str]:
    """The per-device peak MFU divides by, and where it came from (or why there is none)."""
    from codetron.megatron_ext.metrics import device_peak

    if peak_override:
        return peak_override, "given by --peak-tflops"
    if dry:
        return DRY_PEAK, "assumed for the dry run"
    peak, why = device_peak(device)
    return (peak, f"dense bf16 peak listed for {device}") if peak else (None, f"MFU n/a: {why}; pass --peak-tflops N")


def measure(name: str, overrides: dict, vocab: int, warmup: int, log: Path, out: str, peak: float | None) -> dict:
    """One throughput row from a finished run: its timed steps' loss-log records and step lines."""
    from codetron.megatron_ext.flops import flops_per_step, padded_vocab
    from codetron.megatron_ext.presets import resolve_config

    timed = read_log(log)[warmup:]
    if not timed:
        raise StageFailed(f"{name}: no timed step in its loss log")
    seq, batch = overrides["model.seq_length"], overrides["optim.global_batch_size"]
    model = resolve_config(overrides["preset"],
                           overrides={k: v for k, v in overrides.items() if k.startswith("model.")}).model
    tokens = batch * seq
    seconds = sum(tokens / r["tokens_per_s"] for r in timed)
    real = sum(r["real_tokens_per_s"] * tokens / r["tokens_per_s"] for r in timed if r.get("real_tokens_per_s"))
    flops = flops_per_step(model, padded_vocab(vocab, model.make_vocab_size_divisible_by), batch, seq)
    tflops = flops * len(timed) / seconds / 1e12
    mems = [float(m) for m in re.findall(r"mem ([0-9.]+)GiB", out)]
    return {"seq": seq, "tokens_per_s": tokens * len(timed) / seconds, "real_tokens_per_s": real / seconds,
            "tflops": tflops, "mfu": tflops / peak if peak else None, "step_s": seconds / len(timed),
            "peak_mem_gib": max(mems) if mems else None}


def throughput(dry: bool, work: Path, env: dict, peak_override: float | None, report: Report) -> None:
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    base, seqs = (DRY_BIG_ARGS, DRY_SEQS) if dry else (BIG_ARGS, BIG_SEQS)
    steps, warmup = (DRY_STEPS, DRY_WARMUP) if dry else (BIG_STEPS, BIG_WARMUP)
    vocab = int(base["data.tokenizer"].split(":")[1])
    peak, why = peak_for(dry, report.data["env"]["device"], peak_override)
    m0 = resolve_config(base["preset"], overrides={k: v for k, v in base.items() if k.startswith("model.")}).model
    mem_kind = "torch max allocated" if report.data["env"]["device_count"] else "process RSS"
    report.data["throughput"] = {"peak_tflops": peak, "peak_source": why, "memory": mem_kind, "rows": []}
    report.emit([f"(b) {base['preset']} shape ({m0.num_layers} layers, hidden {m0.hidden_size}, "
                 f"{m0.num_attention_heads} heads, {m0.num_query_groups} kv head, vocab {vocab}), transformer_impl "
                 f"sdpa, bf16, micro-batch 1, {steps} timed steps after {warmup} warm-up",
                 f"peak {peak} TFLOP/s per device ({why})" if peak else why,
                 f"{'seq':>5}  {'tokens/s':>10}  {'real tok/s':>10}  {'TFLOP/s':>8}  {'MFU':>6}  {'step s':>7}  "
                 f"mem ({mem_kind})"])
    data = write_synthetic_dataset(str(work / f"syn{vocab}"), vocab, num_docs=200, min_len=max(seqs) // 4,
                                   max_len=2 * max(seqs))
    for seq in seqs:
        name, overrides = f"seq{seq}", {**base, "model.seq_length": seq, "optim.train_iters": warmup + steps}
        log = work / f"big_{seq}.jsonl"
        try:
            out = train(name, overrides, data, log, env, report.out_dir, timeout=run_timeout())
            row = measure(name, overrides, vocab, warmup, log, out, peak)
        except StageFailed as exc:
            report.fail(exc)
            continue
        report.data["throughput"]["rows"].append(row)
        mfu = f"{100 * row['mfu']:5.1f}%" if peak else "n/a"
        mem = f"{row['peak_mem_gib']:.2f}GiB" if row["peak_mem_gib"] is not None else "?"
        report.emit([f"{seq:>5}  {row['tokens_per_s']:10.1f}  {row['real_tokens_per_s']:10.1f}  {row['tflops']:8.4g}  "
                     f"{mfu:>6}  {row['step_s']:7.3f}  {mem}"])
    report.emit([""])


def draw_charts(out_dir: Path) -> list[Path]:
    """``loss_bf16_vs_fp32.png`` and ``throughput.png`` from a result folder (needs matplotlib)."""
    if str(ROOT / "benchmarks") not in sys.path:  # chart.py beside this file; there already when run as a script
        sys.path.insert(0, str(ROOT / "benchmarks"))
    from chart import bar_chart

    from codetron.megatron_ext.curves import plot
    from codetron.megatron_ext.curves import read_log as read_run

    data = json.loads((out_dir / "results.json").read_text())
    written = []
    curve = data.get("curve")
    if curve and curve["steps"]:
        runs = [read_run(f"{ROOT / curve['reference']}=CPU fp32 (stored)"),
                read_run(f"{out_dir / curve['loss_log']}=bf16 {'dry run' if data['env']['dry_run'] else 'GPU'}")]
        diff = curve["max_abs_diff"]
        title = f"debug-tiny: max |loss diff| {diff:.5f} (tolerance {curve['tolerance']})" if diff is not None else None
        written.append(plot(runs, out_dir / "loss_bf16_vs_fp32.png", title=title))
    rows = (data.get("throughput") or {}).get("rows") or []
    if rows:
        peak = data["throughput"]["peak_tflops"]
        series = {"peak": [peak] * len(rows)} if peak else {}  # bars then carry achieved/peak = MFU
        series["achieved"] = [r["tflops"] for r in rows]
        title = f"{data['env']['device']}: bf16 TFLOP/s, sdpa, micro-batch 1"
        if peak:
            title += " (achieved/peak = MFU)"
        written.append(bar_chart([f"seq {r['seq']}" for r in rows], series, out_dir / "throughput.png", title,
                                 "TFLOP/s"))
    return written


def chart_lines(out_dir: Path) -> list[str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [f"charts: matplotlib is not installed here; draw them where it is (pip install -e '.[eval]'): "
                f"python benchmarks/gpu_check.py --charts {out_dir}"]
    try:
        return [f"chart: {p}" for p in draw_charts(out_dir)]
    except Exception as exc:  # the numbers are saved already; a plotting problem must not hide them
        return [f"charts failed ({type(exc).__name__}: {exc}); retry with python benchmarks/gpu_check.py --charts "
                f"{out_dir}"]


def write_reference(path: Path) -> int:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="codetron-gpucheck-") as tmp:
        data = write_synthetic_dataset(str(Path(tmp) / "syn"), 256)
        log = Path(tmp) / "ref.jsonl"
        train("reference", {**CURVE_ARGS, "optim.precision": "fp32", "model.transformer_impl": "local"}, data, log,
              {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}, None)
        recs = [{"step": r["step"], "loss": r["loss"], "grad_norm": r["grad_norm"]} for r in read_log(log)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    print(f"wrote {len(recs)} steps to {path}")
    return 0


def default_out_dir(device: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower().removeprefix("nvidia ")).strip("-")
    return ROOT / "benchmarks" / "results" / f"gpu_check_{datetime.date.today():%Y-%m-%d}_{slug}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on CPU (what tests run)")
    ap.add_argument("--out-dir", type=Path,
                    help="result folder (default benchmarks/results/gpu_check_<date>_<device>/)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="device peak for MFU (default: the dense bf16 peak listed for the GPU's exact name)")
    ap.add_argument("--write-reference", metavar="PATH", nargs="?", const=str(REFERENCE),
                    help=f"write the CPU fp32 reference curve (default {REFERENCE.relative_to(ROOT)}) and exit")
    ap.add_argument("--charts", metavar="DIR", type=Path, help="only draw the charts of an earlier result folder")
    args = ap.parse_args(argv)
    global START
    START = time.time()
    if args.write_reference:
        return write_reference(Path(args.write_reference))
    if args.charts:
        if not (args.charts / "results.json").is_file():
            print(f"gpu_check: {args.charts}: no results.json (give a folder that gpu_check.sh wrote)", file=sys.stderr)
            return 2
        for p in draw_charts(args.charts):
            print(f"chart: {p}")
        return 0

    import torch

    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible: run on the GPU machine, or pass --cpu-dry-run", file=sys.stderr)
        return 2
    env_info = environment(dry)
    report = Report(args.out_dir or default_out_dir("cpu-dry-run" if dry else env_info["device"]))
    report.data["env"] = env_info
    child = dict(os.environ)
    if dry:
        child.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    report.emit(header(env_info) + [sdpa_kernel_line(), f"results in {report.out_dir}", ""])
    ok = False
    with tempfile.TemporaryDirectory(prefix="codetron-gpucheck-") as tmp:
        try:
            ok = compare_curve(dry, Path(tmp), child, report)
        except StageFailed as exc:
            report.fail(exc)
        try:
            throughput(dry, Path(tmp), child, args.peak_tflops, report)
        except StageFailed as exc:
            report.fail(exc)
    report.emit(chart_lines(report.out_dir))
    failed = report.data["failures"]
    report.emit([f"done in {elapsed():.0f} s: " + ("every stage ran" if not failed else f"{len(failed)} stage(s) "
                 "failed") + f"; curve {'PASS' if ok else 'FAIL'}"])
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
