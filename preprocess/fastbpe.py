r"""A faster exact encoder for byte-level BPE tokenizers: ``tiktoken`` built from ``tokenizer.json``.

``tokenizers`` spends most of its time on bookkeeping (offsets, normalized strings, word caches);
``tiktoken`` runs the same BPE over the same pre-tokens about 3x faster. It is used only when
:func:`fast_encoder` proves, at start-up, that it gives the ids ``tokenizers`` gives on a built-in
probe set; otherwise the caller keeps ``tokenizers`` and prints the reason.

How the emulation stays exact, and what the checks guard:
* vocabulary: byte-level token strings map back to bytes through GPT-2's byte<->unicode table;
  every byte UTF-8 text can hold needs its token (``NOT_IN_UTF8`` lists those that may be missing);
* input: ``str`` only, handed to tiktoken's Rust entry point, which refuses lone surrogates as
  ``tokenizers`` does (tiktoken's Python ``encode_ordinary`` would replace them with U+FFFD);
* merge order: tiktoken merges the adjacent pair whose *concatenation* has the lowest rank, so a
  token's rank is its merge's index (through an id table when ids are not in merge order); tokens
  no merge produces get no rank (``tokenizers`` cannot produce them either);
* tiktoken emits a pre-token found whole in the vocabulary without merging; ``tokenizers``
  (``ignore_merges: false``) always merges. Every merged token is checked to merge back to itself;
* pre-tokenizer: ``Digits`` runs before ``ByteLevel``'s regex, so a whitespace run right before a
  digit ends a segment and stays whole (``\s+(?!\S)`` sees the segment's end). The emulating
  pattern isolates digits and lets whitespace end before one;
* added tokens (``<|endoftext|>``, ``<fim_prefix>``, ...) are cut out of the raw text first, longest
  match at the leftmost position, as ``tokenizers`` does. So a literal ``<|endoftext|>`` inside a
  source file becomes the EOD id, exactly as with ``tokenizers`` and Megatron-LM's
  ``preprocess_data.py``.
Anything the emulation does not model (normalizers, prefix spaces, other pre-tokenizers, dropout,
stripping added tokens) is refused up front with its reason.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

import numpy as np

from codetron.errors import CodetronError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""ByteLevel(use_regex=True)'s split pattern, as in ``tokenizers`` (and GPT-2)."""


NOT_IN_UTF8 = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])
"""Bytes that never occur in UTF-8 text. Encoders take ``str``, whose UTF-8 form never holds
them, so a vocabulary may lack their byte-level tokens (StarCoder2's lacks all 14)."""


class FastEncoderUnavailable(CodetronError):
    """tiktoken cannot reproduce this tokenizer's ids (the message says why)."""


