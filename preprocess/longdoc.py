r"""Encoding documents of any size in bounded memory, with the ids of a whole-document encode.

``tokenizers`` holds ~130 bytes per character while encoding (offsets, pre-token strings), so a
50 MB document needs >6 GB, and the Python list of its ids as much again. A BPE tokenizer never
merges across a pre-token boundary, so cutting the text exactly where its own pre-tokenizer cuts
and encoding the pieces one after the other gives the same ids. :func:`split_points` finds such
cuts window by window; it only needs a function giving the pre-token end offsets of a string, so
any encoder backend (``tokenizers``' ``pre_tokenize_str``, a regex for tiktoken) can use it.

Why the pieces encode as the whole does (for pre-tokenizer regexes without look-behind, which
is every byte-level BPE we know: GPT-2, StarCoder, StarCoder2, Llama 3):
* a piece starts at a true boundary and the regex scans left to right, so the piece's pre-tokens
  are the whole text's until a decision looks past the piece's end;
* only whitespace alternatives look ahead past their match (``\s+(?!\S)`` leaves the last space of
  a run for the next word), so a piece never ends in whitespace: ``"    \n\n\n"`` at the end of a
  piece would become one pre-token where the whole text has ``"    \n\n"`` + ``"\n"``;
* a window cut mid-run or mid-word can only change its last pre-tokens, so the last
  ``SAFETY_BOUNDARIES`` of a window are never used;
* added tokens (``<|endoftext|>`` written in code) are matched on the raw text before
  pre-tokenizing, so windows and cuts never fall inside one.
"""
from __future__ import annotations

import json
import re
import unicodedata
from typing import Callable, Iterator, Sequence

import numpy as np

from codetron.errors import CodetronError

LONG_TEXT_CHARS = 1 << 18
"""Texts longer than this (256 Ki characters, ~35 MB of tokenizer memory) are encoded in pieces."""
PIECE_CHARS = 1 << 16
"""Target piece length in characters: ~8 MB of tokenizer working memory per piece."""
SAFETY_BOUNDARIES = 2
"""Boundaries at a window's end that may differ from the whole text's; never cut there."""
MAX_PRETOKEN_CHARS = 1 << 22
"""A single pre-token longer than this (4 Mi characters of one letter run, say) cannot be cut without
changing ids; such a document is refused rather than encoded in unbounded memory."""

MAX_ADDED_TOKEN_CHARS = 256
"""Added tokens longer than this are not supported by the splitter (it looks this far around a cut)."""

PreTokenize = Callable[[str], Sequence[int]]
"""str -> increasing end offsets of its pre-tokens (the last equals len(str) for non-empty str)."""


class PretokenTooLong(CodetronError):
    """A document holds one pre-token too long to encode in bounded memory."""


def split_points(text: str, pretokenize: PreTokenize, piece_chars: int = PIECE_CHARS,
                 protected: re.Pattern | None = None, max_pretoken_chars: int = MAX_PRETOKEN_CHARS,
                 line_cuts: bool = False) -> Iterator[int]:
    """Yield offsets ``0 < c1 < c2 < ... < len(text)`` where ``text`` may be cut without changing
    its token ids; pieces are about ``piece_chars`` long (longer only where a pre-token is).

    ``protected`` matches added-token strings; a cut never falls strictly inside a match.
    ``line_cuts`` (only for pre-tokenizers :func:`line_cuts_safe` accepts) cuts before a newline
    that follows a non-space character without pre-tokenizing anything: pre-tokenizing a window
    costs more than encoding it, so code (lines every ~40 characters) is cut at string-search
    speed and only newline-free stretches are pre-tokenized."""
    start, n = 0, len(text)
    while n - start > piece_chars:
        cut = _line_cut(text, start + piece_chars, min(n, start + 4 * piece_chars), protected) if line_cuts else None
        if cut is not None:
            yield cut
            start = cut
            continue
        width = piece_chars
        while True:
            end = min(n, start + width)
            straddling = _match_around(text, end, protected) if protected is not None else None
            if straddling is not None:
                end = straddling.end()  # the window sees whole added tokens, as the tokenizer does
            cut = _last_safe_cut(text, start, end, pretokenize, protected, at_text_end=end == n)
            if cut is not None:
                break
            if end == n:
                return  # the rest is one piece
            if width >= max_pretoken_chars:
                raise PretokenTooLong(f"a single pre-token longer than {max_pretoken_chars:,} characters at offset {start:,}: "
                                      "it cannot be encoded in bounded memory")
            width *= 2
        yield cut
        start = cut


def _line_cut(text: str, lo: int, hi: int, protected) -> int | None:
    """The first ``j`` in ``[lo, hi)`` with ``text[j] == "\\n"`` after a non-space character, not
    inside an added token."""
    j = text.find("\n", lo, hi)
    while j != -1:
        if not _whitespace(text[j - 1]) and (protected is None or _match_around(text, j, protected) is None):
            return j
        j = text.find("\n", j + 1, hi)
    return None


def _last_safe_cut(text: str, start: int, end: int, pretokenize: PreTokenize, protected, at_text_end: bool) -> int | None:
    window = text[start:end]
    ends = list(pretokenize(window))
    usable = ends[:-1] if at_text_end else ends[: max(0, len(ends) - SAFETY_BOUNDARIES)]
    for e in reversed(usable):
        if e <= 0:
            break
        cut = start + e
        if _whitespace(text[cut - 1]):
            continue  # see the module docstring: a piece may not end in whitespace
        if protected is None or _match_around(text, cut, protected) is None:
            return cut
    return None


