"""Exact document templates of the preprocess pipeline: StarCoder code metadata, commits, instructions.

Every function returns plain strings; end-of-document is never part of the text (the pipeline
appends the tokenizer's EOD id). Instruction templates return ``(prompt, response)``: ``prompt +
response`` is the training text and the loss goes on ``response`` only. The instruction templates
themselves live in ``codetron.templates`` (eval and generation prompt with the same text) and are
re-exported here for the pipeline.
"""
from __future__ import annotations

from codetron.templates import (BOS_TEMPLATES, INSTRUCTION_TEMPLATES, PROMPT_TEMPLATES, octocoder_prompt,  # noqa: F401
                                render_octocoder, render_octocoder_instruction, render_plain, render_wizardcoder,
                                wizardcoder_prompt)

# --- StarCoder pretraining metadata -------------------------------------------------------------

STARS_BUCKETS: tuple[tuple[int, str], ...] = ((1, "0"), (10, "1-10"), (100, "10-100"), (1000, "100-1000"))
"""(exclusive upper bound, label): StarCoder's five GitHub-stars buckets; 1000 and above -> '1000+'."""


def stars_bucket(stars: int | float | None) -> str:
    """StarCoder's star bucket label: 0, 1-10, 10-100, 100-1000, 1000+ (upper bounds exclusive)."""
    n = int(stars or 0)
    for upper, label in STARS_BUCKETS:
        if n < upper:
            return label
    return "1000+"


def render_code(
    content: str,
    repo: str | None = None,
    path: str | None = None,
    stars: int | float | None = None,
) -> str:
    """StarCoder's code document: ``<reponame>REPO<filename>PATH<gh_stars>BUCKET\\nCODE``.

    Pass ``None`` for a field to leave it out (the pipeline drops each one at random, as StarCoder
    did, so the model also works without metadata); with no field at all the text is just CODE.
    """
    head = []
    if repo is not None:
        head.append(f"<reponame>{repo}")
    if path is not None:
        head.append(f"<filename>{path}")
    if stars is not None:
        head.append(f"<gh_stars>{stars_bucket(stars)}")
    if not head:
        return content
    return "".join(head) + "\n" + content


# --- commits ------------------------------------------------------------------------------------


def render_commit_starcoder(old: str, subject: str, new: str, filename: str | None = None) -> tuple[str, str]:
    """StarCoder commit format split at the edit: prompt ``[<filename>PATH]<commit_before>OLD
    <commit_msg>SUBJECT<commit_after>``, response ``NEW``."""
    prefix = f"<filename>{filename}" if filename else ""
    return f"{prefix}<commit_before>{old}<commit_msg>{subject}<commit_after>", new


def commit_question(old: str, subject: str) -> str:
    """The OctoCoder question for a commit: the old code (if any) then the commit subject."""
    return f"{old}\n{subject}" if old.strip() else subject


def render_commit_octocoder(old: str, subject: str, new: str) -> tuple[str, str]:
    """A commit as an OctoCoder instruction: ``Question: OLD\\nSUBJECT\\n\\nAnswer: NEW``."""
    return render_octocoder(commit_question(old, subject), new)
