"""RRTF (PanGu-Coder2, arXiv:2307.14936 Sec. 3.2): rank loss plus teacher fine-tuning on ranked pairs.

For a query x with responses y_i scored r_i by unit tests (``codetron.preprocess.generate.rrtf.scoring``), the paper
trains on

    p_i    = sum_t log P(y_i,t | x, y_i,<t) / |y_i|         length-normalised log-probability
    L_rank = sum_{r_i < r_j} max(0, p_i - p_j)              every pair where y_j scores higher
    L_ft   = -sum_t log P(y_i',t | x, y_i',<t),  i' = argmax_i r_i   the best (teacher) response,
                                                            summed over its tokens, once per query
    L      = L_rank + L_ft

A pair in the pairs file is (chosen y_j, rejected y_i) for one query; L_rank is summed over the
pairs given, so it is the paper's sum when the file holds every pair with r_i < r_j, which is what
``rrtf rank`` writes (teacher and students alike; equal scores make no pair, and a query whose
responses all tie gets one L_ft-only pair, chosen = rejected, equal scores). The query's top response
y_i' is the chosen side of its n pairs with the lower-scored responses; to count L_ft once per query,
those pairs carry weight 1/n on its NLL, the others 0 (``teacher_weights``): summed over an epoch
every top response counts exactly once; a global batch holds it in expectation. A query is a
distinct prompt (``PairDataset.query_keys``). ``data.rrtf_margin`` m > 0 makes the hinge
max(0, p_i - p_j + m) (paper: 0); pairs with equal scores carry no rank term.

``data.rrtf_loss weighted`` keeps the earlier variant: hinge scaled by the score gap r_j - r_i, and
L_ft = -p of the chosen response (length-normalised) in every pair.

How it fits the training loop (``calculate_per_token_loss=True``): the loss function returns
``(sum over the pairs of its micro-batch of L_rank + weighted L_ft, number of pairs, report)``.
megatron-core divides the summed gradients by the summed count of the global batch, so the reported
loss is *per pair*: (sum of L_rank + sum of weighted L_ft) / pairs. A global batch always holds
global_batch_size / 2 pairs, so this is the paper's sum scaled by a constant (absorbed by the
learning rate) and independent of micro-batch size, pipeline or data parallelism. The report also
carries "rank loss" and "ft loss" as [sum, pairs], on the same count as "lm loss".

Layout: a pair is two consecutive samples of the dataset -- sample 2k is the chosen sequence of
pair k, sample 2k+1 the rejected one -- so a micro-batch of even size M holds M/2 whole pairs, both
sequences of a pair in the same forward pass, each sequence its own row with the ordinary causal
mask. That keeps every row ``[seq_length]`` long, so pipeline-parallel activation shapes,
TransformerEngine and fused causal softmax kernels work unchanged (packing both responses into one
row would need a block mask that fused causal kernels silently ignore).

Log-probabilities come from the model's own ``labels=`` path: it returns megatron-core's
``vocab_parallel_cross_entropy`` per token ([b, s], -log P(label)), which is exact under tensor
parallelism with vocab-sharded logits; under pipeline parallelism the loss runs on the last stage.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from codetron.megatron_ext.objectives import register

CHOSEN, REJECTED = 0, 1
LOSSES = ("paper", "weighted")


def response_logprobs(per_token_ce: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: (summed, length-normalised) log-probability of the response tokens (mask > 0)."""
    mask = loss_mask.to(per_token_ce.dtype)
    total = -(per_token_ce * mask).sum(dim=1)
    return total, total / mask.sum(dim=1).clamp(min=1.0)


