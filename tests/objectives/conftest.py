"""Tiny tokenizers, documents and indexed datasets for the FIM / SFT / packing tests."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>"]

# Non-ASCII on purpose: CJK (3-byte), emoji (4-byte, and ZWJ sequences), accents, RTL script.
WORDS = ["def", "return", "self", "x", "value", "print", "for", "in", "range", "if", "else", "None",
         "数据", "函数", "変数", "🙂", "🚀", "👩‍💻", "café", "naïve", "ünïcode", "שלום", "λ", "∑", "0", "42", "3.14"]


def make_document(rng: random.Random, max_lines: int = 6) -> str:
    lines = []
    for _ in range(rng.randint(1, max_lines)):
        indent = " " * rng.choice([0, 4, 8])
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        sep = rng.choice([" ", "(", ", ", ".", " = "])
        lines.append(indent + sep.join(words) + rng.choice(["", ":", ")", "  # 注释 ✓"]))
    return "\n".join(lines) + rng.choice(["", "\n"])


def make_documents(n: int, seed: int = 0, max_lines: int = 6) -> list[str]:
    rng = random.Random(seed)
    return [make_document(rng, max_lines) for _ in range(n)]


def train_tiny_tokenizer(out_dir: Path, vocab_size: int = 300) -> Path:
    """Byte-level BPE small enough that CJK and emoji are split over several tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(make_documents(400, seed=99), trainer=trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path):
    from codetron.preprocess.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_path)


def write_pretrain(prefix: str, docs: list[list[int]], vocab_size: int) -> str:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16 if vocab_size < 65500 else np.int32)
    for d in docs:
        builder.add_item(torch.tensor(d, dtype=torch.int64))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def write_sft(prefix: str, pairs: list[tuple[list[int], list[int]]], vocab_size: int) -> str:
    """The instruction layout of `preprocess`: one document = [prompt, response (ends with EOD)]."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16 if vocab_size < 65500 else np.int32)
    for prompt, response in pairs:
        builder.add_item(torch.tensor(prompt, dtype=torch.int64))
        builder.add_item(torch.tensor(response, dtype=torch.int64))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def synthetic_sft_pairs(n: int, vocab: int, seed: int = 0, min_len: int = 3, max_len: int = 40):
    """Prompt/response pairs over a null:V vocabulary (EOD = V-1, pad = V-2): the response is a
    deterministic function of the prompt, so a tiny model learns it within a few steps."""
    rng = np.random.default_rng(seed)
    eod = vocab - 1
    pairs = []
    for _ in range(n):
        p = rng.integers(0, vocab - 2, int(rng.integers(min_len, max_len))).tolist()
        r = [(t * 3 + 1) % (vocab - 2) for t in p[: int(rng.integers(1, max_len))]] + [eod]
        pairs.append((p, r))
    return pairs
