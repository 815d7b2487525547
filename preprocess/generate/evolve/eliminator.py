"""Elimination evolving (WizardLM arXiv:2304.12244 §3.3): when an evolution counts as failed.

Rules, checked in this order (the first that fires is recorded):

- ``empty_instruction``: the model returned no instruction at all.
- ``copied_prompt_words`` (rule 4): the evolved instruction contains a phrase of the evolution prompt
  ("given prompt", "rewritten prompt", "#Rewritten Prompt#", "#Given Question#" ...).
- ``truncated_instruction``: the evolution hit ``max_tokens`` (``finish_reason: length``), so the
  instruction is cut off mid-sentence (kept only with ``--keep-truncated``).
- ``no_information_gain`` (rule 1): the evolved instruction equals the parent up to whitespace/case,
  or the judge model, asked WizardLM's question (``templates.EQUALITY_TEMPLATE``), answers "Equal".
- ``judge_unparsed``: the judge's answer is neither "Equal" nor "Not Equal" (``parse_judgement``).
  **Rule for unparsed answers: the evolution is dropped** (``--judge-unparsed drop``, the default)
  and counted, because an unreadable verdict is no evidence of information gain, and a dropped
  evolution costs little: its parent is evolved again next round. Keeping them instead
  (``--judge-unparsed keep``) made a weak judge eliminate nothing. Unparsed answers are counted in
  the stats and the summary line either way, and each record keeps the judge's raw answer.
- ``truncated_response``: the response hit ``max_tokens`` (kept only with ``--keep-truncated``).
- ``sorry_short`` (rule 2): the response contains "sorry" and has fewer than 80 words.
- ``stopwords_only`` (rule 3): the response has no word outside the stop-word list (so only
  punctuation and stop words, or nothing).

A failed evolution's parent stays the lineage's instruction for the next round (WizardLM puts
failed instructions back into the pool).
"""
from __future__ import annotations

import re

from codetron.preprocess.generate.evolve.templates import COPIED_PROMPT_WORDS

RULES = ("empty_instruction", "copied_prompt_words", "truncated_instruction", "no_information_gain", "judge_unparsed",
         "truncated_response", "sorry_short", "stopwords_only")
"""Every rule name, in checking order."""

SORRY_MAX_WORDS = 80
"""Rule 2: a response with "sorry" is dropped when it has fewer words than this."""

# A compact English stop-word list (function words only), written out here so that nothing depends
# on nltk's downloader. Rule 3 asks whether a response has any *content* word at all.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those through to too under
until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've your yours
yourself yourselves yes ok okay just also well oh
""".split())
"""Words that carry no content (rule 3)."""

_WORD = re.compile(r"[A-Za-z0-9_']+")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def word_count(text: str) -> int:
    return len(text.split())


def copied_prompt_words(instruction: str, phrases=COPIED_PROMPT_WORDS) -> str | None:
    """The first evolution-prompt phrase found in ``instruction`` (case-insensitive), or None."""
    low = instruction.lower()
    for phrase in phrases:
        if phrase.lower() in low:
            return phrase
    return None


def is_sorry_short(response: str) -> bool:
    """Rule 2: "sorry" anywhere (any case) and fewer than 80 words."""
    return "sorry" in response.lower() and word_count(response) < SORRY_MAX_WORDS


def is_stopwords_only(response: str) -> bool:
    """Rule 3: no word outside ``STOP_WORDS`` (punctuation and whitespace are ignored)."""
    return all(w.lower().strip("'") in STOP_WORDS or not w.strip("'") for w in _WORD.findall(response))


_VERDICT = re.compile(r"(not equal|equal)(?![a-z])(.*)", re.S)
_ANSWER_PREFIX = re.compile(r"^(?:(?:your\s+)?(?:judge?ment|answer|verdict)\s*:\s*)")


def parse_judgement(answer: str) -> bool | None:
    """True for "Equal", False for "Not Equal", None for anything else (strict).

    Read: the first non-empty line, case-insensitive, after markdown emphasis, quotes and a leading
    "Judgement:"/"Answer:" are removed. It must *start* with "Equal" or "Not Equal" as whole words;
    what follows may be punctuation or a short reason ("Equal - only the wording differs" is Equal),
    unless it names the other verdict ("Equal or Not Equal" echoes the question). "NotEqual", "Yes",
    "They are equal", "Different" are unparsed: the question allowed two answers."""
    line = next((ln for ln in answer.splitlines() if ln.strip()), "")
    text = " ".join(re.sub(r"[*_`\"']", "", line).lower().split())
    text = _ANSWER_PREFIX.sub("", text).strip()
    m = _VERDICT.match(text)
    if m is None or "equal" in m.group(2):
        return None
    return m.group(1) == "equal"


def check_instruction(parent: str, evolved: str) -> str | None:
    """Rules that need no model call: the failed rule's name, or None."""
    if not evolved.strip():
        return "empty_instruction"
    if copied_prompt_words(evolved):
        return "copied_prompt_words"
    if normalize(evolved) == normalize(parent):
        return "no_information_gain"
    return None


def check_response(response: str) -> str | None:
    """Rules on the response: the failed rule's name, or None."""
    if is_sorry_short(response):
        return "sorry_short"
    if is_stopwords_only(response):
        return "stopwords_only"
    return None
