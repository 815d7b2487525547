"""FIM with each model preset's own sentinels (``data.fim_tokens``): Qwen2.5-Coder's ``<|fim_*|>`` with its
FIM pad, CodeLlama's ``▁<PRE>``-style pieces without one (the tokenizer's pad pads), and StarCoder's
``<fim_*>`` by default. A transform built with the wrong names for a tokenizer fails in one line."""
from __future__ import annotations

import numpy as np
import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext.fim import PSM, SPM, FIMTransform, rearrange
from codetron.megatron_ext.presets import MODEL_PRESETS, resolve_config
from tests.objectives.conftest import make_documents

QWEN = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"]
CODELLAMA = ["<|endoftext|>", "▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>", "<pad>"]


def _tokenizer(tmp_path, specials):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from codetron.preprocess.tokenizer import load_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(make_documents(200, seed=3), trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    return load_tokenizer(tmp_path / "tokenizer.json")


def test_presets_carry_their_models_fim_tokens():
    assert resolve_config("starcoder2-15b").data.fim_tokens is None  # StarCoder's <fim_*>
    assert resolve_config("qwen2.5-coder-7b").data.fim_tokens == QWEN[1:]
    assert resolve_config("qwen2.5-coder-1.5b").data.fim_tokens == QWEN[1:]
    assert resolve_config("codellama-7b").data.fim_tokens == ["▁<PRE>", "▁<MID>", "▁<SUF>"]
    assert resolve_config("deepseek-coder-6.7b-base").data.fim_tokens == ["<｜fim▁begin｜>", "<｜fim▁end｜>",
                                                                          "<｜fim▁hole｜>"]
    for name in ("codellama-7b", "deepseek-coder-6.7b-base", "qwen2.5-coder-1.5b", "qwen2.5-coder-7b"):
        assert all(t in MODEL_PRESETS[name].source for t in MODEL_PRESETS[name].fim_tokens), name
    # a flag still wins over the preset, as for every field
    cfg = resolve_config("qwen2.5-coder-7b", overrides={"data.fim_tokens": "<a> <b> <c>"})
    assert cfg.data.fim_tokens == ["<a>", "<b>", "<c>"]


@pytest.mark.parametrize("spm", [0.0, 1.0])
def test_qwen_sentinels_and_fim_pad(tmp_path, spm):
    tok = _tokenizer(tmp_path, QWEN)
    tr = FIMTransform(tok, rate=1.0, spm_rate=spm, names=resolve_config("qwen2.5-coder-1.5b").data.fim_tokens)
    i = tr.ids
    assert [i.prefix, i.middle, i.suffix, i.pad] == [tok.token_to_id(t) for t in QWEN[1:]] and tok.pad == i.pad
    text = "def f(x):\n    return x + 1\n"
    out, kind = tr.transform_piece(tok.encode(text), np.array([0.0, 0.5, 0.25, 0.6]), None)
    assert kind == (SPM if spm else PSM) and out[0] == i.prefix
    assert {i.prefix, i.middle, i.suffix} <= set(out)
    assert rearrange(out, i, tr.token_bytes) == text.encode()


def test_codellama_sentinels_pad_with_the_tokenizers_pad(tmp_path):
    tok = _tokenizer(tmp_path, CODELLAMA)
    tr = FIMTransform(tok, rate=1.0, spm_rate=0.0, names=resolve_config("codellama-7b").data.fim_tokens)
    assert (tr.ids.prefix, tr.ids.middle, tr.ids.suffix) == tuple(tok.token_to_id(t) for t in CODELLAMA[1:4])
    assert tr.ids.pad == tok.token_to_id("<pad>") == tok.pad


def test_wrong_sentinels_for_the_tokenizer_are_one_line(tmp_path):
    tok = _tokenizer(tmp_path, QWEN)
    with pytest.raises(ConfigError, match="has no <fim_prefix> token"):
        FIMTransform(tok, 0.5, 0.5)  # StarCoder's names, not in a Qwen vocabulary
    with pytest.raises(ConfigError, match=r"give prefix, middle, suffix and optionally pad"):
        FIMTransform(tok, 0.5, 0.5, names=["<|fim_prefix|>", "<|fim_middle|>"])


def test_training_data_use_the_presets_sentinels(tmp_path):
    """Through the pretraining objective (megatron GPTDataset + the FIM hook) with a Qwen2.5-Coder preset's
    ``data.fim_tokens``: every sample is FIM with ``<|fim_prefix|>``..., and ``<|fim_pad|>``
    positions have no loss."""
    from codetron.megatron_ext.objectives import get_objective
    from tests.objectives.conftest import write_pretrain

    tok = _tokenizer(tmp_path, QWEN)
    docs = make_documents(300, seed=5)
    prefix = write_pretrain(str(tmp_path / "code"), [e + [tok.eod] for e in tok.encode_batch(docs)], tok.vocab_size)
    cfg = resolve_config("qwen2.5-coder-1.5b", overrides={
        "model.seq_length": 64, "data.data_path": [prefix], "data.tokenizer": str(tmp_path / "tokenizer.json"),
        "data.fim_rate": 1.0, "data.split": "100,0,0"})
    train, _ = get_objective("pretrain").build_datasets(cfg, tok, 60, 0)
    prefix_id, pad_id = tok.token_to_id("<|fim_prefix|>"), tok.token_to_id("<|fim_pad|>")
    fims = pads = 0
    for idx in range(60):
        raw, _ = train._query_document_sample_shuffle_indices(idx)
        fims += int((raw == prefix_id).sum())
        is_pad = raw[1:] == pad_id
        pads += int(is_pad.sum())
        mask = train[idx]["loss_mask"].numpy()
        assert (mask[is_pad] == 0).all() and (mask[~is_pad] == 1).all()
    assert fims >= 60 and pads > 0
