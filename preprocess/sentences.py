"""``--split-sentences``: each sentence of a document its own sequence, as Megatron-LM's
``tools/preprocess_data.py`` does with nltk's Punkt.

A document of n sentences is n sequences in the ``.idx`` (``document_indices`` steps by n) and the
EOD id ends the last one; the ids are the concatenation of the sentences' separate encodings. As in
Megatron-LM, text is cut into 1,000,000-character pieces before Punkt (a forced boundary there),
whitespace before the first sentence stays with it, and trailing whitespace of a piece is dropped;
between sentences it is dropped too, unless ``keep_newlines`` keeps it at the end of the sentence
before it.

One deliberate difference: Megatron-LM's ``--keep-newlines`` swaps in a Punkt regex that also
changes *where* it splits (a period directly followed by punctuation becomes a candidate: "Inc.,"
splits before the comma; 124 of 302 license texts measured split differently from plain Punkt).
Here both modes split at plain Punkt's boundaries and ``keep_newlines`` only moves whitespace.

The Punkt model: ``punkt_model`` (a ``punkt_tab`` language directory, or ``default``), else nltk's
``tokenizers/punkt_tab/LANG`` found on its data path (``NLTK_DATA``), else Punkt with default
parameters (no abbreviation list: "Dr. Smith" splits after "Dr."). Pickled models are not loaded:
unpickling runs code, and nltk >= 3.9 ships the tab format only.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from codetron.errors import ConfigError
from codetron.preprocess.config import JobConfig, SentenceConfig
from codetron.preprocess.readers import Chunk
from codetron.preprocess.worker import ChunkResult, Processor, init_worker as _init_plain_worker

PIECE_CHARS = 1_000_000
"""Megatron-LM's ``max_len``: Punkt sees at most this many characters at a time."""
MODEL_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
"""What a ``punkt_tab`` language directory holds."""
DEFAULT_MODEL = "default"
"""``punkt_model`` value for Punkt with default parameters, whatever nltk's data path holds."""


class SentenceSplitter:
    """Punkt boundaries with Megatron-LM's piece size and whitespace rules."""

    def __init__(self, cfg: SentenceConfig):
        self.cfg = cfg
        self.punkt = _resolve(cfg)[2]

    def split(self, text: str) -> list[str]:
        out: list[str] = []
        for start in range(0, len(text), PIECE_CHARS):
            piece = text[start : start + PIECE_CHARS]
            spans = list(self.punkt.span_tokenize(piece))
            if self.cfg.keep_newlines:
                # each sentence runs to where the next one starts; the last keeps Punkt's end
                ends = [s for s, _ in spans[1:]] + [e for _, e in spans[-1:]]
                spans = [(s, e) for (s, _), e in zip(spans, ends)]
            out.extend(piece[s:e] for s, e in spans if e > s)
        return out


def resolve_model(cfg: SentenceConfig) -> tuple[SentenceConfig, str]:
    """``cfg`` with ``punkt_model`` pinned (the directory to load, or ``DEFAULT_MODEL``) and one
    line saying which model that is. Run once in the main process, so that every worker splits
    with the same model and the summary records it; ``ConfigError`` for a bad model."""
    pinned, description, _ = _resolve(cfg)
    return pinned, description


def _resolve(cfg: SentenceConfig):
    nltk = _import_nltk()
    if cfg.punkt_model == DEFAULT_MODEL:
        return cfg, "nltk Punkt with default parameters (--punkt-model default)", _load_punkt(DEFAULT_MODEL)
    if cfg.punkt_model:
        return cfg, f"nltk Punkt, model {cfg.punkt_model} (--punkt-model)", _load_punkt(cfg.punkt_model)
    if not re.fullmatch(r"[a-z_]+", cfg.lang):
        raise ConfigError(f"--lang {cfg.lang!r}: expected a Punkt model name such as english or german")
    try:
        found = nltk.data.find(f"tokenizers/punkt_tab/{cfg.lang}/")
    except LookupError:
        where = os.environ.get("NLTK_DATA") or "nltk's data path"
        return replace(cfg, punkt_model=DEFAULT_MODEL), (
            f"nltk Punkt with default parameters: no punkt_tab/{cfg.lang} model in {where} "
            "(set NLTK_DATA or pass --punkt-model DIR for a trained one)"), _load_punkt(DEFAULT_MODEL)
    path = getattr(found, "path", None)  # a zipped model has no directory: workers look it up again
    pinned = replace(cfg, punkt_model=path) if path and os.path.isdir(path) else cfg
    return pinned, f"nltk Punkt, model punkt_tab/{cfg.lang} from {path or found}", _load_punkt(pinned.punkt_model or found)


def _import_nltk():
    try:
        import nltk
    except ImportError:
        raise ConfigError("--split-sentences needs nltk (pip install 'codetron[data]')") from None
    return nltk


def _load_punkt(model):
    """Punkt for ``DEFAULT_MODEL``, a punkt_tab directory, or an nltk path pointer."""
    nltk = _import_nltk()
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    if model == DEFAULT_MODEL:
        return PunktSentenceTokenizer()
    if isinstance(model, str):
        path = Path(model).resolve()
        if path.suffix == ".pickle":
            raise ConfigError(f"--punkt-model {model}: pickled Punkt models are not loaded (unpickling runs "
                              "code); use a punkt_tab directory (nltk.download('punkt_tab'))")
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise ConfigError(f"--punkt-model {model}: not a punkt_tab directory (missing {', '.join(missing)})")
        # nltk opens model files only under its data path (its path sandbox): the directory joins it
        if str(path) not in nltk.data.path:
            nltk.data.path.insert(0, str(path))
        pointer = nltk.data.FileSystemPathPointer(str(path))
    else:
        pointer = model
    try:
        return PunktSentenceTokenizer(load_punkt_params(pointer))
    except (OSError, LookupError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--punkt-model {model}: unreadable Punkt model ({reason})") from None


class SentenceProcessor(Processor):
    """The worker's processor with each rendered text split into sentences: the worker then
    encodes every sentence as its own sequence and closes the document's last one with EOD."""

    def __init__(self, job: JobConfig):
        super().__init__(job)
        self.splitter = SentenceSplitter(job.sentences)

    def render(self, rec: dict, ident: tuple) -> tuple[list[str], str]:
        texts, key = super().render(rec, ident)
        sentences = [s for t in texts for s in self.splitter.split(t)]
        return sentences or texts, key


_PROCESSOR: SentenceProcessor | None = None


def init_worker(job: JobConfig) -> None:
    """Pool initializer: the plain worker's process setup, then the splitting processor."""
    global _PROCESSOR
    _init_plain_worker(job)
    _PROCESSOR = SentenceProcessor(job)


def process_chunk(chunk: Chunk) -> ChunkResult:
    assert _PROCESSOR is not None, "init_worker was not called"
    return _PROCESSOR.process(chunk)
