"""Peak memory and time of `codetron convert` on a multi-GB checkpoint of a real preset shape.

    python benchmarks/convert_memory.py                        # starcoderbase-1b, fp32 (~4.9 GB)
    python benchmarks/convert_memory.py --preset santacoder-1b --workdir /scratch/bench

1. A random checkpoint is written by megatron-core itself (``build_model`` + ``checkpointing.save``,
   the path ``codetron train`` uses) in a separate process; reused if already in ``--workdir``.
2. Each measured step runs in its own child process; its peak RSS is that child's ``ru_maxrss``.
   - baseline: the usual non-streaming converter -- load every tensor of the checkpoint, build the
     full HF state dict, ``safetensors.torch.save_file`` (what the TP1-only converters do);
   - ``codetron convert to-hf`` (streaming) and ``from-hf`` back (streaming).
3. A table with time, peak RSS, RSS as a share of the checkpoint size (target: < 25%) and the ratio
   to the baseline. Outputs are checked equal to the baseline's so the speed is not bought by skipping work.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_checkpoint(preset: str, root: Path) -> None:
    """Runs in a child: a random model of ``preset``'s shape, saved exactly as training saves it."""
    import torch

    from codetron.megatron_ext import checkpointing
    from codetron.megatron_ext.model import build_model
    from codetron.megatron_ext.parallel import destroy_distributed, init_distributed
    from codetron.megatron_ext.presets import resolve_config

    cfg = resolve_config(preset)
    vocab = cfg.model.vocab_size or 49152
    cfg.model.vocab_size = vocab
    cfg.data.tokenizer = f"null:{vocab}"
    init_distributed(cfg.parallel, seed=1)
    t0 = time.time()
    model = build_model(cfg.model, cfg.parallel, vocab, cfg.optim)
    n = sum(p.numel() for p in model.parameters())
    print(f"built random {preset}: {n / 1e9:.2f}B parameters in {time.time() - t0:.0f}s", flush=True)
    with torch.no_grad():  # non-trivial norms/biases so a wrong mapping could not hide
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0, 0.5)
    checkpointing.save(root, 1, [model], None, None, cfg.to_yaml(), False, keep_last=1)
    destroy_distributed()


def baseline_to_hf(ckpt: str, out: str) -> None:
    """Runs in a child: the non-streaming way -- the whole model in memory, then one save_file."""
    from safetensors.torch import save_file

    from codetron.convert.dcp_io import CheckpointReader
    from codetron.convert.to_hf import load_run_config
    from codetron.megatron_ext import families
    from codetron.megatron_ext.checkpointing import resolve_checkpoint_dir
    from codetron.megatron_ext.families.layouts import WORD_EMBEDDINGS

    d = resolve_checkpoint_dir(ckpt)
    m = load_run_config(d).model
    r = CheckpointReader(d)
    table = families.get(m.family).tensors(m, r.shape(WORD_EMBEDDINGS)[0])
    full = {e.key: r.read(e.key) for e in table.entries}  # the whole model in memory
    hf = {}
    for e in table.before + table.after:
        t = full[e.key][: m.vocab_size] if e.vocab else full[e.key]
        hf.update(zip(e.hf_names(), e.to_hf(t) if e.to_hf else (t,)))
    for i in range(m.num_layers):
        for e in table.layer:
            t = full[e.key][i]
            hf.update(zip(e.hf_names(i), (p.contiguous() for p in (e.to_hf(t) if e.to_hf else (t,)))))
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(hf, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})


def measure(cmd: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one command, run as the only child of a fresh helper process."""
    helper = [sys.executable, __file__, "--measure", "--", *cmd]
    proc = subprocess.run(helper, cwd=ROOT, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], result["maxrss"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _measure_child(cmd: list[str]) -> int:
    t0 = time.time()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
    secs = time.time() - t0
    if rc:
        return rc
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": secs, "maxrss": kb * 1024}))
    return 0


def same_tensors(a: Path, b: Path) -> bool:
    from codetron.convert.safetensors_io import SafetensorsFolder

    fa, fb = SafetensorsFolder(a), SafetensorsFolder(b)
    if set(fa.entries) != set(fb.entries):
        return False
    import torch

    return all(torch.equal(fa.read(k), fb.read(k)) for k in fa.entries)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        return _measure_child(sys.argv[3:])
    if len(sys.argv) > 1 and sys.argv[1] == "--make":
        make_checkpoint(sys.argv[2], Path(sys.argv[3]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        baseline_to_hf(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="starcoderbase-1b", help="model shape (default starcoderbase-1b)")
    p.add_argument("--workdir", default="/tmp/codetron-convert-bench", help="scratch space (needs ~4x the checkpoint)")
    p.add_argument("--no-baseline", action="store_true", help="skip the in-memory baseline (needs ~2x RAM of the model)")
    p.add_argument("--keep", action="store_true", help="keep the outputs (the source checkpoint is always kept)")
    args = p.parse_args()

    work = Path(args.workdir)
    ckpt = work / f"{args.preset}-ckpt"
    if not (ckpt / "latest_checkpointed_iteration.txt").is_file():
        shutil.rmtree(ckpt, ignore_errors=True)
        print(f"writing a random {args.preset} checkpoint with megatron-core into {ckpt} ...", flush=True)
        t0 = time.time()
        subprocess.run([sys.executable, __file__, "--make", args.preset, str(ckpt)], cwd=ROOT, env=_env(), check=True)
        print(f"  done in {time.time() - t0:.0f}s", flush=True)
    size = _dir_bytes(ckpt / "iter_0000001")
    print(f"checkpoint: {ckpt} ({size / 1e9:.2f} GB)", flush=True)

    rows = []
    cli = [sys.executable, "-m", "codetron", "convert"]
    base_out, hf_out, meg_out = work / "baseline-hf", work / "streaming-hf", work / "streaming-meg"
    for d in (base_out, hf_out, meg_out):
        shutil.rmtree(d, ignore_errors=True)
    if not args.no_baseline:
        rows.append(("baseline to-hf (whole model in RAM)", *measure([sys.executable, __file__, "--baseline", str(ckpt), str(base_out)])))
    rows.append(("codetron convert to-hf (streaming)", *measure([*cli, "to-hf", str(ckpt), str(hf_out), "--quiet"])))
    rows.append(("codetron convert from-hf (streaming)", *measure([*cli, "from-hf", str(hf_out), str(meg_out), "--quiet"])))

    base_t, base_rss = (rows[0][1], rows[0][2]) if not args.no_baseline else (None, None)
    print(f"\n{args.preset}, fp32, checkpoint {size / 1e9:.2f} GB, {os.cpu_count()} cores")
    print(f"{'step':40s} {'time s':>8s} {'peak RSS GB':>12s} {'RSS/ckpt':>9s} {'time vs base':>13s} {'RSS vs base':>12s}")
    for name, secs, rss in rows:
        tr = f"{secs / base_t:.2f}x" if base_t else "-"
        rr = f"{rss / base_rss:.2f}x" if base_rss else "-"
        print(f"{name:40s} {secs:8.1f} {rss / 1e9:12.2f} {rss / size:8.1%} {tr:>13s} {rr:>12s}")
    worst = max(r[2] for r in rows if "streaming" in r[0])
    print(f"target peak RSS < 25% of the checkpoint: {'met' if worst < 0.25 * size else 'NOT met'} "
          f"(worst streaming step {worst / size:.1%})")
    if not args.no_baseline:
        print("streaming output equals baseline output:", same_tensors(hf_out, base_out))
    if not args.keep:
        for d in (base_out, hf_out, meg_out):
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
