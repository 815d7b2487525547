"""``codetron checkpoint verify RUN``: check a run's checkpoints before resuming, copying or converting.

For each ``iter_*`` directory: every file its manifest lists, at its size and CRC-32
(``--sizes-only``: sizes alone, a ``stat`` per file, for a quick look at multi-GB checkpoints), and
what the trainer would resume from. Exit status 0 when every finished checkpoint and the tracker are
intact, 1 when something is damaged (each named in one line), 2 when RUN holds no checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from codetron.errors import CodetronError
from codetron.megatron_ext import checkpointing, manifest


def verify(run: Path, hashes: bool) -> tuple[list[str], bool]:
    """Report lines for every checkpoint of ``run`` and whether all are intact."""
    lines, ok = [], True
    it, problem = checkpointing.read_tracker(run)
    tracker = run / checkpointing.TRACKER
    if problem:
        ok = False
        lines.append(f"tracker DAMAGED: {problem}")
    elif it is not None:
        lines.append(f"tracker: iteration {it} ({tracker})")
    else:
        lines.append(f"tracker: none ({tracker} is missing: no save of this run finished)")
    dirs = sorted(p for p in run.glob("iter_*") if p.is_dir() and p.name[5:].isdigit())
    for d in dirs:
        damage = checkpointing.checkpoint_damage(d, hashes)
        files = _files(d)
        size = checkpointing.checkpoint_bytes(d)
        checked = ("sizes and crc32" if hashes else "sizes") if files is not None else "sizes (no manifest: older format)"
        if damage is None:
            lines.append(f"{d.name} ok: {len(files) if files else '?'} files, {size if size else '?'} bytes, {checked} checked")
        elif it is not None and int(d.name[5:]) > it and not (d / manifest.MANIFEST).is_file():
            lines.append(f"{d.name} partial: a save that never finished ({damage}); the next save removes it")
        else:
            ok = False
            lines.append(f"{d.name} DAMAGED: {damage}")
    try:
        point = checkpointing.resume_point(run, hashes=hashes)
        lines.append(f"resume: {point}" if point else "resume: from scratch (no tracker)")
    except CodetronError as exc:
        ok = False
        lines.append(f"resume: impossible: {exc}")
    return lines, ok


def _files(d: Path) -> dict | None:
    try:
        return manifest.read(d)
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    head, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(prog="codetron checkpoint", description=head, epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check every checkpoint of a run against its manifest")
    v.add_argument("run", type=Path, help="the run's checkpoint.save directory")
    v.add_argument("--sizes-only", action="store_true", help="compare file sizes only, read no data")
    args = ap.parse_args(argv)
    if not args.run.is_dir() or not (any(args.run.glob("iter_*")) or (args.run / checkpointing.TRACKER).exists()):
        raise CodetronError(f"{args.run}: no checkpoints (no iter_* directory, no {checkpointing.TRACKER})")
    lines, ok = verify(args.run, hashes=not args.sizes_only)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
