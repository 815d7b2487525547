"""Training throughput (tokens/s), TFLOP/s and MFU per parallel layout, as a table.

    python benchmarks/train_throughput.py                       # CPU: debug-tiny, 5 layouts
    python benchmarks/train_throughput.py --preset starcoderbase-1b --seq 8192 --layouts single \\
        --peak-tflops 989 --precision bf16 --micro 1 --gbs 8    # one H100/H200

Each layout trains on the same synthetic data over the model's real vocabulary (the preset's, 49152
for StarCoder shapes; 256 for debug-tiny, whose tokenizer is the data's) so the logit layer costs
what it costs in training. The first steps (start-up, warm caches) are dropped and the median of
the rest is reported, with the ratio against the first layout measured in the same invocation.
FLOPs are ``codetron.megatron_ext.flops.flops_per_step`` (Megatron-LM's count: causal attention, padded
vocabulary); MFU divides them by the devices' peak and needs ``--peak-tflops``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYOUTS = {
    "single": (1, []),
    "pp2": (2, ["--parallel.pipeline_model_parallel_size", "2"]),
    "tp2": (2, ["--parallel.tensor_model_parallel_size", "2"]),
    "tp2pp2": (4, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]),
    "dp2tp2pp2": (8, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]),
}
NULL_VOCAB = 256
"""Vocabulary of the synthetic data when the preset does not fix one (debug-tiny)."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="debug-tiny")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, from {', '.join(LAYOUTS)}")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default: the preset's)")
    ap.add_argument("--gbs", type=int, default=8)
    ap.add_argument("--micro", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU (H100 bf16: 989)")
    ap.add_argument("--vocab", type=int, default=None,
                    help=f"data vocabulary (default: the preset's, else {NULL_VOCAB})")
    ap.add_argument("--png", default="train_throughput.png",
                    help="bar chart of tokens/s per layout (default ./train_throughput.png; '' for none)")
    args = ap.parse_args()

    from codetron.megatron_ext.flops import flops_per_step, padded_vocab
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    model = resolve_config(preset=args.preset).model
    vocab = args.vocab or model.vocab_size or NULL_VOCAB
    seq = args.seq or model.seq_length
    model.seq_length = seq
    step_flops = flops_per_step(model, padded_vocab(vocab, model.make_vocab_size_divisible_by), args.gbs, seq)

    work = Path(tempfile.mkdtemp(prefix="codetron-bench-"))
    data = write_synthetic_dataset(str(work / "syn"), vocab, num_docs=2000, max_len=max(300, 2 * seq))
    rows = []
    for name in args.layouts.split(","):
        nproc, extra = LAYOUTS[name]
        log = work / f"{name}.jsonl"
        cmd = ([sys.executable, "-m", "codetron", "train"] if nproc == 1 else
               [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", str(nproc),
                "-m", "codetron", "train"])
        cmd += ["--preset", args.preset, "--data.data_path", data, "--data.tokenizer", f"null:{vocab}",
                "--model.vocab_size", str(vocab), "--model.seq_length", str(seq),
                "--optim.train_iters", str(args.steps), "--optim.global_batch_size", str(args.gbs),
                "--optim.micro_batch_size", str(args.micro), "--optim.precision", args.precision,
                "--logging.loss_log", str(log), *extra]
        if seq > model.positions:
            cmd += ["--model.max_position_embeddings", str(seq)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"name": name, "nproc": nproc, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
            continue
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        recs = recs[2:] or recs
        tok_s = statistics.median(r["tokens_per_s"] for r in recs)
        real = [r.get("real_tokens_per_s") for r in recs]
        real_s = statistics.median(real) if all(x is not None for x in real) else None
        # Every position is computed, so achieved FLOP/s follows positional tokens/s.
        tflops = step_flops * tok_s / (args.gbs * seq) / 1e12 / nproc
        mfu = 100 * tflops / args.peak_tflops if args.peak_tflops else None
        rows.append({"name": name, "nproc": nproc, "tok_s": tok_s, "real_s": real_s, "tflops": tflops, "mfu": mfu})

    base = next((r["tok_s"] for r in rows if "tok_s" in r), None)
    print(f"\npreset {args.preset}, seq {seq}, vocab {vocab}, global batch {args.gbs}, micro {args.micro}, "
          f"{args.precision}, {step_flops / 1e12:.4g} TFLOP/step")
    print(f"{'layout':12s} {'ranks':>5s} {'tokens/s':>10s} {'real tok/s':>10s} {'vs base':>8s} "
          f"{'TFLOP/s/dev':>11s} {'MFU':>7s}")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:12s} {r['nproc']:5d}  failed: {r['error'][:80]}")
            continue
        real = f"{r['real_s']:10.1f}" if r["real_s"] is not None else "       n/a"
        mfu = f"{r['mfu']:6.2f}%" if r["mfu"] is not None else "    n/a"
        print(f"{r['name']:12s} {r['nproc']:5d} {r['tok_s']:10.1f} {real} {r['tok_s'] / base:7.2f}x "
              f"{r['tflops']:11.4f} {mfu}")
    if args.png and base is not None:
        from chart import bar_chart

        ok = [r for r in rows if "tok_s" in r]
        print("wrote " + str(bar_chart([f"{r['name']}\n{r['nproc']} ranks" for r in ok], {"tokens/s": [r["tok_s"] for r in ok]},
                                       args.png, f"{args.preset}, seq {seq}, {args.precision}", "tokens/s (median)")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
