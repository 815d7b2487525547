"""``codetron curves``: compare training runs from their loss logs, as a table and one PNG chart.

The trainer writes one JSON line per step to ``--logging.loss_log`` (step, loss, grad_norm, lr,
tokens_per_s, real_tokens_per_s and any extra loss terms such as RRTF's ``rank loss``). Comparing runs
— bf16 against fp32, one layout against another, a resumed run against an uninterrupted one — is
what people do with those files, so this reads several of them and draws loss (plus every extra
term), grad norm and real tokens/s against the step, one line per run.

Plotting needs matplotlib, which the ``eval`` install role carries (training nodes need none).

Examples:
  codetron curves runs/bf16/loss.jsonl=bf16 runs/fp32/loss.jsonl=fp32 -o bf16_vs_fp32.png
  codetron curves demo_out/pretrain_loss.jsonl -o pretrain.png --smooth 5
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from codetron.errors import CodetronError
from codetron.fileio import atomic_path

# Keys of a loss-log record that are bookkeeping, not a curve to draw.
_NOT_CURVES = {"step", "skipped", "grad_norm", "lr", "tokens_per_s", "real_tokens_per_s", "loss"}


@dataclass
class Run:
    """One loss log: its label and the per-step values, skipped steps (NaN policy) left out."""

    label: str
    """name in the legend and the table (``PATH=LABEL`` on the command line, else the file's stem)"""
    path: Path
    """the loss-log file it came from"""
    steps: list[int] = field(default_factory=list)
    """step numbers in file order (a resumed run appends, so a step can repeat; the later one wins)"""
    series: dict[str, list[float]] = field(default_factory=dict)
    """metric name -> value per entry of ``steps`` (NaN where a record lacks the metric)"""


def read_log(spec: str) -> Run:
    """Parse ``PATH[=LABEL]`` and read the loss log; a bad line is a one-line error naming file:line."""
    path_s, _, label = spec.partition("=")
    path = Path(path_s)
    if path.is_dir():
        raise CodetronError(f"{path}: a directory; give the --logging.loss_log file of the run")
    if not path.is_file():
        raise CodetronError(f"{path}: no such loss log")
    by_step: dict[int, dict] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                step = int(rec["step"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CodetronError(f"{path}:{lineno}: not a loss-log record ({exc.__class__.__name__}: {exc})") from None
            if rec.get("skipped"):
                continue
            by_step[step] = rec  # a resumed run re-logs the steps after its checkpoint: keep the later
    if not by_step:
        raise CodetronError(f"{path}: no training steps in the loss log")
    run = Run(label=label or path.stem, path=path)
    run.steps = sorted(by_step)
    names = ["loss"] + sorted({k for r in by_step.values() for k in r if k not in _NOT_CURVES
                               and isinstance(r[k], (int, float))}) + ["grad_norm", "real_tokens_per_s"]
    for name in names:
        run.series[name] = [float(by_step[s].get(name, math.nan)) for s in run.steps]
    return run


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` steps (window 1 returns the values): noisy small-batch curves
    are compared by trend; the table always uses the raw values."""
    if window <= 1:
        return list(values)
    out, acc, buf = [], 0.0, []
    for v in values:
        buf.append(v)
        acc += v
        if len(buf) > window:
            acc -= buf.pop(0)
        out.append(acc / len(buf))
    return out


def table(runs: list[Run]) -> str:
    """A fixed-width comparison: steps, first/last/min loss, last-10-step mean, real tokens/s."""
    head = f"{'run':20s} {'steps':>6s} {'first':>9s} {'last':>9s} {'min':>9s} {'last10':>9s} {'real tok/s':>11s}"
    lines = [head, "-" * len(head)]
    for r in runs:
        loss = r.series["loss"]
        tail = loss[-10:]
        tok = [t for t in r.series["real_tokens_per_s"][1:] if not math.isnan(t)]  # step 1 includes warm-up
        tok_s = f"{sum(tok) / len(tok):11.1f}" if tok else f"{'n/a':>11s}"
        lines.append(f"{r.label[:20]:20s} {len(r.steps):6d} {loss[0]:9.4f} {loss[-1]:9.4f} {min(loss):9.4f} "
                     f"{sum(tail) / len(tail):9.4f} {tok_s}")
    return "\n".join(lines)


def plot(runs: list[Run], out: Path, window: int = 1, title: str | None = None) -> Path:
    """One PNG: a panel per loss term, then grad norm and real tokens/s; written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CodetronError("plotting needs matplotlib: pip install -e '.[eval]'") from None
    losses = ["loss"] + [k for k in dict.fromkeys(k for r in runs for k in r.series)
                         if k not in ("loss", "grad_norm", "real_tokens_per_s")]
    panels = losses + ["grad_norm", "real_tokens_per_s"]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, panels):
        for r in runs:
            if name in r.series and not all(math.isnan(v) for v in r.series[name]):
                values = r.series[name] if name == "real_tokens_per_s" else smooth(r.series[name], window)
                ax.plot(r.steps, values, label=r.label, linewidth=1.2)
        ax.set_title(name.replace("_", " ") + (f" (mean of {window})" if window > 1 and name in losses else ""))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if name == "grad_norm":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


@dataclass(kw_only=True, slots=True)
class ChartOptions:
    """How ``codetron curves`` draws the chart."""

    smooth: int = 1
    """Trailing mean over this many steps in the chart (1: the raw values); the table is never smoothed."""
    title: str | None = None
    """Chart title."""


def main(argv: list[str] | None = None) -> int:
    from codetron.cli_args import add_field

    doc_head, doc_rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(prog="codetron curves", description=doc_head,
                                 epilog=doc_rest, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", metavar="LOSS_LOG[=LABEL]",
                    help="loss-log jsonl files written by --logging.loss_log, optionally labelled")
    ap.add_argument("-o", "--out", required=True, help="PNG file to write (the table goes to stdout)")
    add_field(ap, ChartOptions, "smooth", metavar="N")
    add_field(ap, ChartOptions, "title")
    args = ap.parse_args(argv)
    if args.smooth < 1:
        raise CodetronError(f"--smooth must be >= 1, got {args.smooth}")
    runs = [read_log(spec) for spec in args.logs]
    print(table(runs))
    out = plot(runs, Path(args.out), window=args.smooth, title=args.title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
