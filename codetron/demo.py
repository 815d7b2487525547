"""``codetron demo``: the whole data path on CPU in minutes, with the tiny preset and bundled data.

    tokenize code (bundled The-Stack-style sample + this machine's Python standard library)
      -> FIM pretraining of debug-tiny in bf16 with TP2 x PP2 (4 gloo ranks)
      -> tokenize Evol-Instruct sample -> instruction tuning from that checkpoint (--finetune)
      -> convert to a Hugging Face GPTBigCode folder
      -> loss curves of both runs as a table and a PNG chart
      -> HumanEval subset: generate, execute in the sandbox, print pass@1

Every stage is the same `codetron <stage>` command a user would type; the demo prints each one
before running it, so the log doubles as a tutorial. Outputs go to ``--out`` (default demo_out/).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from codetron.data import SAMPLES_DIR
from codetron.errors import CodetronError



def _stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def stages(out: Path, args) -> list[tuple[str, list[str]]]:
    py = [sys.executable, "-m", "codetron"]
    data = out / "data"
    tp_pp = ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]
    # 512 positions so HumanEval prompts (~100-150 tokens) plus a completion fit at evaluation.
    # bf16 because every shipped recipe trains in bf16 (fp32 main weights in the optimizer); it runs on CPU too.
    common = ["--preset", "debug-tiny", "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
              "--model.seq_length", "256", "--model.max_position_embeddings", "512", "--optim.precision", "bf16"]
    return [
        ("tokenize bundled The-Stack-style code sample", py + [
            "preprocess", "code", str(SAMPLES_DIR / "the_stack_sample.jsonl"), "-o", str(data / "stack"),
            "--quiet"]),
        ("tokenize part of this machine's Python standard library (a real code corpus)", py + [
            "preprocess", "code", *[os.path.join(_stdlib_dir(), d) for d in ("json", "email", "asyncio", "collections")],
            "--source-suffix", ".py", "--exclude", "test*", "-o", str(data / "stdlib"), "--quiet"]),
        ("tokenize Evol-Instruct sample (prompt/response kept apart)", py + [
            "preprocess", "instruct", str(SAMPLES_DIR / "evol_instruct_sample.json"),
            "--template", "wizardcoder", "-o", str(data / "sft"), "--quiet"]),
        ("FIM pretraining, debug-tiny, TP2 x PP2 on 4 CPU ranks", _torchrun() + ["--nproc-per-node", "4", "-m", "codetron", "train"]
         + common + tp_pp + [
            "--data.data_path", "0.3", str(data / "stack"), "0.7", str(data / "stdlib"), "--data.fim_rate", "0.5", "--data.fim_spm_rate", "0.5",
            "--optim.train_iters", str(args.pretrain_iters), "--optim.lr", "2e-3", "--optim.lr_warmup_iters", "5",
            "--checkpoint.save", str(out / "ckpt/pretrain"), "--checkpoint.save_interval", str(args.pretrain_iters // 2),
            "--logging.loss_log", str(out / "pretrain_loss.jsonl")]),
        ("instruction tuning from that checkpoint (loss on answers, packed)", _torchrun() + ["--nproc-per-node", "2", "-m", "codetron", "train"]
         + common + ["--parallel.tensor_model_parallel_size", "2",
            "--data.mode", "sft", "--data.pack", "true", "--data.data_path", str(data / "sft"),
            "--optim.train_iters", str(args.sft_iters), "--optim.lr", "5e-4", "--optim.lr_warmup_iters", "2",
            "--checkpoint.load", str(out / "ckpt/pretrain"), "--checkpoint.finetune", "true",
            "--checkpoint.save", str(out / "ckpt/sft"), "--logging.loss_log", str(out / "sft_loss.jsonl")]),
        ("convert to Hugging Face GPTBigCode (with logit check)", py + [
            "convert", "to-hf", str(out / "ckpt/sft"), str(out / "hf"), "--check"]),
        ("loss curves of both training runs (table and PNG)", py + [
            "curves", f"{out / 'pretrain_loss.jsonl'}=FIM pretrain", f"{out / 'sft_loss.jsonl'}=SFT",
            "-o", str(out / "loss_curves.png")]),
        ("HumanEval subset: generate, sandboxed execution, pass@1", py + [
            "eval", "run", "--model", str(out / "hf"), "--limit", str(args.problems), "--prompt", "continue",
            "--n-samples", "1", "--max-new-tokens", "64", "--k", "1", "--out", str(out / "eval")]),
    ]


@dataclass(kw_only=True, slots=True)
class DemoConfig:
    """Size of the ``codetron demo`` run (CPU minutes)."""

    out: str = "demo_out"
    """Output folder (emptied first unless --keep)."""
    pretrain_iters: int = 40
    """FIM pretraining steps of the tiny model."""
    sft_iters: int = 20
    """Instruction-tuning steps."""
    problems: int = 10
    """HumanEval problems evaluated (the first N)."""


def main(argv: list[str] | None = None) -> int:
    from codetron.cli_args import add_field

    ap = argparse.ArgumentParser(prog="codetron demo", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("out", "pretrain_iters", "sft_iters", "problems"):
        add_field(ap, DemoConfig, name)
    ap.add_argument("--keep", action="store_true", help="keep an existing --out folder (resume where possible)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists() and not args.keep:
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    plan = stages(out, args)
    timings = []
    for i, (title, cmd) in enumerate(plan, 1):
        print(f"\n=== [{i}/{len(plan)}] {title}\n$ {shlex.join(cmd)}", flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=out, env=env)
        timings.append((title, time.time() - t0))
        if proc.returncode != 0:
            raise CodetronError(f"demo stage {i} ({title}) failed with exit code {proc.returncode}; see the output above")
    print("\n=== demo summary")
    for title, secs in timings:
        print(f"  {secs:7.1f}s  {title}")
    for name in ("pretrain_loss.jsonl", "sft_loss.jsonl"):
        recs = [json.loads(x) for x in (out / name).read_text().splitlines() if x.strip()]
        print(f"  {name.split('_')[0]:9s} loss {recs[0]['loss']:.3f} -> {recs[-1]['loss']:.3f} over {len(recs)} steps")
    metrics = out / "eval" / "metrics.json"
    if metrics.is_file():
        scores = json.loads(metrics.read_text()).get("humaneval", {})
        shown = ", ".join(f"{k} = {v:.3f}" for k, v in scores.items() if k.startswith("pass@"))
        print(f"  HumanEval ({args.problems} problems): {shown}  (a tiny model: the point is a real run)")
    print(f"  outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
