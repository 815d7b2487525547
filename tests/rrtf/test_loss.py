"""RRTF loss against PanGu-Coder2's equations (arXiv:2307.14936 Sec. 3.2) on hand-computed numbers.

The reference below is written from the paper, per query over its whole response set:

    p_i    = sum_t log P(y_i,t) / |y_i|
    L_rank = sum_{r_i < r_j} max(0, p_i - p_j)
    L_ft   = -sum_t log P(y_i',t),  i' = argmax_i r_i
    L      = L_rank + L_ft

The implementation never sees queries: it sees (chosen, rejected) pairs in shuffled micro-batches.
The data below go through the real path (pairs file -> ``RRTFObjective.build_datasets`` -> rows ->
``collate`` -> ``rrtf_loss``), with per-token losses set by a lookup table on the label ids so the
log-probabilities are the hand-chosen ones.
"""
import json
import math
import subprocess

import numpy as np
import pytest
import torch

from codetron.megatron_ext.objectives.rrtf import RRTFObjective, build_row, rrtf_loss, teacher_weights
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.rrtf.conftest import VOCAB


def paper_loss(queries, margin=0.0):
    """``queries``: per query, a list of (token log-probs of a response, score). Returns (L_rank, L_ft)."""
    l_rank = l_ft = 0.0
    for responses in queries:
        p = [sum(lp) / len(lp) for lp, _ in responses]
        r = [score for _, score in responses]
        for i in range(len(responses)):
            for j in range(len(responses)):
                if r[i] < r[j]:
                    l_rank += max(0.0, p[i] - p[j] + margin)
        best = max(range(len(responses)), key=lambda i: (r[i], -i))  # argmax, first on ties
        l_ft += -sum(responses[best][0])
    return l_rank, l_ft


# Token ids whose per-token loss (-log P) the lookup table fixes; prompt tokens get 100 to show the
# prompt never counts.
CE = {10: 1.0, 11: 2.0, 12: 3.0, 13: 0.5, 14: 1.5, 15: 4.0, 16: 0.25, 17: 0.1, 18: 0.3}
PROMPT_A, PROMPT_B = [1, 2, 3], [4, 5]
T_A, A1, A2 = [10, 11, 12], [13, 14], [15, 11, 12, 12]   # scores 3, 1, 2
T_B, B1, B2 = [13, 13], [16], [17, 18]                   # scores 2.5, 0, 0
QUERIES = [[(T_A, 3.0), (A1, 1.0), (A2, 2.0)], [(T_B, 2.5), (B1, 0.0), (B2, 0.0)]]
# (prompt, chosen, rejected, r_chosen, r_rejected): what `rrtf rank` writes (teacher vs each student),
# plus the student-vs-student pairs of the paper's sum and one pair of equal scores.
PAIRS = [
    (PROMPT_A, T_A, A1, 3.0, 1.0),
    (PROMPT_A, T_A, A2, 3.0, 2.0),
    (PROMPT_A, A2, A1, 2.0, 1.0),
    (PROMPT_B, T_B, B1, 2.5, 0.0),
    (PROMPT_B, T_B, B2, 2.5, 0.0),
    (PROMPT_B, B1, B2, 0.0, 0.0),
]
# By hand, p = mean log-prob:  T_A -2, A1 -1, A2 -3;  T_B -0.5, B1 -0.25, B2 -0.2
#   query A: A1<T_A max(0, -1+2) = 1;  A2<T_A max(0, -3+2) = 0;  A1<A2 max(0, -1+3) = 2   -> 3
#   query B: B1<T_B 0.25;  B2<T_B 0.3;  B1 = B2 (equal scores) not a pair               -> 0.55
#   L_rank = 3.55;  L_ft = -(-1-2-3) - (-0.5-0.5) = 6 + 1 = 7;  L = 10.55 over 6 pairs
HAND_RANK, HAND_FT = 3.55, 7.0


def queries_logprobs():
    return [[([-CE[t] for t in resp], score) for resp, score in q] for q in QUERIES]


@pytest.fixture(scope="module")
def hand_prefix(tmp_path_factory) -> str:
    from codetron.megatron_ext.rrtf.pairs import write_pairs

    prefix = str(tmp_path_factory.mktemp("hand") / "pairs")
    write_pairs(prefix, PAIRS, VOCAB, VOCAB - 1)
    return prefix


