"""``codetron`` in a child process, and the layout-parity runs every training objective is tested with.

Parity: one initial checkpoint (0 steps) is saved once, then every layout fine-tunes from it on the same
global batches; ``assert_curves_match`` holds each layout's step log to the single-process one. Model
checks run in children so megatron's global state (process groups, RNG trackers) stays theirs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def run_codetron(args: list, nproc: int = 1, timeout: int = 300, env: dict | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
    """``codetron ARGS`` from the repository root (``torchrun --standalone`` for ``nproc`` > 1); a failure
    raises with the command and the ends of its output."""
    from tests.conftest import subprocess_env

    launcher = [PYTHON] if nproc == 1 else [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone"]
    cmd = [*launcher, "-m", "codetron", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_log(path) -> list[dict]:
    """A ``--logging.loss_log`` file: one dict per step."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@dataclass
class Run:
    log: list[dict]
    """The step log."""
    stdout: str
    """What rank 0 printed."""
    save: Path | None
    """Its checkpoint folder (None when the run saved none)."""


def parity_runs(root: Path, init_args: list[str], runs: dict[str, tuple[int, list[str]]], *, save: bool = True,
                timeout: int = 400) -> dict[str, Run]:
    """``codetron train INIT_ARGS`` saves the shared initial checkpoint (give it 0 iterations); then each
    ``name: (nproc, args)`` of ``runs`` trains from it (``--checkpoint.finetune``: weights only) with its
    loss log in ``root/NAME.jsonl`` and, with ``save``, its checkpoints in ``root/NAME``."""
    init = root / "init"
    run_codetron(["train", *init_args, "--checkpoint.save", init])
    out = {}
    for name, (nproc, args) in runs.items():
        log = root / f"{name}.jsonl"
        saving = ["--checkpoint.save", root / name] if save else []
        proc = run_codetron(["train", *args, "--checkpoint.load", init, "--checkpoint.finetune", "true", *saving,
                             "--logging.loss_log", log], nproc=nproc, timeout=timeout)
        out[name] = Run(read_log(log), proc.stdout, root / name if save else None)
    return out


def assert_curves_match(ref: list[dict], got: list[dict], iters: int, label: str,
                        keys: tuple[str, ...] = ("loss",), learned: float | None = 0.05) -> None:
    """A parallel layout's step log equals the single-process one (``keys`` within 1e-5, grad norm
    within 1e-4, the issue's thresholds), and the reference's loss fell by ``learned``, so agreement is
    not agreement on a constant (None: the caller checks that its own way)."""
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, iters + 1)), (label, got)
    for a, b in zip(ref, got):
        for key in keys:
            assert abs(a[key] - b[key]) < 1e-5, (label, key, a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4, (label, a, b)
    if learned is not None:
        assert ref[-1]["loss"] < ref[0]["loss"] - learned, (label, ref)