def _whitespace(ch: str) -> bool:
    # wider than any regex engine's \s (Python's isspace plus the Unicode space separators)
    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp") or ch in "\u180e\u200b\ufeff"


def _match_around(text: str, pos: int, protected: re.Pattern) -> re.Match | None:
    """The added-token match of ``text`` with ``start < pos < end``, if any."""
    span = MAX_ADDED_TOKEN_CHARS
    for m in protected.finditer(text, max(0, pos - span), min(len(text), pos + span)):
        if m.start() < pos < m.end():
            return m
        if m.start() >= pos:
            break
    return None


# --- tokenizers (Hugging Face) ------------------------------------------------------------------

_SPLIT_SAFE_PRETOKENIZERS = {"ByteLevel", "Digits", "Split", "Punctuation", "Whitespace", "WhitespaceSplit", "UnicodeScripts"}


def hf_split_support(backend) -> tuple[PreTokenize, re.Pattern | None] | str:
    """For a ``tokenizers.Tokenizer``: ``(pretokenize, protected)`` when cutting at pre-token
    boundaries keeps ids identical, else the reason it does not (a string)."""
    spec = json.loads(backend.to_str())
    if spec.get("normalizer") is not None:
        return "it has a normalizer (normalization may depend on neighbouring characters)"
    pre = spec.get("pre_tokenizer")
    if pre is None:
        return "it has no pre-tokenizer (the whole text is one pre-token)"
    reason = _pretokenizer_reason(pre)
    if reason:
        return reason
    model = (spec.get("model") or {}).get("type")
    if model not in ("BPE", "WordPiece", "WordLevel", "Unigram"):
        return f"its model {model!r} is not known to work per pre-token"
    added = spec.get("added_tokens") or []
    for tok in added:
        if tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word"):
            return f"added token {tok.get('content')!r} strips or matches whole words (context beyond the cut)"
    contents = sorted({t["content"] for t in added if t.get("content")}, key=len, reverse=True)
    if contents and len(contents[0]) > MAX_ADDED_TOKEN_CHARS:
        return f"added token {contents[0][:40]!r}... is longer than {MAX_ADDED_TOKEN_CHARS} characters"
    protected = re.compile("|".join(map(re.escape, contents))) if contents else None
    pre_tok = backend.pre_tokenizer

    def pretokenize(s: str) -> list[int]:
        return [off[1] for _, off in pre_tok.pre_tokenize_str(s)]

    if protected is None:
        return pretokenize, None

    def pretokenize_around_added(s: str) -> list[int]:
        # tokenizers takes added tokens out before pre-tokenizing, so pre-tokenize between them
        ends: list[int] = []
        pos = 0
        for m in protected.finditer(s):
            if m.start() > pos:
                ends.extend(pos + e for e in pretokenize(s[pos : m.start()]))
            ends.append(m.end())
            pos = m.end()
        if pos < len(s):
            ends.extend(pos + e for e in pretokenize(s[pos:]))
        return ends

    return pretokenize_around_added, protected


def line_cuts_safe(backend) -> bool:
    """Whether every ``"\\n"`` right after a non-space character starts a pre-token of
    ``backend`` (a ``tokenizers.Tokenizer``), so ``split_points(line_cuts=True)`` may cut there.

    True for GPT-2's byte-level regex, alone or after ``Digits`` (GPT-2, StarCoder, StarCoder2):
    only its whitespace alternatives (``\\s+(?!\\S)``, ``\\s+``) match a newline and none of them
    matches the non-space character before it, so a pre-token ends there; the piece before the
    cut ends in that character, never in whitespace, so no look-ahead sees the cut. Not for
    other regexes: Llama 3's ``?[^\\s\\p{L}\\p{N}]+[\\r\\n]*`` keeps ``";\\n"`` together."""
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds not in (["ByteLevel"], ["Digits", "ByteLevel"]):
        return False
    return bool(parts[-1].get("use_regex", True)) and not parts[-1].get("add_prefix_space")


def _pretokenizer_reason(pre: dict) -> str | None:
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    for p in parts:
        kind = p.get("type")
        if kind not in _SPLIT_SAFE_PRETOKENIZERS:
            return f"its pre-tokenizer {kind!r} is not known to be cut-safe"
        if kind == "ByteLevel" and p.get("add_prefix_space"):
            return "its ByteLevel pre-tokenizer adds a prefix space (every piece would get one)"
    if all(p.get("type") == "ByteLevel" and not p.get("use_regex", True) for p in parts):
        return "its pre-tokenizer does not split the text"
    return None


def encode_long(text: str, encode_batch: Callable[[list[str]], list[list[int]]], cuts: Iterator[int], dtype,
                batch: int = 4) -> np.ndarray:
    """Ids of ``text`` encoded piece by piece between ``cuts``, as one array of ``dtype``; a few
    pieces are encoded per call so the Rust backend stays busy while memory stays bounded."""
    out: list[np.ndarray] = []
    pending: list[str] = []
    start = 0

    def flush():
        for ids in encode_batch(pending):
            out.append(np.asarray(ids, dtype=dtype))
        pending.clear()

    for cut in cuts:
        pending.append(text[start:cut])
        start = cut
        if len(pending) >= batch:
            flush()
    pending.append(text[start:])
    flush()
    return np.concatenate(out) if out else np.zeros(0, dtype)