def _cfg(prefix, **data):
    from codetron.megatron_ext.config import TrainConfig

    cfg = TrainConfig()
    cfg.data.data_path, cfg.data.mode, cfg.data.split = [prefix], "rrtf", "1,0,0"
    cfg.model.seq_length = 12
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _epoch(prefix, **data):
    """One shuffled epoch of the hand pairs as a single batch, the objective, and per-token losses."""
    from codetron.megatron_ext.tokenizer_info import NullTokenizer

    obj = RRTFObjective()
    train, _ = obj.build_datasets(_cfg(prefix, **data), NullTokenizer(VOCAB), 2 * len(PAIRS), 0)
    rows = [train[i] for i in range(2 * len(PAIRS))]
    batch = obj.collate(rows)
    table = torch.full((VOCAB,), 100.0)
    for t, v in CE.items():
        table[t] = v
    ce = table[batch["labels"]].clone().requires_grad_(True)
    return obj, rows, batch, ce


def test_reference_is_the_hand_calculation():
    rank, ft = paper_loss(queries_logprobs())
    assert rank == pytest.approx(HAND_RANK, abs=1e-12) and ft == pytest.approx(HAND_FT, abs=1e-12)


def test_paper_loss_and_gradient_on_one_epoch(hand_prefix):
    obj, rows, batch, ce = _epoch(hand_prefix)
    assert sorted(r["pair"] for r in rows[0::2]) == list(range(len(PAIRS)))  # every pair once, shuffled
    loss_sum, npairs, report = rrtf_loss(batch["loss_mask"], batch["scores"], batch["ft_weight"], ce)
    rank, ft = paper_loss(queries_logprobs())
    assert int(npairs) == len(PAIRS)
    assert float(report["rank loss"][0]) == pytest.approx(rank, abs=1e-5)
    assert float(report["ft loss"][0]) == pytest.approx(ft, abs=1e-5)
    assert float(loss_sum.detach()) == pytest.approx(HAND_RANK + HAND_FT, abs=1e-5)
    assert [float(report[k][1]) for k in ("lm loss", "rank loss", "ft loss")] == [len(PAIRS)] * 3

    # d(loss)/d(per-token loss), by hand, per response token of each pair's (chosen, rejected) rows:
    # a live hinge adds +1/|y_c| on the chosen row and -1/|y_r| on the rejected one; the teacher's
    # L_ft adds its pair's weight (1/2: each teacher is the chosen side of two pairs).
    expected = {0: (1 / 3 + 1 / 2, -1 / 2),   # T_A vs A1, live
                1: (1 / 2, 0.0),              # T_A vs A2, hinge dead: L_ft only
                2: (1 / 4, -1 / 2),           # A2 vs A1, live; A2 is not the best response: no L_ft
                3: (1 / 2 + 1 / 2, -1.0),     # T_B vs B1
                4: (1 / 2 + 1 / 2, -1 / 2),   # T_B vs B2
                5: (0.0, 0.0)}                # equal scores: no rank term, B1 is not the best
    loss_sum.backward()
    grad, mask = ce.grad, batch["loss_mask"] > 0
    assert torch.count_nonzero(grad[~mask]) == 0  # prompt and padding positions never count
    for k in range(len(PAIRS)):
        pair = rows[2 * k]["pair"]
        for row, want in zip((2 * k, 2 * k + 1), expected[pair]):
            got = grad[row][mask[row]]
            assert torch.allclose(got, torch.full_like(got, want), atol=1e-6), (pair, row, got, want)


# The issue's toy query: teacher scores 3, students 2, 0 and 3. Mean log-probs p, by hand:
#   T -1 (two tokens of -1), S1 -0.959, S2 -1.347, S3 -2
#   paper, every r_i < r_j:  S1<T 0.041, S2<T 0, S2<S1 0, S1<S3 1.041, S2<S3 0.653  -> 1.735
#   teacher-vs-student pairs only (the old `rrtf rank`): 0.041 + 0 (+ the T=S3 tie, no term) -> 0.041
#   L_ft either way: the teacher (first of the two top scores), -(-1 - 1) = 2
TOY_CE = {20: 1.0, 21: 0.959, 22: 1.347, 23: 2.0}
TOY = [([20, 20], 3.0), ([21], 2.0), ([22], 0.0), ([23], 3.0)]  # teacher, then the students in order


