"""A markdown report and a PNG bar chart of pass@k from metrics files (ours or the harness's
``evaluation_results.json``): one row per run x task, then one table of task families x languages
(``humanevalsynthesize-js`` is family humanevalsynthesize, language js), and one chart.

A run is named by its label (``codetron eval execute --label``, else the generations file it
scored, else the model). Two metrics files are never merged into one cell: runs that agree on
label, model, prompt, temperature and n share a row of the language table only when they measured
different languages; a second value for the same cell opens a new row."""
from __future__ import annotations

from pathlib import Path

from codetron.errors import CodetronError
from codetron.fileio import atomic_open, atomic_path
from codetron.eval.harness_io import read_metrics


def collect(paths: list[str | Path]) -> list[dict]:
    """One row per (metrics file, task): run label, model, prompt, n, problems and every pass@k found."""
    rows = []
    for run, path in enumerate(paths):
        tasks, config = read_metrics(path)
        model = Path(str(config.get("model", "?"))).name or str(config.get("model", "?"))
        for task, metrics in tasks.items():
            family, language = split_task(task)
            rows.append({
                "run": run,
                "label": str(config.get("label") or model),
                "family": family,
                "language": language,
                "model": model,
                "prompt": config.get("prompt", "?"),
                "task": task,
                "n": config.get("n_samples", "?"),
                "temperature": config.get("temperature", "?"),
                "problems": config.get("problems", "?"),
                "metrics": {k: float(v) for k, v in metrics.items() if k.startswith("pass@")},
                # samples where Codetron's verdict and the reference runner's rule disagree (absent in
                # the harness's own files)
                "differ": metrics.get("strict_vs_harness_differ"),
                "source": str(path),
            })
    if not rows:
        raise CodetronError("no metrics to report")
    return rows


LANGUAGE_SUFFIXES = {"python": "python", "py": "python", "js": "js", "java": "java", "go": "go", "cpp": "cpp",
                     "rust": "rust", "rs": "rust"}


def split_task(task: str) -> tuple[str, str]:
    """(family, language) of a task name: ``multiple-rs`` -> (multiple, rust); Python for the rest."""
    head, _, suffix = task.rpartition("-")
    if head and suffix in LANGUAGE_SUFFIXES:
        return head, LANGUAGE_SUFFIXES[suffix]
    return task, "python"


def language_table(rows: list[dict]) -> str:
    """Task family x language: each cell ``pass@1 / pass@10 / pass@100`` (those measured) in percent."""
    ks = _ks(rows)
    langs = [lang for lang in ("python", "js", "java", "go", "cpp", "rust") if any(r["language"] == lang for r in rows)]
    keys: list[tuple] = []
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        name = (r["label"], r["model"], r["prompt"], str(r["temperature"]), str(r["n"]), r["family"])
        # the first row of this name with the language still free; a filled cell is another run's
        key = next((k for k in keys if k[:-1] == name and r["language"] not in cells[k]), None)
        if key is None:
            key = name + (len(keys),)
            keys.append(key)
            cells[key] = {}
        cells[key][r["language"]] = " / ".join(f"{100 * r['metrics'][k]:.1f}" for k in ks if k in r["metrics"]) or "-"
    head = ["run", "model", "prompt", "T", "n", "task"] + langs
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key in keys:
        lines.append("| " + " | ".join([str(k) for k in key[:-1]] + [cells[key].get(lang, "") for lang in langs]) + " |")
    return "\n".join(lines) + f"\n\nEach cell: {' / '.join(ks)} in percent.\n"


def _ks(rows: list[dict]) -> list[str]:
    keys = {k for r in rows for k in r["metrics"]}
    return sorted(keys, key=lambda k: int(k.split("@")[1]))


def markdown(rows: list[dict]) -> str:
    ks = _ks(rows)
    head = ["run", "model", "prompt", "task", "problems", "n", "T"] + ks + ["strict≠reference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["label"], str(r["model"]), str(r["prompt"]), str(r["task"]), str(r["problems"]), str(r["n"]),
                 str(r["temperature"])]
        cells += [f"{100 * r['metrics'][k]:.2f}" if k in r["metrics"] else "-" for k in ks]
        cells.append("-" if r["differ"] is None else str(r["differ"]))
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n".join(lines) + "\n\npass@k in percent (unbiased estimator, Chen et al. 2021). strict≠reference: "
            "samples whose verdict by Codetron's default (the tests ran to their end) differs from the reference "
            "runner's own rule (`--harness-compatible`); - where the metrics file does not say.\n")


def chart(rows: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = _ks(rows)
    labels = [f"{r['label']}\n{r['prompt']} T={r['temperature']}\n{r['family']} {r['language']}" for r in rows]
    width = 0.8 / max(len(ks), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(rows) + 1.5), 4.0), dpi=120)
    for i, k in enumerate(ks):
        xs = [j + (i - (len(ks) - 1) / 2) * width for j in range(len(rows))]
        ys = [100 * r["metrics"].get(k, 0.0) for r in rows]
        bars = ax.bar(xs, ys, width, label=k)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("pass@k by model, prompt format, task and language", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(metric_files: list[str | Path], out_dir: str | Path) -> tuple[Path, Path]:
    rows = collect(metric_files)
    out_dir = Path(out_dir)
    md_path, png_path = out_dir / "report.md", out_dir / "pass_at_k.png"
    chart(rows, png_path)
    with atomic_open(md_path, "w", encoding="utf-8") as fh:
        fh.write("# Evaluation report\n\n" + markdown(rows) + "\n## By task and language\n\n" + language_table(rows)
                 + f"\n![pass@k]({png_path.name})\n")
    return md_path, png_path
