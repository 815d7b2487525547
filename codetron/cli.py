"""``codetron <stage> ...``: one entry point for the whole data path.

preprocess -> train -> convert -> eval, plus slurm launchers, RRTF, data evolution and serving.
Each stage module owns its own argparse parser and exposes ``main(argv) -> int``; this dispatcher
imports a stage only when it is called, so ``codetron --help`` stays fast (no torch import).
"""
from __future__ import annotations

import importlib
import sys

from codetron.errors import CodetronError

# stage -> (module with main(argv), one-line summary shown by `codetron --help`)
STAGES: dict[str, tuple[str, str]] = {
    "preprocess": ("codetron.preprocess.cli", "tokenize code / CommitPack / instruction data into .bin/.idx"),
    "train": ("codetron.megatron_ext.train", "train or fine-tune a GPTBigCode-style model (TP/PP/DP)"),
    "checkpoint": ("codetron.megatron_ext.checkpoint_cli", "verify a run's checkpoints (sizes and CRC-32 manifests)"),
    "convert": ("codetron.convert.cli", "megatron-core checkpoint <-> Hugging Face GPTBigCode"),
    "eval": ("codetron.eval.cli", "HumanEval-style pass@k with sandboxed execution"),
    "slurm": ("codetron.slurm.cli", "render/submit sbatch launchers, plan capacity"),
    "rrtf": ("codetron.preprocess.generate.rrtf.cli", "PanGu-Coder2 RRTF: sample, rank, train"),
    "evolve": ("codetron.preprocess.generate.evolve.cli", "Evol-Instruct / self-instruct data generation"),
    "selfalign": ("codetron.preprocess.generate.selfalign.cli", "StarCoder2-Instruct self-alignment: seeds -> tested pairs"),
    "serve": ("codetron.eval.serve", "serve a HF model folder over an OpenAI-compatible HTTP API"),
    "curves": ("codetron.megatron_ext.curves", "compare training runs' loss logs: a table and a PNG chart"),
    "presets": ("codetron.megatron_ext.presets", "list the named model and recipe presets"),
    "demo": ("codetron.demo", "run the whole pipeline on the tiny preset and bundled data"),
}

USAGE = """usage: codetron <stage> [options]

The data path: preprocess -> train -> convert -> eval. Run `codetron <stage> --help` for a stage.

stages:
{stages}

Start with `codetron demo` (CPU, minutes) or read README.md."""


def _usage() -> str:
    width = max(len(s) for s in STAGES)
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in STAGES.items()]
    return USAGE.format(stages="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from codetron import __version__

        print(f"codetron {__version__}")
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"codetron: error: unknown stage {stage!r}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    from codetron import import_gc

    import_gc.install()
    try:
        # inside: a stage imports its registries, and a bad plug-in module there is a one-line error too
        module = importlib.import_module(STAGES[stage][0])
        return int(module.main(rest) or 0)
    except CodetronError as exc:
        print(f"codetron {stage}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"codetron {stage}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