def _toy_loss(tmp_path, pairs) -> tuple[float, float]:
    from codetron.megatron_ext.rrtf.pairs import write_pairs
    from codetron.megatron_ext.tokenizer_info import NullTokenizer

    prefix = str(tmp_path / f"toy{len(pairs)}")
    write_pairs(prefix, pairs, VOCAB, VOCAB - 1)
    obj = RRTFObjective()
    train, _ = obj.build_datasets(_cfg(prefix), NullTokenizer(VOCAB), 2 * len(pairs), 0)
    batch = obj.collate([train[i] for i in range(2 * len(pairs))])
    table = torch.full((VOCAB,), 100.0)
    for t, v in TOY_CE.items():
        table[t] = v
    _, _, report = rrtf_loss(batch["loss_mask"], batch["scores"], batch["ft_weight"], table[batch["labels"]])
    return float(report["rank loss"][0]), float(report["ft loss"][0])


def test_issue_toy_query_gives_the_papers_1735(tmp_path):
    from codetron.preprocess.generate.rrtf.rank import ranked_pairs

    best, ranked = ranked_pairs([score for _, score in TOY])
    assert best == 0 and ranked == [(0, 1), (0, 2), (1, 2), (3, 1), (3, 2)]
    pairs = [(PROMPT_A, TOY[j][0], TOY[i][0], TOY[j][1], TOY[i][1]) for j, i in ranked]
    rank, ft = _toy_loss(tmp_path, pairs)
    assert rank == pytest.approx(1.735, abs=1e-5) and ft == pytest.approx(2.0, abs=1e-5)
    toy_queries = [[([-TOY_CE[t] for t in resp], score) for resp, score in TOY]]
    assert paper_loss(toy_queries) == pytest.approx((1.735, 2.0), abs=1e-9)
    # what the teacher-vs-student file gave: the student-vs-student terms are missing
    old = [(PROMPT_A, TOY[0][0], resp, 3.0, score) for resp, score in TOY[1:]]
    rank_old, ft_old = _toy_loss(tmp_path, old)
    assert rank_old == pytest.approx(0.041, abs=1e-5) and ft_old == pytest.approx(2.0, abs=1e-5)


def test_ties_and_a_student_above_the_teacher(tmp_path):
    """Query A: teacher 2.5, students 3, 2.5, 0 -> the student's 3 is the L_ft target, the teacher
    and the tied student make no pair. Query B: every response tied -> one L_ft-only pair."""
    from codetron.preprocess.generate.rrtf.rank import ranked_pairs

    qa = [([20, 20], 2.5), ([23], 3.0), ([21], 2.5), ([22], 0.0)]
    qb = [([21, 21], 1.0), ([22], 1.0)]
    best, ranked = ranked_pairs([s for _, s in qa])
    # the top response's pairs first; T = S2 (2.5) is no pair
    assert best == 1 and ranked == [(1, 0), (1, 2), (1, 3), (0, 3), (2, 3)]
    assert ranked_pairs([s for _, s in qb]) == (0, [])
    pairs = [(PROMPT_A, qa[j][0], qa[i][0], qa[j][1], qa[i][1]) for j, i in ranked]
    pairs.append((PROMPT_B, qb[0][0], qb[0][0], 1.0, 1.0))  # what `rrtf rank` writes for an all-tie query
    rank, ft = _toy_loss(tmp_path, pairs)
    # p: T -1, S1 -2, S2 -0.959, S3 -1.347;  B: -0.959 and -1.347
    #   (chosen, rejected): (S1,T) max(0, -1 + 2) = 1, (S1,S2) 1.041, (S1,S3) 0.653, (T,S3) 0, (S2,S3) 0
    #                                                                             -> L_rank 2.694
    #   L_ft: S1's -log P = 2 (query A) + the first of B's ties, -(2 * -0.959) = 1.918  -> 3.918
    assert rank == pytest.approx(2.694, abs=1e-5) and ft == pytest.approx(3.918, abs=1e-5)
    queries = [[([-TOY_CE[t] for t in r], s) for r, s in q] for q in (qa, qb)]
    assert paper_loss(queries) == pytest.approx((2.694, 3.918), abs=1e-9)


