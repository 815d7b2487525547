"""Fill-in-the-middle (Bavarian et al. 2022, arXiv:2207.14255) on megatron-core GPTDataset samples.

Context-level FIM, as StarCoder trained: every sample (``seq_length + 1`` tokens drawn by GPTDataset)
is split into documents at EOD -- and, for fragment-level FIM, into fragments at
``data.fim_split_sample`` -- and each piece independently becomes, with probability ``fim_rate``::

    PSM  <fim_prefix> P <fim_suffix> S <fim_middle> M
    SPM  <fim_prefix> <fim_suffix> S <fim_middle> P M        (with probability fim_spm_rate)

What this does differently from bigcode's Megatron-LM fork:

* Cut points are drawn on the decoded *text* (code points), never inside a UTF-8 character, and the
  three pieces are re-tokenized. Token bytes come from :class:`TokenBytes`, so tokens that are not
  valid UTF-8 on their own (half an emoji) are handled exactly; a partial character at a sample edge
  stays as its original tokens, glued to the prefix (start) or suffix (end).
* A piece is never truncated inside its text: sentinels and re-tokenization make FIM pieces a few
  tokens longer, which pushes later tokens out of the sample; the piece that reaches the end of the
  sample is FIM-transformed on the longest text prefix whose FIM form fits (the same cut a plain
  sample makes at its end, at a character boundary). So every FIM piece rearranges back to the
  exact text it covers.
* Padding (when FIM pieces come out shorter) uses ``<fim_pad>``, which GPTDataset masks out of the
  loss (``loss_mask[labels == pad] = 0``); tests check that no pad position carries loss weight.
* Randomness is a generator seeded by (seed, dataset, sample index): the same sample is transformed
  identically on every rank, in every layout, after every resume.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np

from codetron.errors import ConfigError
from codetron.megatron_ext.fingerprint import dataset_fingerprint
from codetron.megatron_ext.token_bytes import TokenBytes, decodable_span

FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"

# What happened to one piece (document or fragment) of a sample; tests measure rates from these.
PLAIN, PSM, SPM, SKIPPED = "plain", "psm", "spm", "skipped"


@dataclass(frozen=True)
class FIMTokens:
    """Token ids FIM needs, resolved from the tokenizer."""

    prefix: int
    """``<fim_prefix>``."""
    middle: int
    """``<fim_middle>``."""
    suffix: int
    """``<fim_suffix>``."""
    pad: int
    """``<fim_pad>``: fills the sample end, excluded from the loss."""
    eod: int
    """End of document: pieces are split here."""
    split: int | None = None
    """Fragment separator for fragment-level FIM (None = whole documents)."""

    @classmethod
    def from_tokenizer(cls, tokenizer, split_token: str | None = None,
                       names: list[str] | tuple[str, ...] | None = None) -> "FIMTokens":
        """``names``: the sentinels as the tokenizer spells them, prefix, middle, suffix and (if the
        tokenizer has one) its FIM pad (``data.fim_tokens``, set by model presets: CodeLlama's ``▁<PRE>``...);
        None = StarCoder's ``<fim_*>``. Without a FIM pad the tokenizer's own pad token pads."""
        names = list(names) if names else [FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD]
        if len(names) not in (3, 4):
            raise ConfigError(f"data.fim_tokens {names!r}: give prefix, middle, suffix and optionally pad")
        ids = []
        for name in names:
            i = tokenizer.token_to_id(name)
            if i is None:
                raise ConfigError(f"data.fim_rate > 0: tokenizer {getattr(tokenizer, 'path', tokenizer)} has no {name} token")
            ids.append(int(i))
        if len(ids) == 3:
            if tokenizer.pad is None or tokenizer.pad == tokenizer.eod:
                raise ConfigError(f"data.fim_rate > 0: data.fim_tokens names no FIM pad and the tokenizer has no pad "
                                  f"token apart from end-of-document; FIM padding could not be masked out of the loss")
            ids.append(int(tokenizer.pad))
        elif tokenizer.pad != ids[3]:
            raise ConfigError(f"data.fim_rate > 0: the tokenizer's pad id {tokenizer.pad} is not {names[3]} "
                              f"({ids[3]}); FIM padding would not be masked out of the loss")
        split = None
        if split_token:
            split = tokenizer.token_to_id(split_token)
            if split is None:
                raise ConfigError(f"data.fim_split_sample: token {split_token!r} is not in the tokenizer")
            split = int(split)
        return cls(*ids, int(tokenizer.eod), split)


class FIMTransform:
    """Turns one sample of token ids into its FIM form of the same length."""

    def __init__(self, tokenizer, rate: float, spm_rate: float, split_token: str | None = None,
                 names: list[str] | None = None):
        if not 0.0 <= rate <= 1.0 or not 0.0 <= spm_rate <= 1.0:
            raise ConfigError(f"data.fim_rate ({rate}) and data.fim_spm_rate ({spm_rate}) must lie in [0, 1]")
        self.tokenizer = tokenizer
        self.rate, self.spm_rate = rate, spm_rate
        self.ids = FIMTokens.from_tokenizer(tokenizer, split_token, names)
        self.token_bytes = TokenBytes(tokenizer)

    # ---- one piece --------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text) if text else []

    def _render(self, head: list[int], text: str, tail: list[int], cut: tuple[float, float], spm: bool) -> list[int]:
        n = len(text)
        a, b = sorted(min(int(c * (n + 1)), n) for c in cut)
        prefix = head + self._encode(text[:a])
        middle = self._encode(text[a:b])
        suffix = self._encode(text[b:]) + tail
        i = self.ids
        if spm:
            return [i.prefix, i.suffix] + suffix + [i.middle] + prefix + middle
        return [i.prefix] + prefix + [i.suffix] + suffix + [i.middle] + middle

    def transform_piece(self, tokens: list[int], draws: np.ndarray, budget: int | None) -> tuple[list[int], str]:
        """FIM form of one document/fragment (or the tokens unchanged), at most ``budget`` tokens.

        ``draws`` are four uniforms: FIM or not, SPM or PSM, and the two cut points (as fractions, so
        a piece shortened to fit the budget keeps its relative cuts).
        """
        if not tokens:
            return tokens, SKIPPED
        if draws[0] >= self.rate:
            return (tokens if budget is None else tokens[:budget]), PLAIN
        data = self.token_bytes.join(tokens)
        offsets = self.token_bytes.offsets(tokens)
        span = decodable_span(data, offsets)
        if span is None or span[0] == span[1]:
            return (tokens if budget is None else tokens[:budget]), SKIPPED
        i0, i1 = span
        text = data[offsets[i0]:offsets[i1]].decode("utf-8")
        head, tail = list(tokens[:i0]), list(tokens[i1:])
        spm = bool(draws[1] < self.spm_rate)
        cut = (float(draws[2]), float(draws[3]))
        out = self._render(head, text, tail, cut, spm)
        if budget is None or len(out) <= budget:
            return out, (SPM if spm else PSM)
        # The piece reaches the end of the sample: FIM the longest text prefix whose form fits.
        # Token count grows with the kept length, almost monotonically: binary search, then step
        # down until it truly fits.
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self._render(head, text[:mid], [], cut, spm)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        while lo > 0 and len(self._render(head, text[:lo], [], cut, spm)) > budget:
            lo -= 1
        if lo == 0:
            # Not even one character fits next to the three sentinels: leave the tokens plain.
            return tokens[:budget], PLAIN
        return self._render(head, text[:lo], [], cut, spm), (SPM if spm else PSM)

    # ---- one sample -------------------------------------------------------------------------
    def pieces(self, sample: np.ndarray) -> list[tuple[list[int], int | None]]:
        """Split at EOD (and the fragment separator): ``[(tokens, separator_after or None)]``."""
        seps = {self.ids.eod} | ({self.ids.split} if self.ids.split is not None else set())
        out: list[tuple[list[int], int | None]] = []
        cur: list[int] = []
        for t in sample.tolist():
            if t in seps:
                out.append((cur, t))
                cur = []
            else:
                cur.append(t)
        out.append((cur, None))
        return out

    def apply(self, sample: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """FIM form of ``sample`` (same length; trailing ``<fim_pad>`` input padding is kept as padding)
        and what happened to each piece (``psm``/``spm``/``plain``/``skipped``)."""
        length = len(sample)
        pad = self.ids.pad
        real = length
        while real > 0 and sample[real - 1] == pad:
            real -= 1
        pieces = self.pieces(sample[:real])
        draws = rng.random((len(pieces), 4))  # drawn up front: decisions never depend on lengths
        out: list[int] = []
        kinds: list[str] = []
        for (tokens, sep), d in zip(pieces, draws):
            room = length - len(out)
            if room <= 0:
                break
            rendered, kind = self.transform_piece(tokens, d, None)
            need = len(rendered) + (sep is not None)
            if need > room:
                rendered, kind = self.transform_piece(tokens, d, room)
                out.extend(rendered)
                kinds.append(kind)
                break
            out.extend(rendered)
            kinds.append(kind)
            if sep is not None:
                out.append(sep)
        out.extend([pad] * (length - len(out)))
        return np.asarray(out[:length], dtype=np.int64), kinds


def sample_rng(seed: int, dataset_key: str, index: int) -> np.random.Generator:
    """Generator for one sample: same (seed, dataset, index) -> same FIM, in every process."""
    key = int.from_bytes(hashlib.md5(dataset_key.encode("utf-8"), usedforsecurity=False).digest()[:8], "little")
    return np.random.default_rng([int(seed), key, int(index)])


def rearrange(tokens: list[int], ids: FIMTokens, token_bytes: TokenBytes) -> bytes:
    """Bytes of the original text of one FIM piece (PSM or SPM); plain pieces come back unchanged."""
    if not tokens or tokens[0] != ids.prefix:
        return token_bytes.join(tokens)
    if len(tokens) > 1 and tokens[1] == ids.suffix:  # SPM: <pre><suf> S <mid> P M
        m = tokens.index(ids.middle, 2)
        return token_bytes.join(tokens[m + 1:]) + token_bytes.join(tokens[2:m])
    s = tokens.index(ids.suffix, 1)  # PSM: <pre> P <suf> S <mid> M
    m = tokens.index(ids.middle, s + 1)
    return token_bytes.join(tokens[1:s]) + token_bytes.join(tokens[m + 1:]) + token_bytes.join(tokens[s + 1:m])


# ---- megatron-core dataset ------------------------------------------------------------------------
def _build_dataset_classes():
    """Defined on first use: importing megatron-core's GPTDataset costs seconds, and the FIM
    transform itself (tests, benchmarks, preprocessing tools) does not need it."""
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    @dataclass
    class FIMGPTDatasetConfig(GPTDatasetConfig):
        """GPTDatasetConfig plus the FIM settings (``data.fim_*``)."""

        fim_rate: float = 0.0
        """Fraction of documents (or fragments) turned into FIM."""
        fim_spm_rate: float = 0.5
        """Of FIM pieces, the fraction in SPM order."""
        fim_split_sample: Optional[str] = None
        """Fragment separator token for fragment-level FIM (None = documents only)."""
        fim_transform: Optional[FIMTransform] = field(default=None, repr=False, compare=False)
        """Built by ``make_config``; shared by the blend's datasets."""

    class FIMGPTDataset(GPTDataset):
        """megatron-core GPTDataset whose samples get context-level FIM (see module docstring)."""

        @staticmethod
        def make_config(gpt_config, data_cfg, tokenizer) -> FIMGPTDatasetConfig:
            kw = {f.name: getattr(gpt_config, f.name) for f in fields(gpt_config) if f.init}
            transform = FIMTransform(tokenizer, data_cfg.fim_rate, data_cfg.fim_spm_rate, data_cfg.fim_split_sample,
                                     data_cfg.fim_tokens)
            return FIMGPTDatasetConfig(**kw, fim_rate=data_cfg.fim_rate, fim_spm_rate=data_cfg.fim_spm_rate,
                                       fim_split_sample=data_cfg.fim_split_sample, fim_transform=transform)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # megatron-core 0.16.1 caches the loss mask of the first sample it builds *before*
            # zeroing that sample's pad positions in place, so the cache inherits those zeros and
            # every later sample loses loss on real tokens there. FIM pads many samples; rebuilding
            # the (cheap, attention-mask-free) masks per sample avoids the aliasing.
            self.masks_and_position_ids_are_cacheable = False
            # megatron-core's description hash holds the dataset path as typed; FIM draws must not
            # change when the same data is reached by another path
            desc = dict(self.unique_identifiers, dataset_path=dataset_fingerprint(self.dataset_path))
            self.content_key = json.dumps(desc, default=lambda obj: obj.unique_identifiers)

        @staticmethod
        def _key_config_attributes() -> list[str]:
            return GPTDataset._key_config_attributes() + ["fim_rate", "fim_spm_rate", "fim_split_sample"]

        def _query_document_sample_shuffle_indices(self, idx):
            text, doc_ids = super()._query_document_sample_shuffle_indices(idx)
            rng = sample_rng(self.config.random_seed, self.content_key, idx)
            text, _ = self.config.fim_transform.apply(text, rng)
            return text, doc_ids

    FIMGPTDatasetConfig.__module__ = FIMGPTDataset.__module__ = __name__
    FIMGPTDatasetConfig.__qualname__, FIMGPTDataset.__qualname__ = "FIMGPTDatasetConfig", "FIMGPTDataset"
    return {"FIMGPTDatasetConfig": FIMGPTDatasetConfig, "FIMGPTDataset": FIMGPTDataset}


_LAZY: dict = {}


def __getattr__(name: str):
    if name in ("FIMGPTDataset", "FIMGPTDatasetConfig"):
        if not _LAZY:
            _LAZY.update(_build_dataset_classes())
            globals().update(_LAZY)  # picklable by qualified name from now on
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
