"""One grouped bar chart per benchmark table: what a benchmark prints as rows also lands as a PNG.

Each group is a row of the table (a layout, a language, a worker count), each bar a measured
series (ours, the baseline); bars are labelled with their ratio to the first series of the group,
which is the number the table's "vs base" / "ratio" column reports.
"""
from __future__ import annotations

from pathlib import Path


def bar_chart(groups: list[str], series: dict[str, list[float | None]], out: str | Path, title: str,
              ylabel: str) -> Path:
    """Write the chart atomically and return its path; a ``None`` value leaves its bar out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codetron.fileio import atomic_path

    out = Path(out)
    names = list(series)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) * len(names) + 1.5), 3.6))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(groups))]
        vals = series[name]
        bars = ax.bar([x for x, v in zip(xs, vals) if v is not None], [v for v in vals if v is not None],
                      width, label=name)
        firsts = [series[names[0]][i] for i, v in enumerate(vals) if v is not None]
        for bar, v, base in zip(bars, [v for v in vals if v is not None], firsts):
            if base:
                ax.annotate(f"{v / base:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(names) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
