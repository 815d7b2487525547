"""Tokenizers for code: load a Hugging Face ``tokenizer.json`` or a sentencepiece ``.model``, or
train a byte-level BPE with the StarCoder special tokens.

``CodeTokenizer`` is duck-typed to what megatron-core's ``GPTDatasetConfig.tokenizer`` reads
(``vocab_size``, ``eod``, ``pad`` != ``eod`` where the tokenizer has one, ``unique_identifiers``) and to what the rest of Codetron
needs (batch encoding, exact decoding, token lookup).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from codetron.errors import CodetronError, ConfigError
from codetron.fileio import atomic_dir, sha256_file

# StarCoder's special tokens, in StarCoder's id order (0..18): the default tokenizer keeps it, so
# prompts written for StarCoder (FIM, metadata, commits, notebooks, issues) mean the same here.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
)
EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<fim_pad>"
ENCODERS: tuple[str, ...] = ("auto", "tiktoken", "tokenizers")
"""Encode backends: ``tiktoken`` (exact emulation of a byte-level BPE, ~3x faster, see
``preprocess/fastbpe.py``), ``tokenizers``/sentencepiece (the tokenizer's own library), or ``auto``
(tiktoken when its start-up self-check proves identical ids, else the tokenizer's own library)."""

def default_tokenizer_path() -> Path:
    """The bundled 8,192-token byte-level BPE (StarCoder specials), trained on Python stdlib code."""
    from codetron.data import DEFAULT_TOKENIZER

    return DEFAULT_TOKENIZER


class CodeTokenizer:
    """A loaded tokenizer. Construct with :func:`load_tokenizer`."""

    def __init__(self, backend, kind: str, path: Path):
        self._backend = backend
        self.kind = kind
        """``"hf"`` (tokenizers library) or ``"sentencepiece"``."""
        self.path = path
        """The file this tokenizer was loaded from."""
        self.encoder = "tokenizers"
        """Backend that ``encode``/``encode_batch``/``encode_arrays`` use (see :meth:`use_encoder`)."""
        self._fast = None
        if kind == "hf":
            self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
            eod = backend.token_to_id(EOD_TOKEN)
            if eod is None:
                raise CodetronError(f"{path}: tokenizer has no {EOD_TOKEN!r} token (needed as end of document)")
            # any id != eod works for megatron padding (loss-masked); prefer FIM's own pad token
            pad = next((i for i in map(backend.token_to_id, PAD_CANDIDATES) if i is not None), None)
            if pad == eod:
                pad = None  # a pretraining dataset holds no padding; the layouts that pad ask for one
        else:
            self.vocab_size = backend.get_piece_size()
            eod = backend.eos_id()
            if eod < 0:
                raise CodetronError(f"{path}: sentencepiece model has no EOS id (needed as end of document)")
            pad = backend.pad_id()
            if pad < 0 or pad == eod:
                pad = backend.piece_to_id(PAD_TOKEN) if backend.piece_to_id(PAD_TOKEN) != backend.unk_id() else -1
            if pad < 0 or pad == eod:
                # Padding is loss-masked in megatron; unk never appears as a real target in code data
                # tokenized with byte fallback, and it is guaranteed distinct from EOS.
                pad = backend.unk_id()
            if pad < 0 or pad == eod:
                pad = None
            # sentencepiece matches user-defined symbols in text itself, but never control symbols:
            # split those out so e.g. a control <fim_prefix> is still one id, as with HF tokenizers.
            self._sp_specials = [
                t for t in SPECIAL_TOKENS
                if backend.piece_to_id(t) != backend.unk_id() and backend.is_control(backend.piece_to_id(t))
            ]
        self.eod: int = int(eod)
        self._pad: int | None = None if pad is None else int(pad)
        self.unique_identifiers: dict = {
            "class": "CodeTokenizer",
            "kind": kind,
            "path": str(path),
            "sha256": sha256_file(path),
            "vocab_size": self.vocab_size,
        }

    @property
    def pad(self) -> int:
        """The padding id (!= ``eod``). Raises :class:`ConfigError` when the tokenizer has none:
        megatron-core's datasets then fall back to their own -1 (they catch it), and the padded
        layouts say which needs one through :func:`require_pad`."""
        if self._pad is None:
            raise ConfigError(_no_pad_message(self.path, "a layout that pads sequences"))
        return self._pad

    # megatron-core tokenizers also expose these names
    @property
    def eos(self) -> int:
        return self.eod

    @property
    def vocab(self) -> dict[str, int]:
        if self.kind == "hf":
            return self._backend.get_vocab(with_added_tokens=True)
        return {self._backend.id_to_piece(i): i for i in range(self.vocab_size)}

    def __repr__(self) -> str:
        return f"CodeTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, path={str(self.path)!r})"

    def __getstate__(self):
        return {"path": str(self.path), "encoder": self.encoder}

    def __setstate__(self, state):
        other = load_tokenizer(state["path"])
        self.__dict__.update(other.__dict__)
        if state.get("encoder", "tokenizers") != "tokenizers":
            self.use_encoder(state["encoder"], check=False)  # the pickling side checked it

    def use_encoder(self, choice: str = "auto", *, check: bool = True, announce: bool = False) -> str:
        """Pick the encode backend; returns it (``"tiktoken"`` or ``"tokenizers"``).

        ``auto`` takes tiktoken when it is installed, the tokenizer is a byte-level BPE it can
        emulate and a self-check on the built-in probe set gives identical ids; otherwise it keeps
        the tokenizer's own library and, with ``announce``, says why in one line on stderr.
        ``tiktoken`` demands it: a :class:`ConfigError` says why it cannot be used. ``check=False``
        skips the probe set (for workers of a run whose main process checked the same file)."""
        if choice not in ENCODERS:
            raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {choice!r}")
        self._fast, self.encoder = None, "tokenizers"
        if choice == "tokenizers":
            return self.encoder
        from codetron.preprocess import fastbpe

        try:
            if self.kind != "hf":
                raise fastbpe.FastEncoderUnavailable("it is a sentencepiece model, not a tokenizer.json byte-level BPE")
            fast = _fast_encoder(self._backend, self.unique_identifiers["sha256"], check)
        except fastbpe.FastEncoderUnavailable as exc:
            if choice == "tiktoken":
                raise ConfigError(f"--encoder tiktoken: {self.path}: {exc}") from None
            if announce:
                own = "tokenizers" if self.kind == "hf" else "sentencepiece"
                print(f"codetron: encoding with {own}, not tiktoken: {self.path.name}: {exc}", file=sys.stderr)
            return self.encoder
        self._fast, self.encoder = fast, "tiktoken"
        return self.encoder

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any BOS/EOS added."""
        if self._fast is not None:
            return self._fast.encode(text)
        if self.kind == "hf":
            return self._backend.encode(text, add_special_tokens=False).ids
        return self._sp_encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts at once (the Rust backend parallelises across threads)."""
        if self._fast is not None:
            return self._fast.encode_batch(texts)
        if self.kind == "hf":
            # encode_batch_fast (tokenizers >= 0.20) skips character offsets: same ids, less memory
            fast = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            return [e.ids for e in fast(list(texts), add_special_tokens=False)]
        return [self._sp_encode(t) for t in texts]

    def encode_arrays(self, texts: Sequence[str], dtype) -> list[np.ndarray | None]:
        """Token ids of many texts as arrays of ``dtype``, in bounded memory whatever their size:
        texts over ``longdoc.LONG_TEXT_CHARS`` are encoded piece by piece, cut where the
        pre-tokenizer cuts (identical ids). ``None`` for a text that cannot be (one pre-token of
        millions of characters), so the caller can drop it."""
        from codetron.preprocess import longdoc

        out: list[np.ndarray | None] = [None] * len(texts)
        short = [i for i, t in enumerate(texts) if len(t) <= longdoc.LONG_TEXT_CHARS]
        if self._fast is not None:
            for i in short:
                out[i] = self._fast.encode_array(texts[i], dtype)
        else:
            for i, ids in zip(short, self.encode_batch([texts[i] for i in short])):
                out[i] = np.asarray(ids, dtype=dtype)
        for i, text in enumerate(texts):
            if out[i] is not None or len(text) <= longdoc.LONG_TEXT_CHARS:
                continue
            splitter = self._long_splitter()
            if splitter is None:
                out[i] = np.asarray(self.encode(text), dtype=dtype)
                continue
            pretokenize, protected, line_cuts = splitter
            try:
                cuts = longdoc.split_points(text, pretokenize, protected=protected, line_cuts=line_cuts)
                out[i] = longdoc.encode_long(text, self.encode_batch, cuts, dtype)
            except longdoc.PretokenTooLong:
                out[i] = None
        return out

    def _long_splitter(self):
        """(pretokenize, protected, line_cuts) for cutting long texts, or None (said once on stderr)."""
        if not hasattr(self, "_splitter"):
            from codetron.preprocess.longdoc import hf_split_support, line_cuts_safe

            support = hf_split_support(self._backend) if self.kind == "hf" else "sentencepiece models are not split"
            if isinstance(support, str):
                print(f"codetron: {self.path}: long documents are encoded whole, in memory growing with their size: {support}",
                      file=sys.stderr)
                support = None
            else:
                support = (*support, line_cuts_safe(self._backend))
            self._splitter = support
        return self._splitter

    def _sp_encode(self, text: str) -> list[int]:
        if not self._sp_specials:
            return self._backend.encode(text)
        out: list[int] = []
        for piece in _split_on(text, self._sp_specials):
            if piece in self._sp_specials:
                out.append(self._backend.piece_to_id(piece))
            elif piece:
                out.extend(self._backend.encode(piece))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special tokens included verbatim."""
        ids = [int(i) for i in ids]
        if self.kind == "hf":
            return self._backend.decode(ids, skip_special_tokens=False)
        return self._backend.decode(ids)

    def token_to_id(self, token: str) -> int | None:
        if self.kind == "hf":
            return self._backend.token_to_id(token)
        i = self._backend.piece_to_id(token)
        return None if i == self._backend.unk_id() and token != self._backend.id_to_piece(i) else i

    # megatron-core's MegatronTokenizer names
    def tokenize(self, text: str) -> list[int]:
        return self.encode(text)

    def detokenize(self, ids: Iterable[int]) -> str:
        return self.decode(ids)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` (or ``tokenizer.model``) into ``directory``; returns the file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.kind == "hf":
            out = directory / "tokenizer.json"
            self._backend.save(str(out))
        else:
            out = directory / "tokenizer.model"
            out.write_bytes(self._backend.serialized_model_proto())
        return out


PAD_CANDIDATES: tuple[str, ...] = (PAD_TOKEN, "<|fim_pad|>", "<pad>", "[PAD]", "<|pad|>")
"""Tokens taken as the pad id, in this order (the first one the vocabulary holds)."""


def _no_pad_message(path, what: str) -> str:
    return (f"{path}: {what} needs a pad token distinct from {EOD_TOKEN!r}, and the tokenizer has none of "
            f"{', '.join(PAD_CANDIDATES)}; add one (new id at the end, existing ids unchanged): python -c "
            f"\"from tokenizers import Tokenizer; t = Tokenizer.from_file('{path}'); t.add_special_tokens(['<pad>']); "
            f"t.save('{path}')\"")


def require_pad(tokenizer, what: str) -> int:
    """``tokenizer.pad``, or a :class:`ConfigError` naming ``what`` needs it and how to add one.
    Pretraining data holds no padding, so only the layouts that pad rows (SFT packing, RRTF pairs,
    FIM) call this, before any process group starts."""
    if getattr(tokenizer, "_pad", 0) is None:
        raise ConfigError(_no_pad_message(tokenizer.path, what))
    return int(tokenizer.pad)


_CHECKED: dict[str, str | None] = {}
"""tokenizer file sha256 -> why tiktoken cannot encode it (None: proven identical)."""


def _fast_encoder(backend, sha256: str, check: bool):
    """``fastbpe.fast_encoder`` with each file's verdict kept for the process: the probe set costs
    ~0.3 s, and a run (or a test session) loads the same file many times."""
    from codetron.preprocess import fastbpe

    if not check:
        return fastbpe.build(backend)
    if sha256 in _CHECKED:
        if _CHECKED[sha256] is not None:
            raise fastbpe.FastEncoderUnavailable(_CHECKED[sha256])
        return fastbpe.build(backend)
    try:
        fast = fastbpe.fast_encoder(backend)
    except fastbpe.FastEncoderUnavailable as exc:
        _CHECKED[sha256] = str(exc)
        raise
    _CHECKED[sha256] = None
    return fast


def _split_on(text: str, specials: list[str]) -> Iterator[str]:
    import re

    pattern = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
    yield from pattern.split(text)


def load_tokenizer(path: str | os.PathLike | None = None) -> CodeTokenizer:
    """Load a tokenizer from a ``tokenizer.json`` file, a directory holding one (or a
    ``tokenizer.model``), or a sentencepiece ``.model`` file. ``None`` loads the bundled default."""
    p = Path(path) if path is not None else default_tokenizer_path()
    if p.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise CodetronError(f"{p}: directory has no tokenizer.json or tokenizer.model")
    if not p.is_file():
        raise CodetronError(f"{p}: tokenizer file not found")
    if p.suffix == ".model":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        try:
            sp.Load(str(p))
        except Exception as exc:  # sentencepiece raises OSError/RuntimeError with C++ text
            raise CodetronError(f"{p}: not a sentencepiece model ({str(exc).splitlines()[0][:120]})") from None
        return CodeTokenizer(sp, "sentencepiece", p.resolve())
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as exc:
        raise CodetronError(f"{p}: not a Hugging Face tokenizer.json ({str(exc).splitlines()[0][:120]})") from None
    return CodeTokenizer(tok, "hf", p.resolve())


@dataclass(kw_only=True)
class TokenizerTrainConfig:
    """Byte-level BPE training settings."""

    vocab_size: int = 8192
    """Total vocabulary including the StarCoder special tokens (StarCoder itself uses 49,152)."""
    min_frequency: int = 2
    """A merge must occur at least this often in the training text."""
    individual_digits: bool = True
    """Split every digit into its own token before BPE, as StarCoder does (better arithmetic)."""
    max_file_bytes: int = 200_000
    """Files larger than this are skipped (generated code and data blobs skew the merges)."""
    suffixes: tuple[str, ...] = (".py",)
    """Source files read from the directories given: those ending in one of these."""


def iter_training_texts(
    paths: Sequence[str | os.PathLike], suffixes: Sequence[str], cfg: TokenizerTrainConfig, exclude: Sequence[str] = ()
) -> Iterator[str]:
    """Yield texts to train on: files ending in ``suffixes`` under ``paths`` (directories walked
    recursively, ``exclude`` globs skipped), or ``content``/``text`` fields of jsonl/parquet inputs."""
    from codetron.preprocess.readers import expand_inputs, expand_sources, iter_records, resolve_stdlib
    from codetron.preprocess.sources import suffixes as data_suffixes

    paths, exclude = resolve_stdlib([str(p) for p in paths], list(exclude))
    data_files = [p for p in paths if p.endswith(data_suffixes()) and not p.endswith(tuple(suffixes))]
    trees = [p for p in paths if p not in data_files]
    if trees:
        for _, f in expand_sources(trees, tuple(suffixes), tuple(exclude)):
            if os.path.getsize(f) > cfg.max_file_bytes:
                continue
            try:
                yield Path(f).read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
    for f in expand_inputs(data_files) if data_files else []:
        for rec in iter_records(f, on_error="skip"):
            text = rec.data.get("content") or rec.data.get("text")
            if isinstance(text, str):
                yield text


def train_bpe(texts: Iterable[str], cfg: TokenizerTrainConfig) -> CodeTokenizer:
    """Train a byte-level BPE (no normaliser, so decoding is exact) with StarCoder's specials."""
    import tempfile

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if cfg.individual_digits:
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tmp = Path(tempfile.mkdtemp(prefix="codetron-tok-")) / "tokenizer.json"
    tok.save(str(tmp))
    return CodeTokenizer(tok, "hf", tmp)


def train_tokenizer_to(out_dir: str | os.PathLike, texts: Iterable[str], cfg: TokenizerTrainConfig) -> CodeTokenizer:
    """Train and write ``out_dir/tokenizer.json`` atomically; returns the loaded result."""
    tok = train_bpe(texts, cfg)
    with atomic_dir(out_dir) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is shared data
        tok.save(tmp)
    return load_tokenizer(Path(out_dir) / "tokenizer.json")