def _digits_pattern(individual: bool, byte_level_regex: bool) -> str:
    """The pattern for ``Sequence[Digits, ByteLevel]``: digits are their own segments, and the
    segment before one ends there, so whitespace may end before a digit as before the text's end."""
    digit = r"\p{N}" if individual else r"\p{N}+"
    if not byte_level_regex:
        return digit + r"|[^\p{N}]+"
    return (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|""" + digit +
            r"""| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+""")


def pattern_for(pre: dict | None) -> str:
    """The tiktoken split pattern equivalent to a ``tokenizer.json`` pre-tokenizer (raises
    :class:`FastEncoderUnavailable` for one it cannot emulate)."""
    if pre is None:
        raise FastEncoderUnavailable("it has no pre-tokenizer")
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if not kinds or kinds[-1] != "ByteLevel":
        raise FastEncoderUnavailable(f"its pre-tokenizer ({' + '.join(map(str, kinds)) or 'empty'}) is not byte-level BPE")
    byte_level = parts[-1]
    if byte_level.get("add_prefix_space"):
        raise FastEncoderUnavailable("its ByteLevel pre-tokenizer adds a prefix space")
    use_regex = byte_level.get("use_regex", True)
    if kinds == ["ByteLevel"]:
        if not use_regex:
            raise FastEncoderUnavailable("its pre-tokenizer does not split the text (whole-text BPE)")
        return GPT2_PATTERN
    if kinds == ["Digits", "ByteLevel"]:
        return _digits_pattern(bool(parts[0].get("individual_digits")), use_regex)
    if kinds == ["Split", "ByteLevel"] and not use_regex:
        split = parts[0]
        regex = (split.get("pattern") or {}).get("Regex")
        if regex is None or split.get("behavior") != "Isolated" or split.get("invert"):
            raise FastEncoderUnavailable("its Split pre-tokenizer is not an isolating regex")
        return regex
    raise FastEncoderUnavailable(f"its pre-tokenizer ({' + '.join(kinds)}) has no tiktoken pattern")


def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> the byte it stands for (all 256 bytes)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class FastBPE:
    """tiktoken encoding of one ``tokenizers`` BPE; ``encode``/``encode_batch`` give its ids."""

    def __init__(self, encoding, id_map: np.ndarray | None, added: list[tuple[re.Pattern, dict[str, int]]],
                 lacking: re.Pattern | None = None, backend=None):
        self.encoding = encoding
        self._id_map = id_map
        """rank -> tokenizers id, or None when ranks are the ids."""
        self._added = added
        """(pattern, content -> id) per matching pass, in ``tokenizers``' order."""
        self._lacking = lacking
        """Characters whose UTF-8 holds a byte the vocabulary has no token for: ``tokenizers``
        silently drops such bytes, tiktoken cannot, so texts holding one are encoded by ``backend``."""
        self._backend = backend
        # the Rust entry point, not Encoding.encode_ordinary: that one silently turns lone
        # surrogates into U+FFFD, where tokenizers refuses the text; both must refuse alike
        self._encode_ordinary = encoding._core_bpe.encode_ordinary

    def _pieces(self, text: str, level: int = 0) -> list[str | int]:
        """``text`` cut at added tokens: strings to BPE-encode and added-token ids."""
        if level == len(self._added):
            return [text] if text else []
        pattern, ids = self._added[level]
        out: list[str | int] = []
        pos = 0
        for m in pattern.finditer(text):
            out.extend(self._pieces(text[pos : m.start()], level + 1))
            out.append(ids[m.group()])
            pos = m.end()
        out.extend(self._pieces(text[pos:], level + 1))
        return out

    def _ranks(self, text: str) -> tuple[list[int], bool]:
        """tiktoken ranks of ``text``, added tokens as ``-1 - id``; and whether there were any."""
        if not self._added or not any(p.search(text) for p, _ in self._added):
            return self._encode_ordinary(text), False
        out: list[int] = []
        for piece in self._pieces(text):
            if isinstance(piece, int):
                out.append(-1 - piece)  # negated so the rank -> id table leaves them alone
            else:
                out.extend(self._encode_ordinary(piece))
        return out, True

    def _needs_backend(self, text: str) -> bool:
        # isascii() is a flag lookup: code is mostly ASCII and lacking bytes are never ASCII
        return self._lacking is not None and not text.isascii() and self._lacking.search(text) is not None

    def _backend_ids(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str, dtype) -> np.ndarray:
        """Ids of ``text`` (no BOS/EOS) as an array of ``dtype``."""
        if self._needs_backend(text):
            return np.asarray(self._backend_ids(text), dtype=dtype)
        ranks, has_added = self._ranks(text)
        arr = np.asarray(ranks, dtype=np.int64)
        if has_added:
            added = arr < 0
            ids = self._id_map[np.where(added, 0, arr)] if self._id_map is not None else arr
            arr = np.where(added, -1 - arr, ids)
        elif self._id_map is not None:
            arr = self._id_map[arr]
        return arr.astype(dtype, copy=False)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without any BOS/EOS added."""
        if self._needs_backend(text):
            return self._backend_ids(text)
        ranks, has_added = self._ranks(text)
        if not has_added and self._id_map is None:
            return ranks
        return self.encode_array(text, np.int64).tolist()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]


def build(backend) -> FastBPE:
    """A :class:`FastBPE` for a ``tokenizers.Tokenizer`` (not yet verified: see :func:`fast_encoder`)."""
    try:
        import tiktoken
    except ImportError:
        raise FastEncoderUnavailable("tiktoken is not installed (pip install tiktoken)") from None
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise FastEncoderUnavailable(f"its model is {model.get('type')!r}, not BPE")
    if spec.get("normalizer") is not None:
        raise FastEncoderUnavailable("it has a normalizer")
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        raise FastEncoderUnavailable("it truncates or pads encodings")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise FastEncoderUnavailable(f"its BPE sets {key}={model[key]!r}")
    if model.get("ignore_merges"):
        raise FastEncoderUnavailable("its BPE sets ignore_merges")
    pattern = pattern_for(spec.get("pre_tokenizer"))

    vocab: dict[str, int] = model["vocab"]
    to_byte = byte_decoder()
    byte_id: dict[int, int] = {}
    for s, i in vocab.items():
        if len(s) == 1 and s in to_byte:
            byte_id[to_byte[s]] = i
    lacking = lacking_characters(set(range(256)) - set(byte_id))

    def as_bytes(s: str) -> bytes:
        try:
            return bytes(to_byte[c] for c in s)
        except KeyError:
            raise FastEncoderUnavailable(f"token {s!r} is not byte-level") from None

    merged: list[tuple[bytes, int]] = []
    seen: set[str] = set()
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        s = a + b
        if s not in vocab:
            raise FastEncoderUnavailable(f"merge {a!r} + {b!r} makes {s!r}, which is not in the vocabulary")
        if s in seen:
            raise FastEncoderUnavailable(f"token {s!r} is made by two merges (tiktoken ranks a token once)")
        seen.add(s)
        merged.append((as_bytes(s), vocab[s]))
    ids = np.array([i for _, i in merged], dtype=np.int64)
    if ids.size and not (np.diff(ids) > 0).all():
        # ranks must follow merge order; the table maps them back to this tokenizer's ids
        ranks = {bytes([b]): b for b in byte_id}
        ranks.update((bs, 256 + k) for k, (bs, _) in enumerate(merged))
        id_map = np.empty(256 + len(merged), dtype=np.int64)
        id_map[:256] = [byte_id.get(b, -1) for b in range(256)]  # -1: a byte str input never holds
        id_map[256:] = ids
    else:
        ranks = {bytes([b]): i for b, i in byte_id.items()}
        ranks.update(merged)
        id_map = None

    added = [t for t in spec.get("added_tokens") or [] if t.get("content")]
    if getattr(backend, "encode_special_tokens", False):
        added = [t for t in added if not t.get("special")]  # special ones stay plain text then
    for t in added:
        if t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            raise FastEncoderUnavailable(f"added token {t['content']!r} strips spaces or matches whole words only")
    passes = []
    # tokenizers cuts non-normalized added tokens out first, then normalized ones (no normalizer
    # here, so only the order matters); each pass takes the longest match at the leftmost position
    for group in ([t for t in added if not t.get("normalized")], [t for t in added if t.get("normalized")]):
        if group:
            contents = sorted({t["content"] for t in group}, key=len, reverse=True)
            passes.append((re.compile("|".join(map(re.escape, contents))), {t["content"]: t["id"] for t in group}))
    try:
        enc = tiktoken.Encoding("codetron-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    except Exception as exc:  # the Rust side rejects patterns fancy-regex cannot compile
        raise FastEncoderUnavailable(f"tiktoken rejects it ({str(exc).splitlines()[0][:120]})") from None
    return FastBPE(enc, id_map, passes, lacking, backend)


_UTF8_FIRST = {2: 0x80, 3: 0x800, 4: 0x10000}
"""The first code point of each UTF-8 sequence length."""


def lacking_characters(missing: set[int]) -> re.Pattern | None:
    """A character class matching every character whose UTF-8 form holds one of the ``missing``
    bytes (None when there are none); raises :class:`FastEncoderUnavailable` when a missing byte
    is ASCII or a continuation byte (too many characters hold one for the fallback to be rare).

    Lead bytes give a contiguous range: 0xC2-0xDF start 2-byte sequences, 0xE0-0xEF 3-byte,
    0xF0-0xF4 4-byte (0xF1 leads U+40000-U+7FFFF, unassigned planes StarCoder2's vocabulary has
    no token for)."""
    missing = set(missing) - NOT_IN_UTF8
    if not missing:
        return None
    bad = sorted(b for b in missing if b < 0xC2)
    if bad:
        raise FastEncoderUnavailable(f"its vocabulary lacks byte-level tokens for {len(bad)} bytes that much UTF-8 text "
                                     f"holds (e.g. {bad[0]:#04x})")
    ranges = []
    for b in sorted(missing):
        n, bits = (2, 5) if b < 0xE0 else (3, 4) if b < 0xF0 else (4, 3)
        lo = (b & ((1 << bits) - 1)) << (6 * (n - 1))
        hi = min(lo | ((1 << (6 * (n - 1))) - 1), 0x10FFFF)
        ranges.append(f"\\U{max(lo, _UTF8_FIRST[n]):08x}-\\U{hi:08x}")
    return re.compile("[" + "".join(ranges) + "]")


# --- proof of identity --------------------------------------------------------------------------

_CODE = [
    'def f(x: int = 10) -> str:\n    """Doc."""\n    return f"{x:>08.3f}" if x else \'\'\n\n\n\nclass A(B):\n\tpass\n',
    '#include <stdio.h>\nint main(void) {\n    for (int i = 0; i < 1024; ++i) printf("%d\\n", i*2);\n    return 0;\r\n}\r\n',
    'public class Main { public static void main(String[] args) { System.out.println(0x1F + 3.14e-10); } }\n',
    'const x = async () => { await fetch(`/api/${id}?q=1`); }; // TODO\n/* block */ let y = [1,2,3].map(n => n**2);\n',
    'fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![0u8; 256];\n    println!("{:?}", &v[..4]);\n    Ok(())\n}\n',
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("héllo", 42)\n}\n',
    'SELECT id, COUNT(*) AS n FROM t WHERE x >= 3 GROUP BY 1 HAVING n > 100;\n',
    '<!DOCTYPE html>\n<html><body><div class="a">&nbsp;&lt;tag&gt;</div></body></html>\n',
    '#!/bin/bash\nset -euo pipefail\nfor f in *.py; do echo "$f" | wc -c; done  # 2>&1\n',
    'main :: IO ()\nmain = mapM_ print [x | x <- [1..100], x `mod` 3 == 0]\n',
    '{"key": [1, 2.5, -3e8, null, true], "nested": {"a\\u00e9": "\\ud83d\\ude00"}}\n',
    "I'm sure it's what they'd've said; WE'LL see, you're right, I've, 'S 'T 'RE 'Ve\n",
]
_UNICODE = [
    "日本語のテキスト、中文文本，한국어 텍스트。", "emoji 👩‍👩‍👧‍👦 🏳️‍🌈 ✔️ 🇫🇷 👍🏽", "combining e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937",
    "مرحبا بالعالم ١٢٣ שלום עולם", "ไทย ๑๒๓ देवनागरी १२३", "fullwidth １２３ ＡＢＣ superscript x² x³ ½ ¾ Ⅻ ⅷ ⑳",
    "math ∀x∈ℝ: x²≥0 ⇒ √x ∞ ≠ ≈ ∑∫", "\x00\x01\x7f\x80\x9f control \ufffd\ufeff bom", "ℌ𝔢𝔩𝔩𝔬 𝟙𝟚𝟛 𐍈 \U0001F600\U000E0001",
]
# one character per UTF-8 lead byte (the first code point each one starts), so a vocabulary
# lacking a lead byte's token is checked on text that needs it
_LEAD_BYTE_CHARS = "".join(chr(max(_lo, 0x80)) for _lo in [*((b & 0x1F) << 6 for b in range(0xC2, 0xE0)),
                                                           *(max((b & 0xF) << 12, 0x800) for b in range(0xE0, 0xF0)),
                                                           *(max((b & 7) << 18, 0x10000) for b in range(0xF0, 0xF5))])
_WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2028", "\u0085", "\u3000", "\u200b", "\u180e", "\u2003", "\u202f"]
_FOLLOW = ["", "x", "X", "1", "٣", "²", ".", "(", "'s", " ", "\n", "é", "中", "<|endoftext|>"]


def probe_texts(specials: Sequence[str] = (), vocab_strings: Sequence[str] = ()) -> list[str]:
    """The built-in probe set: code in several languages, unicode, whitespace runs of every kind
    before letters, digits and punctuation, digit runs, added-token strings, and the vocabulary
    itself (each token once, and all of them run together)."""
    texts = list(_CODE) + list(_UNICODE) + [_LEAD_BYTE_CHARS, " ".join(_LEAD_BYTE_CHARS), "x".join(_LEAD_BYTE_CHARS)]
    for w in _WHITESPACE:
        for n in (1, 2, 3, 5):
            texts.extend("a" + w * n + f for f in _FOLLOW)
            texts.append(w * n)
    texts += ["0", "12", "3.14159", "v1.2.3", "1e-9", "x1y2z3", "  12  34\n\n56", "0" * 50, "1 2  3   4", "a1 b22 c333 d"]
    texts += ["    " * 8 + "x", "\n" * 40, "\t\t\n \n  \n", "a" * 300, "=" * 200 + "\n", "#" * 79]
    for s in specials:
        texts += [s, f"x{s}y", f"{s}{s}", f" {s} ", f"1{s}2", f"\n{s}\n", s[:-1], s[1:], f"<{s}>", f"{s[:-1]}{s}"]
    if specials:
        texts.append("".join(specials) + " ".join(specials) + "\n".join(specials))
    if vocab_strings:
        # every token in three contexts (one call each: single-token words are what the
        # merge-back check in verify() already covers)
        texts += ["".join(vocab_strings), " ".join(vocab_strings), "\n".join(vocab_strings)]
    return texts


def verify(fast: FastBPE, backend) -> str | None:
    """None when ``fast`` gives ``backend``'s ids on every probe (and every merged token merges back
    to itself); else a one-line description of the first difference."""
    spec = json.loads(backend.to_str())
    model = spec["model"]
    to_byte = byte_decoder()
    # tiktoken emits a pre-token that is a whole token as is; tokenizers must get there by merging
    tokenize = backend.model.tokenize
    vocab = model["vocab"]
    for m in model.get("merges", []):
        s = "".join(m.split(" ", 1) if isinstance(m, str) else m)
        got = [t.id for t in tokenize(s)]
        if got != [vocab[s]]:
            return f"token {s!r} does not merge back to itself ({got}), so tiktoken would emit it where tokenizers does not"
    added = [t["content"] for t in spec.get("added_tokens") or [] if t.get("content")]
    words = []
    for s in vocab:
        b = bytes(to_byte.get(c, 0x3F) for c in s)
        words.append(b.decode("utf-8", errors="replace"))
    probes = probe_texts(added, words)
    want = [e.ids for e in backend.encode_batch_fast(probes, add_special_tokens=False)] \
        if hasattr(backend, "encode_batch_fast") else [e.ids for e in backend.encode_batch(probes, add_special_tokens=False)]
    for text, ids in zip(probes, want):
        got = fast.encode(text)
        if got != ids:
            k = next((j for j, (a, b) in enumerate(zip(got, ids)) if a != b), min(len(got), len(ids)))
            return f"probe {text[:60]!r} differs at token {k}: tiktoken {got[k:k + 4]} vs tokenizers {ids[k:k + 4]}"
    return None


def fast_encoder(backend) -> FastBPE:
    """A verified :class:`FastBPE` for ``backend``, or :class:`FastEncoderUnavailable` saying why."""
    fast = build(backend)
    diff = verify(fast, backend)
    if diff is not None:
        raise FastEncoderUnavailable(f"tiktoken's ids differ: {diff}")
    return fast