def paper_terms(p_chosen: torch.Tensor, p_rejected: torch.Tensor, r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                logp_sum_chosen: torch.Tensor, ft_weight: torch.Tensor,
                margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair (L_rank, share of L_ft) of PanGu-Coder2: max(0, p_r - p_c + m) where r_r < r_c, and
    -w * (summed log-prob of the chosen response), w = 1 / pairs of its query."""
    ranked = (r_rejected < r_chosen).to(p_chosen.dtype)
    rank = ranked * torch.clamp(p_rejected - p_chosen + margin, min=0.0)
    return rank, -ft_weight.to(logp_sum_chosen.dtype) * logp_sum_chosen


def weighted_terms(p_chosen: torch.Tensor, p_rejected: torch.Tensor, r_chosen: torch.Tensor,
                   r_rejected: torch.Tensor, margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair (L_rank, L_ft) of the "weighted" variant: (r_c - r_r)+ * max(0, p_r - p_c + m), -p_c."""
    weight = (r_chosen - r_rejected).clamp(min=0.0)
    rank = weight * torch.clamp(p_rejected - p_chosen + margin, min=0.0)
    return rank, -p_chosen


def rrtf_loss(loss_mask: torch.Tensor, scores: torch.Tensor, ft_weight: torch.Tensor, output_tensor: torch.Tensor,
              variant: str = "paper", margin: float = 0.0):
    """Loss function for the pipeline schedule; rows alternate chosen, rejected, chosen, ...

    ``ft_weight`` is per row (its pair's 1/n on the chosen row; read only there). Returns
    ``(sum of L_rank + L_ft over pairs, number of pairs, report)``; the report holds ``[sum, pairs]``
    for the total ("lm loss", what the loop logs) and for each term.
    """
    ce = output_tensor.float()
    logp_sum, p = response_logprobs(ce, loss_mask)
    s = scores.to(ce.device, torch.float32)
    if variant == "paper":
        rank, ft = paper_terms(p[0::2], p[1::2], s[0::2], s[1::2], logp_sum[0::2],
                               ft_weight.to(ce.device)[0::2], margin)
    elif variant == "weighted":
        rank, ft = weighted_terms(p[0::2], p[1::2], s[0::2], s[1::2], margin)
    else:
        raise ValueError(f"unknown RRTF loss {variant!r}; choose from {', '.join(LOSSES)}")
    rank_sum, ft_sum = rank.sum(), ft.sum()
    loss_sum = rank_sum + ft_sum
    npairs = torch.tensor(p.shape[0] // 2, dtype=torch.int, device=ce.device)
    n = npairs.detach().clone().float()
    # The schedule rescales the returned loss in place; report detached copies.
    report = {
        "lm loss": torch.stack([loss_sum.detach().clone(), n]),
        "rank loss": torch.stack([rank_sum.detach().clone(), n]),
        "ft loss": torch.stack([ft_sum.detach().clone(), n]),
    }
    return loss_sum, npairs, report


def build_row(prompt: np.ndarray, response: np.ndarray, seq_length: int, pad: int) -> dict:
    """One training row: ``prompt + response`` shifted into tokens/labels, loss on the response.

    Too long for ``seq_length + 1`` tokens: the prompt is cut from the left down to what leaves the
    response at least half the row (or all of it when shorter), then the response from the right.
    Returns a dict with ``truncated`` telling whether anything was cut.
    """
    prompt = np.asarray(prompt, dtype=np.int64)
    response = np.asarray(response, dtype=np.int64)
    room = seq_length + 1
    truncated = len(prompt) + len(response) > room
    if truncated:
        keep_resp = min(len(response), max(room - len(prompt), room // 2))
        keep_prompt = max(1, room - keep_resp)
        prompt = prompt[-keep_prompt:]
        response = response[:room - len(prompt)]
    text = np.concatenate([prompt, response])
    n = len(text) - 1
    tokens = np.full(seq_length, pad, dtype=np.int64)
    labels = np.full(seq_length, pad, dtype=np.int64)
    mask = np.zeros(seq_length, dtype=np.float32)
    tokens[:n] = text[:-1]
    labels[:n] = text[1:]
    # label position t predicts text[t+1]; the response starts at text index len(prompt)
    mask[max(len(prompt) - 1, 0):n] = 1.0
    return {"tokens": tokens, "labels": labels, "loss_mask": mask,
            "position_ids": np.arange(seq_length, dtype=np.int64), "truncated": truncated}


class PairSequences(torch.utils.data.Dataset):
    """Samples ``2k`` / ``2k+1`` = chosen / rejected row of the ``k``-th pair in a shuffled order.

    ``ft_weights[pair]`` is the pair's share of its query's L_ft (``teacher_weights``); None = 1."""

    def __init__(self, pairs, order: np.ndarray, seq_length: int, pad: int, ft_weights: np.ndarray | None = None):
        self.pairs, self.order = pairs, np.asarray(order, dtype=np.int64)
        self.seq_length, self.pad = seq_length, pad
        self.ft_weights = ft_weights

    def __len__(self) -> int:
        return 2 * len(self.order)

    def __getitem__(self, idx: int) -> dict:
        pair = int(self.order[idx // 2])
        role = idx % 2
        prompt, chosen, rejected, scores = self.pairs[pair]
        row = build_row(prompt, chosen if role == CHOSEN else rejected, self.seq_length, self.pad)
        row["score"] = np.float32(scores[role])
        row["ft_weight"] = np.float32(1.0 if self.ft_weights is None else self.ft_weights[pair])
        row["role"] = role
        row["pair"] = pair
        return row


def split_pairs(n: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Train/valid pair indices from a megatron-style ``"98,2,0"`` split (contiguous ranges)."""
    from codetron.errors import ConfigError

    try:
        parts = [float(x) for x in split.replace("/", ",").split(",")]
    except ValueError:
        raise ConfigError(f"data.split {split!r}: expected comma-separated numbers like 98,2,0") from None
    parts = (parts + [0.0, 0.0, 0.0])[:3]
    total = sum(parts)
    if total <= 0:
        raise ConfigError(f"data.split {split!r}: parts must sum to more than 0")
    b1 = int(round(n * parts[0] / total))
    b2 = int(round(n * (parts[0] + parts[1]) / total))
    return np.arange(0, b1), np.arange(b1, b2)


def teacher_weights(queries: np.ndarray, chosen: np.ndarray, chosen_scores: np.ndarray,
                    indices: np.ndarray) -> np.ndarray:
    """Per pair (indexed like ``queries``): its share of its query's L_ft, 0 outside ``indices``.

    The query's best response (i' = argmax r_i: the chosen side with the highest score, the first
    such pair on ties -- ``rrtf rank`` writes the top response's pairs first) carries L_ft; each of
    the n pairs whose chosen side it is gets 1/n, so summed over one pass of ``indices`` every top
    response counts once. Pairs whose chosen side is not the best get 0. Counted per split, so a
    query cut by the train/valid boundary still sums to 1 in each."""
    weights = np.zeros(len(queries), dtype=np.float64)
    best: dict[int, tuple[float, int]] = {}
    for k in indices:
        q, r = int(queries[k]), float(chosen_scores[k])
        if q not in best or r > best[q][0]:
            best[q] = (r, int(chosen[k]))
    carriers = [int(k) for k in indices if best[int(queries[k])][1] == int(chosen[k])]
    counts: dict[int, int] = {}
    for k in carriers:
        counts[int(queries[k])] = counts.get(int(queries[k]), 0) + 1
    for k in carriers:
        weights[k] = 1.0 / counts[int(queries[k])]
    return weights


def epoch_order(indices: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """Pairs in a fresh seeded shuffle per epoch, enough epochs for ``num_samples`` rows (>= 1)."""
    if len(indices) == 0:
        return indices
    epochs = max(1, -(-num_samples // (2 * len(indices))))
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(indices) for _ in range(epochs)])


@register("rrtf")
class RRTFObjective:
    name = "rrtf"

    def __init__(self, variant: str = "paper", margin: float = 0.0):
        self.variant, self.margin = variant, margin

    @staticmethod
    def _pairs(cfg, tokenizer):
        from codetron.errors import ConfigError
        from codetron.megatron_ext.rrtf.pairs import PairDataset
        from codetron.megatron_ext.datapath import data_prefixes

        prefixes = data_prefixes(cfg.data.data_path)
        if len(prefixes) != 1:
            raise ConfigError(f"data.data_path: data.mode rrtf reads one pairs dataset (written by `codetron rrtf "
                              f"preprocess`), got {len(prefixes)}")
        pairs = PairDataset(prefixes[0])
        if pairs.vocab_size is not None and pairs.vocab_size > tokenizer.vocab_size:
            raise ConfigError(f"{prefixes[0]}: pairs were tokenized with a {pairs.vocab_size}-token vocabulary but "
                              f"data.tokenizer has {tokenizer.vocab_size}")
        return pairs

    def epoch_samples(self, cfg, tokenizer) -> int:
        """Rows of one pass over the training pairs: two per pair (chosen and rejected)."""
        train_idx, _ = split_pairs(len(self._pairs(cfg, tokenizer)), cfg.data.split)
        return 2 * len(train_idx)

    def build_datasets(self, cfg, tokenizer, num_train_samples, num_valid_samples):
        from codetron.errors import ConfigError
        from codetron.preprocess.tokenizer import require_pad

        if cfg.optim.micro_batch_size % 2:
            raise ConfigError(f"optim.micro_batch_size {cfg.optim.micro_batch_size}: data.mode rrtf needs an even "
                              f"micro-batch (chosen and rejected rows of a pair share a forward pass)")
        if cfg.data.rrtf_loss not in LOSSES:
            raise ConfigError(f"data.rrtf_loss {cfg.data.rrtf_loss!r}: choose from {', '.join(LOSSES)}")
        self.variant, self.margin = cfg.data.rrtf_loss, cfg.data.rrtf_margin
        pairs = self._pairs(cfg, tokenizer)
        train_idx, valid_idx = split_pairs(len(pairs), cfg.data.split)
        seq, pad = cfg.model.seq_length, require_pad(tokenizer, "data.mode rrtf (pair rows are padded to model.seq_length)")
        queries, chosen = pairs.query_keys()
        train = PairSequences(pairs, epoch_order(train_idx, num_train_samples, cfg.data.seed), seq, pad,
                              teacher_weights(queries, chosen, pairs.scores[:, 0], train_idx))
        valid = None
        if len(valid_idx):
            valid = PairSequences(pairs, epoch_order(valid_idx, num_valid_samples, cfg.data.seed + 1), seq, pad,
                                  teacher_weights(queries, chosen, pairs.scores[:, 0], valid_idx))
        return train, valid

    def collate(self, samples):
        roles = [int(s["role"]) for s in samples]
        if roles != [CHOSEN, REJECTED] * (len(samples) // 2) or len(samples) % 2:
            raise RuntimeError(f"rrtf micro-batch is not whole (chosen, rejected) pairs: roles {roles}")
        batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples])
                 for k in ("tokens", "labels", "loss_mask", "position_ids")}
        batch["scores"] = torch.tensor([float(s["score"]) for s in samples], dtype=torch.float32)
        batch["ft_weight"] = torch.tensor([float(s["ft_weight"]) for s in samples], dtype=torch.float32)
        return batch

    def forward_step(self, batch, model):
        # labels= gives megatron-core's vocab-parallel cross-entropy per token: -log P(label), [b, s]
        output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return output, partial(rrtf_loss, batch["loss_mask"], batch["scores"], batch["ft_weight"],
                               variant=self.variant, margin=self.margin)
