"""Write rendered scripts and hand them to ``sbatch``, chaining dependencies (array -> merge)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from codetron.errors import CodetronError
from codetron.fileio import atomic_open
from codetron.slurm.render import Script


def write_scripts(scripts: list[Script], out_dir: str | Path) -> list[Path]:
    out = []
    for s in scripts:
        path = Path(out_dir) / f"{s.name}.sbatch"
        with atomic_open(path) as fh:
            fh.write(s.text)
        path.chmod(0o755)
        out.append(path)
    return out


def sbatch(path: Path, dependency: str | None = None, extra: list[str] | None = None, timeout: float = 60) -> str:
    """Submit one script; return its job id (``sbatch --parsable``)."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise CodetronError("sbatch is not on PATH: run `codetron slurm submit` on a Slurm login node "
                            "(or `codetron slurm render` and copy the script there)")
    cmd = [exe, "--parsable", *(extra or [])]
    if dependency:
        cmd.append(f"--dependency={dependency}")
    cmd.append(str(path))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CodetronError(f"sbatch {path} did not answer within {timeout:.0f}s (is slurmctld up?)") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise CodetronError(f"sbatch {path} failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout.strip().split(";")[0]


def submit(scripts: list[Script], log_dir: str, dry_run: bool = False, extra: list[str] | None = None) -> list[tuple[Script, Path, str]]:
    """Write the scripts under ``<log_dir>/sbatch/`` (kept: ``resubmit`` mode re-reads them) and
    submit them in order; a script with ``after`` waits ``afterok`` on that one's job id."""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(log_dir) / "sbatch" / f"{stamp}-{os.getpid()}"
    paths = write_scripts(scripts, out_dir)
    ids: dict[str, str] = {}
    result = []
    for script, path in zip(scripts, paths):
        dep = f"afterok:{ids[script.after]}" if script.after else None
        if dry_run:
            job = f"<{script.name}>"
            print(f"would run: sbatch --parsable{' --dependency=' + dep if dep else ''} {path}")
        else:
            job = sbatch(path, dep, extra)
        ids[script.name] = job
        result.append((script, path, job))
    return result
