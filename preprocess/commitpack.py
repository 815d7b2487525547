"""CommitPackFT's filters as named, individually switchable rules.

OctoPack (Muennighoff et al., 2023) turned 4 TB of commits into 2 GB of instruction-like ones by
keeping commits whose subject reads like an instruction and whose change is small. The rules below
follow the published filter (bigcode-project/octopack ``dataset/commitpackft``: the paper's
Table 6 and the scripts that built the dataset): thresholds, word lists and regexes are theirs;
``check_commit`` returns the name of the first rule a record breaks (the summary counts records per
rule), or ``None`` when it is kept. The token-count rule needs the tokenizer and runs in the
pipeline. Where we deliberately differ, the rule's comment says so:
* ``IMPERATIVE_VERBS`` adds common verbs OctoPack's list lacks (Close, Open, Warn, Pass, Fill, Do,
  Avoid, Ensure, ...); ``verbs="octopack"`` uses exactly the published list;
* ``wip`` matches the word WIP and "work in progress" outside quotes (OctoPack's substring test
  also drops "Fix wiping the cache" and 'Remove "Work in progress caveat"');
* ``version_or_hash`` drops any ``x.y.z`` version (OctoPack's pattern misses one followed by a space).
The subject is cleaned first as OctoPack did (``[tag]``/``scope:`` prefixes, ``[skip ci]``) and
the cleaned subject is what the dataset's documents contain.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

COMMIT_FIELDS = ("old_contents", "new_contents", "subject")
"""Fields a CommitPack record must have (``message``, ``old_file``, ``new_file``, ``lang`` optional)."""

OCTOPACK_VERBS = frozenset(
    """
    abort accelerate access accumulate add address adjust advance align allot allow amplify annotate
    append apply archive arrange attach augment automate backup boost break bring build bump call
    change check choose clarify clean clear clone comment complete compress concatenate configure
    connect consolidate convert copy correct cover create customize cut debug decipher declare
    decommission decompress decomplexify decrease decrypt define delete deploy designate destroy
    detach determine develop diminish disable discard disentangle dismantle divide document
    downgrade drop duplicate edit embed emphasize enable encrypt enforce enhance enlarge enumerate
    eradicate escalate establish exclude exit expand expedite expire extend facilitate fix format
    gather generalize halt handle hasten hide implement improve include increase increment indent
    index inflate initialize insert install integrate interpolate interrupt introduce isolate join
    kill leverage load magnify maintain make manage mark mask mend merge migrate modify monitor move
    multiply normalize optimize orchestrate order package paraphrase paste patch plug prepare
    prepend print provision purge put quit raise read rearrange reannotate rebase reboot rebuild
    recomment recompile reconfigure reconnect rectify redact redefine reduce refactor reformat
    refresh reimplement reinforce relocate remove rename reorder reorganize repackage repair
    rephrase replace reposition reschedule reset reshape resolve restructure return revert revise
    revoke reword rework rewrite rollback save scale scrub secure select send set settle simplify
    solve sort split stabilize standardize stipulate stop store strengthen streamline structure
    substitute subtract support swap switch synchronize tackle tag terminate test throw tidy
    transform transpose troubleshoot trim truncate tweak uncover undo unblock uninstall unify
    unplug unpublish unravel unstage unsync untangle unwind update upgrade use validate verify watch
    watermark whitelist withdraw work write
    """.split()
) | {"speed up", "deal with", "brush up"}
"""The English subject openings CommitPackFT allows (OctoPack's ``GOOD_STARTS_EN``), lower case."""

EXTRA_VERBS = frozenset(
    """
    close open warn pass fill do avoid backport cleanup decouple deprecate describe detect emit
    encode ensure escape expose extract ignore import inline keep limit log minimize parse pin
    prefer prevent provide register reject release reload restore restrict reuse run separate show
    skip start strip sync track translate wrap
    """.split()
)
"""Common imperative openings OctoPack's list lacks ("Close the pager temp file before ...")."""

IMPERATIVE_VERBS = OCTOPACK_VERBS | EXTRA_VERBS
VERB_LISTS = {"octopack": OCTOPACK_VERBS, "extended": IMPERATIVE_VERBS}

BAD_MESSAGES = frozenset(
    # CommitPackFT's list, then CommitPack's noise list (applied before CommitPackFT was built)
    {"readme", "update", "dummy", "updated", "test", "update readme", "update readme.md", "updated readme.md",
     "updated readme", "add files via upload", "can't you see i'm updating the time?", "can’t you see i’m updating the time?",
     "commit", "create readme.md", "first commit", "heartbeat update", "initial commit", "mirroring from micro.blog.",
     "no message", "pi push", "updates", "update _config.yaml", "update index.html", "update log", "update data.js",
     "update data.json", "fix that bug where things didn't work but now they should", "put the thingie in the thingie",
     "add a beter commit message"}
)
"""Whole subjects (lower-cased) that say nothing about the change."""

BAD_SUBSTRINGS = (
    "auto commit", "update contributing", "<?xml", "merge branch", "merge pull request", "signed-off-by",
    "code review", "//codereview", "cdpcp", "| leetcode",
)
"""Substrings of the lower-cased subject marking bot, merge, review and boilerplate commits."""

# OctoPack's version pattern ends in (?=$|\S), which misses "2.4.1 today" (a typo for \s): any x.y.z here
_VERSION_RE = re.compile(r"(?<![\w.])v?\d+\.\d+\.\d+(?![\w])")
_HEX_SUBJECT_RE = re.compile(r"^[a-f0-9]+(?:-[a-f0-9]+)*$")
_SHA_RE = re.compile(r"[a-f0-9]{40}")
_ISSUE_RE = re.compile(r"(?:issue|bug|feature)\s*\d+", re.IGNORECASE)
_QUOTED_RE = re.compile(r"\"[^\"]*\"|“[^”]*”|'[^']*'(?!\w)|`[^`]*`")
_WIP_RE = re.compile(r"\bwip\b|\bwork in progress\b", re.IGNORECASE)
_BUMP_PREFIXES = ("Bump", "Set version", "Update version")

RULES: tuple[str, ...] = (
    "old_file_too_long",
    "new_file_empty",
    "unchanged",
    "issue_reference",
    "filename_in_subject",
    "subject_length",
    "subject_too_few_words",
    "not_capitalized",
    "not_imperative",
    "bad_message",
    "version_or_hash",
    "cherry_pick",
    "first_person",
    "url",
    "wip",
    "bump_version",
    "token_count",
)
"""CommitPackFT rules in the order they are checked; each is a drop reason in the summary."""


@dataclass(kw_only=True)
class CommitFilterConfig:
    """CommitPackFT filter thresholds (defaults are OctoPack's)."""

    disabled: frozenset[str] = field(default_factory=frozenset)
    """Rule names (see ``RULES``) to skip, e.g. ``{"not_imperative"}`` for non-English commits."""
    verbs: str = "extended"
    """not_imperative: ``octopack`` (exactly the published list) or ``extended`` (plus ``EXTRA_VERBS``)."""
    max_old_chars: int = 50_000
    """old_file_too_long: drop when the old file has at least this many characters."""
    min_subject_chars: int = 11
    """subject_length: shortest allowed subject (OctoPack: more than 10 characters)."""
    max_subject_chars: int = 999
    """subject_length: longest allowed subject (OctoPack: fewer than 1000 characters)."""
    min_subject_words: int = 5
    """subject_too_few_words: fewest space-separated words (OctoPack: more than 4)."""
    bump_drop_prob: float = 0.9
    """bump_version: probability of dropping a "Bump ..."/"Set version"/"Update version" commit."""
    min_tokens: int = 50
    """token_count: fewest tokens in old + EOD + new contents."""
    max_tokens: int = 768
    """token_count: most tokens in old + EOD + new contents."""
    seed: int = 0
    """Seed for the bump_version coin, hashed with the record's identity (reproducible, any order)."""

    def __post_init__(self):
        from codetron.errors import ConfigError

        unknown = set(self.disabled) - set(RULES)
        if unknown:
            raise ConfigError(f"unknown CommitPackFT rule(s) {sorted(unknown)}; choose from {', '.join(RULES)}")
        if self.verbs not in VERB_LISTS:
            raise ConfigError(f"verbs must be one of {', '.join(VERB_LISTS)}, got {self.verbs!r}")


def clean_subject(subject: str) -> str:
    """OctoPack's cleaning: drop ``[skip ci]``/``[ci skip]``, a leading ``[tag]`` word, a leading word
    ending in ``:`` (``docs:``, ``pager.c:``) and a trailing ``[tag]`` word."""
    words = subject.replace("[skip ci]", "").replace("[ci skip]", "").strip().split()
    if words and words[0].startswith("[") and words[0].endswith("]"):
        words = words[1:]
    if words and words[0].endswith(":"):
        words = words[1:]
    if words and words[-1].startswith("[") and words[-1].endswith("]"):
        words = words[:-1]
    return " ".join(words)


def unit_random(*key) -> float:
    """A reproducible number in [0, 1) from ``key`` (same record -> same draw, in any worker)."""
    digest = hashlib.blake2b(repr(key).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def first_line(message: str) -> str:
    return message.strip().split("\n", 1)[0].strip() if message else ""


def check_commit(rec: dict, cfg: CommitFilterConfig, identity: tuple = ()) -> str | None:
    """The first CommitPackFT rule ``rec`` breaks (excluding token_count), or ``None`` to keep it.

    ``rec`` holds ``old_contents``, ``new_contents``, ``subject`` (else the first line of
    ``message``) and optionally ``new_file``. Subject rules see the subject only, never the body,
    as in OctoPack. ``identity`` (e.g. (file, line)) seeds the bump_version coin."""
    on = lambda rule: rule not in cfg.disabled  # noqa: E731
    old, new = rec["old_contents"] or "", rec["new_contents"] or ""
    raw = (rec.get("subject") or first_line(rec.get("message") or "")).strip()
    subject = clean_subject(raw)
    lowered = subject.lower()

    if on("old_file_too_long") and len(old) >= cfg.max_old_chars:
        return "old_file_too_long"
    if on("new_file_empty") and not new:
        return "new_file_empty"
    if on("unchanged") and old == new:
        return "unchanged"
    if on("issue_reference") and ("#" in raw or _ISSUE_RE.search(raw)):
        return "issue_reference"  # "Fix #12", "issue 159": a reference, not an instruction
    if on("filename_in_subject") and _filename_stem(rec.get("new_file")) and _filename_stem(rec.get("new_file")) in raw:
        return "filename_in_subject"  # the documents do not show the file name
    if on("subject_length") and not all(cfg.min_subject_chars <= len(s) <= cfg.max_subject_chars for s in (raw, subject)):
        return "subject_length"
    if on("subject_too_few_words") and not all(cfg.min_subject_words <= len(s.split()) < 1000 for s in (raw, subject)):
        return "subject_too_few_words"
    if on("not_capitalized") and not subject[:1].isupper():
        return "not_capitalized"
    if on("not_imperative") and not any(lowered.startswith(v + " ") for v in _openings(lowered, cfg.verbs)):
        return "not_imperative"
    if on("bad_message") and (lowered in BAD_MESSAGES or lowered.startswith("merge")
                              or any(b in lowered for b in BAD_SUBSTRINGS) or ("thanks to" in lowered and "for" in subject)):
        return "bad_message"
    if on("version_or_hash") and (_VERSION_RE.search(lowered) or _HEX_SUBJECT_RE.match(lowered) or _SHA_RE.search(lowered)):
        return "version_or_hash"
    if on("cherry_pick") and "cherry picked from commit" in lowered:
        return "cherry_pick"
    if on("first_person") and (" i " in lowered or "i've" in lowered or "i'm" in lowered or "i’m" in lowered):
        return "first_person"  # OctoPack's test: " i " needs spaces, so "I/O" is not a pronoun
    if on("url") and ("https://" in lowered or "http://" in lowered):
        return "url"
    if on("wip") and _WIP_RE.search(_QUOTED_RE.sub(" ", subject)):
        return "wip"  # quoted text names something ('Remove "Work in progress caveat"')
    if on("bump_version") and subject.startswith(_BUMP_PREFIXES) and unit_random(cfg.seed, "bump", *identity) < cfg.bump_drop_prob:
        return "bump_version"
    return None


def _openings(lowered: str, verbs: str):
    first = lowered.split(" ", 1)[0]
    table = VERB_LISTS[verbs]
    if first in table:
        return (first,)
    two = " ".join(lowered.split(" ", 2)[:2])
    return (two,) if two in table else ()


def _filename_stem(path) -> str | None:
    """OctoPack's test: the part of the file name before its last dot (``pager`` for
    ``src/pager.c``); names without a dot are not checked."""
    if not isinstance(path, str):
        return None
    parts = path.rsplit("/", 1)[-1].split(".")
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def check_token_count(n_tokens: int, cfg: CommitFilterConfig) -> str | None:
    """token_count rule on len(tokens(old + "<|endoftext|>" + new)) = tokens(old) + 1 + tokens(new)."""
    if "token_count" in cfg.disabled:
        return None
    return None if cfg.min_tokens <= n_tokens <= cfg.max_tokens else "token_count"
