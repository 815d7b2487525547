"""Time and peak memory of `codetron preprocess` on one huge single-line record (issues 17 and 24).

    python benchmarks/preprocess_long_document.py                 # 5, 20 and 200 MB documents
    python benchmarks/preprocess_long_document.py --sizes-mb 5 20 --baseline-mb 5

Each step runs in its own child process; its peak RSS is that child's ``VmHWM`` (not ``ru_maxrss``,
which Linux carries over from the parent at fork, so it would count the parent's copy of the document).
- baseline: ``tokenizers`` encoding the whole document at once (what the pipeline did before
  long documents were cut), only at ``--baseline-mb`` (a 50 MB whole encode needs >6 GB);
- ``codetron preprocess code`` (1 worker, default dedup and decontamination, ``--max-doc-chars 0``
  so the cap does not drop it) on a jsonl holding the document as its only line; its ids are
  checked equal to the whole encode where one was run. Seconds per MB show whether time grows
  linearly with the document (issue 24: 5 MB 11 s, 20 MB 63 s, 200 MB unfinished after 9 min 40 s).
- the same run with the default cap: the document is dropped (``doc_too_long``) and, when its line
  is longer than the reader's limit, never read into memory.
The document is real code (this interpreter's standard library, concatenated and repeated).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codetron.preprocess.readers import MAX_DOC_CHARS  # noqa: E402

_WHOLE = r"""
import json, sys, numpy as np
from codetron.preprocess.tokenizer import load_tokenizer
text = json.loads(open(sys.argv[1]).readline())["content"]
ids = load_tokenizer(None).encode(text)
np.asarray(ids, dtype=np.uint16).tofile(sys.argv[2])
print(json.dumps({"peak": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024, "tokens": len(ids)}))
"""

_PIPELINE = r"""
import json, sys
from codetron.preprocess.config import JobConfig, PipelineConfig
from codetron.preprocess.pipeline import run
from codetron.preprocess.tokenizer import default_tokenizer_path
job = JobConfig(mode="code", layout="pretrain", tokenizer=str(default_tokenizer_path()), max_doc_chars=int(sys.argv[3]))
try:
    s = run(PipelineConfig(inputs=[sys.argv[1]], output_prefix=sys.argv[2], job=job, workers=1, progress=False))
    tokens, dropped = s["tokens_out"] - 1, s["dropped"]
except Exception as exc:  # a run that keeps nothing fails, naming the drop reasons
    tokens, dropped = 0, str(exc)
print(json.dumps({"peak": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024, "tokens": tokens, "dropped": dropped}))
"""


def make_document(size: int) -> str:
    src = sorted(Path(os.__file__).parent.glob("*.py"))
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in src)
    return (text * (size // len(text) + 1))[:size]


def child(code: str, *args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=[5, 20, 200])
    ap.add_argument("--baseline-mb", type=float, default=5, help="size of the whole-document baseline (0: none)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="codetron-longdoc-"))
    rows = []
    baseline_peak = {}
    sizes = sorted(set(args.sizes_mb) | ({args.baseline_mb} if args.baseline_mb else set()))
    for mb in sizes:
        doc = make_document(int(mb * 1e6))
        src = work / f"doc{mb:g}.jsonl"
        src.write_text(json.dumps({"content": doc}) + "\n")
        del doc
        whole = None
        if mb == args.baseline_mb:
            res, secs = child(_WHOLE, str(src), str(work / "whole.u16"))
            baseline_peak[mb] = res["peak"]
            rows.append((f"{mb:g} MB", "tokenizers whole-document encode", secs, res["peak"], res["tokens"], "-"))
            whole = (work / "whole.u16").read_bytes()
        if mb in args.sizes_mb:
            out = work / f"out{mb:g}"
            res, secs = child(_PIPELINE, str(src), str(out), "0")
            same = "-"
            if whole is not None:
                same = "yes" if Path(f"{out}.bin").read_bytes()[:-2] == whole else "NO"  # minus the EOD
            rows.append((f"{mb:g} MB", "codetron preprocess code (1 worker)", secs, res["peak"], res["tokens"], same))
            res, secs = child(_PIPELINE, str(src), str(out) + "-capped", str(MAX_DOC_CHARS))
            rows.append((f"{mb:g} MB", "same, default --max-doc-chars", secs, res["peak"], res["tokens"],
                         "dropped" if "doc_too_long" in str(res["dropped"]) else "kept"))
        src.unlink()
    print(f"{'document':>9}  {'what':<36} {'seconds':>8} {'s/MB':>6} {'peak RSS':>10} {'vs whole':>9} {'tokens':>11}  ids identical")
    base = next(iter(baseline_peak.values()), None)
    for size, what, secs, peak, tokens, same in rows:
        ratio = f"{peak / base:.2f}x" if base else "-"
        print(f"{size:>9}  {what:<36} {secs:8.1f} {secs / float(size.split()[0]):6.2f} {peak / 2**20:8.0f} MiB {ratio:>9} {tokens:>11,}  {same}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; the cap is {MAX_DOC_CHARS:,} characters")


if __name__ == "__main__":
    main()
