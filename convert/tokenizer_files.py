"""Which tokenizer goes with a checkpoint, and its Hugging Face files.

A training run names its tokenizer in ``data.tokenizer``: a ``tokenizer.json`` path, None for the
bundled default, or ``null:V`` (synthetic data, no tokenizer at all). The HF folder gets
``tokenizer.json`` + ``tokenizer_config.json`` written by ``PreTrainedTokenizerFast`` so that plain
``AutoTokenizer.from_pretrained`` loads it, with ``<|endoftext|>`` as BOS/EOS as in StarCoder --
unless the tokenizer.json sits in a Hugging Face tokenizer folder (``from-hf`` keeps the source
model's there): then that folder's files (``HF_SIDE_FILES``) are copied byte for byte instead.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from codetron.errors import CodetronError

EOD_TOKEN = "<|endoftext|>"
PAD_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>")
"""Added padding tokens, e.g. WizardCoder's ``[PAD]``; StarCoder itself has no pad token."""
UNK_CANDIDATES = ("<|endoftext|>",)
HF_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                 "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "generation_config.json")
"""What a Hugging Face model folder keeps beside its weights and conversion carries byte for byte:
rebuilding them from ``tokenizer.json`` loses ``chat_template``, ``additional_special_tokens``,
``padding_side`` and the sampling defaults of ``generation_config.json``."""


@dataclass
class TokenizerInfo:
    path: Path | None
    """tokenizer.json to ship, or None (null tokenizer)."""
    vocab_size: int
    """Tokens including added ones."""
    bos: int | None
    """BOS id (StarCoder: ``<|endoftext|>``)."""
    eos: int | None
    """EOS id."""
    pad: int | None
    """Padding id, when the tokenizer has an explicit pad token."""
    note: str = ""
    """What was decided, for the conversion report."""


def default_tokenizer_path() -> Path:
    from codetron.data import DEFAULT_TOKENIZER

    return DEFAULT_TOKENIZER


def resolve(spec: str | None, override: str | None, no_tokenizer: bool, where: str) -> TokenizerInfo | None:
    """The tokenizer of a run (``data.tokenizer`` = ``spec``), unless overridden; None = ship none."""
    if no_tokenizer:
        return None
    if override:
        spec = override
        where = "--tokenizer"
    if spec and spec.startswith("null:"):
        try:
            vocab = int(spec.split(":", 1)[1])
        except ValueError:
            raise CodetronError(f"{where}: data.tokenizer {spec!r}: expected null:<vocab size>") from None
        # NullTokenizer's end-of-document id is the last one; no text tokenizer exists to ship.
        return TokenizerInfo(None, vocab, vocab - 1, vocab - 1, None,
                             note=f"the run used data.tokenizer {spec} (no tokenizer file): no tokenizer written; "
                                  f"bos/eos id {vocab - 1}")
    path = Path(spec) if spec else default_tokenizer_path()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise CodetronError(f"{where}: tokenizer {path} does not exist (pass --tokenizer PATH/tokenizer.json, "
                            f"or --no-tokenizer to write the model alone)")
    if path.suffix != ".json":
        raise CodetronError(f"{where}: tokenizer {path} is not a Hugging Face tokenizer.json (sentencepiece models "
                            f"are unsupported for GPTBigCode export; pass --no-tokenizer)")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises bare Exceptions for bad JSON
        raise CodetronError(f"{path}: cannot load tokenizer ({str(exc).splitlines()[0]})") from None
    eod = tok.token_to_id(EOD_TOKEN)
    pad = next((tok.token_to_id(t) for t in PAD_CANDIDATES if tok.token_to_id(t) is not None), None)
    return TokenizerInfo(path, tok.get_vocab_size(with_added_tokens=True), eod, eod, pad,
                         note=f"tokenizer {path}")


def check_vocab(info: TokenizerInfo | None, model_vocab: int, where: str) -> None:
    if info is None:
        return
    if info.vocab_size > model_vocab:
        raise CodetronError(f"{where}: tokenizer has {info.vocab_size} tokens but the model only {model_vocab}: "
                            f"tokens above {model_vocab - 1} would have no embedding (wrong --tokenizer?)")


def write_hf_tokenizer(info: TokenizerInfo, out: Path, max_length: int) -> list[str]:
    """tokenizer.json + tokenizer_config.json (+ special tokens) loadable by AutoTokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(info.path))
    kwargs = {}
    if info.eos is not None:
        eod = backend.id_to_token(info.eos)
        kwargs.update(bos_token=eod, eos_token=eod, unk_token=eod)
    if info.pad is not None:
        kwargs["pad_token"] = backend.id_to_token(info.pad)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=max_length, **kwargs)
    files = [str(p) for p in tok.save_pretrained(str(out))]
    # transformers 5 records its internal "TokenizersBackend"; the public class name also loads in
    # transformers 4.x, which evaluation harnesses often pin.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return files


def side_files(tokenizer_json: Path) -> list[Path]:
    """The HF side files beside ``tokenizer_json`` when its folder is a Hugging Face tokenizer folder
    (it has a ``tokenizer_config.json``); empty for a bare ``tokenizers`` file, whose config is built."""
    folder = tokenizer_json.parent
    if tokenizer_json.name != "tokenizer.json" or not (folder / "tokenizer_config.json").is_file():
        return []
    return [folder / name for name in HF_SIDE_FILES if (folder / name).is_file()]


def copy_side_files(files: list[Path], dest_dir: Path) -> list[str]:
    """Copy byte for byte; returns the names copied."""
    for f in files:
        shutil.copyfile(f, dest_dir / f.name)
    return [f.name for f in files]


def copy_tokenizer(src_dir: Path, dest_dir: Path) -> Path | None:
    """Keep a HF folder's tokenizer and generation files with the checkpoint (for `from-hf`), so that
    `to-hf` restores them unchanged; returns the tokenizer.json copied."""
    src = src_dir / "tokenizer.json"
    if not src.is_file():
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    copy_side_files([src_dir / name for name in HF_SIDE_FILES if (src_dir / name).is_file()], dest_dir)
    return dest_dir / "tokenizer.json"
