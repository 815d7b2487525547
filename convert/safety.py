"""Which output folders a conversion may write, decided before anything is read or written.

Conversion publishes its output by renaming a finished temp folder onto ``OUT`` (``atomic_dir``),
replacing whatever was there. That is only safe when ``OUT`` shares nothing with the inputs and,
if it exists, is disposable. The rules:

* ``OUT`` must not be an input, lie inside one, or contain one (symlinks resolved): replacing it
  would delete the training run or the source model, and a temp folder inside an input pollutes it.
* An existing, non-empty ``OUT`` is replaced only with ``--overwrite`` and only if it looks like
  what this command writes: for ``to-hf`` a Hugging Face model folder (``config.json``) holding no
  training run; for ``from-hf`` nothing but a previous ``from-hf`` output. Anything else is
  refused even with ``--overwrite``: the user named the wrong folder.
* An empty folder (e.g. made by a job script) is written into without asking.
"""
from __future__ import annotations

import os
from pathlib import Path

from codetron.errors import CodetronError

FROM_HF_ENTRIES = frozenset({"iter_0000000", "latest_checkpointed_iteration.txt", "codetron_conversion.json",
                             "tokenizer"})
"""Everything ``from-hf`` writes into its output folder."""
TRAINING_MARKERS = ("latest_checkpointed_iteration.txt", "run_state.json", "codetron_config.yaml", ".metadata")
"""Files whose presence means a folder holds megatron checkpoints or a training run."""


def _real(p: Path) -> Path:
    # resolve() follows symlinks of the existing part of the path, so a link to the input is the input
    return Path(os.path.realpath(p))


def _overlap(out: Path, inputs: dict[str, Path]) -> None:
    o = _real(out)
    for what, path in inputs.items():
        i = _real(path)
        if o == i:
            raise CodetronError(f"refusing to write {out}: it is the input {what} {path}")
        if o in i.parents:
            raise CodetronError(f"refusing to write {out}: it contains the input {what} {path}, "
                                f"which replacing it would delete")
        if i in o.parents:
            raise CodetronError(f"refusing to write {out}: it is inside the input {what} {path}; "
                                f"choose a folder outside it")


def _is_hf_output(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    training = any(m in names for m in TRAINING_MARKERS) or any(n.startswith("iter_") for n in names)
    return "config.json" in names and not training


def _is_from_hf_output(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return "codetron_conversion.json" in names and names <= FROM_HF_ENTRIES


def check_output(out: str | Path, inputs: dict[str, Path], kind: str, overwrite: bool) -> None:
    """Raise a one-line ``CodetronError`` unless ``out`` may be (re)written by conversion ``kind``
    (``"to-hf"`` or ``"from-hf"``); ``inputs`` names each input path for the message."""
    out = Path(out)
    _overlap(out, inputs)
    if out.is_symlink():
        raise CodetronError(f"refusing to write {out}: it is a symbolic link; name the real folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise CodetronError(f"refusing to write {out}: it exists and is not a folder")
    if not any(out.iterdir()):
        return
    is_ours, what = (_is_hf_output, "a Hugging Face model folder") if kind == "to-hf" else \
        (_is_from_hf_output, "a previous `codetron convert from-hf` output")
    if not is_ours(out):
        raise CodetronError(f"refusing to write {out}: it exists and is not {what} (it would be replaced "
                            f"entirely); choose a new or empty folder")
    if not overwrite:
        raise CodetronError(f"{out} exists ({what}); pass --overwrite to replace it")
