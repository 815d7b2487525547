"""Preprocess throughput, CPU time and memory: Codetron (both encoders) side by side with Megatron-LM.

    python benchmarks/preprocess_throughput.py                       # Codetron only, 4 MB of stdlib code
    python benchmarks/preprocess_throughput.py --megatron-lm /tmp/mlm --megatron-python /tmp/mlm-venv/bin/python \\
        --source site-packages --mb 40 --workers 1,2,all --repeat 3

Input: real Python source as The-Stack-style jsonl (``--source stdlib``: this Python's standard
library; ``--source site-packages``: the venv's installed packages; or a directory), whole files
in sorted order up to --mb MB (a file is repeated with a distinct first line only when the source is
smaller). Every pipeline encodes the same texts with the same tokenizer (the bundled one unless
--tokenizer) and the same number of worker processes:

* codetron tiktoken / codetron tokenizers: ``codetron preprocess code --encoder ...`` with metadata
  probabilities 0 (the text is the file), dedup and decontamination off (Megatron-LM does neither);
* Megatron-LM: ``tools/preprocess_data.py --json-keys content --append-eod --tokenizer-type
  HuggingFaceTokenizer`` with the same ``--workers``.
For each worker count the pipelines run interleaved (A, B, C, A, B, C, ...) --repeat times, so load
from anything else on the machine falls on all of them alike. Reported: tokens/s best-of and median,
CPU seconds (user+sys of the whole process tree, median), peak RSS (sum over the tree, sampled every
50 ms, max), the ratios to Megatron-LM, and whether the ``.bin``/``.idx`` files are byte-identical.
A reference row gives raw ``tokenizers`` ``encode_batch`` on texts in memory (all cores).
Target (issue 17): >= 3x Megatron-LM's tokens/s at equal workers, identical bytes.

Getting Megatron-LM (tag core_v0.16.1, the megatron-core release Codetron pins):

    git clone --branch core_v0.16.1 --depth 1 https://github.com/NVIDIA/Megatron-LM /tmp/mlm
    python -m venv /tmp/mlm-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/mlm-venv/lib/python3.11/site-packages/codetron.pth
    /tmp/mlm-venv/bin/pip install six triton    # imported by megatron/training even on CPU

(a separate interpreter keeps six/triton out of Codetron's venv; torch, transformers and numpy come
from it; the checkout's ``megatron`` package is put first on PYTHONPATH). Its HuggingFaceTokenizer
finds EOD through ``tokenizer_config.json``'s ``eos_token``: this script writes one beside a copy of
the tokenizer (``{"eos_token": "<|endoftext|>"}``), else ``--append-eod`` writes None and crashes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def source_texts(source: str, mb: float) -> list[str]:
    """Whole ``.py`` files of ``source`` in sorted path order, until ``mb`` MB (1 MiB max each)."""
    from codetron.preprocess.readers import STDLIB_EXCLUDES, expand_sources

    if source == "stdlib":
        roots, exclude = [sysconfig.get_paths()["stdlib"]], STDLIB_EXCLUDES
    elif source == "site-packages":
        roots, exclude = [sysconfig.get_paths()["purelib"]], ()
    else:
        roots, exclude = [source], ()
    out, size = [], 0
    for _, f in expand_sources(roots, (".py",), exclude):
        try:
            t = Path(f).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if t.strip() and len(t) < 1 << 20:
            out.append(t)
            size += len(t.encode())
            if size >= mb * 1e6:
                break
    return out


def write_input(path: Path, base: list[str], mb: float) -> list[str]:
    texts, size, k = [], 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while size < mb * 1e6:
            t = base[k] if k < len(base) else f"# copy {k}\n" + base[k % len(base)]  # repeats are not duplicates
            fh.write(json.dumps({"content": t, "max_stars_repo_name": "x/y", "max_stars_repo_path": f"m{k}.py",
                                 "max_stars_count": 100}) + "\n")
            texts.append(t)
            size += len(t.encode())
            k += 1
    return texts


def run_measured(cmd: list[str], env=None, log: Path | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process tree, peak summed RSS bytes)."""
    import psutil

    out = open(log or os.devnull, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    # wait4: the child's rusage includes every descendant it reaped (pool workers, partitions)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    out.close()
    if proc.returncode != 0:
        tail = Path(log).read_text()[-2000:] if log else ""
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return secs, usage.ru_utime + usage.ru_stime, peak


def worker_counts(spec: str) -> list[int]:
    out = []
    for w in spec.split(","):
        n = (os.cpu_count() or 1) if w.strip() == "all" else int(w)
        if n not in out:
            out.append(n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=4.0, help="input size in MB of code (default 4)")
    ap.add_argument("--source", default="stdlib", help="stdlib (default), site-packages, or a directory of .py files")
    ap.add_argument("--workers", default="2", help="comma-separated worker counts; 'all' = every core (default 2)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds per worker count (default 2)")
    ap.add_argument("--scale", type=int, default=1, help="memory check: also run codetron on mb*scale (e.g. 10; 1 skips)")
    ap.add_argument("--tokenizer", default=str(REPO / "data" / "tokenizer" / "tokenizer.json"))
    ap.add_argument("--megatron-lm", default=os.environ.get("MEGATRON_LM_DIR"), help="Megatron-LM checkout (or MEGATRON_LM_DIR)")
    ap.add_argument("--megatron-python", default=os.environ.get("MEGATRON_LM_PYTHON", sys.executable),
                    help="interpreter with six and triton for Megatron-LM (or MEGATRON_LM_PYTHON; default this one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (input, outputs, logs)")
    ap.add_argument("--png", default="preprocess_throughput.png",
                    help="bar chart of median tokens/s per pipeline and worker count ('' for none)")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="codetron-bench-"))
    inp = tmp / "in.jsonl"
    texts = write_input(inp, source_texts(args.source, args.mb), args.mb)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"input: {len(texts):,} documents, {mb:.1f} MB of Python ({args.source}); {os.cpu_count()} cores; "
          f"tokenizer {args.tokenizer}")

    os.environ.pop("TOKENIZERS_PARALLELISM", None)
    # no pipeline may wait on the network: transformers (Megatron-LM's tokenizer) otherwise spends
    # ~14 s in hub time-outs on an offline machine
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    tok = Tokenizer.from_file(args.tokenizer)
    t0 = time.perf_counter()
    n_tok = 0
    for i in range(0, len(texts), 512):
        n_tok += sum(len(e.ids) + 1 for e in tok.encode_batch(texts[i : i + 512], add_special_tokens=False))
    raw_s = time.perf_counter() - t0
    print(f"reference: raw tokenizers encode_batch in memory, all cores: {n_tok / raw_s:,.0f} tokens/s ({n_tok:,} tokens with EOD)")

    def codetron(encoder: str, w: int, out: Path) -> list[str]:
        return [sys.executable, "-m", "codetron", "preprocess", "code", str(inp), "-o", str(out), "--tokenizer", args.tokenizer,
                "--workers", str(w), "--encoder", encoder, "--quiet", "--p-repo", "0", "--p-path", "0", "--p-stars", "0",
                "--dedup", "none", "--no-decontaminate"]

    pipelines = {"codetron tiktoken": lambda w, o: (codetron("tiktoken", w, o), None),
                 "codetron tokenizers": lambda w, o: (codetron("tokenizers", w, o), None)}
    if args.megatron_lm:
        meg = Path(args.megatron_lm)
        tok_dir = tmp / "mlm-tokenizer"
        tok_dir.mkdir()
        shutil.copy(args.tokenizer, tok_dir / "tokenizer.json")
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
        env = dict(os.environ, PYTHONPATH=f"{meg}:{os.environ.get('PYTHONPATH', '')}")
        pipelines["Megatron-LM"] = lambda w, o: ([args.megatron_python, str(meg / "tools" / "preprocess_data.py"), "--input", str(inp),
                                                  "--output-prefix", str(o), "--json-keys", "content", "--tokenizer-type",
                                                  "HuggingFaceTokenizer", "--tokenizer-model", str(tok_dir), "--workers", str(w),
                                                  "--append-eod", "--log-interval", "100000000"], env)

    one = tmp / "one.jsonl"
    write_input(one, texts[:1], 1e-9)

    def outputs(name: str, prefix: Path) -> list[Path]:
        base = f"{prefix}_content_document" if name == "Megatron-LM" else str(prefix)
        return [Path(base + ".bin"), Path(base + ".idx")]

    table = []
    for w in worker_counts(args.workers):
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pipelines}
        files: dict[str, list[bytes]] = {}
        for r in range(args.repeat):
            for name, make in pipelines.items():
                prefix = tmp / f"{name.replace(' ', '_')}_w{w}"
                cmd, env = make(w, prefix)
                runs[name].append(run_measured(cmd, env, tmp / f"{prefix.name}.log"))
                paths = outputs(name, prefix)
                files[name] = [p.read_bytes() for p in paths]
                for p in paths:
                    p.unlink()
                print(f"  workers {w} round {r + 1}: {name:<20} {runs[name][-1][0]:6.1f} s", flush=True)
        ref = files["codetron tokenizers"]
        for name, rs in runs.items():
            secs = [s for s, _, _ in rs]
            # fixed cost (imports, workers, tokenizer loading) from a one-document run
            cmd, env = pipelines[name](w, tmp / "fixed")
            fixed = run_measured([c if c != str(inp) else str(one) for c in cmd], env)[0]
            table.append(dict(workers=w, name=name, best=n_tok / min(secs), median=n_tok / statistics.median(secs), fixed=fixed,
                              steady=n_tok / max(statistics.median(secs) - fixed, 1e-9),
                              cpu=statistics.median(c for _, c, _ in rs), rss=max(p for _, _, p in rs),
                              same=files[name] == ref))

    print(f"\n{n_tok:,} tokens per run; best-of and median of {args.repeat} interleaved runs; CPU = user+sys of the process tree")
    print(f"{'workers':>7}  {'pipeline':<20} {'tok/s best':>11} {'tok/s median':>12} {'CPU s':>7} {'peak RSS':>9} "
          f"{'x MLM best':>10} {'x MLM median':>12} {'x MLM CPU':>9}  {'bytes':>9} {'start s':>7} {'steady tok/s':>12}")
    for row in table:
        # a run barely longer than its start-up says nothing about the steady rate
        steady = f"{row['steady']:,.0f}" if row["median"] and n_tok / row["median"] > 2 * row["fixed"] else "-"
        meg = next((r for r in table if r["workers"] == row["workers"] and r["name"] == "Megatron-LM"), None)
        ratios = (f"{row['best'] / meg['best']:>9.2f}x {row['median'] / meg['median']:>11.2f}x {meg['cpu'] / row['cpu']:>8.2f}x"
                  if meg else f"{'-':>10} {'-':>12} {'-':>9}")
        print(f"{row['workers']:>7}  {row['name']:<20} {row['best']:>11,.0f} {row['median']:>12,.0f} {row['cpu']:>7.1f} "
              f"{row['rss'] / 2**20:>6,.0f} MiB {ratios}  {'identical' if row['same'] else 'DIFFER':>9} "
              f"{row['fixed']:>7.1f} {steady:>12}")
    if not args.megatron_lm:
        print("Megatron-LM: not measured (--megatron-lm DIR or MEGATRON_LM_DIR; see this script's docstring)")
    print("bytes: .bin and .idx compared with codetron tokenizers' output; start s: wall time of a one-document run; "
          "steady: tokens / (median - start s)")

    if args.png and table:
        from chart import bar_chart

        names = list(dict.fromkeys(r["name"] for r in table))
        ordered = ["Megatron-LM"] + [n for n in names if n != "Megatron-LM"] if "Megatron-LM" in names else names
        ws = sorted({r["workers"] for r in table})
        med = {(r["workers"], r["name"]): r["median"] for r in table}
        print("wrote " + str(bar_chart([f"{w} worker{'s' * (w > 1)}" for w in ws],
                                       {n: [med.get((w, n)) for w in ws] for n in ordered},
                                       args.png, f"preprocess, {n_tok:,} tokens, median of {args.repeat}",
                                       "tokens/s (median)")))

    if args.scale > 1:
        big = tmp / "big.jsonl"
        # the same files cycled: memory is bounded by the largest record, so a bigger input must not
        # also bring bigger files
        write_input(big, texts, args.mb * args.scale)
        w = worker_counts(args.workers)[-1]
        _, _, peak_1x = run_measured(codetron("auto", w, tmp / "sx"))
        _, _, peak_b = run_measured([c if c != str(inp) else str(big) for c in codetron("auto", w, tmp / "bx")])
        print(f"\npeak memory, {args.mb:g} MB -> {args.mb * args.scale:g} MB input ({w} workers): {peak_1x / 2**20:,.0f} MiB -> "
              f"{peak_b / 2**20:,.0f} MiB ({peak_b / peak_1x:.2f}x; target: flat)")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["same"] for r in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