def test_margin_follows_the_hinge(hand_prefix):
    obj, _, batch, ce = _epoch(hand_prefix, rrtf_margin=0.5)
    _, step = obj.forward_step(batch, lambda *a, **k: ce)  # data.rrtf_margin reaches the loss function
    _, _, report = step(ce)
    # 1.5 + 0 + 2.5 (query A) + 0.75 + 0.8 (query B); the equal-score pair stays out
    assert float(report["rank loss"][0]) == pytest.approx(paper_loss(queries_logprobs(), 0.5)[0], abs=1e-5)
    assert float(report["rank loss"][0]) == pytest.approx(5.55, abs=1e-5)


def test_weighted_variant_matches_its_definition(hand_prefix):
    obj, rows, batch, ce = _epoch(hand_prefix, rrtf_loss="weighted")
    assert obj.variant == "weighted"
    _, step = obj.forward_step(batch, lambda *a, **k: ce)
    loss_sum, npairs, report = step(ce)
    # (r_c - r_r)+ * max(0, p_r - p_c) per pair, and -p_c (length-normalised) in every pair
    rank = ft = 0.0
    for prompt, chosen, rejected, r_c, r_r in PAIRS:
        p_c = -sum(CE[t] for t in chosen) / len(chosen)
        p_r = -sum(CE[t] for t in rejected) / len(rejected)
        rank += max(0.0, r_c - r_r) * max(0.0, p_r - p_c)
        ft += -p_c
    assert (rank, ft) == pytest.approx((5.375, 8.25))  # 2 + 0 + 2 + 0.625 + 0.75 + 0;  2+2+3+.5+.5+.25
    assert float(report["rank loss"][0]) == pytest.approx(rank, abs=1e-5)
    assert float(report["ft loss"][0]) == pytest.approx(ft, abs=1e-5)
    assert float(loss_sum) == pytest.approx(rank + ft, abs=1e-5)


def test_loss_does_not_depend_on_the_micro_batch_split(hand_prefix):
    obj, rows, batch, ce = _epoch(hand_prefix)
    whole, n, _ = rrtf_loss(batch["loss_mask"], batch["scores"], batch["ft_weight"], ce)
    total, count = 0.0, 0
    for k in range(0, len(rows), 2):  # one pair per micro-batch, as DP ranks or accumulation would see it
        mb = obj.collate(rows[k:k + 2])
        s, c, _ = rrtf_loss(mb["loss_mask"], mb["scores"], mb["ft_weight"], ce[k:k + 2])
        total, count = total + float(s), count + int(c)
    assert count == int(n) and total == pytest.approx(float(whole), abs=1e-5)


