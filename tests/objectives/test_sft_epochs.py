"""SFT's epoch for ``optim.train_epochs``: the training rows one pass over the data produces."""
from __future__ import annotations

import pytest

from codetron.megatron_ext.objectives import get_objective, resolve_train_epochs
from codetron.megatron_ext.tokenizer_info import NullTokenizer
from tests.objectives.conftest import synthetic_sft_pairs, write_sft
from tests.objectives.test_sft import SEQ, V, sft_cfg


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_epochs")
    a = synthetic_sft_pairs(60, V, seed=5)
    a.append(([1] * (SEQ + 5), [2, V - 1]))  # prompt fills the sequence: no row
    b = synthetic_sft_pairs(25, V, seed=6)
    return write_sft(str(root / "a"), a, V), write_sft(str(root / "b"), b, V)


def rows_of(cfg) -> int:
    return get_objective("sft").epoch_samples(cfg, NullTokenizer(V))


def test_unpacked_epoch_is_one_row_per_kept_document(two_sets):
    a, b = two_sets
    assert rows_of(sft_cfg([a], pack=False)) == 60  # 61 documents, one dropped
    assert rows_of(sft_cfg([b], pack=False)) == 25
    assert rows_of(sft_cfg([b], pack=False, split="80,20,0")) == 20  # the train split only


def test_packed_epoch_covers_every_document_once(two_sets):
    a, _ = two_sets
    cfg = sft_cfg([a], pack=True)
    rows = rows_of(cfg)
    obj = get_objective("sft")
    train, _ = obj.build_datasets(cfg, NullTokenizer(V), 3 * rows, 0)  # several epochs
    first = train.row_docs[:train.row_start[rows]]
    assert sorted(first.tolist()) == sorted(train.docs.tolist())  # one pass: each kept document once
    assert 1 < rows < 60  # packing put several documents per row


def test_blend_epoch_is_the_sum_and_sets_train_iters(two_sets, capsys):
    a, b = two_sets
    one = rows_of(sft_cfg([a], pack=False)) + rows_of(sft_cfg([b], pack=False))
    cfg = sft_cfg(["3", a, "1", b], pack=False)  # weights decide the mix, not how many rows exist
    assert rows_of(cfg) == one == 85
    cfg.optim.train_epochs, cfg.optim.global_batch_size = 1.5, 16
    resolve_train_epochs(cfg, NullTokenizer(V), rank0=True)
    assert cfg.optim.train_iters == 8  # ceil(1.5 * 85 / 16) = ceil(7.97)
    assert "train_epochs 1.5 over 85 rows at global batch 16 -> train_iters 8" in capsys.readouterr().out
