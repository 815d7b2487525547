"""Executing a task's programs in the sandbox, one language per task."""
from __future__ import annotations

from typing import Sequence

from codetron.errors import CodetronError


def run_programs(programs: Sequence[str], language: str, timeout: float, n_workers: int, sandbox=None,
                 progress: bool = False, info: dict | None = None, task: str = "", suite: str = "",
                 harness_compatible: bool = False):
    """Verdicts for ``programs`` in ``language`` (``suite``: whose pass rule gives ``harness_status``);
    a language whose toolchain is missing raises one ``CodetronError`` line for the whole task
    (naming the task) instead of failing every sample."""
    from codetron.eval.execution import ToolchainMissing, check_programs

    try:
        return check_programs(programs, timeout, n_workers, sandbox, progress=progress, info=info, language=language,
                              suite=suite, harness_compatible=harness_compatible)
    except ToolchainMissing as exc:
        raise CodetronError(f"{task or language}: {exc}; the generations are kept: score them later with "
                            "`codetron eval execute`") from None
