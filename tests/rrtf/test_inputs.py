"""Bad input: one line naming file:line / field, no traceback, nothing half-written."""
import json

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.generate.rrtf.cli import main as rrtf_main
from codetron.megatron_ext.rrtf.pairs import PairDataset
from codetron.preprocess.generate.rrtf.problems import read_problems


def test_preprocess_rejects_inverted_scores_without_output(tmp_path):
    good = {"prompt": '"""\n    x\n"""\n', "chosen": "def f(): return 1\n", "rejected": "def f(:\n", "scores": [3.0, 0.0]}
    bad = dict(good, scores=[0.0, 2.0])
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(CodetronError, match=r"pairs.jsonl:2: chosen score 0.0 is below rejected score 2.0"):
        rrtf_main(["preprocess", "--input", str(path), "--out", str(tmp_path / "out")])
    assert list(tmp_path.iterdir()) == [path]


def test_problems_need_tests_and_a_prompt(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"task_id": "a", "instruction": "x", "test": "assert True"}) + "\n"
                    + json.dumps({"task_id": "b", "test": "assert True"}) + "\n")
    with pytest.raises(CodetronError, match=r"p.jsonl:2: needs 'instruction', or 'prompt' and 'entry_point'"):
        read_problems(path)


def test_pretraining_dataset_is_not_a_pairs_dataset(tmp_path):
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    prefix = write_synthetic_dataset(str(tmp_path / "syn"), 64, num_docs=5)
    (tmp_path / "syn.scores.npy").write_bytes(b"")
    with pytest.raises(CodetronError, match="not an RRTF pairs dataset"):
        PairDataset(prefix)


def test_pairs_round_trip(pairs_prefix):
    from tests.rrtf.conftest import synthetic_pairs

    ds, ref = PairDataset(pairs_prefix), synthetic_pairs()
    assert len(ds) == len(ref) == 48
    for k in (0, 17, 47):
        prompt, chosen, rejected, scores = ds[k]
        assert (prompt.tolist(), chosen.tolist(), rejected.tolist(), scores.tolist()) == \
            (ref[k][0], ref[k][1], ref[k][2], [ref[k][3], ref[k][4]])


def test_epochs_shuffle_pairs_and_micro_batches_keep_pairs_whole(pairs_prefix):
    import numpy as np

    from codetron.megatron_ext.objectives.rrtf import PairSequences, RRTFObjective, epoch_order, split_pairs
    from codetron.megatron_ext.training import MicroBatches

    train, valid = split_pairs(48, "90,10,0")
    assert (len(train), len(valid)) == (43, 5)
    order = epoch_order(train, num_samples=3 * 2 * 43 - 1, seed=7)
    assert len(order) == 3 * 43
    for e in range(3):
        assert sorted(order[e * 43:(e + 1) * 43].tolist()) == train.tolist()
    assert order[:43].tolist() != order[43:86].tolist()
    ds = PairSequences(PairDataset(pairs_prefix), order, seq_length=32, pad=254)
    obj = RRTFObjective()
    for dp_rank in range(2):  # DP2, micro-batch 4 (two pairs), global batch 16
        mb = MicroBatches(ds, obj.collate, 16, 4, dp_rank, 2)
        for it in (0, 7):  # collate raises if a micro-batch splits a pair
            for batch in mb.iteration(it):
                assert batch["tokens"].shape == (4, 32)
                assert np.all(batch["scores"][0::2].numpy() >= batch["scores"][1::2].numpy())
