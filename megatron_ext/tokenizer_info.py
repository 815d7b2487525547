"""The few tokenizer facts training needs (vocab size, EOD, pad), from a file or a null spec.

``data.tokenizer`` may be a tokenizer.json / sentencepiece path (loaded with
``codetron.preprocess.tokenizer``), None for the bundled default, or ``null:V`` for synthetic data with a
V-token vocabulary (EOD = V-1, pad = V-2), as Megatron-LM's NullTokenizer is used for benchmarks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from codetron.errors import ConfigError


@dataclass
class NullTokenizer:
    vocab_size: int
    """Vocabulary size."""
    eod: int = field(init=False)
    """End-of-document id (last id)."""
    pad: int = field(init=False)
    """Padding id (second to last)."""

    def __post_init__(self):
        if self.vocab_size < 4:
            raise ConfigError(f"data.tokenizer null:{self.vocab_size}: vocabulary must have at least 4 tokens")
        self.eod = self.vocab_size - 1
        self.pad = self.vocab_size - 2

    @property
    def unique_identifiers(self) -> dict:
        return {"class": "NullTokenizer", "vocab_size": self.vocab_size}

    def token_to_id(self, token: str):
        return None


def load_training_tokenizer(spec: str | None):
    if spec and spec.startswith("null:"):
        try:
            return NullTokenizer(int(spec.split(":", 1)[1]))
        except ValueError:
            raise ConfigError(f"data.tokenizer {spec!r}: expected null:<vocab size>") from None
    from codetron.preprocess.tokenizer import default_tokenizer_path, load_tokenizer

    return load_tokenizer(spec or default_tokenizer_path())
