"""Instruction tuning data: loss weights on responses only, packing, epochs, blends, layout errors."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from codetron.errors import CodetronError
from codetron.megatron_ext.packing import block_causal_mask, cu_seqlens, pack_first_fit
from codetron.megatron_ext.tokenizer_info import NullTokenizer
from tests.objectives.conftest import synthetic_sft_pairs, write_pretrain, write_sft

V = 256
SEQ = 64


def sft_cfg(paths, pack=True, norm=False, split="100,0,0", eod_mask=False):
    from codetron.megatron_ext.config import TrainConfig

    cfg = TrainConfig()
    cfg.model.seq_length = SEQ
    cfg.model.transformer_impl = "local"
    cfg.data.mode = "sft"
    cfg.data.data_path = list(paths)
    cfg.data.pack, cfg.data.norm_target_loss, cfg.data.split = pack, norm, split
    cfg.data.eod_mask_loss = eod_mask
    return cfg


@pytest.fixture(scope="module")
def pairs():
    out = synthetic_sft_pairs(120, V, seed=3)
    out.append(([1] * (SEQ + 5), [2, V - 1]))  # prompt fills the sequence: dropped
    out.append(([3] * 10, [4] * (SEQ + 20) + [V - 1]))  # cut to seq_length
    return out


@pytest.fixture(scope="module")
def sft_prefix(tmp_path_factory, pairs):
    return write_sft(str(tmp_path_factory.mktemp("sft") / "sft"), pairs, V)


def build(cfg, n=None):
    from codetron.megatron_ext.objectives import get_objective

    obj = get_objective("sft")
    train, _ = obj.build_datasets(cfg, NullTokenizer(V), n or 1, 0)
    return obj, train


def test_weights_positions_and_rows(sft_prefix, pairs):
    obj, ds = build(sft_cfg([sft_prefix]))
    assert ds.stats["dropped"] == 1
    assert ds.stats["truncated"] == sum(len(p) + len(r) > SEQ + 1 for p, r in pairs if len(p) <= SEQ) >= 2
    seen = collections.Counter()
    for idx in range(len(ds)):
        item = ds[idx]
        docs = ds.row_docs[ds.row_start[idx]:ds.row_start[idx + 1]]
        seg = [int(n) for n in item["seq_lens"] if n > 0]
        assert sum(seg) == SEQ
        off = 0
        units = 0
        for d in docs:
            seen[int(d)] += 1
            p, r = pairs[int(d)]
            full = (p + r)[: SEQ + 1]
            n = len(full) - 1
            assert item["tokens"][off:off + n].tolist() == full[:-1]
            assert item["labels"][off:off + n].tolist() == full[1:]
            assert item["position_ids"][off:off + n].tolist() == list(range(n))
            w = item["loss_mask"][off:off + n]
            # label j is full[j+1]: weight 1 exactly on response tokens (the EOD included), 0 on prompt
            want = [1.0 if j + 1 >= len(p) else 0.0 for j in range(n)]
            assert w.tolist() == want
            units += int(sum(want))
            off += n
        assert item["loss_mask"][off:].sum() == 0
        assert int(item["loss_units"]) == units
    assert sorted(seen) == [d for d in range(len(pairs)) if d != 120] and set(seen.values()) == {1}
    # fill is the share of row positions holding tokens; the shuffle is salted by the dataset path
    # (a pytest tmp dir), so the bound must hold for any order: over 500 salts first fit gave
    # 0.88-0.94, while one document per row would give 0.56.
    used = sum(min(len(p) + len(r), SEQ + 1) - 1 for i, (p, r) in enumerate(pairs) if i != 120)
    assert ds.stats["fill"] == pytest.approx(used / (len(ds) * SEQ))
    assert ds.stats["fill"] > 0.85


def test_norm_target_loss_weights(sft_prefix):
    _, ds = build(sft_cfg([sft_prefix], norm=True))
    for idx in range(len(ds)):
        item = ds[idx]
        seg = [int(n) for n in item["seq_lens"] if n > 0]
        w = item["loss_mask"]
        off, docs = 0, 0
        for n in seg:
            s = float(w[off:off + n].sum())
            if s > 0:
                assert abs(s - 1.0) < 1e-6  # each sample's weights sum to one
                docs += 1
            off += n
        assert int(item["loss_units"]) == docs


def test_epochs_reshuffle_and_cover_every_document(sft_prefix):
    _, one = build(sft_cfg([sft_prefix], pack=False))
    per_epoch = len(one)
    _, ds = build(sft_cfg([sft_prefix], pack=False), n=3 * per_epoch + 5)
    assert ds.stats["epochs"] == 4 and len(ds) >= 3 * per_epoch + 5
    epochs = [ds.row_docs[e * per_epoch:(e + 1) * per_epoch] for e in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == sorted(one.row_docs.tolist())
    assert not np.array_equal(epochs[0], epochs[1])
    # the first epoch does not depend on how many samples the run asks for
    assert np.array_equal(epochs[0], one.row_docs)


def test_blend_follows_weights(tmp_path):
    a = write_sft(str(tmp_path / "a"), synthetic_sft_pairs(200, V, seed=1), V)
    b = write_sft(str(tmp_path / "b"), synthetic_sft_pairs(200, V, seed=2), V)
    _, ds = build(sft_cfg(["0.75", a, "0.25", b], pack=False), n=800)
    assert type(ds).__name__ == "BlendedDataset"
    counts = collections.Counter(int(ds.dataset_index[i]) for i in range(800))
    assert abs(counts[0] / 800 - 0.75) < 0.02 and abs(counts[1] / 800 - 0.25) < 0.02
    # dataset b alone has 200 documents: 200+ rows come from further epochs
    assert ds.datasets[0].stats["epochs"] >= 3


def test_pretrain_layout_is_refused(tmp_path):
    prefix = write_pretrain(str(tmp_path / "pre"), [[1, 2, 3, V - 1], [4, 5, V - 1]], V)
    with pytest.raises(CodetronError, match="document 0 has 1 sequences"):
        build(sft_cfg([prefix]))


def test_pack_first_fit_respects_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 500)
    rows = pack_first_fit(lengths, 64)
    assert sorted(i for r in rows for i in r) == list(range(500))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows)
    assert sum(lengths) / (64 * len(rows)) > 0.9
    with pytest.raises(ValueError):
        pack_first_fit(np.array([65]), 64)


def test_block_mask_and_cu_seqlens():
    seq_lens = torch.tensor([[3, 2, 3, 0], [5, 3, 0, 0]])
    mask = block_causal_mask(seq_lens, 8)
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool
    allowed = ~mask[0, 0]
    # position 4 (second segment, second token) sees positions 3 and 4 only
    assert allowed[4].nonzero().view(-1).tolist() == [3, 4]
    assert allowed[5].nonzero().view(-1).tolist() == [5]
    assert allowed[7].nonzero().view(-1).tolist() == [5, 6, 7]
    assert (~mask[1, 0, 7]).nonzero().view(-1).tolist() == [5, 6, 7]
    cu, mx = cu_seqlens(seq_lens, 8)
    # the micro-batch flattened to one row of 16 tokens (thd): row 2 starts at offset 8
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 5, 8, 13, 16] and mx == 5
    with pytest.raises(ValueError):
        cu_seqlens(torch.tensor([[3, 2, 0]]), 8)


def test_collate_picks_attention_path(sft_prefix):
    """local spec: explicit block mask; TransformerEngine: cu_seqlens for the thd layout and no mask."""
    obj, ds = build(sft_cfg([sft_prefix]))
    samples = [ds[0], ds[1]]
    batch = obj.collate(samples)
    assert "attention_mask" in batch and "cu_seqlens" not in batch
    obj.thd = True  # what build_datasets sets when model.transformer_impl resolves to transformer_engine
    batch = obj.collate(samples)
    assert "attention_mask" not in batch
    segs = [int(n) for s in samples for n in s["seq_lens"] if n > 0]
    assert batch["cu_seqlens"].tolist() == np.concatenate([[0], np.cumsum(segs)]).tolist()
    assert batch["max_seqlen"] == max(segs)
    # unpacked rows need no mask at all
    obj2, ds2 = build(sft_cfg([sft_prefix], pack=False))
    assert "attention_mask" not in obj2.collate([ds2[0], ds2[1]])