def test_teacher_weights_count_each_teacher_once_per_split():
    # pairs of 3 queries as `rrtf rank` writes them (teacher = chosen in every pair of its query),
    # query 1 with a student-vs-student pair, query 2 cut by the train/valid boundary at pair 6
    queries = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    chosen = np.array([7, 7, 7, 8, 8, 9, 5, 5])
    scores = np.array([3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    w = teacher_weights(queries, chosen, scores, np.arange(0, 7))
    assert w.tolist() == pytest.approx([1 / 3] * 3 + [1 / 2, 1 / 2, 0.0, 1.0, 0.0])
    w = teacher_weights(queries, chosen, scores, np.arange(7, 8))
    assert w.tolist() == [0.0] * 7 + [1.0]


def test_pairs_file_query_keys(hand_prefix):
    from codetron.megatron_ext.rrtf.pairs import PairDataset

    ds = PairDataset(hand_prefix)
    q, c = ds.query_keys()
    assert q.tolist() == [0, 0, 0, 1, 1, 1]
    assert c.tolist() == [0, 0, 1, 2, 2, 3]  # T_A, T_A, A2, T_B, T_B, B1
    w = teacher_weights(q, c, ds.scores[:, 0], np.arange(len(ds)))
    assert w.tolist() == [0.5, 0.5, 0.0, 0.5, 0.5, 0.0]


def test_build_row_masks_response_only():
    row = build_row(np.array([5, 6, 7]), np.array([8, 9, 255]), seq_length=8, pad=254)
    assert row["tokens"].tolist() == [5, 6, 7, 8, 9, 254, 254, 254]
    assert row["labels"].tolist() == [6, 7, 8, 9, 255, 254, 254, 254]
    assert row["loss_mask"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert not row["truncated"]


def test_build_row_truncates_long_prompt_from_left():
    prompt, resp = np.arange(100, 120), np.arange(1, 11)
    row = build_row(prompt, resp, seq_length=16, pad=0)
    assert row["truncated"]
    text = np.concatenate([row["tokens"], row["labels"][-1:]])
    # 17 tokens: the response keeps half the row (8 tokens), the prompt its last 9 tokens
    assert text.tolist() == list(range(111, 120)) + list(range(1, 9))
    assert row["loss_mask"].sum() == 8
    # a short response is kept whole, the prompt gives way
    row = build_row(prompt, resp[:4], seq_length=16, pad=0)
    assert np.concatenate([row["tokens"], row["labels"][-1:]]).tolist() == list(range(107, 120)) + [1, 2, 3, 4]


def test_collate_rejects_split_pairs():
    obj = RRTFObjective()
    row = build_row(np.array([1, 2]), np.array([3, 4]), 6, 0)
    good = [dict(row, role=0, score=3.0, ft_weight=0.5), dict(row, role=1, score=1.0, ft_weight=0.5)]
    batch = obj.collate(good)
    assert batch["tokens"].shape == (2, 6) and batch["scores"].tolist() == [3.0, 1.0]
    assert batch["ft_weight"].tolist() == [0.5, 0.5]
    with pytest.raises(RuntimeError, match="not whole"):
        obj.collate(good[1:] + good[:1])


MODEL_CHECK = r"""
import json, torch
from codetron.megatron_ext.config import ModelConfig, ParallelConfig
from codetron.megatron_ext.parallel import init_distributed, destroy_distributed
from codetron.megatron_ext.model import build_model
from codetron.megatron_ext.objectives.rrtf import rrtf_loss
init_distributed(ParallelConfig(), 0)
model = build_model(ModelConfig(num_layers=2, hidden_size=32, num_attention_heads=4, seq_length=16), ParallelConfig(), 100)
g = torch.Generator().manual_seed(0)
tokens = torch.randint(0, 100, (4, 16), generator=g)
labels = torch.randint(0, 100, (4, 16), generator=g)
pos = torch.arange(16).expand(4, 16)
mask = torch.zeros(4, 16); mask[:, 5:] = 1; mask[1, 12:] = 0
scores = torch.tensor([3.0, 1.0, 2.0, 0.0])
with torch.no_grad():
    ce = model(tokens, pos, None, labels=labels)            # [b, s], the path forward_step uses
    logits = model(tokens, pos, None)                       # [b, s, V] (TP1, so the full vocab)
loss, n, rep = rrtf_loss(mask, scores, torch.ones(4), ce)
print(json.dumps({"loss": float(loss), "logits": logits.tolist(), "labels": labels.tolist(), "mask": mask.tolist(),
                  "scores": scores.tolist()}))
destroy_distributed()
"""


def test_model_labels_path_matches_the_paper_on_its_logits():
    """forward_step's labels= path (megatron-core's vocab-parallel CE inside the model) against the
    paper's loss computed from the same model's logits: rows (0, 1) and (2, 3) are two one-pair queries."""
    proc = subprocess.run([PYTHON, "-c", MODEL_CHECK], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    logp = torch.log_softmax(torch.tensor(out["logits"], dtype=torch.float64), dim=-1)
    labels, mask, scores = out["labels"], out["mask"], out["scores"]
    rows = [([float(logp[i, t, labels[i][t]]) for t in range(16) if mask[i][t] > 0], scores[i]) for i in range(4)]
    rank, ft = paper_loss([rows[0:2], rows[2:4]])
    assert ft > 10 and math.isclose(out["loss"], rank + ft, rel_tol=1e-6)
